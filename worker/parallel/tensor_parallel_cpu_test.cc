// Tensor parallelism checked on the CPU: N ranks as N threads, each a CPU backend holding only
// its shard of the weights (loaded through LoadOptions::tp_rank / tp_size) and the in-process
// communicator, run the same steps as one backend holding the whole model. Logits must match the
// unsharded run within fp32 rounding (only the order of the sums differs), be bitwise the same
// on every rank, and greedy generations must be equal.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "worker/backend/cpu/cpu_backend.h"
#include "worker/model/test_model_writer.h"
#include "worker/parallel/in_process_communicator.h"

namespace ite {
namespace {

namespace fs = std::filesystem;

std::string DataDir(const std::string& name) {
  return std::string(ITE_TEST_SOURCE_DIR) + "/tests/data/" + name;
}

// Everything a workload returns: every logit row it asked for and every sampled token.
struct Trace {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};

constexpr int kDecodeSteps = 8;

// Two sequences prefilled in one batch (all logits of the first, the last of the second), then
// decoded together, greedily, for kDecodeSteps steps.
StatusOr<Trace> RunWorkload(Backend* b) {
  const std::vector<int32_t> a = {5, 17, 3, 60, 0, 44, 12}, c = {9, 1, 33, 2, 7};
  const std::vector<int32_t> table_a = {0, 1, 2, 3}, table_c = {4, 5, 6, 7};
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  ITE_RETURN_IF_ERROR(b->AddSequence(1, greedy, a, 0));
  ITE_RETURN_IF_ERROR(b->AddSequence(2, greedy, c, 0));
  Trace t;
  auto run = [&](const ForwardBatch& batch) -> Status {
    ITE_ASSIGN_OR_RETURN(ForwardOutput out, b->Run(batch));
    t.logits.insert(t.logits.end(), out.logits.begin(), out.logits.end());
    for (const SampleResult& s : out.samples) t.tokens.push_back(s.token);
    return Status::Ok();
  };
  ForwardBatch prefill;
  prefill.chunks.push_back({1, a, 0, table_a, true, LogitsMode::kAll});
  prefill.chunks.push_back({2, c, 0, table_c, true, LogitsMode::kLast});
  ITE_RETURN_IF_ERROR(run(prefill));
  for (int i = 0; i < kDecodeSteps; ++i) {
    ForwardBatch decode;
    decode.chunks.push_back(
        {1, {}, static_cast<int32_t>(a.size()) + i, table_a, true, LogitsMode::kLast});
    decode.chunks.push_back(
        {2, {}, static_cast<int32_t>(c.size()) + i, table_c, true, LogitsMode::kLast});
    ITE_RETURN_IF_ERROR(run(decode));
  }
  return t;
}

KvCacheOptions SmallKv() {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks = 8;
  return kv;
}

StatusOr<std::unique_ptr<Backend>> LoadBackend(const std::string& path, DType dtype, int rank,
                                               int size, Communicator* comm) {
  LoadOptions o;
  o.dtype = dtype;
  o.tp_rank = rank;
  o.tp_size = size;
  ITE_ASSIGN_OR_RETURN(LoadedModel m, LoadModel(path, o));
  return CreateCpuBackend(std::move(m), SmallKv(), 1, comm);
}

Trace Reference(const std::string& path, DType dtype) {
  auto b = LoadBackend(path, dtype, 0, 1, nullptr);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) return {};
  auto t = RunWorkload(b->get());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : Trace{};
}

// The workload on `size` ranks, one thread each; a rank that fails aborts the group so that no
// other rank waits for it.
std::vector<StatusOr<Trace>> RunRanks(const std::string& path, DType dtype, int size,
                                      const std::function<Communicator*(int)>& comm_of,
                                      const std::function<void()>& abort = [] {}) {
  std::vector<StatusOr<Trace>> traces(size, Internal("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) {
    threads.emplace_back([&, r] {
      auto b = LoadBackend(path, dtype, r, size, comm_of(r));
      traces[r] = b.ok() ? RunWorkload(b->get()) : StatusOr<Trace>(b.status());
      if (!traces[r].ok()) abort();
    });
  }
  for (std::thread& t : threads) t.join();
  return traces;
}

void ExpectTensorParallelMatches(const std::string& path, int size, DType dtype = DType::kF32) {
  SCOPED_TRACE(fmt::format("{} at tensor parallel size {}, {}", path, size, DTypeName(dtype)));
  const Trace ref = Reference(path, dtype);
  ASSERT_FALSE(ref.tokens.empty());
  InProcessGroupOptions go;
  go.size = size;
  go.timeout_ms = 20000;
  InProcessGroup group(go);
  auto traces = RunRanks(
      path, dtype, size, [&](int r) { return group.rank(r); }, [&] { group.Abort(); });
  for (int r = 0; r < size; ++r) {
    ASSERT_TRUE(traces[r].ok()) << "rank " << r << ": " << traces[r].status().ToString();
    // Every rank sampled from the same all-reduced logits.
    EXPECT_EQ(traces[r]->logits, traces[0]->logits) << "rank " << r;
    EXPECT_EQ(traces[r]->tokens, ref.tokens) << "rank " << r;
  }
  const std::vector<float>& got = traces[0]->logits;
  ASSERT_EQ(got.size(), ref.logits.size());
  float max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_TRUE(std::isfinite(got[i])) << i;
    max_diff = std::max(max_diff, std::abs(got[i] - ref.logits[i]));
    max_abs = std::max(max_abs, std::abs(ref.logits[i]));
  }
  EXPECT_LE(max_diff, 1e-5f * std::max(1.0f, max_abs)) << "max |logit| " << max_abs;
  std::printf("%s TP=%d %s: %zu logits, max |diff| %.3g of max |logit| %.3g, %zu tokens equal\n",
              fs::path(path).filename().c_str(), size, DTypeName(dtype), got.size(), max_diff,
              max_abs, ref.tokens.size());
}

TEST(TensorParallelCpuTest, LlamaTp2MatchesOneRank) {
  ExpectTensorParallelMatches(DataDir("tiny-llama"), 2);
}

// 2 KV heads on 4 ranks: each KV head replicated on two ranks.
TEST(TensorParallelCpuTest, LlamaTp4ReplicatesKvHeads) {
  ExpectTensorParallelMatches(DataDir("tiny-llama"), 4);
}

// Qwen2: the QKV bias is split with its rows.
TEST(TensorParallelCpuTest, Qwen2Tp2AndTp4MatchOneRank) {
  ExpectTensorParallelMatches(DataDir("tiny-qwen2"), 2);
  ExpectTensorParallelMatches(DataDir("tiny-qwen2"), 4);
}

// One KV head for two ranks, Llama-3 RoPE scaling, the LM head a slice of the tied embedding.
TEST(TensorParallelCpuTest, TiedLlama3SingleKvHeadTp2) {
  ExpectTensorParallelMatches(DataDir("tiny-llama-tied-llama3"), 2);
}

// Weights converted on load: the rank's column slices of O and down go through the conversion.
TEST(TensorParallelCpuTest, Bf16WeightsTp2) {
  ExpectTensorParallelMatches(DataDir("tiny-llama"), 2, DType::kBF16);
}

// GGUF: the rank's Q/K rows are taken after undoing llama.cpp's per-head row permutation.
TEST(TensorParallelCpuTest, GgufLlamaTp2AndTp4) {
  const fs::path dir = fs::temp_directory_path() / fmt::format("ite_tp_gguf_{}", ::getpid());
  fs::create_directories(dir);
  const std::string path = (dir / "tiny.gguf").string();
  {
    std::ofstream f(path, std::ios::binary);
    f << testing::BuildGguf(testing::MakeTinyModel(ModelArch::kLlama, /*tied=*/false, 3));
  }
  ExpectTensorParallelMatches(path, 2);
  ExpectTensorParallelMatches(path, 4);
  fs::remove_all(dir);
}

// A rank that skips the sums (each rank's partial products used as if whole) must not pass:
// proves the comparison above can fail.
class NoSumCommunicator final : public Communicator {
 public:
  NoSumCommunicator(int rank, int size) : rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  Status AllReduceSum(void*, int64_t, DType, void*) override { return Status::Ok(); }
  Status Broadcast(void*, int64_t, int, void*) override { return Status::Ok(); }
  Status Barrier() override { return Status::Ok(); }

 private:
  int rank_, size_;
};

TEST(TensorParallelCpuTest, MissingAllReduceChangesLogits) {
  const std::string path = DataDir("tiny-llama");
  const Trace ref = Reference(path, DType::kF32);
  NoSumCommunicator c0(0, 2), c1(1, 2);
  auto traces = RunRanks(path, DType::kF32, 2, [&](int r) -> Communicator* {
    return r == 0 ? &c0 : &c1;
  });
  ASSERT_TRUE(traces[0].ok()) << traces[0].status().ToString();
  ASSERT_EQ(traces[0]->logits.size(), ref.logits.size());
  float max_diff = 0;
  for (size_t i = 0; i < ref.logits.size(); ++i)
    max_diff = std::max(max_diff, std::abs(traces[0]->logits[i] - ref.logits[i]));
  EXPECT_GT(max_diff, 1e-2f);
}

TEST(TensorParallelCpuTest, ImpossibleSplitsFailClearly) {
  LoadOptions o;
  o.tp_rank = 0;
  o.tp_size = 3;
  auto three = LoadModel(DataDir("tiny-llama"), o);
  ASSERT_FALSE(three.ok());
  EXPECT_NE(three.status().message().find("does not divide the 4 attention heads"),
            std::string::npos)
      << three.status().ToString();
  o.tp_size = 8;
  auto eight = LoadModel(DataDir("tiny-llama"), o);
  ASSERT_FALSE(eight.ok());
  EXPECT_NE(eight.status().message().find("attention heads"), std::string::npos);
  o.tp_size = 2;
  o.tp_rank = 2;
  EXPECT_FALSE(LoadModel(DataDir("tiny-llama"), o).ok());
  o.tp_rank = 0;
  auto llava = LoadModel(DataDir("tiny-llava"), o);
  ASSERT_FALSE(llava.ok());
  EXPECT_EQ(llava.status().code(), StatusCode::kUnimplemented) << llava.status().ToString();
}

TEST(TensorParallelCpuTest, ShardNeedsItsRanksCommunicator) {
  LoadOptions o;
  o.tp_rank = 1;
  o.tp_size = 2;
  auto m = LoadModel(DataDir("tiny-llama"), o);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->config.num_heads, 2);
  EXPECT_EQ(m->config.num_kv_heads, 1);
  EXPECT_EQ(m->config.intermediate_size, 64);
  EXPECT_EQ(m->config.shard.lm_head_begin, 256);
  EXPECT_EQ(m->config.shard.lm_head_rows, 256);
  EXPECT_EQ(m->weights.layers[0].wqkv.shape, (std::vector<int64_t>{4 * 16, 64}));
  EXPECT_EQ(m->weights.layers[0].wo.shape, (std::vector<int64_t>{64, 2 * 16}));
  EXPECT_EQ(m->weights.lm_head.shape, (std::vector<int64_t>{256, 64}));
  InProcessGroup group({2});
  EXPECT_FALSE(CreateCpuBackend(*m, SmallKv(), 1, nullptr).ok());
  auto wrong = CreateCpuBackend(*m, SmallKv(), 1, group.rank(0));
  ASSERT_FALSE(wrong.ok());
  EXPECT_NE(wrong.status().message().find("rank 0 of 2"), std::string::npos)
      << wrong.status().ToString();
  EXPECT_TRUE(CreateCpuBackend(*m, SmallKv(), 1, group.rank(1)).ok());
}

}  // namespace
}  // namespace ite
