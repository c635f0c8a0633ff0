#include "scheduler/request_intake.h"

#include "scheduler/tokenizer/tokenizer.h"

namespace ite {
namespace {

// Runs `f` (which returns a StatusOr) so that no exception from third-party code (JSON, the
// template engine) reaches a front end: it becomes INTERNAL with the exception's text.
template <typename F>
auto NoThrow(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Internal("unexpected exception: {}", e.what());
  }
}

GenerationEvent FinalEvent(FinishReason reason, Status error) {
  GenerationEvent event;
  event.finish = reason;
  event.error = std::move(error);
  return event;
}

// The continuations 1..n-1 of a request, waiting for the first one's prefill. Touched only on
// the scheduler thread (from the first continuation's callback).
struct PendingForks {
  std::vector<GenerationRequest> requests;
  std::vector<std::shared_ptr<GenerationSession::Shared>> shared;
  std::vector<std::function<void(const GenerationEvent&)>> callbacks;
  bool submitted = false;

  void SubmitAll(Scheduler& scheduler) {
    submitted = true;
    for (size_t i = 0; i < requests.size(); ++i) {
      bool cancelled;
      Status st;
      {
        // Under the session's lock, so a concurrent Cancel either sees this fork submitted (and
        // cancels it in the scheduler) or stops it here.
        std::lock_guard<std::mutex> lock(shared[i]->mu);
        cancelled = shared[i]->cancelled;
        if (!cancelled) st = scheduler.Submit(std::move(requests[i]), callbacks[i]);
      }
      // Through the callback (not the queue directly), so metrics see these endings too.
      if (cancelled) {
        callbacks[i](FinalEvent(FinishReason::kCancelled, Status::Ok()));
      } else if (!st.ok()) {
        callbacks[i](FinalEvent(FinishReason::kError, st));
      }
    }
    requests.clear();
  }
};

}  // namespace

RequestIntake::RequestIntake(Scheduler* scheduler, std::shared_ptr<const Tokenizer> tokenizer,
                             std::unique_ptr<RequestBuilder> builder,
                             std::shared_ptr<ServingMetrics> metrics)
    : scheduler_(scheduler),
      tokenizer_(std::move(tokenizer)),
      builder_(std::move(builder)),
      metrics_(metrics ? std::move(metrics) : std::make_shared<ServingMetrics>()) {}

StatusOr<std::vector<std::unique_ptr<GenerationSession>>> RequestIntake::Submit(
    const GenerateInput& input, int n) {
  if (!accepting_) return Unavailable("server is shutting down");
  if (n < 1) return InvalidArgument("n = {}: must be >= 1", n);
  StatusOr<GenerationRequest> built = NoThrow([&] { return builder_->Build(input); });
  if (!built.ok()) return built.status();
  GenerationRequest request = std::move(built).value();
  std::string id =
      input.request_id.empty() ? fmt::format("req-{}", next_request_id_++) : input.request_id;
  const bool want_logprobs = request.sampling.logprobs;
  std::vector<std::unique_ptr<GenerationSession>> sessions;
  std::vector<std::shared_ptr<GenerationSession::Shared>> shared;
  auto forks = std::make_shared<PendingForks>();
  for (int i = 0; i < n; ++i) {
    shared.push_back(GenerationSession::MakeShared());
    std::string choice_id = n == 1 ? id : fmt::format("{}-{}", id, i);
    sessions.push_back(std::make_unique<GenerationSession>(scheduler_, tokenizer_, choice_id,
                                                           want_logprobs, shared.back()));
    if (i == 0) continue;
    GenerationRequest fork = request;
    fork.request_id = choice_id;
    fork.fork_of = sessions[0]->request_id();
    if (fork.sampling.has_seed) fork.sampling.seed += static_cast<uint64_t>(i);
    forks->requests.push_back(std::move(fork));
    forks->shared.push_back(shared.back());
    forks->callbacks.push_back(
        metrics_->Observe(choice_id, GenerationSession::Callback(shared.back())));
  }
  request.request_id = sessions[0]->request_id();
  std::function<void(const GenerationEvent&)> first =
      metrics_->Observe(sessions[0]->request_id(), GenerationSession::Callback(shared[0]));
  if (n > 1) {
    Scheduler* scheduler = scheduler_;
    first = [first = std::move(first), forks, scheduler](const GenerationEvent& e) {
      first(e);
      if (!forks->submitted) forks->SubmitAll(*scheduler);
    };
  }
  ITE_RETURN_IF_ERROR(scheduler_->Submit(std::move(request), std::move(first)));
  return sessions;
}

StatusOr<TokenizeOutput> RequestIntake::Tokenize(const PromptInput& prompt,
                                                 bool return_tokens) const {
  TokenizeOutput out;
  StatusOr<std::vector<int32_t>> tokens =
      NoThrow([&] { return builder_->PromptTokens(prompt, &out.rendered_prompt); });
  if (!tokens.ok()) return tokens.status();
  out.token_ids = std::move(tokens).value();
  if (return_tokens) {
    for (int32_t id : out.token_ids) out.tokens.push_back(tokenizer_->IdToToken(id));
  }
  return out;
}

StatusOr<std::string> RequestIntake::Detokenize(const std::vector<int32_t>& ids,
                                                bool skip_special_tokens) const {
  const int32_t vocab = builder_->options().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab) {
      return InvalidArgument("tokens[{}] = {}: outside the vocabulary [0, {})", i, ids[i], vocab);
    }
  }
  return tokenizer_->Decode(ids, skip_special_tokens);
}

}  // namespace ite
