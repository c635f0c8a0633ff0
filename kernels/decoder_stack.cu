// The decoder stack for one token in one persistent kernel (see decoder_stack.h for why).
//
// Grid: one block per multiprocessor (all resident: a cooperative launch) of kComputeWarps warps.
// Every product of every layer is cut the same way: block b owns output units
// [n b / G, n (b + 1) / G) (a unit is one weight row, or a gate row with its up row), split
// between its warps, and a warp takes its units in chunks of one 8 KB slot (whole units, or a
// wide unit's k range in pieces). Each warp has a few slots: lane 0 copies the warp's next
// chunks into them (cp.async.bulk, completion on the slot's mbarrier) walking the warp's
// schedule from the first layer's QKV to the last layer's down product, and each slot, once the
// warp has read it, takes the chunk that many places further on. Weights are evicted from L2
// first: the activations and the KV cache should stay there.
//
// Stages of a layer, each ended by every block adding 1 to a global counter and begun by
// waiting until the counter says every block ended the one before:
//   0 QKV:   x~ = x * attn_norm (fp32, rms of x summed on the way); raw q|k|v = x~ Wqkv^T * rms
//            (+ bias), fp32, to the workspace
//   1 attention, items (kv head, split of the context) of one warp: RoPE on the group's Q
//            (rounded to the dtype, as the multi-kernel path stores it); the split holding the
//            new token rotates its K and writes K and V into the cache first; then an online
//            softmax over the split's positions, 32 at a time, and the split's unnormalised
//            output and (max, sum) to the workspace
//   2 O:     the splits merged (rounded to the dtype) as the input; x += attn Wo^T
//   3 gate|up: x~ = x * ffn_norm; act = silu(x~ Wg^T * rms) * (x~ Wu^T * rms)
//   4 down:  x += act Wd^T
// The last block to leave sets the counters back to zero for the next launch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>

#include "cuda_check.h"
#include "device_info.h"
#include "dtype_utils.cuh"
#include "ite/kernels/decoder_stack.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

constexpr int kComputeWarps = 8;
constexpr int kCompute = kComputeWarps * 32;
constexpr int kThreads = kCompute;
constexpr int kSlotBytes = 8 * 1024;
constexpr int kMaxWarpSlots = 6;    // ring slots per compute warp
[[maybe_unused]] constexpr int kMaxChunkUnits = 16;  // whole units in one chunk
constexpr int kMaxSplits = 16;      // context splits per kv head
constexpr int kMaxGroup = 16;      // query heads per kv head

enum Product { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3 };

template <typename T>
struct StackParams {
  DecoderStackLayer layers[kDecoderStackMaxLayers];
  T* x;
  const int32_t* positions;
  const int32_t* kv_slots;
  const int32_t* kv_lens;
  const int32_t* block_tables;
  const float* inv_freq;
  float* qkv_raw;     // [qkv_dim]
  T* act;             // [inter]
  float* part_ml;     // [num_heads, kMaxSplits, 2]
  float* part_acc;    // [num_heads, kMaxSplits, head_dim]
  unsigned* counter;  // [0]: stages ended (blocks x stages), [1]: blocks done
  int32_t num_layers, hidden, inter, num_heads, num_kv_heads, group;
  int32_t q_dim, kv_dim, qkv_dim;
  int32_t max_blocks_per_seq, block_size;
  int64_t num_slots;
  float eps, scale_log2;
  int32_t ring_slots;  // per compute warp
  int32_t ablate;      // measuring only (ITE_STACK_ABLATE): 1 no dot products, 2 no attention, 4
                       // no stage waits; the results are then wrong
  int32_t xs_floats;  // the input vector's shared buffer (also the attention stage's)
};

// Workspace layout, in bytes from its start.
struct WorkspaceLayout {
  size_t counter, qkv_raw, act, part_ml, part_acc, total;
  WorkspaceLayout(int32_t hidden, int32_t inter, int32_t num_heads, int32_t num_kv_heads,
                  int32_t head_dim) {
    auto align = [](size_t v) { return (v + 255) / 256 * 256; };
    const size_t qkv_dim = size_t(num_heads + 2 * num_kv_heads) * head_dim;
    counter = 0;
    qkv_raw = align(counter + 2 * sizeof(unsigned));
    act = align(qkv_raw + qkv_dim * sizeof(float));
    part_ml = align(act + size_t(inter) * 2);
    part_acc = align(part_ml + size_t(num_heads) * kMaxSplits * 2 * sizeof(float));
    total = align(part_acc + size_t(num_heads) * kMaxSplits * head_dim * sizeof(float));
  }
};

// Shared memory: [full mbarriers | misc | xs | ring slots], the slots warp by warp (warp w's are
// w * slots_per_warp + [0, slots_per_warp)).
struct SmemLayout {
  size_t full, misc, xs, ring, total;
  __host__ __device__ SmemLayout(int slots_per_warp, int xs_floats) {
    full = 0;
    misc = full + kComputeWarps * kMaxWarpSlots * 8;  // float [32]
    xs = misc + 32 * sizeof(float);                    // float [xs_floats]
    ring = (xs + size_t(xs_floats) * sizeof(float) + 127) / 128 * 128;
    total = ring + size_t(kComputeWarps) * slots_per_warp * kSlotBytes;
  }
};

// Floats the attention stage keeps in xs: each warp's rotated Q of its kv head's group.
int AttentionFloats(int group, int head_dim) { return kComputeWarps * group * head_dim; }

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void BarInit(uint64_t* bar, unsigned count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(SmemAddr(bar)), "r"(count)
               : "memory");
}
__device__ __forceinline__ void BarExpectTx(uint64_t* bar, unsigned bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(SmemAddr(bar)),
               "r"(bytes)
               : "memory");
}
// Orders this thread's (and, after a warp or block barrier, its peers') reads of shared memory
// before a bulk copy it issues into the same bytes.
__device__ __forceinline__ void FenceProxyAsync() {
  asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
}
__device__ __forceinline__ void BarWait(uint64_t* bar, unsigned parity) {
  unsigned done = 0;
  while (!done) {
    asm volatile(
        "{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; "
        "selp.u32 %0, 1, 0, p; }"
        : "=r"(done)
        : "r"(SmemAddr(bar)), "r"(parity)
        : "memory");
  }
}
__device__ __forceinline__ void BulkCopy(void* dst, const void* src, unsigned bytes,
                                         uint64_t* bar, uint64_t policy) {
  asm volatile(
      "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
      "[%0], [%1], %2, [%3], %4;" ::"r"(SmemAddr(dst)),
      "l"(src), "r"(bytes), "r"(SmemAddr(bar)), "l"(policy)
      : "memory");
}
__device__ __forceinline__ uint64_t EvictFirstPolicy() {
  uint64_t policy;
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  return policy;
}
// The block's barrier (every warp of the block computes).
__device__ __forceinline__ void ComputeSync() {
  asm volatile("bar.sync 1, %0;" ::"n"(kCompute) : "memory");
}
__device__ __forceinline__ unsigned LoadAcquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

// Waits (one thread polling, then the compute warps' barrier) until `target` stage ends were
// counted. Bounded: a block that never arrives (it cannot, with every block resident) would
// otherwise hang the stream, so after ~30 s the kernel traps and the step fails.
__device__ __forceinline__ void WaitStages(const unsigned* counter, unsigned target) {
  if (threadIdx.x == 0) {
    unsigned long long spins = 0;
    while (LoadAcquire(counter) < target) {
      if (++spins > 64) __nanosleep(100);
      if (spins > (1ull << 28)) __trap();
    }
  }
  ComputeSync();
}
// Ends this block's part of a stage: its writes are made visible, then counted.
__device__ __forceinline__ void EndStage(unsigned* counter) {
  ComputeSync();
  if (threadIdx.x == 0) {
    __threadfence();
    atomicAdd(counter, 1u);
  }
}

__device__ __forceinline__ float ComputeSum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = v;
  ComputeSync();
  float total = 0.0f;
#pragma unroll
  for (int w = 0; w < kComputeWarps; ++w) total += scratch[w];
  ComputeSync();  // scratch is free again
  return total;
}
__device__ __forceinline__ float WarpMax(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Data other blocks of this kernel wrote is read through L2 (.cg), never a stale L1 line.
template <typename T>
__device__ __forceinline__ float LoadCg(const T* p) {
  const unsigned short bits = __ldcg(reinterpret_cast<const unsigned short*>(p));
  T v;
  memcpy(&v, &bits, sizeof(v));
  return ToFloat(v);
}
// v as the dtype would store it.
template <typename T>
__device__ __forceinline__ float Round(float v) {
  return ToFloat(FromFloat<T>(v));
}

// A product's shape, block b's share of its units and how they are cut into chunks of one slot:
// whole units (up to kMaxChunkUnits) where a unit fits, else one unit's k range in pieces.
struct ProductShape {
  const char* w;
  int32_t units;  // output units of the whole product
  int32_t rows;   // weight rows per unit (2: a gate row and its up row)
  int32_t k;
  int32_t begin, end;  // this block's units
  int32_t per_chunk;   // whole units per chunk (when piece_k == k)
  int32_t piece_k;     // k per chunk
};

template <typename T>
__device__ __forceinline__ ProductShape ShapeOf(const StackParams<T>& p, int layer, int product) {
  const DecoderStackLayer& l = p.layers[layer];
  ProductShape s{};
  switch (product) {
    case kQkv:
      s = {static_cast<const char*>(l.qkv), p.qkv_dim, 1, p.hidden};
      break;
    case kO:
      s = {static_cast<const char*>(l.o), p.hidden, 1, p.q_dim};
      break;
    case kGateUp:
      s = {static_cast<const char*>(l.gate_up), p.inter, 2, p.hidden};
      break;
    default:
      s = {static_cast<const char*>(l.down), p.hidden, 1, p.inter};
      break;
  }
  const int64_t g = gridDim.x, b = blockIdx.x;
  s.begin = static_cast<int32_t>(s.units * b / g);
  s.end = static_cast<int32_t>(s.units * (b + 1) / g);
  const int unit_bytes = s.rows * s.k * int(sizeof(T));
  s.per_chunk = max(1, min(kMaxChunkUnits, kSlotBytes / unit_bytes));
  s.piece_k = unit_bytes <= kSlotBytes ? s.k : kSlotBytes / (s.rows * int(sizeof(T))) / 8 * 8;
  return s;
}

// Compute warp w's units of the block's share.
__device__ __forceinline__ void WarpUnits(const ProductShape& s, int w, int32_t* b, int32_t* e) {
  const int32_t n = s.end - s.begin;
  *b = s.begin + n * w / kComputeWarps;
  *e = s.begin + n * (w + 1) / kComputeWarps;
}

// One chunk: units [u, u + n), k range [k0, k0 + kl) (n == 1 where kl < k).
struct Chunk {
  int32_t u, n, k0, kl;
};

// A warp's chunks of one product, in order (its copies' cursor and its dot products walk the
// same ones).
struct ChunkIter {
  int32_t u, end, k0;
  __device__ __forceinline__ bool Next(const ProductShape& s, Chunk* c) {
    if (u >= end) return false;
    if (s.piece_k >= s.k) {
      *c = {u, min(s.per_chunk, end - u), 0, s.k};
      u += c->n;
    } else {
      *c = {u, 1, k0, min(s.piece_k, s.k - k0)};
      k0 += c->kl;
      if (k0 >= s.k) {
        k0 = 0;
        ++u;
      }
    }
    return true;
  }
};

// Where a warp's copies have got to: the next chunk of its sequence over every product of every
// layer, walked R chunks ahead of the chunk the warp computes.
struct Cursor {
  int layer, product;
  ProductShape s;
  ChunkIter it;
};

template <typename T>
__device__ __forceinline__ void CursorAt(const StackParams<T>& p, int layer, int product,
                                         Cursor* c) {
  c->layer = layer;
  c->product = product;
  c->s = ShapeOf(p, layer, product);
  WarpUnits(c->s, threadIdx.x / 32, &c->it.u, &c->it.end);
  c->it.k0 = 0;
}

// Lane 0 of a warp: the cursor's next chunk copied into `slot` (completion on `bar`); false at the
// end of the last layer.
template <typename T>
__device__ bool IssueNext(const StackParams<T>& p, Cursor* c, unsigned char* slot, uint64_t* bar,
                          uint64_t policy) {
  Chunk ch;
  while (!c->it.Next(c->s, &ch)) {
    if (c->product == kDown && c->layer + 1 >= p.num_layers) return false;
    if (c->product == kDown)
      CursorAt(p, c->layer + 1, kQkv, c);
    else
      CursorAt(p, c->layer, c->product + 1, c);
  }
  const ProductShape& s = c->s;
  const unsigned bytes = static_cast<unsigned>(ch.n * ch.kl * sizeof(T));
  BarExpectTx(bar, bytes * s.rows);
  for (int r = 0; r < s.rows; ++r)  // a gate|up chunk: its gate rows, then its up rows
    BulkCopy(slot + r * bytes, s.w + ((size_t(r) * s.units + ch.u) * s.k + ch.k0) * sizeof(T),
             bytes, bar, policy);
  return true;
}

// A compute warp's slots, how many chunks it has taken, and its copies' cursor (lane 0's).
struct WarpRing {
  unsigned char* slots;  // this warp's first slot
  uint64_t* full;        // this warp's barriers
  int count;
  uint64_t policy;
  Cursor cursor;
  int taken = 0;
};

// The epilogue of output unit u: kQkv raw fp32 (+ bias), kO / kDown added to the residual,
// kGateUp silu * mul.
template <typename T>
__device__ __forceinline__ void StoreUnit(const StackParams<T>& p, int product, const T* bias,
                                          int32_t u, float y0, float y1, float scale) {
  if (product == kQkv) {
    p.qkv_raw[u] = y0 * scale + (bias ? ToFloat(bias[u]) : 0.0f);
  } else if (product == kGateUp) {
    const float g = y0 * scale, up = y1 * scale;
    p.act[u] = FromFloat<T>(g / (1.0f + __expf(-g)) * up);
  } else {
    p.x[u] = FromFloat<T>(LoadCg(p.x + u) + y0);
  }
}

// One product of one layer over xs (scale: the rms factor of a normalised input, else 1): this
// warp's units, chunk by chunk from its slots, with no barrier beside the slots' own; each slot,
// once read, takes the warp's next chunk.
template <typename T>
__device__ void RunProduct(const StackParams<T>& p, int layer, int product, float scale,
                           const float* xs, WarpRing& ring) {
  const ProductShape s = ShapeOf(p, layer, product);
  const T* bias = product == kQkv ? static_cast<const T*>(p.layers[layer].qkv_bias) : nullptr;
  const int lane = threadIdx.x % 32;
  ChunkIter it;
  WarpUnits(s, threadIdx.x / 32, &it.u, &it.end);
  it.k0 = 0;
  float acc0 = 0.0f, acc1 = 0.0f;  // carried over the pieces of a unit wider than a slot
  for (Chunk c; it.Next(s, &c);) {
    const int slot = ring.taken % ring.count;
    BarWait(&ring.full[slot], (ring.taken / ring.count) & 1);
    ++ring.taken;
    const uint4* base = reinterpret_cast<const uint4*>(ring.slots + size_t(slot) * kSlotBytes);
    const int pieces = c.kl / 8;
    const float4* xlo = reinterpret_cast<const float4*>(xs) + c.k0 / 8;
    const float4* xhi = reinterpret_cast<const float4*>(xs + p.xs_floats / 2) + c.k0 / 8;
    const bool last_piece = c.k0 + c.kl == s.k;
    for (int j = 0; j < c.n; ++j) {
      const uint4* w0 = base + j * pieces;
      const uint4* w1 = base + (c.n + j) * pieces;
      if (!(p.ablate & 1)) {
#pragma unroll 4
        for (int i = lane; i < pieces; i += 32) {
          const float4 xa = xlo[i], xb = xhi[i];
          const float xf[8] = {xa.x, xa.y, xa.z, xa.w, xb.x, xb.y, xb.z, xb.w};
          float wf[8];
          Unpack8<T>(w0[i], wf);
#pragma unroll
          for (int e = 0; e < 8; ++e) acc0 = fmaf(wf[e], xf[e], acc0);
          if (s.rows == 2) {
            Unpack8<T>(w1[i], wf);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc1 = fmaf(wf[e], xf[e], acc1);
          }
        }
      }
      if (last_piece) {
        const float y0 = WarpSum(acc0), y1 = s.rows == 2 ? WarpSum(acc1) : 0.0f;
        if (lane == 0 && !(p.ablate & 1)) StoreUnit(p, product, bias, c.u + j, y0, y1, scale);
        acc0 = acc1 = 0.0f;
      }
    }
    __syncwarp();
    if (lane == 0) {
      FenceProxyAsync();
      IssueNext(p, &ring.cursor, ring.slots + size_t(slot) * kSlotBytes, &ring.full[slot],
                ring.policy);
    }
    __syncwarp();
  }
}

// Element k of a product's input in xs: each 8 consecutive elements (one weight uint4) as a float4
// in the lower half and a float4 in the upper half, so that a warp's 16-byte loads of them fall
// on distinct banks.
template <typename T>
__device__ __forceinline__ float& XsAt(const StackParams<T>& p, float* xs, int k) {
  return xs[(k % 8 < 4 ? 0 : p.xs_floats / 2) + k / 8 * 4 + k % 4];
}

// xs = x * norm (fp32) for the normalised products; returns the rms factor.
template <typename T>
__device__ float LoadNormed(const StackParams<T>& p, const void* norm, float* xs, float* scratch) {
  float sumsq = 0.0f;
  const uint4* x8 = reinterpret_cast<const uint4*>(p.x);
  const uint4* g8 = static_cast<const uint4*>(norm);
  for (int i = threadIdx.x; i < p.hidden / 8; i += kCompute) {
    float xf[8], gf[8];
    Unpack8<T>(__ldcg(x8 + i), xf);
    Unpack8<T>(__ldg(g8 + i), gf);
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      sumsq = fmaf(xf[j], xf[j], sumsq);
      XsAt(p, xs, i * 8 + j) = xf[j] * gf[j];
    }
  }
  sumsq = ComputeSum(sumsq, scratch);  // also the barrier after xs is written
  return rsqrtf(sumsq / p.hidden + p.eps);
}

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

template <typename T>
__device__ void LoadActivation(const StackParams<T>& p, float* xs) {
  const uint4* a8 = reinterpret_cast<const uint4*>(p.act);
  for (int i = threadIdx.x; i < p.inter / 8; i += kCompute) {
    float f[8];
    Unpack8<T>(__ldcg(a8 + i), f);
#pragma unroll
    for (int j = 0; j < 8; ++j) XsAt(p, xs, i * 8 + j) = f[j];
  }
  ComputeSync();
}

#endif  // __CUDA_ARCH__ >= 900

template <typename T, int HD>
__global__ void __launch_bounds__(kThreads, 1)
    DecoderStackKernel(const __grid_constant__ StackParams<T> p) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ __align__(128) unsigned char smem[];
  const SmemLayout layout(p.ring_slots, p.xs_floats);
  uint64_t* full = reinterpret_cast<uint64_t*>(smem + layout.full);
  float* misc = reinterpret_cast<float*>(smem + layout.misc);
  float* xs = reinterpret_cast<float*>(smem + layout.xs);
  if (threadIdx.x == 0) {
    for (int i = 0; i < kComputeWarps * p.ring_slots; ++i) BarInit(&full[i], 1);
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();
  LetDependentsStart();
  const int first_slot = threadIdx.x / 32 * p.ring_slots;
  WarpRing ring{smem + layout.ring + size_t(first_slot) * kSlotBytes, full + first_slot,
                p.ring_slots, EvictFirstPolicy()};
  CursorAt(p, 0, kQkv, &ring.cursor);
  // The weights are constant: each warp's first chunks are on their way before the previous
  // kernel has ended.
  if (threadIdx.x % 32 == 0) {
    for (int i = 0; i < ring.count; ++i)
      if (!IssueNext(p, &ring.cursor, ring.slots + size_t(i) * kSlotBytes, &ring.full[i],
                     ring.policy))
        break;
  }
  __syncwarp();
  WaitForPrerequisites();
  const unsigned blocks = gridDim.x;
  unsigned stage = 0;
  auto next_stage = [&] {
    EndStage(p.counter);
    ++stage;
    if (!(p.ablate & 4)) WaitStages(p.counter, blocks * stage);
  };
  for (int layer = 0; layer < p.num_layers; ++layer) {
    const DecoderStackLayer& l = p.layers[layer];
    float scale = LoadNormed(p, l.attn_norm, xs, misc);
    RunProduct(p, layer, kQkv, scale, xs, ring);
    next_stage();
    if (!(p.ablate & 2)) RunAttention<T, HD>(p, layer, xs);
    next_stage();
    LoadAttention<T, HD>(p, xs);
    RunProduct(p, layer, kO, 1.0f, xs, ring);
    next_stage();
    scale = LoadNormed(p, l.ffn_norm, xs, misc);
    RunProduct(p, layer, kGateUp, scale, xs, ring);
    next_stage();
    LoadActivation(p, xs);
    RunProduct(p, layer, kDown, 1.0f, xs, ring);
    if (layer + 1 < p.num_layers) next_stage();
  }
  // The last block out sets the counters back for the next launch (every block has passed its
  // last wait once it counts itself here).
  ComputeSync();
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(p.counter + 1, 1u) == blocks - 1) {
      atomicExch(p.counter, 0u);
      atomicExch(p.counter + 1, 0u);
    }
  }
#else
  __trap();
#endif
}

// The fused stack is slower than the five kernels a layer today (docs/perf.md): it is taken only
// where ITE_DECODER_STACK=1 asks for it, for measuring and for work on it.
bool StackAskedFor() {
  static const bool on = [] {
    const char* v = std::getenv("ITE_DECODER_STACK");
    return v != nullptr && *v != '\0' && *v != '0';
  }();
  return on;
}

int XsFloats(const DecoderStackArgs& a) {
  const int group = a.num_kv_heads > 0 ? a.num_heads / a.num_kv_heads : 0;
  const int floats = std::max({a.hidden, a.intermediate, a.num_heads * a.head_dim,
                               AttentionFloats(group, a.head_dim)});
  return (floats + 7) / 8 * 8;  // XsAt's two halves of whole float4s
}

int MaxSmemPerBlock() {
  int device = 0, bytes = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return bytes;
}

// Ring slots per compute warp that fit beside the rest of the shared memory.
int RingSlots(const DecoderStackArgs& a) {
  const SmemLayout base(0, XsFloats(a));
  const int64_t room = int64_t{MaxSmemPerBlock()} - static_cast<int64_t>(base.total);
  return static_cast<int>(
      std::clamp<int64_t>(room / (int64_t{kComputeWarps} * kSlotBytes), 0, kMaxWarpSlots));
}

// ITE_STACK_ABLATE (measuring only): parts of the kernel left out, so that what each costs can be
// read from the step time; the outputs are then wrong.
int Ablation() {
  static const int bits = [] {
    const char* v = std::getenv("ITE_STACK_ABLATE");
    return v != nullptr ? std::atoi(v) : 0;
  }();
  return bits;
}

template <typename T, int HD>
cudaError_t AllowSmem(size_t bytes) {
  return cudaFuncSetAttribute(DecoderStackKernel<T, HD>,
                              cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

template <typename T, int HD>
Status Launch(const DecoderStackArgs& a, cudaStream_t stream) {
  auto p = std::make_unique<StackParams<T>>();
  std::copy(a.layers, a.layers + a.num_layers, p->layers);
  const WorkspaceLayout w(a.hidden, a.intermediate, a.num_heads, a.num_kv_heads, a.head_dim);
  char* ws = static_cast<char*>(a.workspace);
  p->x = static_cast<T*>(a.x);
  p->positions = a.positions;
  p->kv_slots = a.kv_slots;
  p->kv_lens = a.kv_lens;
  p->block_tables = a.block_tables;
  p->inv_freq = a.inv_freq;
  p->qkv_raw = reinterpret_cast<float*>(ws + w.qkv_raw);
  p->act = reinterpret_cast<T*>(ws + w.act);
  p->part_ml = reinterpret_cast<float*>(ws + w.part_ml);
  p->part_acc = reinterpret_cast<float*>(ws + w.part_acc);
  p->counter = reinterpret_cast<unsigned*>(ws + w.counter);
  p->num_layers = a.num_layers;
  p->hidden = a.hidden;
  p->inter = a.intermediate;
  p->num_heads = a.num_heads;
  p->num_kv_heads = a.num_kv_heads;
  p->group = a.num_heads / a.num_kv_heads;
  p->q_dim = a.num_heads * a.head_dim;
  p->kv_dim = a.num_kv_heads * a.head_dim;
  p->qkv_dim = p->q_dim + 2 * p->kv_dim;
  p->max_blocks_per_seq = a.max_blocks_per_seq;
  p->block_size = a.block_size;
  p->num_slots = int64_t{a.num_blocks} * a.block_size;
  p->eps = a.eps;
  p->scale_log2 = a.scale * 1.4426950408889634f;
  p->ring_slots = RingSlots(a);
  p->ablate = Ablation();
  p->xs_floats = XsFloats(a);
  const size_t smem = SmemLayout(p->ring_slots, p->xs_floats).total;
  auto kernel = DecoderStackKernel<T, HD>;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(CurrentDevice().multiprocessors);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  // Cooperative: every block resident at once, or the launch fails (the stages wait on each
  // other). Dependent: the warps' first copies start while the embedding kernel ends.
  cudaLaunchAttribute attributes[2] = {};
  attributes[0].id = cudaLaunchAttributeCooperative;
  attributes[0].val.cooperative = 1;
  attributes[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attributes[1].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attributes;
  config.numAttrs = DependentLaunchEnabled() ? 2 : 1;
  const cudaError_t err = cudaLaunchKernelEx(&config, kernel, *p);
  if (err != cudaSuccess) cudaGetLastError();
  return CudaStatus(err, "DecoderStackKernel");
}

}  // namespace

size_t DecoderStackWorkspaceBytes(int32_t hidden, int32_t intermediate, int32_t num_heads,
                                  int32_t num_kv_heads, int32_t head_dim) {
  return WorkspaceLayout(hidden, intermediate, num_heads, num_kv_heads, head_dim).total;
}

bool DecoderStackApplies(const DecoderStackArgs& a, std::string* why) {
  auto no = [&](std::string reason) {
    if (why) *why = std::move(reason);
    return false;
  };
#if defined(ITE_KERNELS_SM90A)
  constexpr bool kBuilt = true;
#else
  constexpr bool kBuilt = false;
#endif
  if (!kBuilt) return no("the kernels were built without sm_90a");
  if (!StackAskedFor()) return no("ITE_DECODER_STACK=1 is not set");
  if (CurrentDevice().major < 9) return no("it needs compute capability 9.0 or newer");
  if (a.head_dim != 64 && a.head_dim != 128) return no("head_dim is not 64 or 128");
  if (a.num_kv_heads <= 0 || a.num_heads % a.num_kv_heads != 0 ||
      a.num_heads / a.num_kv_heads > kMaxGroup)
    return no("more than 16 query heads share a kv head");
  if (a.num_layers < 1 || a.num_layers > kDecoderStackMaxLayers)
    return no("more layers than the launch carries");
  const int32_t q_dim = a.num_heads * a.head_dim;
  if (a.hidden % 8 != 0 || a.intermediate % 8 != 0 || q_dim % 8 != 0)
    return no("a product's width is not a multiple of 8");
  if (RingSlots(a) < 2)
    return no("the shared memory holds fewer than two ring slots a warp beside the activations");
  const size_t smem = SmemLayout(RingSlots(a), XsFloats(a)).total;
  const cudaError_t err =
      a.dtype == DType::kF16
          ? (a.head_dim == 64 ? AllowSmem<__half, 64>(smem) : AllowSmem<__half, 128>(smem))
          : (a.head_dim == 64 ? AllowSmem<__nv_bfloat16, 64>(smem)
                              : AllowSmem<__nv_bfloat16, 128>(smem));
  if (err != cudaSuccess) {
    cudaGetLastError();
    return no(std::string("its shared memory was refused: ") + cudaGetErrorString(err));
  }
  return true;
}

Status DecoderStack(const DecoderStackArgs& a, cudaStream_t stream) {
  if (a.num_layers < 1 || a.num_layers > kDecoderStackMaxLayers || a.layers == nullptr ||
      (a.head_dim != 64 && a.head_dim != 128) || a.num_kv_heads <= 0)
    return InvalidArgument("DecoderStack: {} layers of head_dim {}", a.num_layers, a.head_dim);
  for (int i = 0; i < a.num_layers; ++i) {
    const DecoderStackLayer& l = a.layers[i];
    const void* ptrs[] = {l.attn_norm, l.qkv, l.o, l.ffn_norm, l.gate_up, l.down, l.k_cache,
                          l.v_cache};
    for (const void* ptr : ptrs)
      if (ptr == nullptr || reinterpret_cast<uintptr_t>(ptr) % 16 != 0)
        return InvalidArgument("DecoderStack: layer {}: a weight or cache plane is null or not "
                               "16-byte aligned", i);
  }
  if (a.x == nullptr || a.positions == nullptr || a.kv_slots == nullptr || a.kv_lens == nullptr ||
      a.block_tables == nullptr || a.inv_freq == nullptr || a.block_size <= 0)
    return InvalidArgument("DecoderStack: a step input is null");
  if (a.workspace == nullptr ||
      a.workspace_bytes < DecoderStackWorkspaceBytes(a.hidden, a.intermediate, a.num_heads,
                                                     a.num_kv_heads, a.head_dim))
    return InvalidArgument("DecoderStack: workspace too small");
  if (a.dtype == DType::kF16) {
    return a.head_dim == 64 ? Launch<__half, 64>(a, stream) : Launch<__half, 128>(a, stream);
  }
  return a.head_dim == 64 ? Launch<__nv_bfloat16, 64>(a, stream)
                          : Launch<__nv_bfloat16, 128>(a, stream);
}

}  // namespace ite::kernels
