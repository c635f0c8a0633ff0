// The block-level part of split-KV flash-decoding (decode_attention.cu), shared by the decode
// attention kernel and the kernel that adds the output projection (decode_attention_out.cu):
// one block attends the query heads of one kv head over one split of a sequence's context and
// hands each merged output row to its caller.
#pragma once

#include <algorithm>
#include <cstdint>

#include "attention_common.cuh"
#include "common/status.h"
#include "ite/kernels/attention.h"
#include "pdl.cuh"

namespace ite::kernels {

// kWarps_ = 3 makes blocks small enough for four per multiprocessor at head_dim 128 (52 KB of
// shared memory instead of 68), for batches that then fit in one wave.
template <typename T_, int kHeadDim_, int kWarps_ = 4>
struct DecodeTraits {
  using T = T_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = kWarps_;
  static constexpr int kMinBlocks = kWarps_ == 3 ? 4 : 3;  // per multiprocessor
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kTileN = 16;  // KV positions per warp tile
  static constexpr int kStages = 2;
  static constexpr int kRows = 16;  // query heads per block
  static constexpr int kOTiles = kHeadDim / 8;
  static constexpr int kTileElems = kTileN * kHeadDim;
  static constexpr int kChunks = kHeadDim / 8;
  static constexpr int kRowStep = 32 / kChunks;  // a warp copies its own tiles
  static constexpr int kRowsPerLane = kTileN / kRowStep;
  static constexpr size_t kStageBytes = size_t{kWarps} * kStages * 2 * kTileElems * sizeof(T);
  // The merge reuses the stage buffers: m and l per warp and row, then O per warp, then the
  // block's merged O and log-sum-exp per row that a cluster's blocks read from each other.
  static constexpr size_t kMergeBytes =
      (size_t{kWarps} * kRows * (kHeadDim + 2) + size_t{kRows} * (kHeadDim + 1)) * sizeof(float);
  static constexpr size_t kSmemBytes =
      size_t{kRows} * kHeadDim * sizeof(T) + std::max(kStageBytes, kMergeBytes);
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
};

struct DecodeParams {
  const void* q;
  int64_t q_row_stride;
  void* out;
  const void* k_cache;
  const void* v_cache;
  const int32_t* kv_lens;
  const int32_t* block_tables;
  float* partial_o;    // [batch, num_heads, num_splits, head_dim]
  float* partial_lse;  // [batch, num_heads, num_splits], log2 domain
  int max_blocks_per_seq;
  int block_size;
  int block_shift;
  int num_heads;
  int group;
  int head_chunks;  // ceil(group / 16)
  int num_splits;
  int64_t slot_stride;
  float scale_log2;
  bool early_kv;
};

// The checks DecodeAttention makes of its arguments but the split count and workspace; `what`
// names the caller in the message (decode_attention.cu).
Status CheckDecodeAttentionArgs(const DecodeAttentionArgs& a, const char* what);
// The kernels' parameters for checked arguments (decode_attention.cu).
DecodeParams DecodeParamsOf(const DecodeAttentionArgs& a);

// Where a block's merged rows go when its caller keeps them in shared memory: after the
// warps' merge area of the stage buffers, [kRows][D] outputs then [kRows] log-sum-exps.
template <typename Traits>
__device__ __forceinline__ float* MergedRows(unsigned char* smem_raw) {
  constexpr int D = Traits::kHeadDim;
  unsigned char* stage_raw = smem_raw + Traits::kRows * D * sizeof(typename Traits::T);
  return reinterpret_cast<float*>(stage_raw) +
         Traits::kWarps * Traits::kRows * 2 + Traits::kWarps * Traits::kRows * D;
}

// Attends query heads [head0, head0 + rows) of sequence b, whose kv head is kvh, over split
// `split` of p.num_splits of its context: cached K/V rows before the newest are copied before
// the wait for the previous kernel (p.early_kv), Q and the newest row after it. Then calls
// store(row, d, value, lse) once for each of rows x head_dim outputs, from every thread of the
// block (value: the split's softmax-normalised output; lse: its log-sum-exp, log2 domain, -inf
// for an empty split). The caller has called LetDependentsStart. before_wait() runs in every
// thread after the early K/V copies are issued and before the wait: a caller's copies of
// constant operands go there, committed as one cp.async group per thread, which the first
// tile's wait then does not wait for (a warp's second tile's wait and the last wait do).
struct NoEarlyWork {
  __device__ void operator()() const {}
};
template <typename Traits, typename Store, typename BeforeWait = NoEarlyWork>
__device__ __forceinline__ void AttendSplit(const DecodeParams& p, int b, int kvh, int head0,
                                            int rows, int split, unsigned char* smem_raw,
                                            Store&& store, BeforeWait&& before_wait = {}) {
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, TN = Traits::kTileN, kWarps = Traits::kWarps;
  T* sq = reinterpret_cast<T*>(smem_raw);
  unsigned char* stage_raw = smem_raw + Traits::kRows * D * sizeof(T);
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  const int kv_len = p.kv_lens[b];
  // Per-sequence split of [0, kv_len) into num_splits ranges of whole tiles.
  const int split_len = ((kv_len + p.num_splits - 1) / p.num_splits + TN - 1) / TN * TN;
  const int begin = split * split_len;
  const int end = min(kv_len, begin + split_len);
  const int num_tiles = begin < end ? (end - begin + TN - 1) / TN : 0;

  const PagedGeometry geo{p.block_tables + int64_t{b} * p.max_blocks_per_seq, p.block_size,
                          p.block_shift, p.slot_stride, int64_t{kvh} * D};
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  T* my_stages = reinterpret_cast<T*>(stage_raw) + warp * Traits::kStages * 2 * Traits::kTileElems;
  const int chunk = lane % Traits::kChunks, first_row = lane / Traits::kChunks;
  // Lane l holds the block id of row l % 16 of the warp's next tile, read one tile ahead so the
  // copies never wait on the block table; the copying lanes fetch it with a shuffle.
  int next_block = -1;
  auto prefetch = [&](int tile) {
    const int pos = begin + tile * TN + (lane & 15);
    next_block = pos < end ? __ldg(geo.block_table + BlockOf(geo, pos)) : -1;
  };
  // Warp w takes tiles w, w + kWarps, ... The lengths and block tables come from the host
  // before the step, so their reads overlap the previous kernel's end; Q and the newest K/V
  // row are that kernel's output.
  prefetch(warp);

  // The newest row's piece this lane copies after the wait, where an early tile holds it:
  // its cache offset and its element offset in my_stages (-1: none).
  const int newest = kv_len - 1;
  int64_t late_src = -1;
  int late_dst = 0;
  // Issues this warp's tile `tile` into `stage`, then prefetches the block ids of its next one.
  // early: before the wait, so the newest row is left for after it.
  auto issue = [&](int tile, int stage, bool early) {
    if (tile < num_tiles) {
      T* sk = my_stages + stage * 2 * Traits::kTileElems;
      const int start = begin + tile * TN;
#pragma unroll
      for (int i = 0; i < Traits::kRowsPerLane; ++i) {
        const int r = first_row + i * Traits::kRowStep;
        const int block = __shfl_sync(0xffffffffu, next_block, r);
        const bool valid = block >= 0;
        int64_t off = 0;
        if (valid) {
          off = (int64_t{block} * geo.block_size + SlotOf(geo, start + r)) * geo.slot_stride +
                geo.head_offset + chunk * 8;
        }
        const int dst = Swizzle<D>(r, chunk);
        if (early && valid && start + r == newest) {
          late_src = off;
          late_dst = stage * 2 * Traits::kTileElems + dst;
          continue;
        }
        CpAsync16(SmemAddr(sk + dst), k_cache + off, valid);
        CpAsync16(SmemAddr(sk + Traits::kTileElems + dst), v_cache + off, valid);
      }
    }
    CpAsyncCommit();  // possibly empty: keeps the group count uniform for the waits below
    prefetch(tile + kWarps);
  };
  if (p.early_kv) {
    for (int t = 0; t < Traits::kStages; ++t) issue(warp + t * kWarps, t, true);
  }
  before_wait();
  WaitForPrerequisites();
  uint4 late_k, late_v;
  if (late_src >= 0) {
    late_k = __ldcg(reinterpret_cast<const uint4*>(k_cache + late_src));
    late_v = __ldcg(reinterpret_cast<const uint4*>(v_cache + late_src));
  }

  // Q rows (heads) of this block; rows past the group are zero.
  {
    const T* q = static_cast<const T*>(p.q) + int64_t{b} * p.q_row_stride + int64_t{head0} * D;
    constexpr int kChunks = D / 8;
    for (int idx = tid; idx < Traits::kRows * kChunks; idx += Traits::kThreads) {
      const int r = idx / kChunks, c = idx % kChunks;
      uint4 v = make_uint4(0, 0, 0, 0);
      if (r < rows) v = *reinterpret_cast<const uint4*>(q + r * D + c * 8);
      *reinterpret_cast<uint4*>(sq + Swizzle<D>(r, c)) = v;
    }
  }
  if (late_src >= 0) {  // plain stores: no copy in flight targets this row
    *reinterpret_cast<uint4*>(my_stages + late_dst) = late_k;
    *reinterpret_cast<uint4*>(my_stages + late_dst + Traits::kTileElems) = late_v;
  }
  if (!p.early_kv) {
    for (int t = 0; t < Traits::kStages; ++t) issue(warp + t * kWarps, t, false);
  }
  __syncthreads();  // sq written

  uint32_t qf[D / 16][4];
  LoadQFragments<D>(qf, sq, 0, lane);
  float o[Traits::kOTiles][4];
#pragma unroll
  for (int n = 0; n < Traits::kOTiles; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0.0f;
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};

  for (int it = 0, tile = warp; tile < num_tiles; ++it, tile += kWarps) {
    const int stage = it % Traits::kStages;
    CpAsyncWait<Traits::kStages - 1>();
    __syncwarp();
    const T* sk = my_stages + stage * 2 * Traits::kTileElems;
    float s[TN / 8][4];
    QkTile<T, D, TN / 8, 4>(s, qf, sk, lane);
    const int start = begin + tile * TN;
    if (start + TN > end) {
#pragma unroll
      for (int n = 0; n < TN / 8; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (start + n * 8 + (lane % 4) * 2 + (e & 1) >= end) s[n][e] = -INFINITY;
        }
      }
    }
    OnlineSoftmax<TN / 8, Traits::kOTiles, true>(s, m, l, o, p.scale_log2);
    PvTile<T, D, TN / 8>(o, s, sk + Traits::kTileElems, lane);
    __syncwarp();  // every lane is done with this stage before it is refilled
    issue(tile + Traits::kStages * kWarps, stage, false);
  }
  CpAsyncWait<0>();
  __syncthreads();  // stage buffers become the merge area

  float* sm = reinterpret_cast<float*>(stage_raw);  // [kWarps][kRows]
  float* sl = sm + kWarps * Traits::kRows;          // [kWarps][kRows]
  float* so = sl + kWarps * Traits::kRows;          // [kWarps][kRows][D]
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float sum = l[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const int row = lane / 4 + 8 * i;
    if (lane % 4 == 0) {
      sm[warp * Traits::kRows + row] = m[i];
      sl[warp * Traits::kRows + row] = sum;
    }
    float* dst = so + (warp * Traits::kRows + row) * D + (lane % 4) * 2;
#pragma unroll
    for (int n = 0; n < Traits::kOTiles; ++n) {
      *reinterpret_cast<float2*>(dst + n * 8) = make_float2(o[n][2 * i], o[n][2 * i + 1]);
    }
  }
  __syncthreads();

  for (int idx = tid; idx < rows * D; idx += Traits::kThreads) {
    const int row = idx / D, d = idx % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm[w * Traits::kRows + row]);
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kWarps; ++w) {
        const float f = exp2f(sm[w * Traits::kRows + row] - mx);
        sum += sl[w * Traits::kRows + row] * f;
        acc += so[(w * Traits::kRows + row) * D + d] * f;
      }
    }
    const float val = sum > 0.0f ? acc / sum : 0.0f;
    const float lse = sum > 0.0f ? mx + log2f(sum) : -INFINITY;
    store(row, d, val, lse);
  }
}

}  // namespace ite::kernels
