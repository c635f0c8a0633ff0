// Token sampling on the device: penalties, then temperature / top-k / top-p / min-p and a draw
// with a per-request seed, or argmax. One row of logits per request.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

// Penalties applied in place to logits [batch, vocab] (fp32). For row b the entries
// [offsets[b], offsets[b + 1]) of token_ids / output_counts list the distinct tokens seen so far
// (prompt and output) and how often each appeared in the output (0: prompt only). Tokens must
// be distinct within a row.
//   repetition (HF): every listed token: logit > 0 ? logit / r : logit * r
//   presence / frequency (OpenAI): tokens with count > 0: logit -= presence + frequency * count
struct PenaltyArgs {
  float* logits = nullptr;
  int32_t batch = 0;
  int32_t vocab = 0;
  const int32_t* token_ids = nullptr;      // [total] device
  const int32_t* output_counts = nullptr;  // [total] device
  const int32_t* offsets = nullptr;        // [batch + 1] device
  const float* repetition = nullptr;       // [batch] device (1 = off)
  const float* presence = nullptr;         // [batch] device (0 = off)
  const float* frequency = nullptr;        // [batch] device (0 = off)
};

Status ApplyPenalties(const PenaltyArgs& args, cudaStream_t stream);

// Per-row sampling parameters, all [batch] device arrays.
//   temperature <= 0 or top_k == 1: greedy (argmax, lowest index on ties).
//   top_k <= 0: off; top_p >= 1: off; min_p <= 0: off.
// The draw is a Gumbel-max over the kept tokens with noise from a counter-based hash of
// (seed, step, token): the same seed and step always give the same token, on any batch layout.
// `step` is the request's own counter (e.g. tokens generated so far).
struct SamplingArgs {
  const float* logits = nullptr;  // [batch, vocab] fp32, not modified
  int32_t batch = 0;
  int32_t vocab = 0;
  const float* temperature = nullptr;
  const int32_t* top_k = nullptr;
  const float* top_p = nullptr;
  const float* min_p = nullptr;
  const uint64_t* seeds = nullptr;
  const uint64_t* steps = nullptr;
  int32_t* tokens = nullptr;  // [batch] out
  float* logprobs = nullptr;  // [batch] out, optional: log softmax(logits)[token]
};

Status Sample(const SamplingArgs& args, cudaStream_t stream);

// Plain argmax of each row (lowest index on ties) and its log-softmax value (logprobs optional).
Status Argmax(const float* logits, int32_t batch, int32_t vocab, int32_t* tokens, float* logprobs,
              cudaStream_t stream);

}  // namespace ite::kernels
