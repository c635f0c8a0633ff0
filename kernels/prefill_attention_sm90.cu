// FlashAttention-2 prefill over the paged KV cache on Hopper warpgroup MMA (wgmma, sm_90a).
//
// Same algorithm and grid as prefill_attention.cu (causal, GQA, cached prefix read from paged
// blocks, online softmax, no S x S matrix in memory), with the tensor-core work moved from
// warp-level mma.sync to warpgroup-level wgmma.mma_async, which issues a 64 x N x 16 product per
// instruction straight from shared memory and runs asynchronously to the issuing warps:
//  * a block owns kBlockM = 128 query rows of one (sequence, head); each of its two warpgroups
//    owns 64 rows and computes S = Q K^T for a 128-position K tile with Q and K both read by
//    wgmma from shared memory (m64n128k16, head_dim / 16 instructions),
//  * the softmax runs on the fp32 S fragments in registers (they have mma.sync's layout, so
//    attention_common.cuh's OnlineSoftmax is reused), and P, converted to bf16/f16 in
//    registers, is the A operand of O += P V (m64n{head_dim}k16, V transposed from shared memory),
//  * K and V tiles come from the paged cache through a two-stage cp.async ring (wgmma needs the
//    128-byte-swizzled layout of wgmma_utils.cuh; the copies write it directly).
// The two warpgroups meet only at the two barriers per tile that guard the ring.
#include <mutex>
#include <vector>

#include "attention_common.cuh"
#include "cuda_check.h"
#include "prefill_attention_internal.h"
#include "wgmma_utils.cuh"

namespace ite::kernels::internal {

// (Outside the unnamed namespace: the sm_80..89 passes compile the kernel body away, and nvcc
// would flag the then-unused members of a class with internal linkage.)
template <typename T_, int kHeadDim_>
struct Sm90PrefillTraits {
  using T = T_;
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kWarpGroups = 2;
  static constexpr int kThreads = 128 * kWarpGroups;
  static constexpr int kBlockM = 64 * kWarpGroups;
  static constexpr int kBlockN = 128;
  // Two: three measured no faster on an H200 (hd128 2k/8k: 266/326 vs 270/323 TFLOP/s), and
  // overlapping tile j's softmax with tile j - 1's P.V (FlashAttention-3's intra-warpgroup
  // pipelining, which needs the third stage) measured slower still (252/304).
  static constexpr int kStages = 2;
  static constexpr int kNTiles = kBlockN / 8;   // n8 tiles of S
  static constexpr int kOTiles = kHeadDim / 8;  // n8 tiles of O
  static constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
  static constexpr int kRowStep = kThreads / kChunks;
  static constexpr int kCopyRows = kBlockN / kRowStep;  // K/V rows one thread copies per tile
  static constexpr int kQRows = kBlockM / kRowStep;
  static constexpr int kTileElems = kBlockN * kHeadDim;
  // + 1024: the swizzle atoms must start 1024-byte aligned; the base is rounded up in-kernel.
  static constexpr size_t kSmemBytes =
      size_t{kBlockM * kHeadDim + 2 * kStages * kTileElems} * sizeof(T) + 1024;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kBlockN % kRowStep == 0 && kBlockM % kRowStep == 0, "whole copy passes");
};

namespace {

template <typename Traits>
__global__ void __launch_bounds__(Traits::kThreads, 1)
    PrefillAttentionSm90Kernel(const PrefillParams p) {
#ifdef ITE_SM90A_DEVICE
  using T = typename Traits::T;
  constexpr int D = Traits::kHeadDim, BM = Traits::kBlockM, BN = Traits::kBlockN;
  constexpr int NT = Traits::kNTiles, OT = Traits::kOTiles, TE = Traits::kTileElems;
  extern __shared__ __align__(1024) unsigned char smem_raw[];
  const uint32_t raw_addr = SmemAddr(smem_raw);
  T* sq = reinterpret_cast<T*>(smem_raw + ((1024 - (raw_addr & 1023)) & 1023));
  T* sk = sq + BM * D;                // [kStages][BN x D]
  T* sv = sk + Traits::kStages * TE;  // [kStages][BN x D]

  // Grid as in prefill_attention.cu: heads fastest, heaviest query blocks first.
  const int h = blockIdx.x, b = blockIdx.y;
  const int m_block = gridDim.z - 1 - blockIdx.z;
  const int q_begin = p.cu_seqlens_q[b];
  const int q_len = p.cu_seqlens_q[b + 1] - q_begin;
  const int m0 = m_block * BM;
  if (m0 >= q_len) return;
  const int kv_len = p.kv_lens[b];
  const int start_pos = kv_len - q_len;
  const int kvh = h / p.group;
  const int tid = threadIdx.x, wg = tid / 128, warp = (tid % 128) / 32, lane = tid % 32;
  const PagedGeometry geo{p.block_tables + int64_t{b} * p.max_blocks_per_seq, p.block_size,
                          p.block_shift, p.slot_stride, int64_t{kvh} * D};
  const T* k_cache = static_cast<const T*>(p.k_cache);
  const T* v_cache = static_cast<const T*>(p.v_cache);
  const int64_t q_stride = int64_t{p.num_heads} * D;
  const int chunk = tid % Traits::kChunks, row0 = tid / Traits::kChunks;

  {  // Q tile, rows past q_len zero; lands with the first K/V group.
    const T* q =
        static_cast<const T*>(p.q) + (int64_t{q_begin} + m0) * p.q_row_stride + int64_t{h} * D;
#pragma unroll
    for (int i = 0; i < Traits::kQRows; ++i) {
      const int r = row0 + i * Traits::kRowStep;
      const bool valid = m0 + r < q_len;
      CpAsync16(SmemAddr(sq + Sw128Offset<BM>(r, chunk)),
                valid ? q + r * p.q_row_stride + chunk * 8 : q, valid);
    }
  }
  const int kv_end = min(kv_len, start_pos + min(q_len, m0 + BM));
  const int num_tiles = (kv_end + BN - 1) / BN;
  // Block ids of this thread's copy rows of the next tile to issue, read a tile ahead.
  int next_block[Traits::kCopyRows];
  auto prefetch = [&](int tile) {
#pragma unroll
    for (int i = 0; i < Traits::kCopyRows; ++i) {
      const int pos = tile * BN + row0 + i * Traits::kRowStep;
      next_block[i] = pos < kv_len ? __ldg(geo.block_table + BlockOf(geo, pos)) : -1;
    }
  };
  auto issue = [&](int tile) {
    if (tile < num_tiles) {
      const int stage = tile % Traits::kStages;
#pragma unroll
      for (int i = 0; i < Traits::kCopyRows; ++i) {
        const int r = row0 + i * Traits::kRowStep;
        const bool valid = next_block[i] >= 0;
        int64_t off = 0;
        if (valid) {
          off = (int64_t{next_block[i]} * geo.block_size + SlotOf(geo, tile * BN + r)) *
                    geo.slot_stride +
                geo.head_offset + chunk * 8;
        }
        const int dst = stage * TE + Sw128Offset<BN>(r, chunk);
        CpAsync16(SmemAddr(sk + dst), k_cache + off, valid);
        CpAsync16(SmemAddr(sv + dst), v_cache + off, valid);
      }
    }
    CpAsyncCommit();  // possibly empty, so that every iteration waits on the same count
    prefetch(tile + 1);
  };
  prefetch(0);
#pragma unroll
  for (int t = 0; t < Traits::kStages; ++t) issue(t);

  float o[OT][4];
#pragma unroll
  for (int n = 0; n < OT; ++n) {
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] = 0.0f;
  }
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int wg_row0 = wg * 64;  // first row of this warpgroup within the block
  const int row_lo = m0 + wg_row0 + warp * 16 + lane / 4;
  const int wg_last_pos = start_pos + min(q_len - 1, m0 + wg_row0 + 63);
  const bool wg_has_rows = m0 + wg_row0 < q_len;
  const int first_masked = start_pos + m0;
  const uint32_t sq_addr = SmemAddr(sq), sk_addr = SmemAddr(sk), sv_addr = SmemAddr(sv);
  constexpr uint32_t kElem = sizeof(T);

  for (int j = 0; j < num_tiles; ++j) {
    const int tile_start = j * BN;
    const int stage = j % Traits::kStages;
    CpAsyncWait<Traits::kStages - 1>();
    FenceProxyAsyncShared();
    __syncthreads();  // tile j (and Q) landed for every thread's copies
    if (wg_has_rows && tile_start <= wg_last_pos) {
      float s[NT][4];
#pragma unroll
      for (int n = 0; n < NT; ++n) {
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = 0.0f;
      }
      WgmmaFence();
#pragma unroll
      for (int ks = 0; ks < D / 16; ++ks) {
        const uint32_t col = (ks / 4) * 64, step = (ks % 4) * 32;
        const uint64_t da = Sw128Desc(sq_addr + (col * BM + wg_row0 * 64) * kElem + step, 0);
        const uint64_t db = Sw128Desc(sk_addr + (stage * TE + col * BN) * kElem + step, 0);
        WgmmaSS<T, NT>(s, da, db, ks > 0);
      }
      WgmmaCommit();
      WgmmaWait<0>();
      if (tile_start + BN > first_masked || tile_start + BN > kv_len) {
#pragma unroll
        for (int n = 0; n < NT; ++n) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int kv = tile_start + n * 8 + (lane % 4) * 2 + (e & 1);
            const int qpos = start_pos + row_lo + (e / 2) * 8;
            if (kv > qpos || kv >= kv_len) s[n][e] = -INFINITY;
          }
        }
      }
      OnlineSoftmax<NT, OT>(s, m, l, o, p.scale_log2);
      uint32_t pa[NT / 2][4];
#pragma unroll
      for (int kk = 0; kk < NT / 2; ++kk) {
        pa[kk][0] = PackFloat2<T>(s[2 * kk][0], s[2 * kk][1]);
        pa[kk][1] = PackFloat2<T>(s[2 * kk][2], s[2 * kk][3]);
        pa[kk][2] = PackFloat2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[kk][3] = PackFloat2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      }
      WgmmaFence();
#pragma unroll
      for (int kk = 0; kk < NT / 2; ++kk) {
        // 16 cache positions (rows of V) per step; V's 64-wide column blocks lie BN rows apart.
        const uint64_t db =
            Sw128Desc(sv_addr + (stage * TE + kk * 16 * 64) * kElem, BN * 64 * kElem);
        WgmmaRSTransB<T, OT>(o, pa[kk], db);
      }
      WgmmaCommit();
      WgmmaWait<0>();
    }
    __syncthreads();  // both warpgroups are done with this stage before it is refilled
    issue(j + Traits::kStages);
  }
  CpAsyncWait<0>();

  T* out = static_cast<T*>(p.out) + int64_t{q_begin} * q_stride + int64_t{h} * D;
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float sum = l[i];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int row = row_lo + 8 * i;
    if (row >= q_len) continue;
    T* dst = out + int64_t{row} * q_stride + (lane % 4) * 2;
#pragma unroll
    for (int n = 0; n < OT; ++n) {
      *reinterpret_cast<uint32_t*>(dst + n * 8) =
          PackFloat2<T>(o[n][2 * i] * inv, o[n][2 * i + 1] * inv);
    }
  }
#endif  // ITE_SM90A_DEVICE
}

template <typename Traits>
Status Launch(const PrefillAttentionArgs& a, const PrefillParams& params, cudaStream_t stream) {
  auto kernel = PrefillAttentionSm90Kernel<Traits>;
  ITE_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                int{Traits::kSmemBytes}));
  const dim3 grid(a.num_heads, a.batch, (a.max_q_len + Traits::kBlockM - 1) / Traits::kBlockM);
  kernel<<<grid, Traits::kThreads, Traits::kSmemBytes, stream>>>(params);
  return LaunchStatus("PrefillAttentionSm90Kernel");
}

template <typename T>
Status DispatchHeadDim(const PrefillAttentionArgs& a, const PrefillParams& params,
                       cudaStream_t stream) {
  if (a.cache.head_dim == 64) return Launch<Sm90PrefillTraits<T, 64>>(a, params, stream);
  return Launch<Sm90PrefillTraits<T, 128>>(a, params, stream);
}

}  // namespace

bool PrefillSm90Available() {
#ifdef ITE_KERNELS_SM90A
  // Per device: a process may drive several GPUs of different kinds.
  static std::mutex mu;
  static std::vector<int> known;  // -1 unknown, 0 no, 1 yes
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  std::lock_guard<std::mutex> lock(mu);
  if (known.size() <= size_t(device)) known.resize(device + 1, -1);
  if (known[device] < 0) {
    int major = 0, minor = 0;
    const bool ok =
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess;
    known[device] = ok && major == 9 && minor == 0 ? 1 : 0;
  }
  return known[device] == 1;
#else
  return false;
#endif
}

Status PrefillAttentionSm90(const PrefillAttentionArgs& a, const PrefillParams& params,
                            cudaStream_t stream) {
  if (a.cache.dtype == DType::kF16) return DispatchHeadDim<__half>(a, params, stream);
  return DispatchHeadDim<__nv_bfloat16>(a, params, stream);
}

}  // namespace ite::kernels::internal
