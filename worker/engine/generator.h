// Offline generation over a Backend for one or a few sequences at once: chunked prefill, then a
// decode loop that advances every live sequence in one Forward per step (their rows share each
// weight read), stopping on a stop token or max_new_tokens. A trivial allocator hands out the
// backend's KV blocks. Used by ite-generate, the benchmarks and the golden tests; the service
// path goes through the scheduler instead.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/backend/backend.h"
#include "worker/sampling/sampler.h"

namespace ite {

struct GenerateOptions {
  int32_t max_new_tokens = 256;
  int32_t prefill_chunk = 512;    // prompt tokens per Forward
  std::vector<int32_t> stop_ids;  // e.g. the EOS ids; the stop token is part of the output
  // LLaVA: the images of each prompt (index as in the prompts; missing or empty: none).
  std::vector<std::vector<StepImage>> images;
};

struct GenerateResult {
  std::vector<int32_t> tokens;        // generated ids (a final stop token included)
  std::vector<SampleResult> samples;  // one per token (logprobs when asked for)
  std::string finish_reason;          // "stop" (stop token), "length" (max_new_tokens or context)
  int64_t prefill_us = 0;             // time to the first token
  int64_t decode_us = 0;              // time for the remaining tokens
};

// Called for each generated token of sequence `seq` (index into the prompts); returning false
// ends that sequence with finish_reason "cancelled".
using TokenCallback = std::function<bool(int seq, const SampleResult& sample)>;

class Generator {
 public:
  // backend must outlive the Generator. Not thread-safe (nor is a Backend).
  explicit Generator(Backend* backend) : backend_(backend) {}

  StatusOr<GenerateResult> Generate(std::span<const int32_t> prompt, const SamplingParams& params,
                                    const GenerateOptions& options,
                                    const TokenCallback& on_token = nullptr);

  // Every prompt with the same params (each sequence has its own sampler and RNG; with a seed,
  // sequence i uses seed + i). Fails without generating when the KV pool cannot hold all of
  // them at full length.
  StatusOr<std::vector<GenerateResult>> GenerateBatch(
      const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params,
      const GenerateOptions& options, const TokenCallback& on_token = nullptr);

 private:
  Backend* backend_;
};

}  // namespace ite
