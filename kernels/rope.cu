// RoPE + paged KV write: one block per token. A thread rotates 8 pairs (i, i + head_dim/2) with
// two 16-byte loads, so each head is handled by head_dim/16 threads.
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/rope.h"
#include "pdl.cuh"

namespace ite::kernels {

Status ValidatePagedKvCache(const PagedKvCache& c, const char* what) {
  if (c.k == nullptr || c.v == nullptr) return InvalidArgument("{}: cache k/v are null", what);
  if (c.num_blocks <= 0 || c.block_size <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0) {
    return InvalidArgument("{}: bad cache shape blocks={} block_size={} kv_heads={} head_dim={}",
                           what, c.num_blocks, c.block_size, c.num_kv_heads, c.head_dim);
  }
  return Status::Ok();
}

namespace {

constexpr int kMaxHeadDim = 512;

template <typename T>
__global__ void RopeKvWriteKernel(T* qkv, const int32_t* __restrict__ positions,
                                  const int32_t* __restrict__ slots,
                                  const float* __restrict__ inv_freq, int num_heads,
                                  int num_kv_heads, int head_dim, T* __restrict__ k_cache,
                                  T* __restrict__ v_cache, int64_t num_slots) {
  LetDependentsStart();
  WaitForPrerequisites();
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  const int groups_per_head = half / 8;  // threads per rotated head
  const int row_width = (num_heads + 2 * num_kv_heads) * head_dim;
  T* row = qkv + t * row_width;
  // cos/sin depend only on (position, pair): computed once per token, not once per head.
  __shared__ float cos_s[kMaxHeadDim / 2], sin_s[kMaxHeadDim / 2];
  const float pos = static_cast<float>(positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    // Same fp32 angle as the CPU reference; sincosf (not the fast intrinsic) because the
    // angle reaches tens of thousands of radians at long context.
    sincosf(pos * inv_freq[i], &sin_s[i], &cos_s[i]);
  }
  __syncthreads();
  const int64_t slot = slots[t];
  const bool write = slot >= 0 && slot < num_slots;
  const int64_t kv_row = slot * num_kv_heads * head_dim;
  const int rotated = (num_heads + num_kv_heads) * groups_per_head;
  for (int item = threadIdx.x; item < rotated; item += blockDim.x) {
    const int head = item / groups_per_head;
    const int i0 = (item % groups_per_head) * 8;
    T* base = row + head * head_dim;
    float a[8], b[8];
    Unpack8<T>(*reinterpret_cast<const uint4*>(base + i0), a);
    Unpack8<T>(*reinterpret_cast<const uint4*>(base + half + i0), b);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const float c = cos_s[i0 + j], s = sin_s[i0 + j];
      const float x1 = a[j], x2 = b[j];
      a[j] = x1 * c - x2 * s;
      b[j] = x2 * c + x1 * s;
    }
    const uint4 pa = Pack8<T>(a), pb = Pack8<T>(b);
    if (head < num_heads) {
      *reinterpret_cast<uint4*>(base + i0) = pa;
      *reinterpret_cast<uint4*>(base + half + i0) = pb;
    } else if (write) {
      T* dst = k_cache + kv_row + (head - num_heads) * head_dim;
      *reinterpret_cast<uint4*>(dst + i0) = pa;
      *reinterpret_cast<uint4*>(dst + half + i0) = pb;
    }
  }
  if (!write) return;
  const int v_vecs = num_kv_heads * head_dim / 8;
  const uint4* vsrc = reinterpret_cast<const uint4*>(row + (num_heads + num_kv_heads) * head_dim);
  uint4* vdst = reinterpret_cast<uint4*>(v_cache + kv_row);
  for (int i = threadIdx.x; i < v_vecs; i += blockDim.x) vdst[i] = vsrc[i];
}

template <typename T>
Status Launch(const RopeKvWriteArgs& a, cudaStream_t stream) {
  const int rotated = (a.num_heads + a.num_kv_heads) * (a.head_dim / 16);
  const int threads = std::min(512, std::max(32, (rotated + 31) / 32 * 32));
  const int64_t num_slots = static_cast<int64_t>(a.cache.num_blocks) * a.cache.block_size;
  return CudaStatus(
      LaunchDependent(RopeKvWriteKernel<T>, a.num_tokens, threads, 0, stream,
                      static_cast<T*>(a.qkv), a.positions, a.slots, a.inv_freq, a.num_heads,
                      a.num_kv_heads, a.head_dim, static_cast<T*>(a.cache.k),
                      static_cast<T*>(a.cache.v), num_slots),
      "RopeKvWriteKernel");
}

}  // namespace

Status RopeKvWrite(const RopeKvWriteArgs& a, cudaStream_t stream) {
  ITE_RETURN_IF_ERROR(ValidatePagedKvCache(a.cache, "RopeKvWrite"));
  if (a.qkv == nullptr || a.positions == nullptr || a.slots == nullptr || a.inv_freq == nullptr) {
    return InvalidArgument("RopeKvWrite: qkv, positions, slots and inv_freq must be non-null");
  }
  if (a.num_tokens < 0 || a.num_heads <= 0 || a.num_kv_heads <= 0 ||
      a.num_heads % a.num_kv_heads != 0) {
    return InvalidArgument("RopeKvWrite: bad shape tokens={} heads={} kv_heads={}", a.num_tokens,
                           a.num_heads, a.num_kv_heads);
  }
  if (a.head_dim <= 0 || a.head_dim % 16 != 0 || a.head_dim > kMaxHeadDim) {
    return InvalidArgument("RopeKvWrite: head_dim {} must be a multiple of 16 in [16, {}]",
                           a.head_dim, kMaxHeadDim);
  }
  if (a.cache.num_kv_heads != a.num_kv_heads || a.cache.head_dim != a.head_dim) {
    return InvalidArgument("RopeKvWrite: cache has kv_heads={} head_dim={}, qkv has {} and {}",
                           a.cache.num_kv_heads, a.cache.head_dim, a.num_kv_heads, a.head_dim);
  }
  if (a.num_tokens == 0) return Status::Ok();
  if (a.cache.dtype == DType::kF16) return Launch<__half>(a, stream);
  return Launch<__nv_bfloat16>(a, stream);
}

}  // namespace ite::kernels
