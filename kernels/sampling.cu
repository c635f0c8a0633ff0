// Sampling: one block per request row.
//  1. One pass for the max / argmax and the softmax normaliser (for the logprob).
//  2. Top-k and top-p thresholds by radix select over order-preserving 32-bit keys of the
//     logits: four 8-bit digit passes with a shared-memory histogram of counts (top-k) or of
//     probability mass (top-p). No sort, no copy of the row.
//  3. A Gumbel-max draw over the tokens at or above the threshold: argmax(x / T + g_i) is an
//     exact sample of softmax(x / T) restricted to those tokens.
// Argmax has its own streaming kernel (ArgmaxKernel below), as it reads each row only once.
#include <cooperative_groups.h>

#include <cfloat>

#include "cluster_launch.cuh"
#include "cuda_check.h"
#include "device_info.h"
#include "dtype_utils.cuh"
#include "ite/kernels/sampling.h"
#include "pdl.cuh"

namespace ite::kernels {
namespace {

constexpr int kThreads = 512;

__device__ __forceinline__ uint32_t OrderKey(float x) {
  const uint32_t u = __float_as_uint(x);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Gumbel noise for token i of a row whose stream is `key` (a mix of seed and step): the i-th
// output of a SplitMix64 generator, turned into a uniform in (0, 1).
__device__ __forceinline__ float Gumbel(uint64_t key, uint32_t i) {
  const uint64_t z = Mix64(key + (uint64_t{i} + 1) * 0x9E3779B97F4A7C15ull);
  const float u = (static_cast<float>(z >> 40) + 0.5f) * (1.0f / 16777216.0f);
  return -__logf(-__logf(u));
}

struct BlockScratch {
  float f[32];
  int i[32];
  float hist[256];
  uint32_t bin;
  float above;
};

// Block argmax of (v, idx): larger v wins, then smaller idx. Every thread gets the result.
__device__ void BlockArgMax(float& v, int& idx, BlockScratch& s) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();
  if (lane == 0) {
    s.f[warp] = v;
    s.i[warp] = idx;
  }
  __syncthreads();
  v = lane < kThreads / 32 ? s.f[lane] : -INFINITY;
  idx = lane < kThreads / 32 ? s.i[lane] : INT32_MAX;
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, v, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > v || (ov == v && oi < idx)) {
      v = ov;
      idx = oi;
    }
  }
}

// Largest key t such that the weight of {i : key_i >= t, key_i >= lower} is >= target, where a
// token weighs 1 (mass == false) or exp((x - xmax) * inv_t) (mass == true). If rounding leaves
// the total under target, the threshold falls to the lowest candidate (everything kept).
__device__ uint32_t RadixSelect(const float* row, int vocab, uint32_t lower, float target,
                                bool mass, float xmax, float inv_t, BlockScratch& s) {
  uint32_t prefix = 0;
  float above = 0.0f;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = threadIdx.x; i < 256; i += kThreads) s.hist[i] = 0.0f;
    __syncthreads();
    const uint32_t high_mask = shift == 24 ? 0u : (0xffffffffu << (shift + 8));
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float x = row[i];
      const uint32_t k = OrderKey(x);
      if (k < lower || (k & high_mask) != prefix) continue;
      atomicAdd(&s.hist[(k >> shift) & 255], mass ? __expf((x - xmax) * inv_t) : 1.0f);
    }
    __syncthreads();
    if (warp == 0) {
      // Lane l scans bins 255 - 8l down to 248 - 8l: the warp walks all bins from the top.
      float local[8], lsum = 0.0f;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        local[j] = s.hist[255 - 8 * lane - j];
        lsum += local[j];
      }
      float incl = lsum;
      for (int o = 1; o < 32; o <<= 1) {
        const float n = __shfl_up_sync(0xffffffffu, incl, o);
        if (lane >= o) incl += n;
      }
      const float need = target - above;
      const unsigned hit = __ballot_sync(0xffffffffu, incl >= need);
      const int sel = hit ? __ffs(hit) - 1 : 31;
      if (lane == sel) {
        float acc = incl - lsum;
        int bin = 248 - 8 * lane;
        for (int j = 0; j < 8; ++j) {
          if (acc + local[j] >= need) {
            bin = 255 - 8 * lane - j;
            break;
          }
          if (j < 7) acc += local[j];
        }
        s.bin = static_cast<uint32_t>(bin);
        s.above = above + acc;
      }
    }
    __syncthreads();
    prefix |= s.bin << shift;
    above = s.above;
    __syncthreads();
  }
  return prefix;
}

struct SampleParams {
  const float* logits;
  int vocab;
  const float* temperature;
  const int32_t* top_k;
  const float* top_p;
  const float* min_p;
  const uint64_t* seeds;
  const uint64_t* steps;
  int32_t* tokens;
  float* logprobs;
};

__global__ void __launch_bounds__(kThreads) SampleKernel(const SampleParams p) {
  LetDependentsStart();
  WaitForPrerequisites();
  __shared__ BlockScratch s;
  const int64_t r = blockIdx.x;
  const float* row = p.logits + r * p.vocab;
  const int vocab = p.vocab;

  float best = -INFINITY;
  int best_i = INT32_MAX;
  float m = -INFINITY, sum = 0.0f;
  for (int i = threadIdx.x; i < vocab; i += kThreads) {
    const float x = row[i];
    if (x > best) {  // ascending i per thread: the first maximum wins ties
      best = x;
      best_i = i;
    }
    if (x > m) {
      sum = sum * __expf(m - x) + 1.0f;
      m = x;
    } else if (x != -INFINITY) {
      sum += __expf(x - m);
    }
  }
  BlockArgMax(best, best_i, s);
  if (best_i == INT32_MAX) best_i = 0;  // only -inf and NaN in the row
  const float xmax = best;
  const float z = BlockSum(m == -INFINITY ? 0.0f : sum * __expf(m - xmax), s.f);

  const float temperature = p.temperature ? p.temperature[r] : 0.0f;
  const int top_k = p.top_k ? p.top_k[r] : 0;
  int token = best_i;
  if (temperature > 0.0f && top_k != 1) {
    const float inv_t = 1.0f / temperature;
    uint32_t lower = 0;
    if (top_k > 0 && top_k < vocab) {
      lower = RadixSelect(row, vocab, 0, static_cast<float>(top_k), false, xmax, inv_t, s);
    }
    const float top_p = p.top_p ? p.top_p[r] : 1.0f;
    if (top_p < 1.0f) {
      float zk = 0.0f;
      for (int i = threadIdx.x; i < vocab; i += kThreads) {
        const float x = row[i];
        if (OrderKey(x) >= lower) zk += __expf((x - xmax) * inv_t);
      }
      zk = BlockSum(zk, s.f);
      lower = RadixSelect(row, vocab, lower, fmaxf(top_p, 0.0f) * zk, true, xmax, inv_t, s);
    }
    const float min_p = p.min_p ? p.min_p[r] : 0.0f;
    if (min_p > 0.0f) {
      // p_i >= min_p * p_max  <=>  x_i >= xmax + T * log(min_p); the max itself always passes.
      const uint32_t k = OrderKey(fminf(xmax + temperature * logf(min_p), xmax));
      lower = max(lower, k);
    }
    const uint64_t key = Mix64(p.seeds[r] ^ Mix64(p.steps[r] + 0x632BE59BD9B4E019ull));
    float g_best = -INFINITY;
    int g_i = INT32_MAX;
    for (int i = threadIdx.x; i < vocab; i += kThreads) {
      const float x = row[i];
      if (OrderKey(x) < lower || x == -INFINITY) continue;
      const float g = x * inv_t + Gumbel(key, static_cast<uint32_t>(i));
      if (g > g_best) {
        g_best = g;
        g_i = i;
      }
    }
    BlockArgMax(g_best, g_i, s);
    token = g_i == INT32_MAX ? best_i : g_i;
  }
  if (threadIdx.x == 0) {
    p.tokens[r] = token;
    if (p.logprobs) p.logprobs[r] = row[token] - xmax - logf(z);
  }
}

// Argmax and its log-softmax: one streaming pass keeping, per thread, the running max, the lowest
// index holding it and the sum of exp(x - max), rescaled when the max grows (rarely once the
// first loads are in). Each row is split over a cluster of blocks on sm_90 (so a few rows still
// fill the GPU) whose partial results meet in distributed shared memory; elsewhere, or for short
// rows, one block per row.
constexpr int kArgmaxLoads = 4;  // 16-byte loads in flight per thread
constexpr int kArgmaxClusterThreads = 256;
constexpr int kArgmaxMaxThreads = 1024;
// 2: on an H200, 256 x 128256 ran at 3,497 GB/s with 2 blocks per row, 3,158 with 8, 2,912 with
// 4 and 2,944 with 16 (shorter slices spend more of their life starting and merging).
constexpr int kArgmaxMaxCluster = 2;
constexpr int kArgmaxMinSlice = 8192;  // floats per block; shorter slices cost more to merge
constexpr float kLog2e = 1.4426950408889634f;

__device__ __forceinline__ float Exp2Approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// Argmax state over a set of entries. NaN entries are never the max (as in SampleKernel), but
// they make sum, and so the logprob, NaN.
struct ArgmaxPart {
  float max;  // never NaN
  int index;  // lowest index holding max; INT32_MAX while nothing beat -inf
  float sum;  // exp(x - max) summed, or exp(x) (0 or NaN) while max is -inf
};

// No entries yet (a plain aggregate, so that ArgmaxPart may live in shared memory).
__device__ __forceinline__ ArgmaxPart ArgmaxEmpty() {
  return ArgmaxPart{-INFINITY, INT32_MAX, 0.0f};
}

// Adds entries x[0..N), in ascending index order; index_of(j) is the index of x[j]. neg_max_log2
// is -max * log2(e) (0 while max is -inf), kept to make each exp one fma and one ex2.
template <int N, typename IndexOf>
__device__ __forceinline__ void ArgmaxAdd(ArgmaxPart& st, float& neg_max_log2, const float (&x)[N],
                                          IndexOf index_of) {
  float hi = x[0];
#pragma unroll
  for (int j = 1; j < N; ++j) hi = fmaxf(hi, x[j]);
  if (hi > st.max) {
    if (st.max != -INFINITY) st.sum *= Exp2Approx((st.max - hi) * kLog2e);
    int first = N - 1;
#pragma unroll
    for (int j = N - 1; j >= 0; --j) {
      if (x[j] == hi) first = j;  // unrolled selects: no dynamic indexing of the registers
    }
    st.index = index_of(first);
    st.max = hi;
    neg_max_log2 = -hi * kLog2e;
  }
  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < N; ++j) sum += Exp2Approx(fmaf(x[j], kLog2e, neg_max_log2));
  st.sum += sum;
}

// Merge of two parts: larger max, then lower index; sums brought to the common max.
__device__ __forceinline__ ArgmaxPart ArgmaxMerge(const ArgmaxPart& a, const ArgmaxPart& b) {
  ArgmaxPart r = ArgmaxEmpty();
  r.max = fmaxf(a.max, b.max);
  r.index = (b.max > a.max || (b.max == a.max && b.index < a.index)) ? b.index : a.index;
  const float sa = a.max == -INFINITY ? a.sum : a.sum * expf(a.max - r.max);
  const float sb = b.max == -INFINITY ? b.sum : b.sum * expf(b.max - r.max);
  r.sum = sa + sb;
  return r;
}

__device__ __forceinline__ ArgmaxPart ArgmaxWarpMerge(ArgmaxPart p) {
  for (int o = 16; o > 0; o >>= 1) {
    ArgmaxPart q = ArgmaxEmpty();
    q.max = __shfl_xor_sync(0xffffffffu, p.max, o);
    q.index = __shfl_xor_sync(0xffffffffu, p.index, o);
    q.sum = __shfl_xor_sync(0xffffffffu, p.sum, o);
    p = ArgmaxMerge(p, q);
  }
  return p;
}

struct ArgmaxParams {
  const float* logits;  // [rows, vocab]
  int vocab;
  int32_t* tokens;  // [rows]
  float* logprobs;  // [rows] or null
};

__device__ __forceinline__ void ArgmaxWrite(const ArgmaxParams& p, int64_t row, const float* x,
                                            const ArgmaxPart& r) {
  const int token = r.index == INT32_MAX ? 0 : r.index;  // only -inf and NaN in the row
  p.tokens[row] = token;
  if (p.logprobs) p.logprobs[row] = x[token] - r.max - logf(r.sum);
}

// Block `rank` of the `parts` blocks of a row (a cluster, or one block when kCluster is false)
// reads an even share of the row's 16-byte-aligned float4 body; the first block also reads the
// 0-3 floats before it, the last the 0-3 after it. Any blockDim that is a multiple of 32.
template <bool kCluster>
__global__ void __launch_bounds__(kArgmaxMaxThreads) ArgmaxKernel(const ArgmaxParams p) {
  __shared__ ArgmaxPart warp_parts[32];
  LetDependentsStart();
  WaitForPrerequisites();
  int parts = 1, rank = 0;
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    parts = static_cast<int>(cooperative_groups::this_cluster().num_blocks());
    rank = static_cast<int>(cooperative_groups::this_cluster().block_rank());
#else
    __trap();  // launched only where ClusterLimit found the cluster code
#endif
  }
  const int64_t row = blockIdx.x / parts;
  const float* x = p.logits + row * p.vocab;
  const int vocab = p.vocab;
  const int head =
      min(vocab, static_cast<int>((16 - (reinterpret_cast<uintptr_t>(x) & 15)) & 15) / 4);
  const int body = (vocab - head) / 4;
  const int tail = vocab - head - 4 * body;
  const int begin = static_cast<int>(int64_t{body} * rank / parts);
  const int end = static_cast<int>(int64_t{body} * (rank + 1) / parts);
  const float4* xv = reinterpret_cast<const float4*>(x + head);
  const int t = threadIdx.x, stride = blockDim.x;

  // Each thread sees its entries in ascending index order (head, its body vectors, tail), so
  // the strict > in ArgmaxAdd keeps the first of equal maxima.
  ArgmaxPart st = ArgmaxEmpty();
  float neg_max_log2 = 0.0f;
  if (rank == 0 && t < head) {
    const float e[1] = {x[t]};
    ArgmaxAdd(st, neg_max_log2, e, [&](int) { return t; });
  }
  for (int v = begin + t; v < end; v += kArgmaxLoads * stride) {
    // All loads first; past the slice they reload its last vector (v < end) and become -inf,
    // so no branch splits them.
    float4 q[kArgmaxLoads];
#pragma unroll
    for (int u = 0; u < kArgmaxLoads; ++u) q[u] = __ldg(xv + min(v + u * stride, end - 1));
    float e[4 * kArgmaxLoads];
#pragma unroll
    for (int u = 0; u < kArgmaxLoads; ++u) {
      const bool in = v + u * stride < end;
      e[4 * u] = in ? q[u].x : -INFINITY;
      e[4 * u + 1] = in ? q[u].y : -INFINITY;
      e[4 * u + 2] = in ? q[u].z : -INFINITY;
      e[4 * u + 3] = in ? q[u].w : -INFINITY;
    }
    ArgmaxAdd(st, neg_max_log2, e,
              [&](int j) { return head + 4 * (v + (j / 4) * stride) + j % 4; });
  }
  if (rank == parts - 1 && t < tail) {
    const int i = head + 4 * body + t;
    const float e[1] = {x[i]};
    ArgmaxAdd(st, neg_max_log2, e, [&](int) { return i; });
  }

  st = ArgmaxWarpMerge(st);
  const int warp = t / 32, lane = t % 32;
  if (lane == 0) warp_parts[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = ArgmaxWarpMerge(lane < stride / 32 ? warp_parts[lane] : ArgmaxEmpty());
    if (!kCluster && lane == 0) ArgmaxWrite(p, row, x, st);
  }
  if constexpr (kCluster) {
#if ITE_CLUSTER_CODE
    __shared__ ArgmaxPart block_part;
    if (t == 0) block_part = st;  // the block's result, held by thread 0
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();  // every block has started and published its part
    if (rank == 0 && warp == 0) {
      st = ArgmaxWarpMerge(lane < parts ? *cluster.map_shared_rank(&block_part, lane)
                                        : ArgmaxEmpty());
      if (lane == 0) ArgmaxWrite(p, row, x, st);
    }
    cluster.sync();  // no block exits, freeing its part, before block 0 has read it
#endif
  }
}

__global__ void PenaltyKernel(float* logits, int vocab, const int32_t* __restrict__ token_ids,
                              const int32_t* __restrict__ output_counts,
                              const int32_t* __restrict__ offsets,
                              const float* __restrict__ repetition,
                              const float* __restrict__ presence,
                              const float* __restrict__ frequency) {
  const int b = blockIdx.x;
  float* row = logits + int64_t{b} * vocab;
  const float rep = repetition ? repetition[b] : 1.0f;
  const float pres = presence ? presence[b] : 0.0f;
  const float freq = frequency ? frequency[b] : 0.0f;
  for (int e = offsets[b] + threadIdx.x; e < offsets[b + 1]; e += blockDim.x) {
    const int32_t tok = token_ids[e];
    if (tok < 0 || tok >= vocab) continue;
    float x = row[tok];
    // A tiny penalty can push x / rep past the float range; inf would make the softmax NaN.
    if (rep != 1.0f) x = x > 0.0f ? fminf(x / rep, FLT_MAX) : x * rep;
    const int32_t count = output_counts[e];
    if (count > 0) x -= pres + freq * static_cast<float>(count);
    row[tok] = x;
  }
}

}  // namespace

Status ApplyPenalties(const PenaltyArgs& a, cudaStream_t stream) {
  if (a.logits == nullptr || a.offsets == nullptr || a.token_ids == nullptr ||
      a.output_counts == nullptr) {
    return InvalidArgument(
        "ApplyPenalties: logits, token_ids, output_counts and offsets must "
        "be non-null");
  }
  if (a.batch < 0 || a.vocab <= 0) {
    return InvalidArgument("ApplyPenalties: bad shape batch={} vocab={}", a.batch, a.vocab);
  }
  if (a.batch == 0) return Status::Ok();
  PenaltyKernel<<<a.batch, 256, 0, stream>>>(a.logits, a.vocab, a.token_ids, a.output_counts,
                                             a.offsets, a.repetition, a.presence, a.frequency);
  return LaunchStatus("PenaltyKernel");
}

Status Sample(const SamplingArgs& a, cudaStream_t stream) {
  if (a.logits == nullptr || a.tokens == nullptr || a.temperature == nullptr ||
      a.seeds == nullptr || a.steps == nullptr) {
    return InvalidArgument(
        "Sample: logits, tokens, temperature, seeds and steps must be "
        "non-null (top_k, top_p, min_p and logprobs may be null)");
  }
  if (a.batch < 0 || a.vocab <= 0) {
    return InvalidArgument("Sample: bad shape batch={} vocab={}", a.batch, a.vocab);
  }
  if (a.batch == 0) return Status::Ok();
  return CudaStatus(LaunchDependent(SampleKernel, a.batch, kThreads, 0, stream,
                                    SampleParams{a.logits, a.vocab, a.temperature, a.top_k, a.top_p,
                                                 a.min_p, a.seeds, a.steps, a.tokens, a.logprobs}),
                    "SampleKernel");
}

Status Argmax(const float* logits, int32_t batch, int32_t vocab, int32_t* tokens, float* logprobs,
              cudaStream_t stream) {
  if (logits == nullptr || tokens == nullptr) {
    return InvalidArgument("Argmax: logits and tokens must be non-null");
  }
  if (batch < 0 || vocab <= 0) {
    return InvalidArgument("Argmax: bad shape batch={} vocab={}", batch, vocab);
  }
  if (batch == 0) return Status::Ok();
  const ArgmaxParams params{logits, vocab, tokens, logprobs};
  // A cluster of up to kArgmaxMaxCluster blocks per row, each slice at least kArgmaxMinSlice
  // floats: a 128256-wide vocab row takes 2 blocks of 256 KB, so 256 rows make 512 blocks.
  int want = static_cast<int>(std::min<int64_t>(
      kArgmaxMaxCluster, (int64_t{vocab} + kArgmaxMinSlice - 1) / kArgmaxMinSlice));
  // Few rows (a small decode batch) would leave all but a few multiprocessors idle: up to 16
  // blocks per row there, while the rows still fit in one wave and slices keep 4096 floats.
  // The token does not depend on the split (the lowest index of the max wins); the logprob's
  // sum is rounded in another order.
  const int sms = CurrentDevice().multiprocessors;
  while (want > 1 && want < 16 && int64_t{batch} * want * 2 <= sms &&
         vocab / (2 * want) >= kArgmaxMinSlice / 2)
    want *= 2;
  if (want > 1 && int64_t{batch} * want <= INT32_MAX) {
    constexpr auto kernel = ArgmaxKernel<true>;
    const int cluster = std::min(want, ClusterLimit<kernel>(kArgmaxClusterThreads));
    if (cluster > 1) {
      return CudaStatus(LaunchClustered(kernel, dim3(batch * cluster), kArgmaxClusterThreads, 0,
                                        cluster, /*dependent=*/true, stream, params),
                        "ArgmaxKernel (cluster)");
    }
  }
  // One block per row, wide enough that each thread has about kArgmaxLoads vectors per row.
  const int64_t wanted_threads = (int64_t{vocab} + 4 * kArgmaxLoads - 1) / (4 * kArgmaxLoads);
  const int threads = static_cast<int>(
      std::min<int64_t>(kArgmaxMaxThreads, std::max<int64_t>(32, (wanted_threads + 31) / 32 * 32)));
  return CudaStatus(LaunchDependent(ArgmaxKernel<false>, batch, threads, 0, stream, params),
                    "ArgmaxKernel");
}

}  // namespace ite::kernels
