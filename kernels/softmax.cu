// Row softmax. Softmax is memory-bound: the aim is to read each row once and write it once.
//  - Rows of n % 4 == 0 floats (16-byte aligned) up to 256 * K * 4 floats: one block holds the
//    row in registers, K float4 per thread (SoftmaxRegsKernel, K = 8 or 16).
//  - Wider rows, up to 16 times that, on sm_90: a thread-block cluster holds the row, one slice
//    per block in registers; the blocks exchange (max, sum) through distributed shared memory.
//    A 128256-wide vocab row (513 KB) takes 16 blocks of 32 KB.
//  - Anything else (odd widths, pre-sm_90 wide rows, rows past 262144): one block per row, a
//    pass for (max, sum) with an online rescale, then a pass that writes (SoftmaxTwoPassKernel).
// The register kernels take exp as one fma and ex2.approx (about 1e-6 relative); elsewhere
// expf, not the __expf intrinsic: its error grows with |x| and reached 5e-5 relative at logits
// of +-20, where fp32 arithmetic should land near 1e-6.
// Special values: -inf entries get probability 0; a row holding NaN or +inf, or only -inf, is
// all NaN (0/0 or inf/inf in the formula).
#include <cooperative_groups.h>

#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/softmax.h"

namespace ite::kernels {
namespace {

namespace cg = cooperative_groups;

constexpr int kRowThreads = 256;
constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit (2^-inf = 0, NaN stays NaN).
__device__ __forceinline__ float Exp2Approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
constexpr int kMaxCluster = 16;

// exp(x - shift) is taken against the slice max, or 0 where the slice holds only -inf (and NaN),
// so that a masked slice sums to 0 rather than NaN.
__device__ __forceinline__ float Shift(float slice_max) {
  return slice_max == -INFINITY ? 0.0f : slice_max;
}

// What a slice's exp(x - Shift(slice_max)) values are multiplied by: exp(shift - row_max) /
// row_sum. NaN where row_sum is not positive (NaN, +inf or an all -inf row); 0 for a slice whose
// sum is 0 (all -inf), where exp(shift - row_max) may overflow.
__device__ __forceinline__ float SliceFactor(float slice_max, float slice_sum, float row_max,
                                             float row_sum) {
  if (!(row_sum > 0.0f)) return NAN;
  if (slice_sum == 0.0f) return 0.0f;
  return expf(Shift(slice_max) - row_max) / row_sum;
}

struct SlicePart {
  float max;
  float sum;  // of exp(x - Shift(max))
};

// The row held in registers: block `rank` of a group of `parts` blocks per row (a cluster, or
// one block when kCluster is false) holds an even share of the row's n / 4 float4, at most
// kRowThreads * K of them.
template <int K, bool kCluster>
__global__ void __launch_bounds__(kRowThreads, 32 / K)
    SoftmaxRegsKernel(const float* x, int n, float* out) {
  static_assert(K == 8 || K == 16, "K float4 per thread: 8 (4 blocks per SM) or 16 (2)");
  __shared__ float scratch[32];
  int parts = 1, rank = 0;
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    parts = static_cast<int>(cg::this_cluster().num_blocks());
    rank = static_cast<int>(cg::this_cluster().block_rank());
#else
    __trap();  // launched only where ClusterLimit found the cluster code
#endif
  }
  const int64_t row = blockIdx.x / parts;
  const int n4 = n / 4;
  const int per = (n4 + parts - 1) / parts;
  const int begin = rank * per, end = min(n4, begin + per);
  const float4* x4 = reinterpret_cast<const float4*>(x + row * n);
  float4* out4 = reinterpret_cast<float4*>(out + row * n);

  // Every load is issued before the first is used: K * 16 bytes in flight per thread. Indices
  // past the slice load its last float4 (end >= 1) and are then replaced by -inf: loads without
  // a branch around them.
  const int first = begin + static_cast<int>(threadIdx.x);
  float4 v[K];
#pragma unroll
  for (int j = 0; j < K; ++j) v[j] = x4[min(first + j * kRowThreads, end - 1)];
#pragma unroll
  for (int j = 0; j < K; ++j) {
    if (first + j * kRowThreads >= end) {
      v[j] = make_float4(-INFINITY, -INFINITY, -INFINITY, -INFINITY);
    }
  }
  float m = -INFINITY;
#pragma unroll
  for (int j = 0; j < K; ++j) m = fmaxf(m, fmaxf(fmaxf(v[j].x, v[j].y), fmaxf(v[j].z, v[j].w)));
  m = BlockMax(m, scratch);
  // exp(x - shift) as 2^(x log2(e) - shift log2(e)): one fma and one ex2.approx per element.
  // Relative error about 1e-6 at |x - shift| <= 40 (the fma rounds once; ex2.approx is within
  // 2^-22), and the part common to the slice (the rounded shift) cancels in the normalisation.
  const float neg_shift_log2 = -Shift(m) * kLog2e;
  float s = 0.0f;
#pragma unroll
  for (int j = 0; j < K; ++j) {
    v[j].x = Exp2Approx(fmaf(v[j].x, kLog2e, neg_shift_log2));
    v[j].y = Exp2Approx(fmaf(v[j].y, kLog2e, neg_shift_log2));
    v[j].z = Exp2Approx(fmaf(v[j].z, kLog2e, neg_shift_log2));
    v[j].w = Exp2Approx(fmaf(v[j].w, kLog2e, neg_shift_log2));
    s += (v[j].x + v[j].y) + (v[j].z + v[j].w);
  }
  s = BlockSum(s, scratch);

  float factor = 0.0f;
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    __shared__ SlicePart part;
    __shared__ float factor_shared;
    cg::cluster_group cluster = cg::this_cluster();
    if (threadIdx.x == 0) part = SlicePart{m, s};
    cluster.sync();  // every block has started and published its part
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      const SlicePart p =
          lane < parts ? *cluster.map_shared_rank(&part, lane) : SlicePart{-INFINITY, 0.0f};
      float row_max = p.max;
      for (int o = 16; o > 0; o >>= 1) {
        row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, o));
      }
      float row_sum = p.sum == 0.0f ? 0.0f : p.sum * expf(Shift(p.max) - row_max);
      for (int o = 16; o > 0; o >>= 1) row_sum += __shfl_xor_sync(0xffffffffu, row_sum, o);
      if (lane == 0) factor_shared = SliceFactor(m, s, row_max, row_sum);
    }
    // Done reading the other blocks' parts; the matching wait is at the end, so that no block
    // exits (freeing its part) while another may still read it.
    cluster.barrier_arrive();
    __syncthreads();
    factor = factor_shared;
#endif
  } else {
    factor = SliceFactor(m, s, m, s);
  }
#pragma unroll
  for (int j = 0; j < K; ++j) {
    const int i = first + j * kRowThreads;
    if (i < end) {
      out4[i] = make_float4(v[j].x * factor, v[j].y * factor, v[j].z * factor, v[j].w * factor);
    }
  }
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    cg::this_cluster().barrier_wait();
#endif
  }
}

// One block per row, two passes. The second walks the row backwards, so it starts on the lines
// the first pass read last, the likeliest to still be in L2.
__global__ void SoftmaxTwoPassKernel(const float* x, int n, bool vec, float* out) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t{blockIdx.x} * n;
  float* outr = out + int64_t{blockIdx.x} * n;
  float m = -INFINITY, s = 0.0f;
  auto add = [&](float v) {
    if (v > m) {
      s = s * expf(m - v) + 1.0f;  // expf(-inf) = 0 while m is still -inf
      m = v;
    } else if (v != -INFINITY) {  // -inf adds 0; against m = -inf it would add NaN
      s += expf(v - m);
    }
  };
  if (vec) {
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = reinterpret_cast<const float4*>(xr)[i];
      add(v.x);
      add(v.y);
      add(v.z);
      add(v.w);
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) add(xr[i]);
  }
  const float row_max = BlockMax(m, scratch);
  const float mine = m == -INFINITY ? 0.0f : s * expf(m - row_max);
  const float inv = 1.0f / BlockSum(mine, scratch);
  if (vec) {
    for (int i = n / 4 - 1 - static_cast<int>(threadIdx.x); i >= 0;
         i -= static_cast<int>(blockDim.x)) {
      float4 v = reinterpret_cast<const float4*>(xr)[i];
      v.x = expf(v.x - row_max) * inv;
      v.y = expf(v.y - row_max) * inv;
      v.z = expf(v.z - row_max) * inv;
      v.w = expf(v.w - row_max) * inv;
      reinterpret_cast<float4*>(outr)[i] = v;
    }
  } else {
    for (int i = n - 1 - static_cast<int>(threadIdx.x); i >= 0; i -= static_cast<int>(blockDim.x)) {
      outr[i] = expf(xr[i] - row_max) * inv;
    }
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Launches the register kernel with K float4 per thread if the row fits one block, or a cluster
// the device supports. Sets *launched.
template <int K>
Status TryRegsKernel(const float* x, int32_t rows, int32_t n, float* out, cudaStream_t stream,
                     bool* launched) {
  *launched = false;
  const int64_t per_block = int64_t{kRowThreads} * K;
  const int64_t blocks_per_row = (n / 4 + per_block - 1) / per_block;
  if (blocks_per_row == 1) {
    SoftmaxRegsKernel<K, false><<<rows, kRowThreads, 0, stream>>>(x, n, out);
    *launched = true;
    return LaunchStatus("SoftmaxRegsKernel");
  }
  if (blocks_per_row > kMaxCluster || rows * blocks_per_row > INT32_MAX) return Status::Ok();
  constexpr auto kernel = SoftmaxRegsKernel<K, true>;
  if (blocks_per_row > ClusterLimit<kernel>(kRowThreads)) return Status::Ok();
  const int cluster = static_cast<int>(blocks_per_row);
  ITE_RETURN_IF_ERROR(
      CudaStatus(LaunchClustered(kernel, dim3(rows * cluster), kRowThreads, 0, cluster,
                                 /*dependent=*/false, stream, x, n, out),
                 "SoftmaxRegsKernel (cluster)"));
  *launched = true;
  return LaunchStatus("SoftmaxRegsKernel (cluster)");
}

}  // namespace

Status Softmax(const float* x, int32_t rows, int32_t n, float* out, cudaStream_t stream) {
  if (x == nullptr || out == nullptr) return InvalidArgument("Softmax: x and out must be non-null");
  if (rows < 0 || n <= 0) return InvalidArgument("Softmax: bad shape rows={} n={}", rows, n);
  if (rows == 0) return Status::Ok();
  const bool vec = n % 4 == 0 && Aligned16(x) && Aligned16(out);
  if (vec) {
    // Prefer 8 float4 per thread (4 blocks per SM, more overlap between blocks; on an H200 at
    // 256 x 128256: 3,362 GB/s against 3,226 with 16 first); 16 where the row needs more than
    // 16 blocks of 8.
    bool launched = false;
    ITE_RETURN_IF_ERROR(TryRegsKernel<8>(x, rows, n, out, stream, &launched));
    if (launched) return Status::Ok();
    ITE_RETURN_IF_ERROR(TryRegsKernel<16>(x, rows, n, out, stream, &launched));
    if (launched) return Status::Ok();
  }
  const int work = vec ? n / 4 : n;
  const int threads = std::min(1024, std::max(32, (work + 31) / 32 * 32));
  SoftmaxTwoPassKernel<<<rows, threads, 0, stream>>>(x, n, vec, out);
  return LaunchStatus("SoftmaxTwoPassKernel");
}

}  // namespace ite::kernels
