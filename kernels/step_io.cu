// Step input/output plumbing: token feeding, sampled-token stores, row gathers, KV block copies.
// All tiny and memory-bound; what matters is that they run on the stream, not on the host.
#include "cuda_check.h"
#include "ite/kernels/step_io.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

__global__ void FeedTokensKernel(int32_t* tokens, const int32_t* __restrict__ last_tokens, int n) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= n) return;
  const int32_t t = tokens[r];
  if (t < 0) tokens[r] = last_tokens[-t - 1];
}

__global__ void StoreSampledKernel(const int32_t* __restrict__ sampled,
                                   const int32_t* __restrict__ slots, int n,
                                   int32_t* __restrict__ last_tokens) {
  LetDependentsStart();
  WaitForPrerequisites();
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n && slots[i] >= 0) last_tokens[slots[i]] = sampled[i];
}

// One block per output row, 16-byte copies (cols * element size is a multiple of 16) or 2-byte.
__global__ void GatherRowsKernel(const char* __restrict__ x, int64_t row_bytes,
                                 const int32_t* __restrict__ rows, char* __restrict__ out) {
  const char* src = x + rows[blockIdx.x] * row_bytes;
  char* dst = out + int64_t{blockIdx.x} * row_bytes;
  if (row_bytes % 16 == 0) {
    const uint4* s = reinterpret_cast<const uint4*>(src);
    uint4* d = reinterpret_cast<uint4*>(dst);
    for (int64_t i = threadIdx.x; i < row_bytes / 16; i += blockDim.x) d[i] = s[i];
  } else {
    const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
    uint16_t* d = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = threadIdx.x; i < row_bytes / 2; i += blockDim.x) d[i] = s[i];
  }
}

// Grid (pair, plane); each block copies one block of one plane with 16-byte moves.
__global__ void CopyKvBlocksKernel(char* pool, int64_t plane_bytes, int64_t block_bytes,
                                   const int32_t* __restrict__ src,
                                   const int32_t* __restrict__ dst) {
  const int p = blockIdx.x;
  char* plane = pool + int64_t{blockIdx.y} * plane_bytes;
  if (src[p] == dst[p]) return;
  const uint4* s = reinterpret_cast<const uint4*>(plane + src[p] * block_bytes);
  uint4* d = reinterpret_cast<uint4*>(plane + dst[p] * block_bytes);
  for (int64_t i = threadIdx.x; i < block_bytes / 16; i += blockDim.x) d[i] = s[i];
}

int Blocks(int n, int threads) { return (n + threads - 1) / threads; }

}  // namespace

Status FeedTokens(int32_t* tokens, const int32_t* last_tokens, int32_t n, cudaStream_t stream) {
  if (n < 0 || (n > 0 && (tokens == nullptr || last_tokens == nullptr)))
    return InvalidArgument("FeedTokens: null arrays or n={}", n);
  if (n == 0) return Status::Ok();
  FeedTokensKernel<<<Blocks(n, 256), 256, 0, stream>>>(tokens, last_tokens, n);
  return LaunchStatus("FeedTokensKernel");
}

Status StoreSampledTokens(const int32_t* sampled, const int32_t* slots, int32_t n,
                          int32_t* last_tokens, cudaStream_t stream) {
  if (n < 0 || (n > 0 && (sampled == nullptr || slots == nullptr || last_tokens == nullptr)))
    return InvalidArgument("StoreSampledTokens: null arrays or n={}", n);
  if (n == 0) return Status::Ok();
  return CudaStatus(LaunchDependent(StoreSampledKernel, Blocks(n, 256), 256, 0, stream, sampled,
                                    slots, n, last_tokens),
                    "StoreSampledKernel");
}

Status GatherRows(DType dtype, const void* x, int32_t cols, const int32_t* rows, int32_t n,
                  void* out, cudaStream_t stream) {
  if (x == nullptr || rows == nullptr || out == nullptr || cols <= 0 || n < 0)
    return InvalidArgument("GatherRows: null arrays or cols={} n={}", cols, n);
  if (n == 0) return Status::Ok();
  const int64_t row_bytes = int64_t{cols} * 2;  // both activation dtypes are 2 bytes
  GatherRowsKernel<<<n, 128, 0, stream>>>(static_cast<const char*>(x), row_bytes, rows,
                                          static_cast<char*>(out));
  return LaunchStatus("GatherRowsKernel");
}

Status CopyKvBlocks(void* pool, int64_t plane_bytes, int32_t num_planes, int64_t block_bytes,
                    const int32_t* src, const int32_t* dst, int32_t pairs, cudaStream_t stream) {
  if (pool == nullptr || src == nullptr || dst == nullptr || num_planes <= 0 || pairs < 0 ||
      block_bytes <= 0 || block_bytes % 16 != 0 || num_planes > 65535)
    return InvalidArgument("CopyKvBlocks: bad arguments (planes {}, block_bytes {}, pairs {})",
                           num_planes, block_bytes, pairs);
  if (pairs == 0) return Status::Ok();
  CopyKvBlocksKernel<<<dim3(pairs, num_planes), 256, 0, stream>>>(
      static_cast<char*>(pool), plane_bytes, block_bytes, src, dst);
  return LaunchStatus("CopyKvBlocksKernel");
}

}  // namespace ite::kernels
