// One unit's work in the GEMV kernel (gemv.cu): its weight rows, the per-piece products with x
// read from global memory or from the block's shared copy, the block's staging of x, and the
// epilogues (store, residual add, silu * mul, RoPE + KV write) with the inputs they read.
// Included by gemv.cu alone, inside its unnamed namespace's scope.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "dtype_utils.cuh"
#include "ite/kernels/gemm.h"

namespace ite::kernels::internal {
namespace {

constexpr int kWarps = 8;             // warps (units) per block
constexpr int kPiece = 8;             // elements per 16-byte piece
constexpr int kStride = 32 * kPiece;  // elements a warp covers per piece round

template <typename T, typename Out>
struct GemvParams {
  const T* x;
  const T* w;
  const T* bias;
  const T* norm_weight;
  Out* out;
  int32_t n;  // weight rows
  int32_t kdim;
  float eps;
  // kRopeKv
  const int32_t* positions;
  const int32_t* slots;
  const float* inv_freq;
  T* k_cache;
  T* v_cache;
  int64_t num_slots;
  int32_t num_heads;
  int32_t num_kv_heads;
  int32_t head_dim;
};

constexpr int RowsPerUnit(GemmEpilogue e) {
  return e == GemmEpilogue::kSiluMul || e == GemmEpilogue::kRopeKv ? 2 : 1;
}

__device__ __forceinline__ uint4 LoadStreaming(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// The weight rows of unit u.
template <GemmEpilogue E, typename P>
__device__ __forceinline__ void UnitRows(const P& p, int32_t u, int32_t (&row)[RowsPerUnit(E)]) {
  if constexpr (E == GemmEpilogue::kSiluMul) {
    row[0] = u;
    row[1] = u + p.n / 2;
  } else if constexpr (E == GemmEpilogue::kRopeKv) {
    const int32_t half = p.head_dim / 2;
    row[0] = u / half * p.head_dim + u % half;
    row[1] = row[0] + half;
  } else {
    row[0] = u;
  }
}

template <typename T, int M, int R, bool kNorm>
__device__ __forceinline__ void Accumulate(const uint4 (&wv)[R], const T* __restrict__ x,
                                           const T* __restrict__ norm_weight, int64_t k,
                                           int32_t kdim, float (&acc)[R][M], float (&sumsq)[M]) {
  float wf[R][kPiece], gf[kPiece];
#pragma unroll
  for (int q = 0; q < R; ++q) Unpack8<T>(wv[q], wf[q]);
  if constexpr (kNorm) Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(norm_weight + k)), gf);
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float xf[kPiece];
    Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(x + int64_t{r} * kdim + k)), xf);
#pragma unroll
    for (int j = 0; j < kPiece; ++j) {
      if constexpr (kNorm) {
        sumsq[r] = fmaf(xf[j], xf[j], sumsq[r]);
        xf[j] *= gf[j];
      }
#pragma unroll
      for (int q = 0; q < R; ++q) acc[q][r] = fmaf(wf[q][j], xf[j], acc[q][r]);
    }
  }
}

// As Accumulate, with x (already multiplied by the norm weight) as fp32 in shared memory: row r's
// piece p (elements 8p..8p+7) is xs[r * kdim + 4p ..] (its first four) and xs[r * kdim + kdim / 2
// + 4p ..] (its last four), so a warp's 16-byte reads of consecutive pieces hit distinct banks.
template <typename T, int M, int R>
__device__ __forceinline__ void AccumulateShared(const uint4 (&wv)[R], const float* xs,
                                                 int64_t piece, int32_t kdim, float (&acc)[R][M]) {
  float wf[R][kPiece];
#pragma unroll
  for (int q = 0; q < R; ++q) Unpack8<T>(wv[q], wf[q]);
#pragma unroll
  for (int r = 0; r < M; ++r) {
    const float4 a = *reinterpret_cast<const float4*>(xs + int64_t{r} * kdim + 4 * piece);
    const float4 b =
        *reinterpret_cast<const float4*>(xs + int64_t{r} * kdim + kdim / 2 + 4 * piece);
    const float xf[kPiece] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < kPiece; ++j) {
#pragma unroll
      for (int q = 0; q < R; ++q) acc[q][r] = fmaf(wf[q][j], xf[j], acc[q][r]);
    }
  }
}

// The block's copy of x for AccumulateShared (every thread takes part): x * norm weight where
// kNorm, and each row's sum of squares of x into sumsq, added over the block in a fixed order.
template <typename T, int M, bool kNorm>
__device__ __forceinline__ void StageX(const T* __restrict__ x, const T* __restrict__ norm_weight,
                                       int32_t kdim, float* xs, float (*warp_sums)[M],
                                       float (&sumsq)[M]) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t pieces = kdim / kPiece;
#pragma unroll
  for (int r = 0; r < M; ++r) {
    float ss = 0.0f;
    for (int32_t pc = threadIdx.x; pc < pieces; pc += blockDim.x) {
      float xf[kPiece];
      Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(x + int64_t{r} * kdim) + pc), xf);
      if constexpr (kNorm) {
        float gf[kPiece];
        Unpack8<T>(__ldg(reinterpret_cast<const uint4*>(norm_weight) + pc), gf);
#pragma unroll
        for (int j = 0; j < kPiece; ++j) {
          ss = fmaf(xf[j], xf[j], ss);
          xf[j] *= gf[j];
        }
      }
      float* row = xs + int64_t{r} * kdim;
      *reinterpret_cast<float4*>(row + 4 * pc) = make_float4(xf[0], xf[1], xf[2], xf[3]);
      *reinterpret_cast<float4*>(row + kdim / 2 + 4 * pc) = make_float4(xf[4], xf[5], xf[6], xf[7]);
    }
    if constexpr (kNorm) {
      for (int off = 16; off > 0; off /= 2) ss += __shfl_xor_sync(0xffffffffu, ss, off);
      if (lane == 0) warp_sums[warp][r] = ss;
    }
  }
  __syncthreads();
  if constexpr (kNorm) {
#pragma unroll
    for (int r = 0; r < M; ++r) {
      float v = 0.0f;
      for (int w = 0; w < kWarps; ++w) v += warp_sums[w][r];
      sumsq[r] = v;
    }
  }
}

__device__ __forceinline__ float Silu(float v) { return v / (1.0f + __expf(-v)); }

// What row r's epilogue of a unit reads besides the products: loaded while the products run, so
// that its round trips do not follow them. The rotary frequency is constant and is read before
// the dependency wait; the residual, the position and the cache slot only after it.
struct EpilogueInputs {
  float residual = 0.0f;  // kAccumulate
  float inv_freq = 0.0f;  // kRopeKv
  int32_t position = 0;
  int64_t slot = -1;
};

template <GemmEpilogue E, typename T, typename Out>
__device__ __forceinline__ void LoadConstantInputs(const GemvParams<T, Out>& p, int32_t u,
                                                   EpilogueInputs& in) {
  if constexpr (E == GemmEpilogue::kRopeKv) in.inv_freq = __ldg(p.inv_freq + u % (p.head_dim / 2));
}

template <GemmEpilogue E, typename T, typename Out>
__device__ __forceinline__ void LoadStepInputs(const GemvParams<T, Out>& p, int r,
                                               const int32_t (&row)[RowsPerUnit(E)],
                                               EpilogueInputs& in) {
  if constexpr (E == GemmEpilogue::kAccumulate) {
    in.residual = ToFloat(p.out[int64_t{r} * p.n + row[0]]);
  } else if constexpr (E == GemmEpilogue::kRopeKv) {
    in.position = p.positions[r];
    in.slot = p.slots[r];
  }
}

// Row r's results of unit u: y[q] is weight row row[q]'s dot product, scaled and biased.
template <GemmEpilogue E, typename T, typename Out>
__device__ __forceinline__ void Store(const GemvParams<T, Out>& p, int r, int32_t u,
                                      const int32_t (&row)[RowsPerUnit(E)],
                                      const EpilogueInputs& in, float (&y)[RowsPerUnit(E)]) {
  if constexpr (E == GemmEpilogue::kStore) {
    Out* o = p.out + int64_t{r} * p.n + row[0];
    if constexpr (std::is_same_v<Out, float>) {
      *o = y[0];
    } else {
      *o = FromFloat<Out>(y[0]);
    }
  } else if constexpr (E == GemmEpilogue::kAccumulate) {
    p.out[int64_t{r} * p.n + row[0]] = FromFloat<Out>(in.residual + y[0]);
  } else if constexpr (E == GemmEpilogue::kSiluMul) {
    p.out[int64_t{r} * (p.n / 2) + u] = FromFloat<Out>(Silu(y[0]) * y[1]);
  } else {  // kRopeKv
    const int32_t half = p.head_dim / 2, head = u / half, i = u % half;
    if (head < p.num_heads + p.num_kv_heads) {  // Q and K rotate; V does not
      // The same fp32 angle and sincosf as RopeKvWrite (rope.cu) and the CPU reference.
      float s, c;
      sincosf(static_cast<float>(in.position) * in.inv_freq, &s, &c);
      const float a = y[0], b = y[1];
      y[0] = a * c - b * s;
      y[1] = b * c + a * s;
    }
    Out* o = p.out + int64_t{r} * p.n;
    const Out ya = FromFloat<Out>(y[0]), yb = FromFloat<Out>(y[1]);
    o[row[0]] = ya;
    o[row[1]] = yb;
    const int64_t slot = in.slot;
    if (head < p.num_heads || slot < 0 || slot >= p.num_slots) return;
    const bool is_k = head < p.num_heads + p.num_kv_heads;
    const int32_t kv_head = head - p.num_heads - (is_k ? 0 : p.num_kv_heads);
    T* dst = (is_k ? p.k_cache : p.v_cache) + (slot * p.num_kv_heads + kv_head) * p.head_dim + i;
    dst[0] = ya;
    dst[half] = yb;
  }
}

}  // namespace
}  // namespace ite::kernels::internal
