// Sampling: one block per request row.
//  1. One pass for the max / argmax and the softmax normaliser (for the logprob).
//  2. Top-k and top-p thresholds by radix select over order-preserving 32-bit keys of the
//     logits: four 8-bit digit passes with a shared-memory histogram of counts (top-k) or of
//     probability mass (top-p). No sort, no copy of the row.
//  3. A Gumbel-max draw over the tokens at or above the threshold: argmax(x / T + g_i) is an
//     exact sample of softmax(x / T) restricted to those tokens.
#include "cuda_check.h"
#include "dtype_utils.cuh"
#include "ite/kernels/sampling.h"

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
    if (rep != 1.0f) x = x > 0.0f ? x / rep : x * rep;
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
  SampleKernel<<<a.batch, kThreads, 0, stream>>>(SampleParams{a.logits, a.vocab, a.temperature,
                                                              a.top_k, a.top_p, a.min_p, a.seeds,
                                                              a.steps, a.tokens, a.logprobs});
  return LaunchStatus("SampleKernel");
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
  SampleKernel<<<batch, kThreads, 0, stream>>>(SampleParams{
      logits, vocab, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, tokens, logprobs});
  return LaunchStatus("SampleKernel");
}

}  // namespace ite::kernels
