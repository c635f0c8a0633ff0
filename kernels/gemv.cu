// Products of a few activation rows with a weight matrix (decode of small batches):
// out[m, n] = x[m, k] w[n, k]^T (+ bias), m <= kGemvMaxRows, with the step's neighbouring work
// fused where GemmArgs asks (RMS-normalised x, residual accumulate, silu * mul, RoPE + KV write).
//
// Such a product only streams the weight once, so it runs at the speed the weight is read. One
// warp per output unit (several for narrow weights, see SplitFor): each lane reads 16-byte pieces
// of the unit's weight rows with a streaming load (the weight is read once; x, small and read by
// every warp, stays in L1/L2), keeps fp32 sums for the m rows, and the warp adds its lanes at the
// end. A unit is one weight row, or for the paired epilogues the two rows whose results meet:
// gate row j with up row j (silu * mul), and the two halves of a rotary pair (RoPE). cuBLASLt at
// these m picks tile kernels with split-k (a second, reducing kernel) that read small weights
// well under the copy bandwidth; see docs/perf.md.
//
// rms_norm_x: each lane multiplies the x values it reads by the norm's weight and also sums
// their squares, so the row's rms comes out of the same pass and scales the sums at the end.
#include <cuda_runtime.h>

#include <algorithm>

#include "common/env_flag.h"
#include "cuda_check.h"
#include "device_info.h"
#include "dtype_utils.cuh"
#include "gemv.h"
#include "gemv_unit.cuh"
#include "pdl.cuh"

namespace ite::kernels::internal {
namespace {

// Blocks a multiprocessor must hold at once, so that a short product's blocks fit in one wave:
// at most 80 registers a thread for the normalised one-row products, 64 for the others (no
// default variant spills; the unpipelined rotary ones of ITE_GEMV_NO_PIPE spill up to 52 bytes).
// Without the bound the rotary one took 89, two blocks a multiprocessor, and the Llama-3.2-1B's
// QKV product (384 blocks on 132 multiprocessors) ran in two waves. More rows: 0, no bound (an
// explicit one, even two, let ptxas take more registers than its own choice: 62 -> 80 for the
// two-row plain products).
template <int M, bool kNorm>
constexpr int kMinBlocks = M != 1  ? 0
                           : kNorm ? 3
                                   : 4;

// kSplit warps share a unit, taking turns at its 256-element rounds; their sums are added in
// warp order, so a unit's rounding depends on (n, k) alone, never on m.
// kSharedX: the block first copies x (normalised by the norm weight where kNorm, with the rows'
// sums of squares taken once for the block) into shared memory as fp32 (dynamic, m * k floats),
// so that each piece costs the weight's unpacking and the products only, not an x load from L1,
// its unpacking and the norm's arithmetic in every warp.
// Each lane reads its pieces of the unit's rows in batches of kUnroll 16-byte pieces per row, a
// batch's loads all issued before its products (a short last batch too). kPipe: the next batch's
// loads are issued before this batch's products, so two batches are in flight per lane. Neither
// changes the order in which a lane adds its pieces, so the results are the same bit for bit.
template <typename T, typename Out, int M, int kSplit, GemmEpilogue E, bool kNorm, int kUnroll,
          bool kPipe, bool kSharedX>
__global__ void __launch_bounds__(kWarps * 32, kMinBlocks<M, kNorm>)
    GemvKernel(GemvParams<T, Out> p, int32_t units) {
  constexpr int R = RowsPerUnit(E);
  constexpr int kUnits = kWarps / kSplit;
  constexpr bool kWarpNorm = kNorm && !kSharedX;  // each warp sums its own x's squares
  constexpr int kSums = R + (kWarpNorm ? 1 : 0);  // per row: R dot products (+ sum of squares)
  __shared__ float partial[kWarps][M][kSums];
  extern __shared__ float4 shared_x[];  // kSharedX: [M][kdim] fp32, see AccumulateShared
  [[maybe_unused]] __shared__ float warp_sums[kWarps][M];
  LetDependentsStart();
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  [[maybe_unused]] float block_sumsq[M];  // kSharedX && kNorm: x's rows' sums of squares
  // A block takes groups of kUnits units gridDim.x apart (GemmArgs::max_blocks_per_sm caps the
  // grid): the same number for every thread of the block, so the barriers below stay uniform. x is
  // staged once.
  for (int32_t b = blockIdx.x; int64_t{b} * kUnits < units; b += gridDim.x) {
    const bool first = b == blockIdx.x;
    if (!first) __syncthreads();  // `partial` is reused
    const int32_t u = b * kUnits + warp / kSplit;
    const int part = warp % kSplit;
    const bool live = u < units;
    int32_t row[R];
    UnitRows<E>(p, live ? u : 0, row);
    const T* wrow[R];
#pragma unroll
    for (int q = 0; q < R; ++q) wrow[q] = p.w + int64_t{row[q]} * p.kdim;
    float acc[R][M], sumsq[M];
#pragma unroll
    for (int r = 0; r < M; ++r) {
      sumsq[r] = 0.0f;
#pragma unroll
      for (int q = 0; q < R; ++q) acc[q][r] = 0.0f;
    }
    constexpr int64_t kStep = int64_t{kStride} * kSplit;
    const int32_t kdim = p.kdim;
    const int64_t k0 = int64_t{part} * kStride + lane * kPiece;
    const float* xs = reinterpret_cast<const float*>(shared_x);
    // Lane r < M of a unit's first warp runs row r's epilogue (see the end). Its inputs are read
    // early for one or two rows only (for three and four, ptxas then placed the dependency wait
    // above the first weight loads), and for the rotary product only with x in shared memory
    // (with x read from global memory its registers then spilled).
    constexpr bool kEarlyInputs = M <= 2 && (E != GemmEpilogue::kRopeKv || kSharedX);
    const bool epilogue_lane = live && part == 0 && lane < M;
    EpilogueInputs in;
    if constexpr (kEarlyInputs) {
      if (epilogue_lane) LoadConstantInputs<E>(p, u, in);
    }
    // After the wait (the block's first group only): x into shared memory where kSharedX; then
    // the epilogue's inputs, so that their loads overlap the products.
    auto after_wait = [&] {
      if (first) {
        WaitForPrerequisites();
        if constexpr (kSharedX) {
          StageX<T, M, kNorm>(p.x, p.norm_weight, kdim, reinterpret_cast<float*>(shared_x),
                              warp_sums, block_sumsq);
        }
      }
      if constexpr (kEarlyInputs) {
        if (epilogue_lane) LoadStepInputs<E>(p, lane, row, in);
      }
    };
    auto accumulate = [&](const uint4(&wv)[R], int64_t k) {
      if constexpr (kSharedX) {
        AccumulateShared<T, M, R>(wv, xs, k / kPiece, kdim, acc);
      } else {
        Accumulate<T, M, R, kNorm>(wv, p.x, p.norm_weight, k, kdim, acc, sumsq);
      }
    };
    // The first batch's weight loads go out before the wait for the previous kernel (the weight is
    // constant), so they overlap that kernel's end.
    if constexpr (kPipe) {
      // This lane's pieces start at k0 + i * kStep, i < pieces.
      const int pieces = live && k0 < kdim ? static_cast<int>((kdim - k0 + kStep - 1) / kStep) : 0;
      auto load = [&](uint4(&wv)[kUnroll][R], int batch) {
#pragma unroll
        for (int s = 0; s < kUnroll; ++s) {
          const int i = batch * kUnroll + s;
          if (i < pieces) {
#pragma unroll
            for (int q = 0; q < R; ++q) wv[s][q] = LoadStreaming(wrow[q] + k0 + i * kStep);
          }
        }
      };
      auto add = [&](const uint4(&wv)[kUnroll][R], int batch) {
#pragma unroll
        for (int s = 0; s < kUnroll; ++s) {
          const int i = batch * kUnroll + s;
          if (i < pieces) accumulate(wv[s], k0 + i * kStep);
        }
      };
      uint4 wa[kUnroll][R], wb[kUnroll][R];
      load(wa, 0);
      after_wait();
      for (int batch = 0; batch * kUnroll < pieces; batch += 2) {
        load(wb, batch + 1);
        add(wa, batch);
        if ((batch + 1) * kUnroll >= pieces) break;
        load(wa, batch + 2);
        add(wb, batch + 1);
      }
    } else {
      // Whole batches, then the pieces left one at a time (fewer registers than predicated
      // batches; a unit of the default configurations has whole batches only).
      int64_t k = k0;
      bool round = live && k + (kUnroll - 1) * kStep < kdim;
      uint4 wv[kUnroll][R];
      if (round) {
#pragma unroll
        for (int s = 0; s < kUnroll; ++s) {
#pragma unroll
          for (int q = 0; q < R; ++q) wv[s][q] = LoadStreaming(wrow[q] + k + s * kStep);
        }
      }
      after_wait();
      while (round) {
#pragma unroll
        for (int s = 0; s < kUnroll; ++s) accumulate(wv[s], k + s * kStep);
        k += kUnroll * kStep;
        round = k + (kUnroll - 1) * kStep < kdim;
        if (round) {
#pragma unroll
          for (int s = 0; s < kUnroll; ++s) {
#pragma unroll
            for (int q = 0; q < R; ++q) wv[s][q] = LoadStreaming(wrow[q] + k + s * kStep);
          }
        }
      }
      if (live) {
        for (; k < kdim; k += kStep) {
          uint4 last[R];
#pragma unroll
          for (int q = 0; q < R; ++q) last[q] = LoadStreaming(wrow[q] + k);
          accumulate(last, k);
        }
      }
    }
    // sums[r][q]: the warp's totals, q < R the dot products, q == R the sum of squares.
    float sums[M][kSums];
#pragma unroll
    for (int r = 0; r < M; ++r) {
#pragma unroll
      for (int q = 0; q < kSums; ++q) {
        float v = q < R ? acc[q < R ? q : 0][r] : sumsq[r];
#pragma unroll
        for (int off = 16; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
        sums[r][q] = v;
      }
    }
    if constexpr (kSplit > 1) {
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < M; ++r) {
#pragma unroll
          for (int q = 0; q < kSums; ++q) partial[warp][r][q] = sums[r][q];
        }
      }
      __syncthreads();
      if (part != 0) continue;
#pragma unroll
      for (int r = 0; r < M; ++r) {
#pragma unroll
        for (int q = 0; q < kSums; ++q) {
          float v = partial[warp][r][q];
#pragma unroll
          for (int s = 1; s < kSplit; ++s) v += partial[warp + s][r][q];
          sums[r][q] = v;
        }
      }
    }
    if (!live) continue;
#pragma unroll
    for (int r = 0; r < M; ++r) {
      // Lane r stores row r, so the rows' epilogues (a sincosf each for RoPE) run side by side.
      if (lane != r) continue;
      float scale = 1.0f;
      if constexpr (kWarpNorm) scale = rsqrtf(sums[r][kSums - 1] / kdim + p.eps);
      if constexpr (kNorm && kSharedX) scale = rsqrtf(block_sumsq[r] / kdim + p.eps);
      float y[R];
#pragma unroll
      for (int q = 0; q < R; ++q)
        y[q] = sums[r][q] * scale + (p.bias ? ToFloat(p.bias[row[q]]) : 0.0f);
      if constexpr (!kEarlyInputs) {
        LoadConstantInputs<E>(p, u, in);
        LoadStepInputs<E>(p, r, row, in);
      }
      Store<E>(p, r, u, row, in, y);
    }
  }
}

int32_t UnitsOf(const GemmArgs& g) {
  return g.epilogue == GemmEpilogue::kSiluMul || g.epilogue == GemmEpilogue::kRopeKv ? g.n / 2
                                                                                     : g.n;
}

// Warps per unit: the fewest that give about two blocks per multiprocessor (narrow weights
// would otherwise leave multiprocessors without a block), and no more than the rounds of k.
int SplitFor(int32_t units, int32_t kdim) {
  const int sms = CurrentDevice().multiprocessors > 0 ? CurrentDevice().multiprocessors : 132;
  int split = 1;
  while (split < kWarps && int64_t{units} * split / kWarps < 2 * sms &&
         int64_t{kdim} >= int64_t{kStride} * split * 2)
    split *= 2;
  return split;
}

template <typename T, typename Out>
GemvParams<T, Out> ParamsOf(const GemmArgs& g) {
  GemvParams<T, Out> p{};
  p.x = static_cast<const T*>(g.x);
  p.w = static_cast<const T*>(g.w);
  p.bias = static_cast<const T*>(g.bias);
  p.norm_weight = static_cast<const T*>(g.norm_weight);
  p.out = static_cast<Out*>(g.out);
  p.n = g.n;
  p.kdim = g.k;
  p.eps = g.eps;
  if (g.rope) {
    const RopeKvWriteArgs& r = *g.rope;
    p.positions = r.positions;
    p.slots = r.slots;
    p.inv_freq = r.inv_freq;
    p.k_cache = static_cast<T*>(r.cache.k);
    p.v_cache = static_cast<T*>(r.cache.v);
    p.num_slots = int64_t{r.cache.num_blocks} * r.cache.block_size;
    p.num_heads = r.num_heads;
    p.num_kv_heads = r.num_kv_heads;
    p.head_dim = r.head_dim;
  }
  return p;
}

// Whether x is staged in shared memory (GemmArgs::shared_x; ITE_GEMV_NO_SHARED_X=1 in the
// environment turns it off, for measuring).
bool SharedXFits(const GemmArgs& g) {
  static const bool off = EnvFlag("ITE_GEMV_NO_SHARED_X");
  return g.shared_x && !off && int64_t{g.m} * g.k * int64_t{sizeof(float)} <= kGemvSharedXBytes;
}

// Blocks of a product: one per group of units, or at most GemmArgs::max_blocks_per_sm a
// multiprocessor, each block then taking several groups.
int32_t GridFor(const GemmArgs& g, int32_t groups) {
  if (g.max_blocks_per_sm <= 0) return groups;
  const int sms = CurrentDevice().multiprocessors > 0 ? CurrentDevice().multiprocessors : 132;
  return static_cast<int32_t>(std::min<int64_t>(groups, int64_t{g.max_blocks_per_sm} * sms));
}

template <typename T, typename Out, int M, int kSplit, GemmEpilogue E, bool kNorm, int kUnroll,
          bool kPipe>
Status LaunchConfig(const GemmArgs& g, int32_t units, cudaStream_t stream) {
  constexpr int kUnits = kWarps / kSplit;
  const dim3 grid(GridFor(g, (units + kUnits - 1) / kUnits));
  const GemvParams<T, Out> p = ParamsOf<T, Out>(g);
  // One row only: the variant doubles the kernels this file compiles, and no model of ours has
  // every k short enough for two rows of x to fit (GemmArgs::shared_x).
  if constexpr (M == 1) {
    if (SharedXFits(g)) {
      return CudaStatus(
          LaunchDependent(GemvKernel<T, Out, M, kSplit, E, kNorm, kUnroll, kPipe, true>, grid,
                          kWarps * 32, g.k * sizeof(float), stream, p, units),
          "GemvKernel");
    }
  }
  return CudaStatus(LaunchDependent(GemvKernel<T, Out, M, kSplit, E, kNorm, kUnroll, kPipe, false>,
                                    grid, kWarps * 32, 0, stream, p, units),
                    "GemvKernel");
}

// Whether the pipelined variant is chosen (ITE_GEMV_NO_PIPE=1 in the environment turns it off,
// for measuring).
bool PipelineAllowed() {
  static const bool off = EnvFlag("ITE_GEMV_NO_PIPE");
  return !off;
}

// Batches per product, chosen by sweeping decode at batch 1 on an H200 (docs/perf.md): one row's
// QKV + RoPE in pipelined pairs of pieces, and one row's fp32 logits (the LM head) in pipelined
// batches of four; everything else in unpipelined batches of four, which the pipelined ones
// did not beat (they hold more registers, so fewer blocks fit).
template <typename T, typename Out, int M, int kSplit, GemmEpilogue E, bool kNorm>
Status LaunchSplit(const GemmArgs& g, int32_t units, cudaStream_t stream) {
  if constexpr (M == 1 && E == GemmEpilogue::kRopeKv) {
    if (PipelineAllowed())
      return LaunchConfig<T, Out, M, kSplit, E, kNorm, 2, true>(g, units, stream);
  } else if constexpr (M == 1 && E == GemmEpilogue::kStore && std::is_same_v<Out, float>) {
    if (PipelineAllowed())
      return LaunchConfig<T, Out, M, kSplit, E, kNorm, 4, true>(g, units, stream);
  }
  return LaunchConfig<T, Out, M, kSplit, E, kNorm, 4, false>(g, units, stream);
}

template <typename T, typename Out, int M, GemmEpilogue E, bool kNorm>
Status LaunchRows(const GemmArgs& g, cudaStream_t stream) {
  const int32_t units = UnitsOf(g);
  switch (SplitFor(units, g.k)) {
    case 1:
      return LaunchSplit<T, Out, M, 1, E, kNorm>(g, units, stream);
    case 2:
      return LaunchSplit<T, Out, M, 2, E, kNorm>(g, units, stream);
    case 4:
      return LaunchSplit<T, Out, M, 4, E, kNorm>(g, units, stream);
    default:
      return LaunchSplit<T, Out, M, 8, E, kNorm>(g, units, stream);
  }
}

template <typename T, typename Out, GemmEpilogue E, bool kNorm>
Status LaunchM(const GemmArgs& g, cudaStream_t stream) {
  switch (g.m) {
    case 1:
      return LaunchRows<T, Out, 1, E, kNorm>(g, stream);
    case 2:
      return LaunchRows<T, Out, 2, E, kNorm>(g, stream);
    case 3:
      return LaunchRows<T, Out, 3, E, kNorm>(g, stream);
    default:
      return LaunchRows<T, Out, 4, E, kNorm>(g, stream);
  }
}

// The variants a decoder layer uses (the others are refused by GemvApplies): plain products
// (fp32 out for logits), residual accumulates, and the normalised silu * mul and RoPE ones.
template <typename T>
Status LaunchType(const GemmArgs& g, cudaStream_t stream) {
  switch (g.epilogue) {
    case GemmEpilogue::kStore:
      if (g.out_f32) return LaunchM<T, float, GemmEpilogue::kStore, false>(g, stream);
      return LaunchM<T, T, GemmEpilogue::kStore, false>(g, stream);
    case GemmEpilogue::kAccumulate:
      return LaunchM<T, T, GemmEpilogue::kAccumulate, false>(g, stream);
    case GemmEpilogue::kSiluMul:
      return LaunchM<T, T, GemmEpilogue::kSiluMul, true>(g, stream);
    case GemmEpilogue::kRopeKv:
      return LaunchM<T, T, GemmEpilogue::kRopeKv, true>(g, stream);
  }
  return InvalidArgument("GEMV: unknown epilogue");
}

}  // namespace

bool GemvApplies(const GemmArgs& g) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  if (!(g.m >= 1 && g.m <= kGemvMaxRows && g.k % kPiece == 0 && aligned(g.x) && aligned(g.w)))
    return false;
  // Normalisation only where a layer asks for it: the paired epilogues.
  const bool paired = g.epilogue == GemmEpilogue::kSiluMul || g.epilogue == GemmEpilogue::kRopeKv;
  if (g.rms_norm_x != paired || (g.out_f32 && g.epilogue != GemmEpilogue::kStore)) return false;
  if (g.rms_norm_x && (g.norm_weight == nullptr || !aligned(g.norm_weight))) return false;
  if (g.epilogue == GemmEpilogue::kSiluMul) return g.n % 2 == 0;
  if (g.epilogue == GemmEpilogue::kRopeKv) {
    const RopeKvWriteArgs* r = g.rope;
    return r != nullptr && r->head_dim > 0 && r->head_dim % 2 == 0 &&
           g.n == (r->num_heads + 2 * r->num_kv_heads) * r->head_dim && r->cache.dtype == g.dtype &&
           r->cache.num_kv_heads == r->num_kv_heads && r->cache.head_dim == r->head_dim &&
           r->positions && r->slots && r->inv_freq && r->cache.k && r->cache.v;
  }
  return true;
}

Status Gemv(const GemmArgs& g, cudaStream_t stream) {
  if (g.dtype == DType::kF16) return LaunchType<__half>(g, stream);
  return LaunchType<__nv_bfloat16>(g, stream);
}

}  // namespace ite::kernels::internal
