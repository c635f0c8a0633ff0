// One generation as a front end sees it: the scheduler's events become chunks (text, token ids,
// logprobs with their token texts, finish reason, usage) that the front end's handler thread
// pulls with Next(), and Cancel() stops the generation (its KV blocks are freed at once).
//
// Made by RequestIntake::Submit. Threads: one handler thread at a time calls Next; Cancel may be
// called from any thread. The scheduler's callback only queues (and wakes a Waker, if one is
// set), so a slow client never delays other requests. Destroying an unfinished session cancels
// its generation.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "scheduler/scheduler.h"

namespace ite {

struct ChunkLogprob {
  int32_t token = -1;
  float logprob = 0.0f;
  std::string text;  // the token alone, decoded (a partial UTF-8 sequence shows as U+FFFD)
};

struct PositionLogprob {
  ChunkLogprob sampled;
  std::vector<ChunkLogprob> top;  // most likely first, when top_logprobs > 0
};

struct GenerationChunk {
  std::string text;  // newly final text (stop strings and their possible prefixes held back)
  std::vector<int32_t> token_ids;
  std::vector<PositionLogprob> logprobs;      // one per token id when logprobs were asked for
  FinishReason finish = FinishReason::kNone;  // set on the last chunk only
  Usage usage;                                // on the last chunk
  Status error;                               // with finish == kError
};

class GenerationSession {
 public:
  // Told that an event arrived, for front ends that do not block a thread in Next (gRPC's
  // callback API): Wake runs on the scheduler thread, with no lock held, and must be cheap; it
  // may call Next(0) and Cancel.
  class Waker {
   public:
    virtual ~Waker() = default;
    virtual void Wake() = 0;
  };

  // The event queue the scheduler's callback fills (on the scheduler thread) and Next drains.
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<GenerationEvent> events;
    bool cancelled = false;  // Cancel was called (a fork not yet submitted then never is)
    std::weak_ptr<Waker> waker;  // weak: the waker owns the session, which owns this

    void Push(const GenerationEvent& event);
  };

  GenerationSession(Scheduler* scheduler, std::shared_ptr<const Tokenizer> tokenizer,
                    std::string request_id, bool want_logprobs, std::shared_ptr<Shared> shared);
  ~GenerationSession();  // cancels an unfinished generation
  GenerationSession(const GenerationSession&) = delete;
  GenerationSession& operator=(const GenerationSession&) = delete;

  // The next chunk, waiting at most `wait`; nullopt when none came in time (a front end polls
  // its client then and calls again). Chunks with neither text nor tokens are skipped, except
  // the last. Do not call again after the last chunk (finish != kNone).
  std::optional<GenerationChunk> Next(std::chrono::milliseconds wait);

  // Wakes `waker` on every event from now on. Events that came before are not announced: call
  // Next(0) after this to find them.
  void SetWaker(std::weak_ptr<Waker> waker);

  // Cancels the generation (idempotent); a final kCancelled chunk follows unless it already
  // finished.
  void Cancel();

  const std::string& request_id() const { return request_id_; }
  bool finished() const { return finished_; }

  // The callback to hand to Scheduler::Submit for this session's events.
  static std::function<void(const GenerationEvent&)> Callback(std::shared_ptr<Shared> shared);
  static std::shared_ptr<Shared> MakeShared();

 private:
  GenerationChunk ToChunk(GenerationEvent event) const;

  Scheduler* scheduler_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::string request_id_;
  bool want_logprobs_;
  std::shared_ptr<Shared> shared_;
  bool finished_ = false;
};

}  // namespace ite
