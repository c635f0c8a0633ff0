// Scheduler: the continuous batcher of the ite-scheduler process.
//
// Owns, per worker, a BlockManager (paged KV blocks) and a RadixCache (prefix cache), and a loop
// thread that admits requests from priority queues, builds steps (decodes first, then chunked
// prefill within a token budget), keeps up to 2 steps in flight per worker, preempts by
// recompute when blocks run out, detects stops (EOS, stop token ids, stop strings across token
// boundaries, max_tokens, context) and streams events. A stop seen one step late costs one wasted
// token on the worker, never a wrong output.
//
// Threads: Submit, Cancel, Stats and Shutdown may be called from any thread. Events are
// delivered on the scheduler's loop thread, in order per request; a callback may call Submit or
// Cancel, but must be cheap (it delays every other request).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "common/protocol/sampling_params.h"
#include "common/protocol/worker_client.h"
#include "common/status.h"
#include "scheduler/prompt_image.h"

namespace ite {

class Tokenizer;

struct GenerationRequest {
  std::string request_id;  // unique among the requests in flight
  std::vector<int32_t> prompt_tokens;
  SamplingParams sampling;
  int32_t max_tokens = 256;
  // No stop (EOS, stop ids, stop strings) ends the request before this many tokens; tokens
  // sampled before then stay in the output.
  int32_t min_tokens = 0;
  std::vector<std::string> stop;            // stop strings (matched across token boundaries)
  bool include_stop_str_in_output = false;  // the matched stop string ends the text
  std::vector<int32_t> stop_token_ids;      // in addition to the model's EOS ids
  bool ignore_eos = false;
  int32_t priority = 0;  // higher first; FCFS within a priority
  bool use_prefix_cache = true;
  // The request id of the first choice of an n > 1 request, in flight: this one runs on its
  // worker and starts from its prompt's KV blocks (the last one copied on write), computing only
  // the last prompt token. Without that request (finished, moved), the prefix cache serves.
  std::string fork_of;
  std::vector<PromptImage> images;  // in position order
  int32_t image_token_id = -1;      // what the worker gets for a (negative) image key
};

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* FinishReasonName(FinishReason reason);  // "none", "stop", "length", ...

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t cached_tokens = 0;  // prompt tokens served from the prefix cache (first admission)
  int32_t completion_tokens = 0;
};

// Delivered in order, on the scheduler thread; keep the callback cheap.
struct GenerationEvent {
  // New tokens since the last event (EOS/stop ids included); usually one, kept inline so the
  // per-token event costs no allocation on the scheduler's hot path.
  absl::InlinedVector<int32_t, 4> tokens;
  // One per token when the request asked for logprobs (sampling.logprobs or top_logprobs > 0),
  // otherwise empty (saves an allocation per token on the hot path).
  std::vector<SampleResult> samples;
  // Newly final text (UTF-8 complete; the stop string excluded unless the request includes it).
  // Text that could still become a stop string is held back until the next token decides.
  std::string text;
  FinishReason finish = FinishReason::kNone;
  Usage usage;   // filled on the final event
  Status error;  // with finish == kError
};

struct SchedulerOptions {
  int32_t max_batch_tokens = 2048;  // tokens per step (decodes count 1 each)
  // Sequences per worker in the running set (never more than max_batch_tokens, so every
  // running sequence can decode in every step).
  int32_t max_running = 256;
  // Requests waiting beyond the running sets, per worker: with workers x (max_running +
  // max_waiting) requests in flight, Submit answers ResourceExhausted ("the queue is full")
  // rather than let the backlog, and its memory, grow without bound. 0: no bound.
  int32_t max_waiting = 1024;
  int32_t max_context = 0;  // 0: the model's max_position
  bool enable_prefix_cache = true;
  int32_t max_inflight_steps = 2;  // per worker; 1 disables pipelining
  // Cache-aware routing: a worker with a longer cached prefix wins unless its load (running +
  // waiting requests) exceeds the least loaded worker's by more than this; then the least loaded
  // worker takes the request (and caches the prefix in turn). Small, so that a burst sharing one
  // prefix spreads over the workers rather than queueing behind the first to cache it; a second
  // worker's prefill of the shared prefix costs less than that queue.
  int32_t route_load_slack = 4;
  int32_t probe_interval_ms = 500;  // how often workers are probed (down ones: Info + Clear)
  // A worker that is up but answers neither a health probe (WorkerClient::Health, every probe
  // interval) nor a step for this long is marked down: its running requests fail UNAVAILABLE,
  // its queued ones move (or wait for it, as for a dead worker). A stopped or hung process is
  // found this way even while idle, when no step timeout can notice it. 0: never.
  int32_t down_after_ms = 5000;
  // A worker that lost its state while idle (WorkerClient::StateLost) keeps its queued requests
  // this long while it is probed; if it has not come back by then, it is failed like a dead one.
  int32_t recover_grace_ms = 5000;
  // common/model_fingerprint.h of the model this scheduler serves (its tokenizer's and prefix
  // cache's): a worker reporting another is refused, at Start with an error, later by keeping it
  // down. Empty (the scheduler's model files hold no weights): the first fingerprint a worker
  // reports is pinned instead. A worker that reports none (it predates fingerprints) is checked
  // by the model's shape only.
  std::string model_fingerprint;
  // Called on the loop thread with every step result that came back (metrics); keep it cheap.
  std::function<void(int worker, const StepResult& result)> on_step;
};

struct WorkerStats {
  bool up = false;
  std::string device;
  int32_t num_blocks = 0;
  // free + used + cached = num_blocks, as the proto's WorkerStats says.
  int32_t free_blocks = 0;    // on the free list
  int32_t used_blocks = 0;    // held by running sequences (cached or not)
  int32_t cached_blocks = 0;  // held only by the prefix cache (evictable)
  int64_t cached_tokens = 0;
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t worker_forward_us = 0;  // sums over steps, as reported by the worker
  int64_t worker_idle_us = 0;
  std::string model_fingerprint;    // what the worker reported when it was taken in
  std::string refused_fingerprint;  // while it is kept down for serving another model
};

struct SchedulerStats {
  std::vector<WorkerStats> workers;
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t steps = 0;
  int64_t preemptions = 0;
  int64_t finished_requests = 0;
  int64_t loop_cpu_us = 0;        // CPU time of the scheduler loop thread
  std::string model_fingerprint;  // every worker must serve this one; "" until one is known
};

class Scheduler {
 public:
  // `tokenizer` may be null: then no text is produced and stop strings are rejected.
  Scheduler(SchedulerOptions options, std::shared_ptr<const Tokenizer> tokenizer,
            std::vector<std::unique_ptr<WorkerClient>> workers);
  ~Scheduler();  // Shutdown(false) if still running

  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queries the workers, sizes the block managers and starts the loop thread. Those that answer
  // must agree on the model (its shape, and options.model_fingerprint), and at least one must
  // answer; the others start down and are taken in by the probe once they answer with the same
  // model (as a restarted worker is).
  Status Start();

  // Validates (prompt, context length, params) and queues. On OK the callback gets every event,
  // the last one with finish != kNone; on an error it is never called.
  Status Submit(GenerationRequest request, std::function<void(const GenerationEvent&)> on_event);

  // Frees the request's blocks at once; its final event has kCancelled. Unknown ids: no-op.
  void Cancel(const std::string& request_id);

  SchedulerStats Stats() const;

  // Whether some worker is up (can take requests): what the scheduler's health reports.
  bool AnyWorkerUp() const;

  // The model the workers serve (valid after Start).
  const ModelInfo& model_info() const;
  int32_t max_context() const;
  int32_t block_size() const;  // tokens per KV block, the same on every worker

  // drain: finish running and queued requests first; otherwise cancel them. Idempotent.
  void Shutdown(bool drain);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ite
