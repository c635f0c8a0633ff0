// Per-sequence token sampling: penalties, temperature, top-k / top-p / min-p, seeded RNG and
// logprobs. Order of processing (that of Hugging Face's logits processors and warpers):
//   1. repetition penalty over prompt + generated tokens (transformers semantics: a seen token's
//      logit is divided by the penalty when positive, multiplied when negative);
//   2. presence and frequency penalties over generated tokens only (OpenAI / vLLM semantics:
//      logit -= presence * [count > 0] + frequency * count);
//   3. temperature (0 = greedy: argmax, lowest id on ties);
//   4. top-k, then top-p (smallest set of most likely tokens whose mass reaches top_p), then
//      min-p (drop tokens below min_p times the most likely token's probability).
// Logprobs are the log-softmax of the logits after steps 1-3 (temperature taken as 1 when
// greedy), before the truncation of step 4: the distribution the model expressed once penalised,
// so alternatives outside top-k still get a finite logprob.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/protocol/sampling_params.h"

namespace ite {

// The logprob of result->token and the top_n most likely tokens (lowest id first on ties) from
// x, the logits after penalties and temperature (temperature 1 when greedy): the definition of
// logprob both backends share. `scratch` is reused between calls.
void FillLogprobs(std::span<const float> x, int32_t top_n, SampleResult* result,
                  std::vector<int32_t>* scratch);

// Per sequence: RNG state and token counts for the penalties. Not thread-safe; one sequence is
// sampled by one thread at a time. params must have passed Validate().
class SequenceSampler {
 public:
  // context_tokens: the prompt, followed by the last `generated` tokens this sequence already
  // produced when it resumes (a rejoin after preemption). Those count for the penalties as
  // sampled ones do, and a seeded RNG skips the draws they took, so the output goes on exactly
  // as if the sequence had never stopped.
  SequenceSampler(const SamplingParams& params, std::span<const int32_t> context_tokens,
                  int32_t generated = 0);

  // logits [vocab]. Records the chosen token (as Accept does).
  SampleResult Sample(std::span<const float> logits);
  // Records a token chosen elsewhere (e.g. forced), for the penalties.
  void Accept(int32_t token);

  const SamplingParams& params() const { return params_; }

 private:
  void ApplyPenalties(std::vector<float>* x) const;
  int32_t Draw(const std::vector<float>& scaled);

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::unordered_set<int32_t> seen_;                // prompt + generated
  std::unordered_map<int32_t, int32_t> generated_;  // token -> count
  std::vector<float> work_;
  std::vector<int32_t> order_;
  std::vector<float> probs_;
};

}  // namespace ite
