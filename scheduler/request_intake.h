// The one door requests come in by, shared by the gRPC service and the OpenAI HTTP gateway:
// validation and tokenization (RequestBuilder), submission to the Scheduler, and the session
// that streams the result back. Front ends only translate their wire format to GenerateInput and
// GenerationChunk back, so both accept, reject and answer alike.
//
// Threads: every method may be called from any thread, concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "scheduler/generate_input.h"
#include "scheduler/generation_session.h"
#include "scheduler/request_builder.h"
#include "scheduler/scheduler.h"
#include "scheduler/serving_metrics.h"

namespace ite {

struct TokenizeOutput {
  std::vector<int32_t> token_ids;
  std::vector<std::string> tokens;  // each id's vocabulary string, when asked for
  std::string rendered_prompt;      // for a chat: the template's output
};

class RequestIntake {
 public:
  // `scheduler` must be started and outlive the intake. `metrics` (may be null: the intake keeps
  // its own) observes every request; it must outlive the scheduler.
  RequestIntake(Scheduler* scheduler, std::shared_ptr<const Tokenizer> tokenizer,
                std::unique_ptr<RequestBuilder> builder,
                std::shared_ptr<ServingMetrics> metrics = nullptr);

  // Validates, tokenizes and submits `n` (>= 1) continuations of one prompt. The first runs at
  // once; the others are submitted when its first token arrives, so that they find the prompt's
  // KV blocks in the prefix cache (the last, partial block copied on write) on the same worker,
  // whatever its load, instead of prefilling it again. With n > 1, request ids get "-0", "-1", ... appended, and a request
  // with a seed gives choice i the seed + i. Errors: INVALID_ARGUMENT naming the field,
  // UNAVAILABLE while shutting down.
  StatusOr<std::vector<std::unique_ptr<GenerationSession>>> Submit(const GenerateInput& input,
                                                                   int n = 1);

  // The prompt's tokens exactly as Submit would compute them.
  StatusOr<TokenizeOutput> Tokenize(const PromptInput& prompt, bool return_tokens) const;
  // INVALID_ARGUMENT for ids outside the vocabulary.
  StatusOr<std::string> Detokenize(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  // New Submit calls get UNAVAILABLE from now on; running ones continue (before a drain).
  void StopAccepting() { accepting_ = false; }
  bool accepting() const { return accepting_; }

  const RequestBuilderOptions& options() const { return builder_->options(); }
  bool has_chat_template() const { return builder_->has_chat_template(); }
  Scheduler& scheduler() const { return *scheduler_; }
  const Tokenizer& tokenizer() const { return *tokenizer_; }
  // Completion tokens of requests that finished without error.
  int64_t generated_tokens() const { return metrics_->generation_tokens(); }
  const ServingMetrics& metrics() const { return *metrics_; }

 private:
  Scheduler* scheduler_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::unique_ptr<RequestBuilder> builder_;
  std::atomic<bool> accepting_{true};
  std::atomic<int64_t> next_request_id_{0};
  std::shared_ptr<ServingMetrics> metrics_;
};

}  // namespace ite
