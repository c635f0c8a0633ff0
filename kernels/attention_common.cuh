// Pieces shared by the prefill and decode attention kernels: paged tile loads and the online
// softmax update of one warp's 16 rows (each thread owns rows g and g + 8 of the tile).
#pragma once

#include <cstdint>

#include "dtype_utils.cuh"
#include "mma_utils.cuh"

namespace ite::kernels {

// Address math for paged K/V rows: position p lives in block block_table[p / block_size] at slot
// p % block_size; block_shift >= 0 replaces the division by a power-of-two block size. (The
// kernels read block ids a tile ahead of the copies that need them.)
struct PagedGeometry {
  const int32_t* block_table;
  int block_size;
  int block_shift;  // log2(block_size), or -1
  int64_t slot_stride;
  int64_t head_offset;
};

__device__ __forceinline__ int BlockOf(const PagedGeometry& g, int pos) {
  return g.block_shift >= 0 ? pos >> g.block_shift : pos / g.block_size;
}
__device__ __forceinline__ int SlotOf(const PagedGeometry& g, int pos) {
  return g.block_shift >= 0 ? pos & (g.block_size - 1) : pos % g.block_size;
}

__host__ __forceinline__ int Log2IfPowerOfTwo(int x) {
  if (x <= 0 || (x & (x - 1)) != 0) return -1;
  int s = 0;
  while ((1 << s) < x) ++s;
  return s;
}

// S (16 x 8*kNTiles of fp32, C fragments) = A fragments of Q (kKSteps k-steps) times the
// K tile rows [0, 8*kNTiles) in shared memory. With few n-tiles the k-steps would form one long
// chain of dependent mma (each waits for the previous accumulator), so kAccSplit partial
// accumulators take alternate k-steps and are added at the end.
template <typename T, int kHeadDim, int kNTiles, int kAccSplit = 1>
__device__ __forceinline__ void QkTile(float (&s)[kNTiles][4],
                                       const uint32_t (&qf)[kHeadDim / 16][4], const T* sk,
                                       int lane) {
  static_assert((kHeadDim / 16) % kAccSplit == 0, "k-steps split evenly");
  float acc[kAccSplit][kNTiles][4];
#pragma unroll
  for (int a = 0; a < kAccSplit; ++a) {
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) acc[a][n][e] = 0.0f;
    }
  }
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
#pragma unroll
    for (int np = 0; np < kNTiles / 2; ++np) {
      uint32_t b[4];
      LdMatrixX4(b, SmemAddr(sk + Swizzle<kHeadDim>(np * 16 + (lane & 7) + (lane >> 4) * 8,
                                                    ks * 2 + ((lane >> 3) & 1))));
      Mma16816<T>(acc[ks % kAccSplit][2 * np], qf[ks], b[0], b[1]);
      Mma16816<T>(acc[ks % kAccSplit][2 * np + 1], qf[ks], b[2], b[3]);
    }
  }
#pragma unroll
  for (int n = 0; n < kNTiles; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      float v = acc[0][n][e];
#pragma unroll
      for (int a = 1; a < kAccSplit; ++a) v += acc[a][n][e];
      s[n][e] = v;
    }
  }
}

// 2^x on the special-function unit (ftz; 2^-inf = 0). exp2f adds a denormal-handling sequence
// around the same instruction, which costs issue slots in the softmax of every tile.
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The score half of the online softmax for one tile. `s` holds raw scores; on return it holds
// the unnormalised probabilities exp2(s * scale_log2 - m). m, l: running max (log2 domain) and
// this thread's partial row sums for rows g (index 0) and g + 8 (index 1). corr: the factor by
// which each row's output accumulator must be rescaled (the wgmma prefill applies it later,
// once the P.V product still writing that accumulator has finished).
template <int kNTiles>
__device__ __forceinline__ void SoftmaxScores(float (&s)[kNTiles][4], float (&m)[2], float (&l)[2],
                                              float (&corr)[2], float scale_log2) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * i], s[n][2 * i + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m[i], mx * scale_log2);
    // A row with every score masked so far keeps m = -inf; use 0 so no -inf - -inf appears.
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    corr[i] = FastExp2(m[i] - m_use);
    m[i] = m_new;
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kNTiles; ++n) {
      s[n][2 * i] = FastExp2(s[n][2 * i] * scale_log2 - m_use);
      s[n][2 * i + 1] = FastExp2(s[n][2 * i + 1] * scale_log2 - m_use);
      sum += s[n][2 * i] + s[n][2 * i + 1];
    }
    l[i] = l[i] * corr[i] + sum;
  }
}

// o (rows g and g + 8) *= corr. kSkipUnchanged: test (one warp vote per row) whether any row
// max moved before rescaling; pays off in decode, where the max settles after a few tiles, and
// measured slower in prefill.
template <int kOTiles, bool kSkipUnchanged = false>
__device__ __forceinline__ void RescaleRows(float (&o)[kOTiles][4], const float (&corr)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (!kSkipUnchanged || __any_sync(0xffffffffu, corr[i] != 1.0f)) {
#pragma unroll
      for (int n = 0; n < kOTiles; ++n) {
        o[n][2 * i] *= corr[i];
        o[n][2 * i + 1] *= corr[i];
      }
    }
  }
}

// Online softmax for one tile: SoftmaxScores, then the output accumulator rescaled in place.
template <int kNTiles, int kOTiles, bool kSkipUnchanged = false>
__device__ __forceinline__ void OnlineSoftmax(float (&s)[kNTiles][4], float (&m)[2], float (&l)[2],
                                              float (&o)[kOTiles][4], float scale_log2) {
  float corr[2];
  SoftmaxScores<kNTiles>(s, m, l, corr, scale_log2);
  RescaleRows<kOTiles, kSkipUnchanged>(o, corr);
}

// o += P (C fragments of kNTiles n-tiles, converted to T) times the V tile rows
// [0, 8*kNTiles) in shared memory.
template <typename T, int kHeadDim, int kNTiles>
__device__ __forceinline__ void PvTile(float (&o)[kHeadDim / 8][4], const float (&p)[kNTiles][4],
                                       const T* sv, int lane) {
#pragma unroll
  for (int kk = 0; kk < kNTiles / 2; ++kk) {
    uint32_t a[4];
    a[0] = PackFloat2<T>(p[2 * kk][0], p[2 * kk][1]);
    a[1] = PackFloat2<T>(p[2 * kk][2], p[2 * kk][3]);
    a[2] = PackFloat2<T>(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    a[3] = PackFloat2<T>(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
    for (int dp = 0; dp < kHeadDim / 16; ++dp) {
      uint32_t b[4];
      LdMatrixX4Trans(b,
                      SmemAddr(sv + Swizzle<kHeadDim>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                      dp * 2 + (lane >> 4))));
      Mma16816<T>(o[2 * dp], a, b[0], b[1]);
      Mma16816<T>(o[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// A fragments of the 16 rows starting at row0 of a swizzled Q tile in shared memory.
template <int kHeadDim, typename T>
__device__ __forceinline__ void LoadQFragments(uint32_t (&qf)[kHeadDim / 16][4], const T* sq,
                                               int row0, int lane) {
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    LdMatrixX4(qf[ks], SmemAddr(sq + Swizzle<kHeadDim>(row0 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                       ks * 2 + (lane >> 4))));
  }
}

}  // namespace ite::kernels
