// FlashAttention-2 prefill over the paged KV cache on tensor cores (mma.sync m16n8k16).
//
// A block owns kBlockM = 128 query rows of one (sequence, head); each of its 4 warps owns 32 rows
// (two m16 tiles, so every K/V fragment read from shared memory feeds two mma) and keeps their
// scores, probabilities and output accumulator in registers; Q fragments are re-read from
// shared memory per k-step (registers are full with two row tiles). K and V
// tiles of kBlockN cache positions stream through a two-stage shared-memory ring with cp.async:
// tile j + 2 is requested as soon as tile j is consumed, and its block ids were read one tile
// earlier still, so the copies run a whole tile of compute ahead. 128 rows per block halve the
// K/V traffic from L2 per FLOP against 64 (at 64 rows that traffic nears the L2 bandwidth).
// Only the diagonal tiles are masked; tiles above the diagonal are never loaded, and a warp whose
// rows all precede a tile skips its math. The S x S matrix never exists in memory.
#include "attention_common.cuh"
#include "cuda_check.h"
#include "ite/kernels/attention.h"
#include "prefill_attention_internal.h"

namespace ite::kernels {
namespace {

using internal::PrefillParams;

// kBlockN: 32 at head_dim 128 keeps the two row tiles' scores, output accumulators and the
// copy bookkeeping inside 255 registers without spills; 64 at head_dim 64.
template <typename T_, int kHeadDim_>
struct PrefillTraits {
  using T = T_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarps = 4;
  static constexpr int kMTiles = 2;  // m16 row tiles per warp
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kBlockM = 16 * kMTiles * kWarps;
  static constexpr int kBlockN = kHeadDim_ == 128 ? 32 : 64;
  static constexpr int kNTiles = kBlockN / 8;   // n-tiles of S
  static constexpr int kOTiles = kHeadDim / 8;  // n-tiles of O
  static constexpr int kStages = 2;  // 3 measured no faster on an H200 (226.8 vs 229.8 TFLOP/s)
  static constexpr int kChunks = kHeadDim / 8;         // 16-byte chunks per row
  static constexpr int kRowStep = kThreads / kChunks;  // Q rows between a thread's copies
  // Each warp copies kWarpRows rows of every K/V tile; lane l holds the block id of its row
  // l % kWarpRows.
  static constexpr int kWarpRows = kBlockN / kWarps;
  static constexpr int kLaneRowStep = 32 / kChunks;
  static constexpr int kRowsPerLane = kWarpRows / kLaneRowStep;
  static_assert(kWarpRows % kLaneRowStep == 0 && kWarpRows <= 32, "whole rows per lane");
  static constexpr size_t kSmemBytes =
      size_t{kBlockM + 2 * kStages * kBlockN} * kHeadDim * sizeof(T);
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kBlockN % 16 == 0, "P feeds whole k-steps of 16");
};

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads) PrefillAttentionKernel(const PrefillParams p) {
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, BM = Traits::kBlockM, BN = Traits::kBlockN;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sq = reinterpret_cast<T*>(smem_raw);
  T* sk = sq + BM * D;                    // [kStages][BN][D]
  T* sv = sk + Traits::kStages * BN * D;  // [kStages][BN][D]

  // Grid (head, sequence, query block), query blocks slowest and heaviest (most KV tiles)
  // first: the grid's last wave holds the cheap blocks, and the query heads that share a KV head
  // run side by side, so their K/V reads hit L2.
  const int h = blockIdx.x, b = blockIdx.y;
  const int m_block = gridDim.z - 1 - blockIdx.z;
  const int q_begin = p.cu_seqlens_q[b];
  const int q_len = p.cu_seqlens_q[b + 1] - q_begin;
  const int m0 = m_block * BM;
  if (m0 >= q_len) return;
  const int kv_len = p.kv_lens[b];
  const int start_pos = kv_len - q_len;
  const int kvh = h / p.group;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const PagedGeometry geo{p.block_tables + int64_t{b} * p.max_blocks_per_seq, p.block_size,
                          p.block_shift, p.slot_stride, int64_t{kvh} * D};
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const int64_t q_stride = int64_t{p.num_heads} * D;
  const int chunk = tid % Traits::kChunks, first_row = tid / Traits::kChunks;

  // Q tile (rows past q_len are zero).
  {
    const T* q =
        static_cast<const T*>(p.q) + (int64_t{q_begin} + m0) * p.q_row_stride + int64_t{h} * D;
    for (int r = first_row; r < BM; r += Traits::kRowStep) {
      const bool valid = m0 + r < q_len;
      CpAsync16(SmemAddr(sq + Swizzle<D>(r, chunk)), valid ? q + r * p.q_row_stride + chunk * 8 : q,
                valid);
    }
  }
  // Causal: the last query row of this block sees positions < kv_end.
  const int kv_end = min(kv_len, start_pos + min(q_len, m0 + BM));
  const int num_tiles = (kv_end + BN - 1) / BN;
  // Block id of row warp * kWarpRows + lane % kWarpRows of the next tile to issue, read a tile
  // ahead so the copies never wait on the block table.
  constexpr int WR = Traits::kWarpRows;
  int next_block = -1;
  auto prefetch = [&](int tile) {
    const int pos = tile * BN + warp * WR + lane % WR;
    next_block = pos < kv_len ? __ldg(geo.block_table + BlockOf(geo, pos)) : -1;
  };
  const int lane_chunk = lane % Traits::kChunks, lane_row = lane / Traits::kChunks;
  auto issue = [&](int tile) {  // K and V of `tile` into stage tile % kStages
    if (tile < num_tiles) {
      const int stage = tile % Traits::kStages;
#pragma unroll
      for (int i = 0; i < Traits::kRowsPerLane; ++i) {
        const int rw = lane_row + i * Traits::kLaneRowStep;
        const int block = __shfl_sync(0xffffffffu, next_block, rw);
        const int r = warp * WR + rw;
        const bool valid = block >= 0;
        int64_t off = 0;
        if (valid) {
          off = (int64_t{block} * geo.block_size + SlotOf(geo, tile * BN + r)) * geo.slot_stride +
                geo.head_offset + lane_chunk * 8;
        }
        const int dst = stage * BN * D + Swizzle<D>(r, lane_chunk);
        CpAsync16(SmemAddr(sk + dst), k_cache + off, valid);
        CpAsync16(SmemAddr(sv + dst), v_cache + off, valid);
      }
    }
    CpAsyncCommit();  // possibly empty, so that every iteration waits on the same count
    prefetch(tile + 1);
  };
  prefetch(0);
  for (int t = 0; t < Traits::kStages; ++t) issue(t);

  constexpr int MT = Traits::kMTiles, NT = Traits::kNTiles, OT = Traits::kOTiles;
  float o[MT][OT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int n = 0; n < OT; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) o[mt][n][e] = 0.0f;
    }
  }
  float m[MT][2], l[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
  }
  const int warp_row0 = warp * 16 * MT;  // first row of this warp within the block
  const int row_lo = m0 + warp_row0 + lane / 4;
  const int warp_last_pos = start_pos + min(q_len - 1, m0 + warp_row0 + 16 * MT - 1);
  const bool warp_has_rows = m0 + warp_row0 < q_len;
  const int first_masked = start_pos + m0;  // tiles ending past this need the causal mask

  for (int j = 0; j < num_tiles; ++j) {
    const int tile_start = j * BN;
    const int stage = j % Traits::kStages;
    CpAsyncWait<Traits::kStages - 1>();
    __syncthreads();  // tile j (and Q) landed for every thread's copies
    if (warp_has_rows && tile_start <= warp_last_pos) {
      const T* skt = sk + stage * BN * D;
      const T* svt = sv + stage * BN * D;
      float s[MT][NT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) s[mt][n][e] = 0.0f;
        }
      }
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          LdMatrixX4(a[mt], SmemAddr(sq + Swizzle<D>(warp_row0 + mt * 16 + (lane & 7) +
                                                         ((lane >> 3) & 1) * 8,
                                                     ks * 2 + (lane >> 4))));
        }
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {
          uint32_t b[4];
          LdMatrixX4(b, SmemAddr(skt + Swizzle<D>(np * 16 + (lane & 7) + (lane >> 4) * 8,
                                                  ks * 2 + ((lane >> 3) & 1))));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma16816<T>(s[mt][2 * np], a[mt], b[0], b[1]);
            Mma16816<T>(s[mt][2 * np + 1], a[mt], b[2], b[3]);
          }
        }
      }
      if (tile_start + BN > first_masked || tile_start + BN > kv_len) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
          for (int n = 0; n < NT; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int kv = tile_start + n * 8 + (lane % 4) * 2 + (e & 1);
              const int qpos = start_pos + row_lo + mt * 16 + (e / 2) * 8;
              if (kv > qpos || kv >= kv_len) s[mt][n][e] = -INFINITY;
            }
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        OnlineSoftmax<NT, OT>(s[mt], m[mt], l[mt], o[mt], p.scale_log2);
      }
#pragma unroll
      for (int kk = 0; kk < NT / 2; ++kk) {
        uint32_t a[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          a[mt][0] = PackFloat2<T>(s[mt][2 * kk][0], s[mt][2 * kk][1]);
          a[mt][1] = PackFloat2<T>(s[mt][2 * kk][2], s[mt][2 * kk][3]);
          a[mt][2] = PackFloat2<T>(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
          a[mt][3] = PackFloat2<T>(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int dp = 0; dp < D / 16; ++dp) {
          uint32_t b[4];
          LdMatrixX4Trans(b, SmemAddr(svt + Swizzle<D>(kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8,
                                                       dp * 2 + (lane >> 4))));
#pragma unroll
          for (int mt = 0; mt < MT; ++mt) {
            Mma16816<T>(o[mt][2 * dp], a[mt], b[0], b[1]);
            Mma16816<T>(o[mt][2 * dp + 1], a[mt], b[2], b[3]);
          }
        }
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
    issue(j + Traits::kStages);
  }
  CpAsyncWait<0>();

  T* out = static_cast<T*>(p.out) + int64_t{q_begin} * q_stride + int64_t{h} * D;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int i = 0; i < 2; ++i) {
      float sum = l[mt][i];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int row = row_lo + mt * 16 + 8 * i;
      if (row >= q_len) continue;
      T* dst = out + int64_t{row} * q_stride + (lane % 4) * 2;
#pragma unroll
      for (int n = 0; n < OT; ++n) {
        *reinterpret_cast<uint32_t*>(dst + n * 8) =
            PackFloat2<T>(o[mt][n][2 * i] * inv, o[mt][n][2 * i + 1] * inv);
      }
    }
  }
}

template <typename Traits>
Status Launch(const PrefillAttentionArgs& a, const PrefillParams& params, cudaStream_t stream) {
  auto kernel = PrefillAttentionKernel<Traits>;
  if (Traits::kSmemBytes > 48 * 1024) {
    ITE_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
        kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int{Traits::kSmemBytes}));
  }
  const dim3 grid(a.num_heads, a.batch, (a.max_q_len + Traits::kBlockM - 1) / Traits::kBlockM);
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
  return LaunchStatus("PrefillAttentionKernel");
}

template <typename T>
Status DispatchHeadDim(const PrefillAttentionArgs& a, const PrefillParams& params,
                       cudaStream_t stream) {
  if (a.cache.head_dim == 64) return Launch<PrefillTraits<T, 64>>(a, params, stream);
  return Launch<PrefillTraits<T, 128>>(a, params, stream);
}

}  // namespace

Status PrefillAttention(const PrefillAttentionArgs& a, cudaStream_t stream) {
  ITE_RETURN_IF_ERROR(ValidatePagedKvCache(a.cache, "PrefillAttention"));
  if (a.q == nullptr || a.out == nullptr || a.cu_seqlens_q == nullptr || a.kv_lens == nullptr ||
      a.block_tables == nullptr) {
    return InvalidArgument(
        "PrefillAttention: q, out, cu_seqlens_q, kv_lens and block_tables "
        "must be non-null");
  }
  if (a.cache.head_dim != 64 && a.cache.head_dim != 128) {
    return InvalidArgument("PrefillAttention: head_dim {} unsupported (64 or 128)",
                           a.cache.head_dim);
  }
  if (a.num_heads <= 0 || a.num_heads % a.cache.num_kv_heads != 0) {
    return InvalidArgument("PrefillAttention: num_heads {} is not a multiple of kv heads {}",
                           a.num_heads, a.cache.num_kv_heads);
  }
  if (a.batch < 0 || a.max_q_len < 0 || a.max_blocks_per_seq <= 0) {
    return InvalidArgument("PrefillAttention: bad batch={} max_q_len={} max_blocks_per_seq={}",
                           a.batch, a.max_q_len, a.max_blocks_per_seq);
  }
  if (a.batch > 65535 || a.max_q_len > 65535 * 128) {
    return InvalidArgument("PrefillAttention: batch {} or max_q_len {} over the grid limits",
                           a.batch, a.max_q_len);
  }
  if (a.q_row_stride != 0 &&
      (a.q_row_stride < int64_t{a.num_heads} * a.cache.head_dim || a.q_row_stride % 8 != 0)) {
    return InvalidArgument(
        "PrefillAttention: q_row_stride {} under {} heads x {} or not a multiple of 8",
        a.q_row_stride, a.num_heads, a.cache.head_dim);
  }
  if (a.batch == 0 || a.max_q_len == 0) return Status::Ok();
  PrefillParams params{
      a.q,
      a.out,
      a.cache.k,
      a.cache.v,
      a.cu_seqlens_q,
      a.kv_lens,
      a.block_tables,
      a.max_blocks_per_seq,
      a.cache.block_size,
      Log2IfPowerOfTwo(a.cache.block_size),
      a.num_heads,
      a.num_heads / a.cache.num_kv_heads,
      int64_t{a.cache.num_kv_heads} * a.cache.head_dim,
      a.scale * 1.4426950408889634f,
      a.q_row_stride > 0 ? a.q_row_stride : int64_t{a.num_heads} * a.cache.head_dim};
  const bool wgmma = internal::PrefillSm90Available();
  if (a.kernel == PrefillKernel::kWgmma && !wgmma) {
    return FailedPrecondition(
        "PrefillAttention: the wgmma kernel needs an sm_90 device and a build with sm_90a");
  }
  // kAuto: wgmma at head_dim 128 only; at 64 the mma.sync kernel measured faster on an H200
  // (2k: 238 vs 209 TFLOP/s, 8k: 272 vs 253; docs/perf.md).
  const bool use_wgmma = a.kernel == PrefillKernel::kWgmma ||
                         (a.kernel == PrefillKernel::kAuto && wgmma && a.cache.head_dim == 128);
  if (use_wgmma) return internal::PrefillAttentionSm90(a, params, stream);
  if (a.cache.dtype == DType::kF16) return DispatchHeadDim<__half>(a, params, stream);
  return DispatchHeadDim<__nv_bfloat16>(a, params, stream);
}

bool PrefillWgmmaAvailable() { return internal::PrefillSm90Available(); }

}  // namespace ite::kernels
