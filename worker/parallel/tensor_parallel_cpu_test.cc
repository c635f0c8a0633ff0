// Tensor parallelism checked on the CPU: N ranks as N threads, each a CPU backend holding only
// its shard of the weights (loaded through LoadOptions::tp_rank / tp_size) and the in-process
// communicator, run the same steps as one backend holding the whole model. Logits must match the
// unsharded run within fp32 rounding (only the order of the sums differs), be bitwise the same
// on every rank, and greedy generations must be equal.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "worker/backend/cpu/cpu_backend.h"
#include "worker/model/tensor_parallel.h"
#include "worker/model/test_model_writer.h"
#include "worker/parallel/in_process_communicator.h"
#include "worker/parallel/tensor_parallel_backend.h"
#include "worker/parallel/tp_test_workload.h"

namespace ite {
namespace {

namespace fs = std::filesystem;

std::string DataDir(const std::string& name) {
  return std::string(ITE_TEST_SOURCE_DIR) + "/tests/data/" + name;
}

using testing::RunRanks;
using testing::RunWorkload;
using testing::Trace;

KvCacheOptions SmallKv() {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks = 8;
  return kv;
}

StatusOr<std::unique_ptr<Backend>> LoadBackend(const std::string& path, DType dtype, int rank,
                                               int size, Communicator* comm,
                                               bool keep_stored = false) {
  LoadOptions o;
  o.dtype = dtype;
  o.keep_stored = keep_stored;
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

void ExpectTensorParallelMatches(const std::string& path, int size, DType dtype = DType::kF32) {
  SCOPED_TRACE(fmt::format("{} at tensor parallel size {}, {}", path, size, DTypeName(dtype)));
  const Trace ref = Reference(path, dtype);
  ASSERT_FALSE(ref.tokens.empty());
  InProcessGroupOptions go;
  go.size = size;
  go.timeout_ms = 20000;
  InProcessGroup group(go);
  auto traces = RunRanks(
      size, [&](int r) { return LoadBackend(path, dtype, r, size, group.rank(r)); },
      [&] { group.Abort(); });
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
  auto traces = RunRanks(
      2, [&](int r) { return LoadBackend(path, DType::kF32, r, 2, r == 0 ? &c0 : &c1); }, [] {});
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

// The group behind one Backend (what ite-worker --tensor-parallel-size runs): the workload on it
// gives the unsharded model's tokens and logits.
TEST(TensorParallelCpuTest, GroupBackendActsAsOneBackend) {
  const std::string path = DataDir("tiny-qwen2");
  const Trace ref = Reference(path, DType::kF32);
  InProcessGroupOptions go;
  go.size = 2;
  go.timeout_ms = 20000;
  InProcessGroup group(go);
  TensorParallelOptions o;
  o.size = 2;
  o.make_rank = [&](int r) { return LoadBackend(path, DType::kF32, r, 2, group.rank(r)); };
  o.abort = [&] { group.Abort(); };
  o.group_failed = [&] { return group.rank(0)->failed(); };
  auto tp = CreateTensorParallelBackend(o);
  ASSERT_TRUE(tp.ok()) << tp.status().ToString();
  EXPECT_EQ((*tp)->device(), "tp2[cpu, cpu]");
  EXPECT_EQ((*tp)->num_blocks(), SmallKv().num_blocks);
  EXPECT_EQ((*tp)->config().vocab_size, 512);
  auto t = RunWorkload(tp->get());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->tokens, ref.tokens);
  ASSERT_EQ(t->logits.size(), ref.logits.size());
  for (size_t i = 0; i < ref.logits.size(); ++i) ASSERT_NEAR(t->logits[i], ref.logits[i], 1e-4f);
  // A bad step fails on every rank alike and leaves the group working.
  const std::vector<int32_t> bad_table = {99};
  ForwardBatch bad;
  bad.chunks.push_back(LogitsChunk(std::vector<int32_t>{1, 2}, 0, bad_table, LogitsMode::kLast));
  EXPECT_FALSE((*tp)->Submit(bad).ok());
  EXPECT_FALSE((*tp)->failed());
  (*tp)->ClearSequences();
  auto again = RunWorkload(tp->get());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->tokens, ref.tokens);
  // A broken group is a failed backend: the worker exits for a restart of the whole group.
  group.Abort();
  EXPECT_TRUE((*tp)->failed());
}

// A rank that cannot start: the group fails naming it, and the other rank, already waiting in
// a start-up collective, is released instead of hanging.
TEST(TensorParallelCpuTest, GroupWithAFailingRankFailsWithoutHanging) {
  InProcessGroupOptions go;
  go.size = 2;
  go.timeout_ms = 20000;
  InProcessGroup group(go);
  TensorParallelOptions o;
  o.size = 2;
  o.make_rank = [&](int r) -> StatusOr<std::unique_ptr<Backend>> {
    if (r == 1) return NotFound("no model for rank 1");
    // Rank 0 waits for rank 1 as a start-up agreement would.
    ITE_RETURN_IF_ERROR(group.rank(0)->Barrier());
    return LoadBackend(DataDir("tiny-llama"), DType::kF32, 0, 2, group.rank(0));
  };
  o.abort = [&] { group.Abort(); };
  const auto t0 = std::chrono::steady_clock::now();
  auto tp = CreateTensorParallelBackend(o);
  ASSERT_FALSE(tp.ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  EXPECT_NE(tp.status().ToString().find("rank 1: no model"), std::string::npos)
      << tp.status().ToString();
}

// SmolLM2-135M (9 heads, 3 KV heads, 30 layers), fp32 and as stored (Q4_1 matrices, a Q8_0
// embedding), split 3 ways. As stored, each matmul quantizes its activations per block of 32 and
// a rank's column blocks are the full row's blocks, so one layer matches one rank to fp32
// rounding; deeper, that rounding now and then flips an activation's quantization, so the split
// model differs from one rank by quantization noise: it must stay as close to the fp32 model as
// one rank is.
TEST(TensorParallelCpuTest, SmolLM2Tp3Fp32AndStoredBlocks) {
  const char* gguf = std::getenv("ITE_MODEL_GGUF");
  if (gguf == nullptr || !fs::exists(gguf)) GTEST_SKIP() << "no SmolLM2 GGUF (ITE_MODEL_GGUF)";
  auto run = [&](int size, bool stored, int layers) -> Trace {
    auto make = [&](int r, Communicator* comm) -> StatusOr<std::unique_ptr<Backend>> {
      LoadOptions o;
      o.keep_stored = stored;
      o.tp_rank = r;
      o.tp_size = size;
      ITE_ASSIGN_OR_RETURN(LoadedModel m, LoadModel(gguf, o));
      if (layers > 0) {
        m.config.num_layers = layers;
        m.weights.layers.resize(layers);
      }
      return CreateCpuBackend(std::move(m), SmallKv(), 1, comm);
    };
    InProcessGroup group({size});
    auto traces = RunRanks(
        size, [&](int r) { return make(r, size > 1 ? group.rank(r) : nullptr); },
        [&] { group.Abort(); });
    EXPECT_TRUE(traces[0].ok()) << traces[0].status().ToString();
    return traces[0].ok() ? *traces[0] : Trace{};
  };
  // Over the prefill's 8 logit rows (the same input however the runs' tokens went on).
  auto prefill_diff = [](const Trace& a, const Trace& b, float* max_abs) {
    const size_t n = a.logits.size() / (8 + 2 * testing::kWorkloadDecodeSteps) * 8;
    float d = 0;
    *max_abs = 0;
    EXPECT_EQ(a.logits.size(), b.logits.size());
    for (size_t i = 0; i < n && i < b.logits.size(); ++i) {
      d = std::max(d, std::abs(a.logits[i] - b.logits[i]));
      *max_abs = std::max(*max_abs, std::abs(b.logits[i]));
    }
    return d;
  };
  float max_abs = 0;
  const Trace one_f32 = run(1, false, 0), three_f32 = run(3, false, 0);
  const float f32_diff = prefill_diff(three_f32, one_f32, &max_abs);
  EXPECT_LE(f32_diff, 1e-5f * max_abs);
  EXPECT_EQ(three_f32.tokens, one_f32.tokens);
  const float layer_diff = prefill_diff(run(3, true, 1), run(1, true, 1), &max_abs);
  EXPECT_LE(layer_diff, 1e-5f * max_abs);
  const Trace one_q = run(1, true, 0), three_q = run(3, true, 0);
  float unused = 0;
  const float one_q_err = prefill_diff(one_q, one_f32, &unused);
  const float three_q_err = prefill_diff(three_q, one_f32, &unused);
  EXPECT_LE(three_q_err, 1.5f * one_q_err);
  std::printf(
      "SmolLM2 TP=3: fp32 max |diff| %.3g (tokens equal: %d); as stored, one layer %.3g; whole "
      "model against fp32: TP=1 %.3g, TP=3 %.3g\n",
      f32_diff, three_f32.tokens == one_f32.tokens, layer_diff, one_q_err, three_q_err);
}

// The split itself: uneven vocabularies, KV heads replicated to the ranks whose query heads read
// them, KV counts that neither divide nor are divided by the ranks.
TEST(TensorParallelCpuTest, PlanShardSplits) {
  ModelConfig c;
  c.name = "m";
  c.vocab_size = 97;
  c.num_heads = 8;
  c.num_kv_heads = 2;
  c.intermediate_size = 48;
  const int32_t want_vocab_begin[] = {0, 24, 48, 72}, want_kv[] = {0, 0, 1, 1};
  int32_t vocab_total = 0;
  for (int r = 0; r < 4; ++r) {
    auto p = PlanShard(c, r, 4);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->q_head_begin, 2 * r);
    EXPECT_EQ(p->num_heads, 2);
    EXPECT_EQ(p->num_kv_heads, 1);
    EXPECT_EQ(p->kv_head_begin, want_kv[r]);  // query heads 2r, 2r+1 read KV head (2r) / 4
    EXPECT_EQ(p->inter_begin, 12 * r);
    EXPECT_EQ(p->vocab_begin, want_vocab_begin[r]);
    vocab_total += p->vocab_rows;
    const ModelConfig s = ShardConfig(c, *p);
    EXPECT_EQ(s.vocab_size, 97);
    EXPECT_EQ(s.shard.lm_head_rows, p->vocab_rows);
  }
  EXPECT_EQ(vocab_total, 97);
  c.num_heads = 6;
  c.num_kv_heads = 3;
  auto odd = PlanShard(c, 0, 2);
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().message().find("one must divide the other"), std::string::npos)
      << odd.status().ToString();
  c.num_heads = 8;
  c.num_kv_heads = 8;
  c.intermediate_size = 50;
  EXPECT_NE(PlanShard(c, 0, 4).status().message().find("intermediate size 50"), std::string::npos);
  EXPECT_FALSE(PlanShard(c, 0, 0).ok());
}

}  // namespace
}  // namespace ite
