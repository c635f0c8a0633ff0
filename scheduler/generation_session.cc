#include "scheduler/generation_session.h"

#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

void GenerationSession::Shared::Push(const GenerationEvent& event) {
  std::shared_ptr<Waker> wake;
  {
    std::lock_guard<std::mutex> lock(mu);
    events.push_back(event);
    wake = waker.lock();
  }
  cv.notify_one();
  // Outside the lock: the waker takes its own lock and then calls Next, which takes this one.
  if (wake) wake->Wake();
}

void GenerationSession::SetWaker(std::weak_ptr<Waker> waker) {
  std::lock_guard<std::mutex> lock(shared_->mu);
  shared_->waker = std::move(waker);
}

std::shared_ptr<GenerationSession::Shared> GenerationSession::MakeShared() {
  return std::make_shared<Shared>();
}

std::function<void(const GenerationEvent&)> GenerationSession::Callback(
    std::shared_ptr<Shared> shared) {
  return [shared = std::move(shared)](const GenerationEvent& event) { shared->Push(event); };
}

GenerationSession::GenerationSession(Scheduler* scheduler,
                                     std::shared_ptr<const Tokenizer> tokenizer,
                                     std::string request_id, bool want_logprobs,
                                     std::shared_ptr<Shared> shared)
    : scheduler_(scheduler),
      tokenizer_(std::move(tokenizer)),
      request_id_(std::move(request_id)),
      want_logprobs_(want_logprobs),
      shared_(std::move(shared)) {}

GenerationSession::~GenerationSession() {
  if (!finished_) Cancel();
}

void GenerationSession::Cancel() {
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (shared_->cancelled) return;
    shared_->cancelled = true;
  }
  scheduler_->Cancel(request_id_);
}

std::optional<GenerationChunk> GenerationSession::Next(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  std::unique_lock<std::mutex> lock(shared_->mu);
  while (true) {
    if (!shared_->cv.wait_until(lock, deadline, [&] { return !shared_->events.empty(); })) {
      return std::nullopt;
    }
    GenerationEvent event = std::move(shared_->events.front());
    shared_->events.pop_front();
    const bool last = event.finish != FinishReason::kNone;
    // A token whose text is held back (a possible stop string) still carries its id; an event
    // with neither (none today) is not worth a chunk.
    if (!last && event.text.empty() && event.tokens.empty()) continue;
    lock.unlock();
    if (last) finished_ = true;
    return ToChunk(std::move(event));
  }
}

GenerationChunk GenerationSession::ToChunk(GenerationEvent event) const {
  GenerationChunk chunk;
  chunk.text = std::move(event.text);
  chunk.token_ids.assign(event.tokens.begin(), event.tokens.end());
  chunk.finish = event.finish;
  chunk.usage = event.usage;
  if (event.finish == FinishReason::kError) {
    chunk.error = event.error.ok() ? Internal("request failed without a status") : event.error;
  }
  if (!want_logprobs_) return chunk;
  auto decode = [&](int32_t token, float logprob) {
    return ChunkLogprob{token, logprob, tokenizer_->Decode(std::span(&token, 1), false)};
  };
  for (const SampleResult& s : event.samples) {
    PositionLogprob p;
    p.sampled = decode(s.token, s.logprob);
    for (const TokenLogprob& t : s.top) p.top.push_back(decode(t.token, t.logprob));
    chunk.logprobs.push_back(std::move(p));
  }
  return chunk;
}

}  // namespace ite
