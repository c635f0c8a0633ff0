// The NCCL communicator on one GPU (skipped without one): a group of one rank starts and ends,
// its collectives leave the data as it was, also inside a captured CUDA graph, bad arguments
// fail, and a rank whose peers never come fails after its timeout instead of hanging.
#include "worker/parallel/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <vector>

#include "worker/model/dequantize.h"

namespace ite {
namespace {

bool HaveGpu() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return n > 0;
}

#define ITE_SKIP_WITHOUT_CUDA() \
  if (!HaveGpu()) GTEST_SKIP() << "skipped: no CUDA device visible"

std::unique_ptr<Communicator> SingleRank() {
  auto id = NcclCreateId();
  EXPECT_TRUE(id.ok()) << id.status().ToString();
  if (!id.ok()) return nullptr;
  auto c = CreateNcclCommunicator(*id, {0, 1, 0, 30000});
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c).value() : nullptr;
}

template <typename T>
std::vector<T> Download(const void *dev, size_t n) {
  std::vector<T> out(n);
  EXPECT_EQ(cudaMemcpy(out.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return out;
}

TEST(NcclCommunicatorTest, SingleRankCollectivesAreIdentity) {
  ITE_SKIP_WITHOUT_CUDA();
  auto comm = SingleRank();
  ASSERT_NE(comm, nullptr);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_TRUE(comm->capturable());
  // The lent machines set NCCL_NVLS_ENABLE=0; the communicator sets it only where unset.
  ASSERT_NE(std::getenv("NCCL_NVLS_ENABLE"), nullptr);
  EXPECT_STREQ(std::getenv("NCCL_NVLS_ENABLE"), "0");

  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  const size_t n = 1000;
  std::vector<float> f(n);
  std::vector<uint16_t> b(n);
  for (size_t i = 0; i < n; ++i) {
    f[i] = 0.25f * static_cast<float>(i) - 7.0f;
    b[i] = FloatToBf16(f[i]);
  }
  void *df = nullptr, *db = nullptr;
  ASSERT_EQ(cudaMalloc(&df, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&db, n * 2), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(df, f.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(db, b.data(), n * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_TRUE(comm->AllReduceSum(df, n, DType::kF32, stream).ok());
  ASSERT_TRUE(comm->AllReduceSum(db, n, DType::kBF16, stream).ok());
  ASSERT_TRUE(comm->Broadcast(df, n * 4, 0, stream).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  EXPECT_EQ(Download<float>(df, n), f);
  EXPECT_EQ(Download<uint16_t>(db, n), b);
  EXPECT_TRUE(comm->Barrier().ok());

  EXPECT_EQ(comm->AllReduceSum(df, n, DType::kQ4_0, stream).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(comm->Broadcast(df, 4, 1, stream).code(), StatusCode::kInvalidArgument);
  cudaFree(df);
  cudaFree(db);
  cudaStreamDestroy(stream);
}

// A copy then an all-reduce, captured once and replayed: the replay redoes both (the graph holds
// the NCCL call), as the decode graphs of a tensor-parallel backend do.
TEST(NcclCommunicatorTest, AllReduceInsideCapturedGraph) {
  ITE_SKIP_WITHOUT_CUDA();
  auto comm = SingleRank();
  ASSERT_NE(comm, nullptr);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  const size_t n = 4096;
  void *src = nullptr, *dst = nullptr;
  ASSERT_EQ(cudaMalloc(&src, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&dst, n * 4), cudaSuccess);
  ASSERT_EQ(cudaMemset(dst, 0, n * 4), cudaSuccess);

  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(dst, src, n * 4, cudaMemcpyDeviceToDevice, stream), cudaSuccess);
  const Status s = comm->AllReduceSum(dst, n, DType::kF32, stream);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  ASSERT_TRUE(s.ok()) << s.ToString();
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  for (float base : {1.5f, -3.0f}) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = base + static_cast<float>(i);
    ASSERT_EQ(cudaMemcpy(src, v.data(), n * 4, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    EXPECT_EQ(Download<float>(dst, n), v) << "replay with base " << base;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaFree(src);
  cudaFree(dst);
  cudaStreamDestroy(stream);
}

TEST(NcclCommunicatorTest, BadGroupsFailClearly) {
  ITE_SKIP_WITHOUT_CUDA();
  auto id = NcclCreateId();
  ASSERT_TRUE(id.ok());
  auto rank = CreateNcclCommunicator(*id, {1, 1, 0, 1000});
  EXPECT_EQ(rank.status().code(), StatusCode::kInvalidArgument) << rank.status().ToString();
  auto device = CreateNcclCommunicator(*id, {0, 1, 1000, 1000});
  EXPECT_EQ(device.status().code(), StatusCode::kFailedPrecondition) << device.status().ToString();
}

TEST(NcclCommunicatorTest, MissingPeerTimesOut) {
  ITE_SKIP_WITHOUT_CUDA();
  auto id = NcclCreateId();
  ASSERT_TRUE(id.ok());
  const auto t0 = std::chrono::steady_clock::now();
  auto alone = CreateNcclCommunicator(*id, {0, 2, 0, 3000});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(alone.ok());
  EXPECT_EQ(alone.status().code(), StatusCode::kUnavailable) << alone.status().ToString();
  EXPECT_LT(s, 30.0);
  std::printf("rank 0 of 2 alone: %s after %.1f s\n", alone.status().ToString().c_str(), s);
}

}  // namespace
}  // namespace ite
