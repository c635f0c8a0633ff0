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

#include "common/env_flag.h"
#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "decode_attention_block.cuh"
#include "device_info.h"
#include "ite/kernels/attention.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

// Most splits one cluster merges (the non-portable cluster size of sm_90).
constexpr int kMaxClusterSplits = 16;

// kCluster: the grid's x extent (the splits) is one cluster, whose blocks merge their partial
// outputs through distributed shared memory and write the final output.
template <typename Traits, bool kCluster>
__global__ void __launch_bounds__(Traits::kThreads, Traits::kMinBlocks)
    DecodeAttentionKernel(const DecodeParams p) {
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  LetDependentsStart();
  const int split = blockIdx.x, b = blockIdx.z;
  const int kvh = blockIdx.y / p.head_chunks;
  const int head0 = kvh * p.group + (blockIdx.y % p.head_chunks) * Traits::kRows;
  const int rows = min(Traits::kRows, (kvh + 1) * p.group - head0);
  // kCluster: the merged rows stay in shared memory for the cluster's merge.
  float* const co = MergedRows<Traits>(smem_raw);  // [kRows][D]
  float* const clse = co + Traits::kRows * D;      // [kRows]
  AttendSplit<Traits>(p, b, kvh, head0, rows, split, smem_raw,
                      [&](int row, int d, float val, float lse) {
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
                      });
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    // Block `split` of the cluster writes every num_splits-th output of the chunk, weighting
    // each block's row by 2^(lse - max) as DecodeCombineKernel does.
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();  // every block's merged rows are in its shared memory
    const int parts = p.num_splits, tid = threadIdx.x;
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
  static const bool off = EnvFlag("ITE_DECODE_NO_CLUSTER");
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
  static const bool late = EnvFlag("ITE_DECODE_LATE_KV");
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

Status CheckDecodeAttentionArgs(const DecodeAttentionArgs& a, const char* what) {
  ITE_RETURN_IF_ERROR(ValidatePagedKvCache(a.cache, what));
  if (a.q == nullptr || a.out == nullptr || a.kv_lens == nullptr || a.block_tables == nullptr) {
    return InvalidArgument("{}: q, out, kv_lens and block_tables must be non-null", what);
  }
  if (a.cache.head_dim != 64 && a.cache.head_dim != 128) {
    return InvalidArgument("{}: head_dim {} unsupported (64 or 128)", what, a.cache.head_dim);
  }
  if (a.num_heads <= 0 || a.num_heads % a.cache.num_kv_heads != 0) {
    return InvalidArgument("{}: num_heads {} is not a multiple of kv heads {}", what, a.num_heads,
                           a.cache.num_kv_heads);
  }
  if (a.batch < 0 || a.batch > 65535 || a.max_blocks_per_seq <= 0) {
    return InvalidArgument("{}: bad batch={} max_blocks_per_seq={}", what, a.batch,
                           a.max_blocks_per_seq);
  }
  if (a.q_row_stride != 0 &&
      (a.q_row_stride < int64_t{a.num_heads} * a.cache.head_dim || a.q_row_stride % 8 != 0)) {
    return InvalidArgument("{}: q_row_stride {} under {} heads x {} or not a multiple of 8", what,
                           a.q_row_stride, a.num_heads, a.cache.head_dim);
  }
  return Status::Ok();
}

DecodeParams DecodeParamsOf(const DecodeAttentionArgs& a) {
  const int group = a.num_heads / a.cache.num_kv_heads;
  const size_t partial_entries = size_t(a.batch) * a.num_heads * a.num_splits;
  float* partial_o = static_cast<float*>(a.workspace);
  return DecodeParams{a.q,
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
}

Status DecodeAttention(const DecodeAttentionArgs& a, cudaStream_t stream) {
  ITE_RETURN_IF_ERROR(CheckDecodeAttentionArgs(a, "DecodeAttention"));
  if (a.num_splits < 1 || a.num_splits > 1024) {
    return InvalidArgument("DecodeAttention: num_splits {} outside [1, 1024]", a.num_splits);
  }
  const size_t need = DecodeWorkspaceBytes(a.batch, a.num_heads, a.cache.head_dim, a.num_splits);
  if (need > 0 && (a.workspace == nullptr || a.workspace_bytes < need)) {
    return InvalidArgument("DecodeAttention: {} splits need a {}-byte workspace, got {}",
                           a.num_splits, need, a.workspace_bytes);
  }
  if (a.batch == 0) return Status::Ok();
  const DecodeParams params = DecodeParamsOf(a);
  if (a.cache.dtype == DType::kF16) return DispatchHeadDim<__half>(a, params, stream);
  return DispatchHeadDim<__nv_bfloat16>(a, params, stream);
}

}  // namespace ite::kernels
