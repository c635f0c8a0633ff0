// What the scheduler asks a worker to sample with, and what it gets back. The order in which the
// parameters apply and what a logprob is measured over are documented with the sampler that
// implements them (worker/sampling/sampler.h).
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace ite {

struct SamplingParams {
  // Temperatures below this sample greedily (vLLM's cut-off too): 1 / temperature then stays
  // below 1e5, so dividing a logit by it cannot overflow a float into inf and NaN.
  static constexpr float kGreedyBelow = 1e-5f;

  float temperature = 1.0f;  // 0 (or below kGreedyBelow): greedy
  int32_t top_k = 0;         // 0: off
  float top_p = 1.0f;        // 1: off
  float min_p = 0.0f;        // 0: off
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  uint64_t seed = 0;
  bool has_seed = false;  // false: seeded from std::random_device
  int32_t top_logprobs = 0;
  bool logprobs = false;

  // InvalidArgument naming the field when out of range.
  Status Validate() const;
  // Whether the token is the argmax: what both backends test instead of temperature == 0.
  [[nodiscard]] bool greedy() const { return temperature < kGreedyBelow; }
};

struct TokenLogprob {
  int32_t token;
  float logprob;
};

struct SampleResult {
  int32_t token = -1;
  float logprob = 0.0f;           // of `token`, when params.logprobs
  std::vector<TokenLogprob> top;  // params.top_logprobs best, most likely first
};

}  // namespace ite
