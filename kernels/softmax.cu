// Row softmax: one block per row; one pass for (max, sum) with an online rescale, one to write.
// expf, not the __expf intrinsic: its error grows with |x| and reached 5e-5 relative at
// logits of +-20, where fp32 arithmetic should land near 1e-6.
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/softmax.h"

namespace ite::kernels {
namespace {

__global__ void SoftmaxKernel(const float* x, int n, float* out) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t{blockIdx.x} * n;
  float* outr = out + int64_t{blockIdx.x} * n;
  const bool vec = n % 4 == 0;
  float m = -INFINITY, s = 0.0f;
  auto add = [&](float v) {
    if (v > m) {
      s = s * expf(m - v) + 1.0f;
      m = v;
    } else {
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
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x) {
      float4 v = reinterpret_cast<const float4*>(xr)[i];
      v.x = expf(v.x - row_max) * inv;
      v.y = expf(v.y - row_max) * inv;
      v.z = expf(v.z - row_max) * inv;
      v.w = expf(v.w - row_max) * inv;
      reinterpret_cast<float4*>(outr)[i] = v;
    }
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) outr[i] = expf(xr[i] - row_max) * inv;
  }
}

}  // namespace

Status Softmax(const float* x, int32_t rows, int32_t n, float* out, cudaStream_t stream) {
  if (x == nullptr || out == nullptr) return InvalidArgument("Softmax: x and out must be non-null");
  if (rows < 0 || n <= 0) return InvalidArgument("Softmax: bad shape rows={} n={}", rows, n);
  if (rows == 0) return Status::Ok();
  const int work = n % 4 == 0 ? n / 4 : n;
  const int threads = std::min(1024, std::max(32, (work + 31) / 32 * 32));
  SoftmaxKernel<<<rows, threads, 0, stream>>>(x, n, out);
  return LaunchStatus("SoftmaxKernel");
}

}  // namespace ite::kernels
