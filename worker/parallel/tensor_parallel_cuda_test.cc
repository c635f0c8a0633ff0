// Tensor parallelism of the CUDA backend, on a GPU host (skipped elsewhere):
//  - one GPU: N ranks as N threads, each a CUDA backend holding its shard on the same device,
//    joined by the in-process group (device buffers staged through the host, so no graphs),
//    against the unsharded model on one CUDA backend: logits within bf16 tolerance, the same on
//    every rank, greedy tokens equal up to a near tie of the reference;
//  - two GPUs or more: the same through NCCL with CUDA graphs (NCCL calls inside the captured
//    decode graphs), one rank per GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "tests/test_files.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/parallel/cuda_host_staging.h"
#include "worker/parallel/in_process_communicator.h"
#include "worker/parallel/tp_test_workload.h"
#ifdef ITE_HAVE_NCCL
#include "worker/parallel/nccl_communicator.h"
#endif

namespace ite {
namespace {

using testing::SourceDir;

using testing::RunRanks;
using testing::Trace;

StatusOr<std::unique_ptr<Backend>> CudaRank(const std::string& model, int rank, int size,
                                            Communicator* comm, int device, bool eager) {
  LoadOptions lo;
  lo.dtype = DType::kBF16;
  lo.tp_rank = rank;
  lo.tp_size = size;
  ITE_ASSIGN_OR_RETURN(LoadedModel m, LoadModel(SourceDir() + "/tests/data/" + model, lo));
  CudaBackendOptions o;
  o.device = device;
  o.kv.block_size = 16;
  o.kv.num_blocks = 16;
  o.max_step_tokens = 256;
  o.max_seqs = 8;
  o.enforce_eager = eager;
  o.comm = comm;
  return CreateCudaBackend(std::move(m), o);
}

Trace Reference(const std::string& model, bool eager) {
  auto b = CudaRank(model, 0, 1, nullptr, 0, eager);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  if (!b.ok()) return {};
  auto t = testing::RunWorkload(b->get());
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  return t.ok() ? *t : Trace{};
}

// The logit row token j of the workload was sampled from: the prefill's two (the last of the
// first sequence's 7 rows, the second's one row), then one row per decode token.
size_t RowOfToken(size_t j) { return j == 0 ? 6 : j == 1 ? 7 : 8 + (j - 2); }

void ExpectMatchesReference(const Trace& ref, const std::vector<StatusOr<Trace>>& traces,
                            const std::string& what) {
  SCOPED_TRACE(what);
  ASSERT_FALSE(ref.tokens.empty());
  for (size_t r = 0; r < traces.size(); ++r) {
    ASSERT_TRUE(traces[r].ok()) << "rank " << r << ": " << traces[r].status().ToString();
    EXPECT_EQ(traces[r]->logits, traces[0]->logits) << "rank " << r;
    EXPECT_EQ(traces[r]->tokens, traces[0]->tokens) << "rank " << r;
  }
  const Trace& got = *traces[0];
  ASSERT_EQ(got.logits.size(), ref.logits.size());
  ASSERT_EQ(got.tokens.size(), ref.tokens.size());
  float max_abs = 0;
  for (float v : ref.logits) max_abs = std::max(max_abs, std::abs(v));
  // bf16: each rank's partial sums are rounded before the all-reduce adds them; half the
  // tolerance the CUDA backend gets against fp32 transformers.
  const float tol = 0.04f * max_abs;
  const size_t vocab = ref.logits.size() / (8 + testing::kWorkloadDecodeSteps * 2);
  // Up to the first token that differs (later rows then see other contexts), which must be a
  // near tie of the reference's.
  size_t equal = 0, rows = ref.logits.size() / vocab;
  for (; equal < ref.tokens.size() && got.tokens[equal] == ref.tokens[equal]; ++equal) {
  }
  if (equal < ref.tokens.size()) {
    const size_t row = RowOfToken(equal);
    const float* l = ref.logits.data() + row * vocab;
    EXPECT_LE(l[ref.tokens[equal]] - l[got.tokens[equal]], tol)
        << "token " << equal << ": " << got.tokens[equal] << " instead of " << ref.tokens[equal];
    rows = row + 1;
  }
  float max_diff = 0;
  for (size_t i = 0; i < rows * vocab; ++i) {
    ASSERT_TRUE(std::isfinite(got.logits[i])) << i;
    max_diff = std::max(max_diff, std::abs(got.logits[i] - ref.logits[i]));
  }
  EXPECT_LE(max_diff, tol);
  std::printf(
      "%s: logits max |diff| %.4f of max |logit| %.3f over %zu rows, %zu of %zu tokens "
      "equal\n",
      what.c_str(), max_diff, max_abs, rows, equal, ref.tokens.size());
}

void ExpectInProcessMatches(const std::string& model, int size) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device visible";
  const Trace ref = Reference(model, /*eager=*/true);
  CudaHostStaging staging;
  InProcessGroupOptions go;
  go.size = size;
  go.staging = &staging;
  go.timeout_ms = 60000;
  InProcessGroup group(go);
  auto traces = RunRanks(
      size, [&](int r) { return CudaRank(model, r, size, group.rank(r), 0, false); },
      [&] { group.Abort(); });
  ExpectMatchesReference(ref, traces, fmt::format("{} TP={} on one GPU", model, size));
}

TEST(TensorParallelCudaTest, LlamaTp2OnOneGpu) { ExpectInProcessMatches("tiny-llama-hd64", 2); }

// 2 KV heads on 4 ranks: each replicated on two.
TEST(TensorParallelCudaTest, LlamaTp4OnOneGpu) { ExpectInProcessMatches("tiny-llama-hd64", 4); }

// Qwen2 (QKV bias, tied embeddings), one KV head for two ranks.
TEST(TensorParallelCudaTest, Qwen2Tp2OnOneGpu) { ExpectInProcessMatches("tiny-qwen2-hd64", 2); }

TEST(TensorParallelCudaTest, TiedLlama3Tp2OnOneGpu) {
  ExpectInProcessMatches("tiny-llama-tied-llama3-hd64", 2);
}

TEST(TensorParallelCudaTest, ShardWithoutItsGroupFails) {
  if (CudaDeviceCount() == 0) GTEST_SKIP() << "skipped: no CUDA device visible";
  auto b = CudaRank("tiny-llama-hd64", 1, 2, nullptr, 0, true);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("needs its group"), std::string::npos)
      << b.status().ToString();
}

#ifdef ITE_HAVE_NCCL
void ExpectNcclMatches(const std::string& model, int size) {
  if (CudaDeviceCount() < size)
    GTEST_SKIP() << "skipped: " << size << " GPUs needed, " << CudaDeviceCount() << " visible";
  const Trace ref = Reference(model, /*eager=*/false);
  auto id = NcclCreateId();
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  std::vector<std::unique_ptr<Communicator>> comms(size);
  auto traces = RunRanks(
      size,
      [&](int r) -> StatusOr<std::unique_ptr<Backend>> {
        NcclOptions o;
        o.rank = r;
        o.size = size;
        o.device = r;
        o.init_timeout_ms = 60000;
        ITE_ASSIGN_OR_RETURN(comms[r], CreateNcclCommunicator(*id, o));
        return CudaRank(model, r, size, comms[r].get(), r, false);
      },
      [] {});
  ExpectMatchesReference(ref, traces, fmt::format("{} TP={} over NCCL, graphs", model, size));
}

TEST(TensorParallelCudaTest, LlamaTp2OverNccl) { ExpectNcclMatches("tiny-llama-hd64", 2); }
TEST(TensorParallelCudaTest, Qwen2Tp2OverNccl) { ExpectNcclMatches("tiny-qwen2-hd64", 2); }
TEST(TensorParallelCudaTest, LlamaTp4OverNccl) { ExpectNcclMatches("tiny-llama-hd64", 4); }
#endif

}  // namespace
}  // namespace ite
