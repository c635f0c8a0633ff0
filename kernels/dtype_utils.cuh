// Device-side conversions between the activation dtypes and fp32, and 16-byte vector packing.
// Kernels load and store 8 elements (16 bytes) per thread where the shape allows it.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

template <DType kDType>
struct DTypeTraits;
template <>
struct DTypeTraits<DType::kF16> {
  using T = __half;
  using T2 = __half2;
};
template <>
struct DTypeTraits<DType::kBF16> {
  using T = __nv_bfloat16;
  using T2 = __nv_bfloat162;
};

__device__ __forceinline__ float ToFloat(__half x) { return __half2float(x); }
__device__ __forceinline__ float ToFloat(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float2 ToFloat2(__half2 x) { return __half22float2(x); }
__device__ __forceinline__ float2 ToFloat2(__nv_bfloat162 x) { return __bfloat1622float2(x); }

template <typename T>
__device__ __forceinline__ T FromFloat(float x);
template <>
__device__ __forceinline__ __half FromFloat<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// Two floats to a packed pair of T, as the 32-bit word tensor-core fragments and stores use.
template <typename T>
__device__ __forceinline__ uint32_t PackFloat2(float a, float b);
template <>
__device__ __forceinline__ uint32_t PackFloat2<__half>(float a, float b) {
  __half2 h = __floats2half2_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}
template <>
__device__ __forceinline__ uint32_t PackFloat2<__nv_bfloat16>(float a, float b) {
  __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
  return *reinterpret_cast<uint32_t*>(&h);
}

template <typename T>
__device__ __forceinline__ float2 UnpackFloat2(uint32_t w) {
  if constexpr (sizeof(T) == 2 && std::is_same_v<T, __half>) {
    return __half22float2(*reinterpret_cast<__half2*>(&w));
  } else {
    return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162*>(&w));
  }
}

// 8 elements of T in a 16-byte word <-> 8 floats.
template <typename T>
__device__ __forceinline__ void Unpack8(const uint4& v, float (&f)[8]) {
  float2 a = UnpackFloat2<T>(v.x), b = UnpackFloat2<T>(v.y), c = UnpackFloat2<T>(v.z),
         d = UnpackFloat2<T>(v.w);
  f[0] = a.x;
  f[1] = a.y;
  f[2] = b.x;
  f[3] = b.y;
  f[4] = c.x;
  f[5] = c.y;
  f[6] = d.x;
  f[7] = d.y;
}
template <typename T>
__device__ __forceinline__ uint4 Pack8(const float (&f)[8]) {
  return make_uint4(PackFloat2<T>(f[0], f[1]), PackFloat2<T>(f[2], f[3]), PackFloat2<T>(f[4], f[5]),
                    PackFloat2<T>(f[6], f[7]));
}

// Block-wide sum of one float per thread; every thread gets the result. `scratch` holds 32 floats.
__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by an earlier call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int num_warps = (blockDim.x + 31) / 32;
  v = lane < num_warps ? scratch[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float BlockMax(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int num_warps = (blockDim.x + 31) / 32;
  v = lane < num_warps ? scratch[lane] : -INFINITY;
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

}  // namespace ite::kernels
