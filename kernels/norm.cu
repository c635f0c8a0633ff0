// RMSNorm (+ residual add): one block per row, 16-byte vectors, fp32 sums.
// The row is read twice; the second read hits L1/L2 since a row is at most a few tens of KB.
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/norm.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

constexpr int kMaxVecsPerThread = 4;

// Rows of at most kMaxVecsPerThread * blockDim.x vectors stay in registers between the sum and
// the scaling, so each element is read once and written once.
template <typename T>
__global__ void RmsNormKernel(const T* __restrict__ x, T* residual, const T* __restrict__ weight,
                              T* out, int dim, float eps, const int32_t* __restrict__ row_index) {
  __shared__ float scratch[32];
  LetDependentsStart();
  WaitForPrerequisites();
  const int64_t row = blockIdx.x;
  const T* xr = x + (row_index ? row_index[row] : row) * int64_t{dim};
  T* rr = residual ? residual + row * dim : nullptr;
  T* outr = out + row * dim;
  // Vector path only when every row start is 16-byte aligned and the row fits in registers.
  const int nvec = dim % 8 == 0 && dim / 8 <= kMaxVecsPerThread * int(blockDim.x) ? dim / 8 : 0;
  float sumsq = 0.0f;
  uint4 vals[kMaxVecsPerThread];
#pragma unroll
  for (int k = 0; k < kMaxVecsPerThread; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < nvec) vals[k] = reinterpret_cast<const uint4*>(xr)[i];
  }
  if (rr) {
#pragma unroll
    for (int k = 0; k < kMaxVecsPerThread; ++k) {
      const int i = threadIdx.x + k * blockDim.x;
      if (i >= nvec) continue;
      float f[8], r[8];
      Unpack8<T>(vals[k], f);
      Unpack8<T>(reinterpret_cast<const uint4*>(rr)[i], r);
      for (int j = 0; j < 8; ++j) f[j] += r[j];
      vals[k] = Pack8<T>(f);  // what the next layer reads is also what is normalised
      reinterpret_cast<uint4*>(rr)[i] = vals[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kMaxVecsPerThread; ++k) {
    if (threadIdx.x + k * blockDim.x >= nvec) continue;
    float f[8];
    Unpack8<T>(vals[k], f);
    for (int j = 0; j < 8; ++j) sumsq += f[j] * f[j];
  }
  // Scalar path (odd widths, very wide rows): two passes over global memory.
  for (int i = nvec * 8 + threadIdx.x; i < dim; i += blockDim.x) {
    float f = ToFloat(xr[i]);
    if (rr) {
      T s = FromFloat<T>(f + ToFloat(rr[i]));
      rr[i] = s;
      f = ToFloat(s);
    }
    sumsq += f * f;
  }
  const float inv_rms = rsqrtf(BlockSum(sumsq, scratch) / dim + eps);
#pragma unroll
  for (int k = 0; k < kMaxVecsPerThread; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i >= nvec) continue;
    float f[8], w[8];
    Unpack8<T>(vals[k], f);
    Unpack8<T>(reinterpret_cast<const uint4*>(weight)[i], w);
    for (int j = 0; j < 8; ++j) f[j] = f[j] * inv_rms * w[j];
    reinterpret_cast<uint4*>(outr)[i] = Pack8<T>(f);
  }
  const T* src = rr ? rr : xr;
  for (int i = nvec * 8 + threadIdx.x; i < dim; i += blockDim.x) {
    outr[i] = FromFloat<T>(ToFloat(src[i]) * inv_rms * ToFloat(weight[i]));
  }
}

Status Validate(const RmsNormArgs& a) {
  if (a.x == nullptr || a.weight == nullptr || a.out == nullptr) {
    return InvalidArgument("RmsNorm: x, weight and out must be non-null");
  }
  if (a.rows < 0 || a.dim <= 0) {
    return InvalidArgument("RmsNorm: bad shape rows={} dim={}", a.rows, a.dim);
  }
  if (!(a.eps >= 0.0f)) return InvalidArgument("RmsNorm: eps must be >= 0, got {}", a.eps);
  return Status::Ok();
}

template <typename T>
Status Launch(const RmsNormArgs& a, void* residual, cudaStream_t stream) {
  if (a.rows == 0) return Status::Ok();
  // About two vectors per thread: several 16-byte loads in flight per thread, and small
  // blocks so that several rows share a multiprocessor.
  const int work = a.dim % 8 == 0 ? (a.dim / 8 + 1) / 2 : a.dim;
  const int threads = std::min(1024, std::max(32, (work + 31) / 32 * 32));
  return CudaStatus(
      LaunchDependent(RmsNormKernel<T>, a.rows, threads, 0, stream, static_cast<const T*>(a.x),
                      static_cast<T*>(residual), static_cast<const T*>(a.weight),
                      static_cast<T*>(a.out), a.dim, a.eps, a.row_index),
      "RmsNormKernel");
}

Status Dispatch(const RmsNormArgs& a, void* residual, cudaStream_t stream) {
  ITE_RETURN_IF_ERROR(Validate(a));
  if (a.dtype == DType::kF16) return Launch<__half>(a, residual, stream);
  return Launch<__nv_bfloat16>(a, residual, stream);
}

}  // namespace

Status RmsNorm(const RmsNormArgs& args, cudaStream_t stream) {
  return Dispatch(args, nullptr, stream);
}

Status AddRmsNorm(const RmsNormArgs& args, void* residual, cudaStream_t stream) {
  if (residual == nullptr) return InvalidArgument("AddRmsNorm: residual must be non-null");
  if (args.row_index != nullptr) return InvalidArgument("AddRmsNorm: no row index");
  return Dispatch(args, residual, stream);
}

}  // namespace ite::kernels
