// The fused decoder stack's weight stream and products (decoder_stack.cu): each warp's ring of
// shared-memory slots that bulk copies fill chunk by chunk, the stage counters, and one product
// of a layer computed from the slots with its epilogue.
#pragma once

#include <cuda_runtime.h>

#include "decoder_stack_layout.cuh"
#include "dtype_utils.cuh"

namespace ite::kernels::decoder_stack {

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

// The down product's input: the gate|up stage's activation, from the workspace.
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

}  // namespace ite::kernels::decoder_stack
