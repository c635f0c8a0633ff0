// Split-KV flash-decoding over the paged cache, on tensor cores.
//
// Grid (split, kv head x head chunk, sequence). The up-to-16 query heads that share a kv head
// are the 16 rows of one m16 tile, so each K/V byte is read once for the whole GQA group (rows
// past the group are zero and discarded). The split's KV range is cut into tiles of 16 positions
// that the block's warps take in turn; each warp streams its tiles through its own two-stage
// cp.async buffer and keeps an online-softmax state in registers. The warps then merge through
// shared memory, and the block writes either the final output (one split) or a normalised
// partial output plus its log-sum-exp, which DecodeCombineKernel merges across splits. On sm_90
// the splits of a (sequence, head chunk) may instead form one thread-block cluster that merges
// through distributed shared memory, so the step has no second kernel (at batch 1 and short
// context the merge kernel cost about as much as the attention itself).
#include <cooperative_groups.h>

#include <algorithm>
#include <cstdlib>

#include "attention_common.cuh"
#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "device_info.h"
#include "ite/kernels/attention.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

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

// Most splits one cluster merges (the non-portable cluster size of sm_90).
constexpr int kMaxClusterSplits = 16;

// kCluster: the grid's x extent (the splits) is one cluster, whose blocks merge their partial
// outputs through distributed shared memory and write the final output.
template <typename Traits, bool kCluster>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    DecodeAttentionKernel(const DecodeParams p) {
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, TN = Traits::kTileN, kWarps = Traits::kWarps;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  LetDependentsStart();
  T* sq = reinterpret_cast<T*>(smem_raw);
  unsigned char* stage_raw = smem_raw + Traits::kRows * D * sizeof(T);

  const int split = blockIdx.x, b = blockIdx.z;
  const int kvh = blockIdx.y / p.head_chunks;
  const int head0 = kvh * p.group + (blockIdx.y % p.head_chunks) * Traits::kRows;
  const int rows = min(Traits::kRows, (kvh + 1) * p.group - head0);
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
  float* co = so + kWarps * Traits::kRows * D;      // [kRows][D], kCluster only
  float* clse = co + Traits::kRows * D;             // [kRows]
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
    const int64_t bh = int64_t{b} * p.num_heads + head0 + row;
    if constexpr (kCluster) {
      co[row * D + d] = val;
      if (d == 0) clse[row] = lse;
    } else if (p.num_splits == 1) {
      static_cast<T*>(p.out)[bh * D + d] = FromFloat<T>(val);
    } else {
      p.partial_o[(bh * p.num_splits + split) * D + d] = val;
      if (d == 0) p.partial_lse[bh * p.num_splits + split] = lse;
    }
  }
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    // Block `split` of the cluster writes every num_splits-th output of the chunk, weighting
    // each block's row by 2^(lse - max) as DecodeCombineKernel does.
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();  // every block's merged rows are in its shared memory
    const int parts = p.num_splits;
    for (int idx = split * Traits::kThreads + tid; idx < rows * D;
         idx += parts * Traits::kThreads) {
      const int row = idx / D, d = idx % D;
      float lse[kMaxClusterSplits];
      float mx = -INFINITY;
#pragma unroll
      for (int s = 0; s < kMaxClusterSplits; ++s) {
        lse[s] = s < parts ? *cluster.map_shared_rank(clse + row, s) : -INFINITY;
        mx = fmaxf(mx, lse[s]);
      }
      float sum = 0.0f, acc = 0.0f;
      if (mx != -INFINITY) {
#pragma unroll
        for (int s = 0; s < kMaxClusterSplits; ++s) {
          if (s < parts) {
            const float w = exp2f(lse[s] - mx);
            sum += w;
            acc += w * *cluster.map_shared_rank(co + row * D + d, s);
          }
        }
      }
      const int64_t bh = int64_t{b} * p.num_heads + head0 + row;
      static_cast<T*>(p.out)[bh * D + d] = FromFloat<T>(sum > 0.0f ? acc / sum : 0.0f);
    }
    cluster.sync();  // no block exits, freeing its rows, before the others have read them
#else
    __trap();  // launched only where ClusterLimit found the cluster code
#endif
  }
}

// Merges the per-split partial outputs of one (sequence, head): weights 2^(lse_s - max).
template <typename T>
__global__ void DecodeCombineKernel(const float* __restrict__ partial_o,
                                    const float* __restrict__ partial_lse, int num_splits,
                                    int head_dim, T* __restrict__ out) {
  LetDependentsStart();
  WaitForPrerequisites();
  const int64_t bh = blockIdx.x;
  const float* lse = partial_lse + bh * num_splits;
  float mx = -INFINITY;
  for (int s = 0; s < num_splits; ++s) mx = fmaxf(mx, lse[s]);
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float sum = 0.0f, acc = 0.0f;
    if (mx != -INFINITY) {
      for (int s = 0; s < num_splits; ++s) {
        const float w = exp2f(lse[s] - mx);
        sum += w;
        acc += w * partial_o[(bh * num_splits + s) * head_dim + d];
      }
    }
    out[bh * head_dim + d] = FromFloat<T>(sum > 0.0f ? acc / sum : 0.0f);
  }
}

// Whether the splits merge in a cluster: 2..kMaxClusterSplits of them, where the device runs
// clusters of that size of this kernel.
template <typename Traits>
bool ClusterMerges(int num_splits) {
  static const bool off = [] {
    const char* v = std::getenv("ITE_DECODE_NO_CLUSTER");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  if (off || num_splits < 2 || num_splits > kMaxClusterSplits) return false;
  constexpr auto kernel = DecodeAttentionKernel<Traits, true>;
  return num_splits <= ClusterLimit<kernel>(Traits::kThreads, Traits::kSmemBytes);
}

template <typename Traits, bool kCluster>
Status SetSmem() {
  if (Traits::kSmemBytes <= 48 * 1024) return Status::Ok();
  return CudaStatus(
      cudaFuncSetAttribute(DecodeAttentionKernel<Traits, kCluster>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, int{Traits::kSmemBytes}),
      "DecodeAttentionKernel shared memory");
}

template <typename Traits>
Status Launch(const DecodeAttentionArgs& a, const DecodeParams& params, cudaStream_t stream) {
  using T = typename Traits::T;
  const dim3 grid(a.num_splits, a.cache.num_kv_heads * params.head_chunks, a.batch);
  // The shared-memory opt-in (per device) comes before the cluster query, which counts it.
  if (a.cluster_merge && a.num_splits > 1) ITE_RETURN_IF_ERROR((SetSmem<Traits, true>()));
  if (a.cluster_merge && ClusterMerges<Traits>(a.num_splits)) {
    return CudaStatus(
        LaunchClustered(DecodeAttentionKernel<Traits, true>, grid, Traits::kThreads,
                        Traits::kSmemBytes, a.num_splits, /*dependent=*/true, stream, params),
        "DecodeAttentionKernel (cluster)");
  }
  ITE_RETURN_IF_ERROR((SetSmem<Traits, false>()));
  ITE_RETURN_IF_ERROR(
      CudaStatus(LaunchDependent(DecodeAttentionKernel<Traits, false>, grid, Traits::kThreads,
                                 Traits::kSmemBytes, stream, params),
                 "DecodeAttentionKernel"));
  if (a.num_splits > 1) {
    ITE_RETURN_IF_ERROR(
        CudaStatus(LaunchDependent(DecodeCombineKernel<T>, a.batch * a.num_heads, Traits::kHeadDim,
                                   0, stream, static_cast<const float*>(params.partial_o),
                                   static_cast<const float*>(params.partial_lse), a.num_splits,
                                   Traits::kHeadDim, static_cast<T*>(a.out)),
                   "DecodeCombineKernel"));
  }
  return Status::Ok();
}

// Whether `blocks` unsplit blocks at head_dim 128 fill one wave of the 3-warp kernel (four
// resident per multiprocessor) but not of the 4-warp one (three): then the 3-warp kernel saves
// the half-empty second wave (batch 64 x 512 on an H200: see docs/perf.md).
bool OneWaveWithThreeWarps(int64_t blocks) {
  const int64_t sms = CurrentDevice().multiprocessors;
  return sms > 0 && blocks > 3 * sms && blocks <= 4 * sms;
}

template <typename T>
Status DispatchHeadDim(const DecodeAttentionArgs& a, const DecodeParams& params,
                       cudaStream_t stream) {
  if (a.cache.head_dim == 64) return Launch<DecodeTraits<T, 64>>(a, params, stream);
  const int64_t blocks = int64_t{a.batch} * a.cache.num_kv_heads * params.head_chunks;
  if (a.num_splits == 1 && OneWaveWithThreeWarps(blocks)) {
    return Launch<DecodeTraits<T, 128, 3>>(a, params, stream);
  }
  return Launch<DecodeTraits<T, 128>>(a, params, stream);
}

bool LateKvForced() {
  static const bool late = [] {
    const char* v = std::getenv("ITE_DECODE_LATE_KV");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return late;
}

}  // namespace

int32_t DecodeNumSplits(int32_t batch, int32_t num_heads, int32_t num_kv_heads, int32_t head_dim,
                        int32_t max_kv_len, int32_t num_multiprocessors) {
  if (batch <= 0 || num_kv_heads <= 0 || max_kv_len <= 0) return 1;
  const int group = std::max(1, num_heads / num_kv_heads);
  const int64_t blocks = int64_t{batch} * num_kv_heads * ((group + 15) / 16);
  const int64_t sms = std::max(1, num_multiprocessors);
  // A split shorter than one tile per warp (64 positions) costs more in merging than it gains.
  const int64_t max_by_len = std::min<int64_t>(128, std::max(1, max_kv_len / 64));
  // Tuned on an H200 with `kernel_bench --decode-splits` (docs/perf.md), head_dim 128, 32:8
  // heads, batch 1-256, context 512-32k. Few blocks: about two per multiprocessor in all, which
  // was best or within 5% of it in every such case (batch 1: 32 splits at 16k-32k; batch 16: 2).
  if (blocks < 2 * sms) {
    const int64_t splits = (2 * sms + blocks / 2) / blocks;
    return static_cast<int32_t>(std::clamp<int64_t>(splits, 1, max_by_len));
  }
  // Enough blocks already. With under two waves of resident blocks (about three per
  // multiprocessor at head_dim 128, more at 64) the half-empty last wave costs, so split where
  // that makes it clearly fuller, keeping at least 1024 positions per split (shorter ones lose
  // more to the per-block start-up and the merge): batch 64 x 4k takes 3 splits (+16%). With
  // more waves, blocks finishing at different times smooth the tail: batch 256 splits never won.
  const int64_t slots = sms * (head_dim <= 64 ? 4 : 3);
  if (blocks >= 2 * slots) return 1;
  auto fullness = [&](int64_t s) {
    const int64_t total = blocks * s;
    return double(total) / double((total + slots - 1) / slots * slots);
  };
  int64_t splits = 1;
  double best = fullness(1) + 0.1;
  for (int64_t s = 2; s <= 4 && max_kv_len / s >= 1024; ++s) {
    if (fullness(s) > best) {
      best = fullness(s);
      splits = s;
    }
  }
  return static_cast<int32_t>(splits);
}

size_t DecodeWorkspaceBytes(int32_t batch, int32_t num_heads, int32_t head_dim,
                            int32_t num_splits) {
  if (num_splits <= 1) return 0;
  const size_t entries = size_t(batch) * num_heads * num_splits;
  return entries * head_dim * sizeof(float) + entries * sizeof(float);
}

Status DecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  ITE_RETURN_IF_ERROR(ValidatePagedKvCache(a.cache, "DecodeAttention"));
  if (a.q == nullptr || a.out == nullptr || a.kv_lens == nullptr || a.block_tables == nullptr) {
    return InvalidArgument("DecodeAttention: q, out, kv_lens and block_tables must be non-null");
  }
  if (a.cache.head_dim != 64 && a.cache.head_dim != 128) {
    return InvalidArgument("DecodeAttention: head_dim {} unsupported (64 or 128)",
                           a.cache.head_dim);
  }
  if (a.num_heads <= 0 || a.num_heads % a.cache.num_kv_heads != 0) {
    return InvalidArgument("DecodeAttention: num_heads {} is not a multiple of kv heads {}",
                           a.num_heads, a.cache.num_kv_heads);
  }
  if (a.batch < 0 || a.batch > 65535 || a.max_blocks_per_seq <= 0) {
    return InvalidArgument("DecodeAttention: bad batch={} max_blocks_per_seq={}", a.batch,
                           a.max_blocks_per_seq);
  }
  if (a.num_splits < 1 || a.num_splits > 1024) {
    return InvalidArgument("DecodeAttention: num_splits {} outside [1, 1024]", a.num_splits);
  }
  const size_t need = DecodeWorkspaceBytes(a.batch, a.num_heads, a.cache.head_dim, a.num_splits);
  if (need > 0 && (a.workspace == nullptr || a.workspace_bytes < need)) {
    return InvalidArgument("DecodeAttention: {} splits need a {}-byte workspace, got {}",
                           a.num_splits, need, a.workspace_bytes);
  }
  if (a.q_row_stride != 0 &&
      (a.q_row_stride < int64_t{a.num_heads} * a.cache.head_dim || a.q_row_stride % 8 != 0)) {
    return InvalidArgument(
        "DecodeAttention: q_row_stride {} under {} heads x {} or not a multiple of 8",
        a.q_row_stride, a.num_heads, a.cache.head_dim);
  }
  if (a.batch == 0) return Status::Ok();
  const int group = a.num_heads / a.cache.num_kv_heads;
  const size_t partial_entries = size_t(a.batch) * a.num_heads * a.num_splits;
  float* partial_o = static_cast<float*>(a.workspace);
  DecodeParams params{a.q,
                      a.q_row_stride > 0 ? a.q_row_stride : int64_t{a.num_heads} * a.cache.head_dim,
                      a.out,
                      a.cache.k,
                      a.cache.v,
                      a.kv_lens,
                      a.block_tables,
                      partial_o,
                      partial_o ? partial_o + partial_entries * a.cache.head_dim : nullptr,
                      a.max_blocks_per_seq,
                      a.cache.block_size,
                      Log2IfPowerOfTwo(a.cache.block_size),
                      a.num_heads,
                      group,
                      (group + 15) / 16,
                      a.num_splits,
                      int64_t{a.cache.num_kv_heads} * a.cache.head_dim,
                      a.scale * 1.4426950408889634f,
                      a.early_kv && !LateKvForced()};
  if (a.cache.dtype == DType::kF16) return DispatchHeadDim<__half>(a, params, stream);
  return DispatchHeadDim<__nv_bfloat16>(a, params, stream);
}

}  // namespace ite::kernels
