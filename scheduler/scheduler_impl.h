// Scheduler internals shared by scheduler.cc (requests, the loop, steps, stats) and
// worker_health.cc (worker failure, recovery and the probe thread). Not part of the API.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "scheduler/batcher.h"
#include "scheduler/scheduler.h"
#include "scheduler/sequence.h"

namespace ite {

namespace scheduler_internal {

inline int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Everything the loop thread learns arrives as one of these.
struct Message {
  enum class Kind {
    kSubmit,
    kCancel,
    kResult,
    kWorkerBack,
    kRecoverTimeout,
    kUnresponsive,
    kStateLost,
    kShutdown
  };
  explicit Message(Kind k) : kind(k) {}
  Kind kind;
  std::unique_ptr<Sequence> seq;  // kSubmit
  std::string request_id;         // kCancel
  int worker = -1;                // all but kSubmit, kCancel and kShutdown
  uint64_t generation = 0;        // kResult
  Status status;                  // kResult: the step's outcome
  StepResult result;              // kResult, when status is OK
  WorkerInfo info;                // kWorkerBack
  bool drain = false;             // kShutdown
};

// One worker as the loop sees it.
struct WorkerSlot {
  std::unique_ptr<WorkerClient> client;
  WorkerInfo info;
  std::unique_ptr<Batcher> batcher;
  std::atomic<bool> up{true};
  std::atomic<bool> probe_posted{false};
  // Lost its state while up (WorkerClient::StateLost): no steps are sent, queued requests stay,
  // and the probe clears it until the deadline (steady-clock ms), then it is failed.
  std::atomic<bool> recovering{false};
  // Down, but holding the queued requests of its failure (no other worker could take them)
  // until it comes back or the deadline passes.
  std::atomic<bool> holding{false};
  std::atomic<int64_t> recover_deadline_ms{0};
  std::atomic<bool> timeout_posted{false};
  // When the worker last answered a step or a health probe (steady-clock ms), while up.
  std::atomic<int64_t> last_heard_ms{0};
  std::atomic<bool> unresponsive_posted{false};
  std::atomic<bool> state_lost_posted{false};
  uint64_t generation = 0;              // + 1 per failure; results of older generations are dropped
  int32_t outstanding = 0;              // steps sent and not answered, any generation
  std::optional<WorkerInfo> back_info;  // came back while old steps were still outstanding
  // Why it is kept down although it answers (another model), and that model's fingerprint; said
  // in the log once, not at every probe. Cleared when it is taken back.
  std::string refused_why;
  std::string refused_fingerprint;
  int64_t steps = 0;
  int64_t forward_us = 0;
  int64_t idle_us = 0;
};

}  // namespace scheduler_internal

using scheduler_internal::Message;
using scheduler_internal::SteadyMillis;
using scheduler_internal::WorkerSlot;

struct Scheduler::Impl {
  SchedulerOptions options;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::vector<std::unique_ptr<WorkerSlot>> slots;
  ModelInfo model;
  // The fingerprint every worker must report (options.model_fingerprint, or pinned from the first
  // worker that reported one) and where it came from, for messages. Start, then the loop thread.
  std::string fingerprint;
  std::string fingerprint_source;
  int32_t max_context = 0;
  int32_t block_size = 0;
  int32_t min_pool_blocks = 0;
  bool started = false;

  // Inbox, shared with every thread.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Message> inbox;
  std::unordered_set<std::string> active_ids;
  bool accepting = false;
  bool shutdown_posted = false;
  uint64_t arrival = 0;
  int64_t next_seq_id = 1;

  // Loop-thread state.
  std::unordered_map<std::string, std::pair<int, int64_t>> where;  // request -> (slot, seq)
  int64_t next_step_id = 1;
  bool shutting_down = false;
  int64_t finished = 0;
  int64_t loop_cpu_us = 0;

  mutable std::mutex stats_mu;
  SchedulerStats stats;

  std::mutex probe_mu;
  std::condition_variable probe_cv;
  bool probe_stop = false;
  bool probe_now = false;  // a worker failed or lost its state: probe without waiting

  std::thread loop_thread;
  std::thread probe_thread;

  // The notification is kept in probe_now, so one sent before the probe thread waits is not lost.
  void WakeProbe() {
    {
      std::lock_guard<std::mutex> lock(probe_mu);
      probe_now = true;
    }
    probe_cv.notify_all();
  }

  void Post(Message m) {
    {
      std::lock_guard<std::mutex> lock(mu);
      inbox.push_back(std::move(m));
    }
    cv.notify_one();
  }

  BatcherOptions MakeBatcherOptions() const {
    BatcherOptions b;
    b.max_batch_tokens = options.max_batch_tokens;
    b.max_running = options.max_running;
    b.max_inflight_steps = options.max_inflight_steps;
    b.enable_prefix_cache = options.enable_prefix_cache;
    return b;
  }

  Status Validate(const GenerationRequest& r) const;
  void Loop();
  void Handle(Message& m, std::vector<OutEvent>* events);
  // `if_none`: the error a request gets when no worker is up (default: "no worker is available").
  void Route(std::unique_ptr<Sequence> seq, std::vector<OutEvent>* events,
             const Status* if_none = nullptr);
  // Fails worker i's running requests; its queued ones move to other workers, or, when none is
  // up and `hold` is set, wait for worker i to come back within options.recover_grace_ms.
  void FailWorker(int i, const Status& cause, std::vector<OutEvent>* events, bool hold = true);
  void StartRecovery(int i);
  void Revive(int i, const WorkerInfo& info, std::vector<OutEvent>* events);
  // "worker 1 (10.0.0.7:50052)", for log lines and errors.
  std::string WorkerName(int i) const;
  // Why worker i, answering `info`, serves another model than the scheduler's ("" when it does
  // not). Pins info's fingerprint when the scheduler has none yet.
  std::string CheckFingerprint(int i, const WorkerInfo& info);
  // Keeps worker i down although it answers, for `why` (serving the model with
  // `other_fingerprint`, when that is the reason): a recovering one fails like a dead one, the
  // requests held for it move or fail UNAVAILABLE now rather than at the grace's end.
  void RefuseWorker(int i, const std::string& why, const std::string& other_fingerprint,
                    std::vector<OutEvent>* events);
  void SendSteps();
  bool Idle() const;
  void PublishStats();
  void ProbeLoop();
  void ProbeUpWorker(int i);
};

}  // namespace ite
