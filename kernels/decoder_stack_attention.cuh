// The fused decoder stack's attention stage (decoder_stack.cu): RoPE, the new token's K/V write
// and split-KV attention, one warp an item, then the splits merged as the O product's input.
#pragma once

#include <cuda_runtime.h>

#include "decoder_stack_stream.cuh"

namespace ite::kernels::decoder_stack {

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

// Splits of the context per kv head: about kSplitLen positions each (one pass of a warp), at
// most kMaxSplits.
__device__ __forceinline__ int SplitsFor(int kv_len) {
  constexpr int kSplitLen = 32;
  return max(1, min(kMaxSplits, (kv_len + kSplitLen - 1) / kSplitLen));
}

// Stage 1: every (kv head, split) item, one warp each, spread over the blocks first: RoPE on the
// group's Q into the warp's part of xs, the new token's K and V into the cache (the split that
// holds it), then an online softmax over the split, 32 positions at a time, and the split's
// unnormalised output and (max, sum) to the workspace.
template <typename T, int HD>
__device__ void RunAttention(const StackParams<T>& p, int layer, float* xs) {
  constexpr int kHalf = HD / 2, kDims = HD / 32;  // dims per lane in the P.V sums
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const DecoderStackLayer& l = p.layers[layer];
  const T* k_cache = static_cast<const T*>(l.k_cache);
  T* k_out = static_cast<T*>(l.k_cache);
  T* v_out = static_cast<T*>(l.v_cache);
  const int kv_len = __ldg(p.kv_lens), pos = __ldg(p.positions), group = p.group;
  const int splits = SplitsFor(kv_len), items = p.num_kv_heads * splits;
  const int split_len = (kv_len + splits - 1) / splits;
  float* qs = xs + warp * group * HD;  // [group][HD]
  for (int item = warp * gridDim.x + blockIdx.x; item < items;
       item += gridDim.x * kComputeWarps) {
    const int g = item / splits, s = item % splits;
    const int begin = s * split_len, end = min(kv_len, begin + split_len);
    // The group's Q with RoPE (the same fp32 angle and sincosf as rope.cu), rounded as stored.
    for (int d = lane; d < kHalf; d += 32) {
      float sn, cs;
      sincosf(static_cast<float>(pos) * p.inv_freq[d], &sn, &cs);
      for (int h = 0; h < group; ++h) {
        const float* q = p.qkv_raw + (g * group + h) * HD;
        const float a = __ldcg(q + d), b = __ldcg(q + d + kHalf);
        qs[h * HD + d] = Round<T>(a * cs - b * sn);
        qs[h * HD + d + kHalf] = Round<T>(b * cs + a * sn);
      }
    }
    const int64_t slot = __ldg(p.kv_slots);
    if (s == splits - 1 && slot >= 0 && slot < p.num_slots) {
      // The new token's K (rotated) and V, into the cache before the split reads them there.
      const float* k = p.qkv_raw + p.q_dim + g * HD;
      const float* v = p.qkv_raw + p.q_dim + p.kv_dim + g * HD;
      T* kd = k_out + (slot * p.num_kv_heads + g) * HD;
      T* vd = v_out + (slot * p.num_kv_heads + g) * HD;
      for (int d = lane; d < kHalf; d += 32) {
        const float a = __ldcg(k + d), b = __ldcg(k + d + kHalf);
        float sn, cs;
        sincosf(static_cast<float>(pos) * p.inv_freq[d], &sn, &cs);
        kd[d] = FromFloat<T>(a * cs - b * sn);
        kd[d + kHalf] = FromFloat<T>(b * cs + a * sn);
        vd[d] = FromFloat<T>(__ldcg(v + d));
        vd[d + kHalf] = FromFloat<T>(__ldcg(v + d + kHalf));
      }
    }
    __syncwarp();
    float m[kMaxGroup], sum[kMaxGroup], acc[kMaxGroup][kDims];
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      m[h] = -INFINITY;
      sum[h] = 0.0f;
#pragma unroll
      for (int e = 0; e < kDims; ++e) acc[h][e] = 0.0f;
    }
    for (int t0 = begin; t0 < end; t0 += 32) {
      const int j_pos = t0 + lane;
      const bool valid = j_pos < end;
      int64_t j_slot = 0;
      if (valid)
        j_slot = int64_t{__ldg(p.block_tables + j_pos / p.block_size)} * p.block_size +
                 j_pos % p.block_size;
      // Lane j's position: its score for each query head of the group.
      float score[kMaxGroup];
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) score[h] = 0.0f;
      if (valid) {
        const uint4* k8 =
            reinterpret_cast<const uint4*>(k_cache + (j_slot * p.num_kv_heads + g) * HD);
#pragma unroll
        for (int c = 0; c < HD / 8; ++c) {
          float kf[8];
          Unpack8<T>(__ldcg(k8 + c), kf);
#pragma unroll
          for (int h = 0; h < kMaxGroup; ++h) {
            if (h < group) {
#pragma unroll
              for (int j = 0; j < 8; ++j) score[h] = fmaf(qs[h * HD + c * 8 + j], kf[j], score[h]);
            }
          }
        }
      }
      // The online softmax: each head's running max and sum, its output rescaled, and lane j's
      // weight of position j left in score[h].
      const int count = min(32, end - t0);
#pragma unroll
      for (int h = 0; h < kMaxGroup; ++h) {
        if (h >= group) continue;
        const float sc = valid ? score[h] * p.scale_log2 : -INFINITY;
        const float m_new = fmaxf(m[h], WarpMax(sc));
        const float corr = exp2f(m[h] - m_new);
        score[h] = valid ? exp2f(sc - m_new) : 0.0f;
        sum[h] = sum[h] * corr + WarpSum(score[h]);
        m[h] = m_new;
#pragma unroll
        for (int e = 0; e < kDims; ++e) acc[h][e] *= corr;
      }
      // P.V, 16 rows of V at a time, lane l holding dims [l kDims, (l + 1) kDims) of each.
#pragma unroll
      for (int j0 = 0; j0 < 32; j0 += 16) {
        float vf[16][kDims];
#pragma unroll
        for (int j = 0; j < 16; ++j) {
          const int64_t sj = __shfl_sync(0xffffffffu, j_slot, j0 + j);
          if (j0 + j < count) {
            const T* vrow = static_cast<const T*>(l.v_cache) + (sj * p.num_kv_heads + g) * HD;
            if constexpr (kDims == 2) {
              const float2 f =
                  UnpackFloat2<T>(__ldcg(reinterpret_cast<const unsigned*>(vrow) + lane));
              vf[j][0] = f.x;
              vf[j][1] = f.y;
            } else {
              const uint2 w = __ldcg(reinterpret_cast<const uint2*>(vrow) + lane);
              const float2 f0 = UnpackFloat2<T>(w.x), f1 = UnpackFloat2<T>(w.y);
              vf[j][0] = f0.x;
              vf[j][1] = f0.y;
              vf[j][2] = f1.x;
              vf[j][3] = f1.y;
            }
          } else {
#pragma unroll
            for (int e = 0; e < kDims; ++e) vf[j][e] = 0.0f;
          }
        }
#pragma unroll
        for (int h = 0; h < kMaxGroup; ++h) {
          if (h >= group) continue;
#pragma unroll
          for (int j = 0; j < 16; ++j) {
            const float pj = __shfl_sync(0xffffffffu, score[h], j0 + j);
#pragma unroll
            for (int e = 0; e < kDims; ++e) acc[h][e] = fmaf(pj, vf[j][e], acc[h][e]);
          }
        }
      }
    }
    // The split's unnormalised output and its (max, sum), log2 domain.
#pragma unroll
    for (int h = 0; h < kMaxGroup; ++h) {
      if (h >= group) continue;
      const int qh = g * group + h;
      if (lane == 0) {
        p.part_ml[(qh * kMaxSplits + s) * 2] = m[h];
        p.part_ml[(qh * kMaxSplits + s) * 2 + 1] = sum[h];
      }
#pragma unroll
      for (int e = 0; e < kDims; ++e)
        p.part_acc[(qh * kMaxSplits + s) * HD + lane * kDims + e] = acc[h][e];
    }
    __syncwarp();  // qs is rewritten by the warp's next item
  }
}

// O's input: the splits merged and normalised, rounded as the attention output is stored (every
// split's values loaded at once: one round trip to L2, not one a split).
template <typename T, int HD>
__device__ void LoadAttention(const StackParams<T>& p, float* xs) {
  const int splits = SplitsFor(__ldg(p.kv_lens));
  for (int i = threadIdx.x; i < p.q_dim; i += kCompute) {
    const int qh = i / HD, d = i % HD;
    const float* ml = p.part_ml + qh * kMaxSplits * 2;
    float mv[kMaxSplits], lv[kMaxSplits], ov[kMaxSplits];
#pragma unroll
    for (int s = 0; s < kMaxSplits; ++s) {
      mv[s] = s < splits ? __ldcg(ml + 2 * s) : -INFINITY;
      lv[s] = s < splits ? __ldcg(ml + 2 * s + 1) : 0.0f;
      ov[s] = s < splits ? __ldcg(p.part_acc + (qh * kMaxSplits + s) * HD + d) : 0.0f;
    }
    float mx = -INFINITY;
#pragma unroll
    for (int s = 0; s < kMaxSplits; ++s) mx = fmaxf(mx, mv[s]);
    float total = 0.0f, out = 0.0f;
#pragma unroll
    for (int s = 0; s < kMaxSplits; ++s) {
      const float f = s < splits ? exp2f(mv[s] - mx) : 0.0f;
      total += lv[s] * f;
      out += ov[s] * f;
    }
    XsAt(p, xs, i) = Round<T>(out / total);
  }
  ComputeSync();
}

#endif  // __CUDA_ARCH__ >= 900

}  // namespace ite::kernels::decoder_stack
