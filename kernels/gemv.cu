// Products of a few activation rows with a weight matrix (decode of small batches):
// out[m, n] = x[m, k] w[n, k]^T (+ bias), m <= kGemvMaxRows.
//
// Such a product only streams the weight once, so it runs at the speed the weight is read. One
// warp per output column (several for narrow weights, see SplitFor): each lane reads 16-byte pieces
// of the column's weight row with a streaming load (the weight is read once; x, small and read by
// every warp, stays in L1/L2), keeps fp32 sums for the m rows, and the warp adds its lanes at the
// end. cuBLASLt at these m picks tile kernels with split-k (a second, reducing kernel) that read
// small weights well under the copy bandwidth; see docs/perf.md.
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "gemv.h"
#include "pdl.cuh"

namespace ite::kernels::internal {
namespace {

constexpr int kWarps = 8;             // warps (columns) per block
constexpr int kUnroll = 4;            // 16-byte weight pieces in flight per lane
constexpr int kPiece = 8;             // elements per 16-byte piece
constexpr int kStride = 32 * kPiece;  // elements a warp covers per piece round

__device__ __forceinline__ uint4 LoadStreaming(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

template <typename T, int M>
__device__ __forceinline__ void Accumulate(const uint4& wv, const T* __restrict__ x, int64_t k,
                                           int32_t kdim, float (&acc)[M]) {
  float wf[kPiece];
  Unpack8<T>(wv, wf);
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float xf[kPiece];
    Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(x + int64_t{r} * kdim + k)), xf);
#pragma unroll
    for (int j = 0; j < kPiece; ++j) acc[r] = fmaf(wf[j], xf[j], acc[r]);
  }
}

// kSplit warps share a column, taking turns at its 256-element rounds; their sums are added in
// warp order, so a column's rounding depends on (n, k) alone, never on m.
template <typename T, typename Out, int M, int kSplit>
__global__ void __launch_bounds__(kWarps * 32)
    GemvKernel(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ bias,
               Out* __restrict__ out, int32_t n, int32_t kdim) {
  constexpr int kCols = kWarps / kSplit;
  __shared__ float partial[kWarps][M];
  LetDependentsStart();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int col = blockIdx.x * kCols + warp / kSplit, part = warp % kSplit;
  float acc[M];
#pragma unroll
  for (int r = 0; r < M; ++r) acc[r] = 0.0f;
  const T* wrow = w + int64_t{col < n ? col : 0} * kdim;
  constexpr int64_t kStep = int64_t{kStride} * kSplit;
  int64_t k = int64_t{part} * kStride + lane * kPiece;
  // Rounds of kUnroll pieces: every load of a round is issued before its products. The first
  // round's weight loads go out before the wait for the previous kernel (the weight is constant),
  // so they overlap that kernel's end.
  bool round = col < n && k + (kUnroll - 1) * kStep < kdim;
  uint4 wv[kUnroll];
  if (round) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wv[u] = LoadStreaming(wrow + k + u * kStep);
  }
  WaitForPrerequisites();
  while (round) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) Accumulate<T, M>(wv[u], x, k + u * kStep, kdim, acc);
    k += kUnroll * kStep;
    round = k + (kUnroll - 1) * kStep < kdim;
    if (round) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) wv[u] = LoadStreaming(wrow + k + u * kStep);
    }
  }
  if (col < n) {
    for (; k < kdim; k += kStep) Accumulate<T, M>(LoadStreaming(wrow + k), x, k, kdim, acc);
  }
#pragma unroll
  for (int r = 0; r < M; ++r) {
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], off);
  }
  if constexpr (kSplit > 1) {
    if (lane == 0) {
#pragma unroll
      for (int r = 0; r < M; ++r) partial[warp][r] = acc[r];
    }
    __syncthreads();
    if (part != 0) return;
#pragma unroll
    for (int r = 0; r < M; ++r) {
      acc[r] = partial[warp][r];
#pragma unroll
      for (int q = 1; q < kSplit; ++q) acc[r] += partial[warp + q][r];
    }
  }
  if (lane == 0 && col < n) {
    const float b = bias ? ToFloat(bias[col]) : 0.0f;
#pragma unroll
    for (int r = 0; r < M; ++r) {
      if constexpr (std::is_same_v<Out, float>) {
        out[int64_t{r} * n + col] = acc[r] + b;
      } else {
        out[int64_t{r} * n + col] = FromFloat<Out>(acc[r] + b);
      }
    }
  }
}

template <typename T, typename Out, int M, int kSplit>
Status LaunchSplit(const GemmArgs& g, cudaStream_t stream) {
  constexpr int kCols = kWarps / kSplit;
  const dim3 grid((g.n + kCols - 1) / kCols);
  return CudaStatus(
      LaunchDependent(GemvKernel<T, Out, M, kSplit>, grid, kWarps * 32, 0, stream,
                      static_cast<const T*>(g.x), static_cast<const T*>(g.w),
                      static_cast<const T*>(g.bias), static_cast<Out*>(g.out), g.n, g.k),
      "GemvKernel");
}

// Warps per column: the fewest that give about two blocks per multiprocessor (narrow weights
// would otherwise leave multiprocessors without a block), and no more than the rounds of k.
int SplitFor(const GemmArgs& g) {
  int device = 0, sms = 132;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    sms = 132;
  }
  int split = 1;
  while (split < kWarps && int64_t{g.n} * split / kWarps < 2 * sms &&
         int64_t{g.k} >= int64_t{kStride} * split * 2)
    split *= 2;
  return split;
}

template <typename T, typename Out, int M>
Status LaunchRows(const GemmArgs& g, cudaStream_t stream) {
  switch (SplitFor(g)) {
    case 1:
      return LaunchSplit<T, Out, M, 1>(g, stream);
    case 2:
      return LaunchSplit<T, Out, M, 2>(g, stream);
    case 4:
      return LaunchSplit<T, Out, M, 4>(g, stream);
    default:
      return LaunchSplit<T, Out, M, 8>(g, stream);
  }
}

template <typename T, typename Out>
Status LaunchOut(const GemmArgs& g, cudaStream_t stream) {
  switch (g.m) {
    case 1:
      return LaunchRows<T, Out, 1>(g, stream);
    case 2:
      return LaunchRows<T, Out, 2>(g, stream);
    case 3:
      return LaunchRows<T, Out, 3>(g, stream);
    default:
      return LaunchRows<T, Out, 4>(g, stream);
  }
}

template <typename T>
Status LaunchType(const GemmArgs& g, cudaStream_t stream) {
  if (g.out_f32) return LaunchOut<T, float>(g, stream);
  return LaunchOut<T, T>(g, stream);
}

}  // namespace

bool GemvApplies(const GemmArgs& g) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return g.m >= 1 && g.m <= kGemvMaxRows && g.k % kPiece == 0 && aligned(g.x) && aligned(g.w);
}

Status Gemv(const GemmArgs& g, cudaStream_t stream) {
  if (g.dtype == DType::kF16) return LaunchType<__half>(g, stream);
  return LaunchType<__nv_bfloat16>(g, stream);
}

}  // namespace ite::kernels::internal
