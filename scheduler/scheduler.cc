#include "scheduler/scheduler.h"

#include <time.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/check.h"
#include "common/logging.h"
#include "scheduler/batcher.h"
#include "scheduler/sequence.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

const char* FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

namespace {

int64_t SteadyMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

// Everything the loop thread learns arrives as one of these.
struct Message {
  enum class Kind { kSubmit, kCancel, kResult, kWorkerBack, kRecoverTimeout, kShutdown };
  explicit Message(Kind k) : kind(k) {}
  Kind kind;
  std::unique_ptr<Sequence> seq;  // kSubmit
  std::string request_id;         // kCancel
  int worker = -1;                // kResult, kWorkerBack, kRecoverTimeout
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
  uint64_t generation = 0;              // + 1 per failure; results of older generations are dropped
  int32_t outstanding = 0;              // steps sent and not answered, any generation
  std::optional<WorkerInfo> back_info;  // came back while old steps were still outstanding
  int64_t steps = 0;
  int64_t forward_us = 0;
  int64_t idle_us = 0;
};

}  // namespace

struct Scheduler::Impl {
  SchedulerOptions options;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::vector<std::unique_ptr<WorkerSlot>> slots;
  ModelConfig config;
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
  void SendSteps();
  bool Idle() const;
  void PublishStats();
  void ProbeLoop();
};

Scheduler::Scheduler(SchedulerOptions options, std::shared_ptr<const Tokenizer> tokenizer,
                     std::vector<std::unique_ptr<WorkerClient>> workers)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = options;
  impl_->tokenizer = std::move(tokenizer);
  for (auto& w : workers) {
    auto slot = std::make_unique<WorkerSlot>();
    slot->client = std::move(w);
    impl_->slots.push_back(std::move(slot));
  }
}

Scheduler::~Scheduler() { Shutdown(false); }

const ModelConfig& Scheduler::model_config() const { return impl_->config; }
int32_t Scheduler::max_context() const { return impl_->max_context; }

Status Scheduler::Start() {
  Impl& s = *impl_;
  if (s.started) return FailedPrecondition("Scheduler::Start called twice");
  if (s.slots.empty()) return InvalidArgument("the scheduler needs at least one worker");
  const SchedulerOptions& o = s.options;
  if (o.max_batch_tokens < 1 || o.max_running < 1 || o.max_inflight_steps < 1 ||
      o.max_context < 0) {
    return InvalidArgument(
        "SchedulerOptions: max_batch_tokens {}, max_running {}, max_inflight_steps {}, "
        "max_context {} (all must be >= 1, max_context >= 0)",
        o.max_batch_tokens, o.max_running, o.max_inflight_steps, o.max_context);
  }
  for (size_t i = 0; i < s.slots.size(); ++i) {
    StatusOr<WorkerInfo> info = s.slots[i]->client->Info();
    if (!info.ok()) {
      return Unavailable("worker {}: Info failed: {}", i, info.status().message());
    }
    if (info->block_size < 1 || info->num_blocks < 1 || info->config.vocab_size < 1) {
      return InvalidArgument("worker {}: block_size {}, num_blocks {}, vocab {}", i,
                             info->block_size, info->num_blocks, info->config.vocab_size);
    }
    if (i > 0) {
      const WorkerInfo& first = s.slots[0]->info;
      if (info->config.vocab_size != first.config.vocab_size ||
          info->block_size != first.block_size ||
          info->config.max_position != first.config.max_position) {
        return InvalidArgument(
            "worker {} serves a different model than worker 0 (vocab {} vs {}, block_size {} vs "
            "{}, context {} vs {})",
            i, info->config.vocab_size, first.config.vocab_size, info->block_size, first.block_size,
            info->config.max_position, first.config.max_position);
      }
    }
    s.slots[i]->info = *info;
    s.slots[i]->batcher = std::make_unique<Batcher>(s.MakeBatcherOptions(), *info);
  }
  s.config = s.slots[0]->info.config;
  s.block_size = s.slots[0]->info.block_size;
  s.max_context = s.config.max_position;
  if (o.max_context > 0) s.max_context = std::min(s.max_context, o.max_context);
  s.min_pool_blocks = s.slots[0]->info.num_blocks;
  for (auto& slot : s.slots) s.min_pool_blocks = std::min(s.min_pool_blocks, slot->info.num_blocks);
  s.started = true;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.accepting = true;
  }
  s.PublishStats();
  s.loop_thread = std::thread([&s] { s.Loop(); });
  s.probe_thread = std::thread([&s] { s.ProbeLoop(); });
  return Status::Ok();
}

Status Scheduler::Impl::Validate(const GenerationRequest& r) const {
  if (r.prompt_tokens.empty()) return InvalidArgument("prompt_tokens is empty");
  if (r.max_tokens < 1)
    return InvalidArgument("max_tokens must be at least 1, got {}", r.max_tokens);
  const int64_t total = static_cast<int64_t>(r.prompt_tokens.size()) + r.max_tokens;
  if (total > max_context) {
    return InvalidArgument(
        "prompt ({} tokens) + max_tokens ({}) = {} exceeds the context length {}",
        r.prompt_tokens.size(), r.max_tokens, total, max_context);
  }
  const int32_t vocab = config.vocab_size;
  for (size_t i = 0; i < r.prompt_tokens.size(); ++i) {
    if (r.prompt_tokens[i] < 0 || r.prompt_tokens[i] >= vocab) {
      return InvalidArgument("prompt_tokens[{}] = {} is outside the vocabulary [0, {})", i,
                             r.prompt_tokens[i], vocab);
    }
  }
  for (size_t i = 0; i < r.stop_token_ids.size(); ++i) {
    if (r.stop_token_ids[i] < 0 || r.stop_token_ids[i] >= vocab) {
      return InvalidArgument("stop_token_ids[{}] = {} is outside the vocabulary [0, {})", i,
                             r.stop_token_ids[i], vocab);
    }
  }
  for (size_t i = 0; i < r.stop.size(); ++i) {
    if (r.stop[i].empty()) return InvalidArgument("stop[{}] is an empty string", i);
  }
  if (!r.stop.empty() && tokenizer == nullptr) {
    return InvalidArgument("stop strings need a tokenizer; this scheduler has none");
  }
  ITE_RETURN_IF_ERROR(r.sampling.Validate());
  // A request must fit in a worker's whole KV pool, or it could never finish.
  const int64_t blocks_needed = (total + block_size - 1) / block_size;
  if (blocks_needed > min_pool_blocks) {
    return ResourceExhausted("the request needs {} KV blocks of {} tokens; a worker holds {}",
                             blocks_needed, block_size, min_pool_blocks);
  }
  return Status::Ok();
}

Status Scheduler::Submit(GenerationRequest request,
                         std::function<void(const GenerationEvent&)> on_event) {
  Impl& s = *impl_;
  if (!s.started) return FailedPrecondition("Scheduler::Start has not succeeded");
  if (!on_event) return InvalidArgument("Submit needs an event callback");
  ITE_RETURN_IF_ERROR(s.Validate(request));
  auto seq = std::make_unique<Sequence>();
  seq->tokens = request.prompt_tokens;
  seq->num_prompt = static_cast<int32_t>(request.prompt_tokens.size());
  seq->stop = StopChecker(s.tokenizer.get(), request.stop);
  seq->on_event = std::make_shared<EventCallback>(std::move(on_event));
  seq->request = std::move(request);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (!s.accepting) return Unavailable("the scheduler is shutting down");
    // With every worker down, a request waits (recover_grace_ms) for one to come back, as
    // ite-serve restarts dead workers; without a grace it fails at once.
    bool any_up = false;
    for (auto& slot : s.slots) any_up = any_up || slot->up.load();
    if (!any_up && s.options.recover_grace_ms <= 0) return Unavailable("no worker is available");
    seq->seq_id = s.next_seq_id++;
    if (seq->request.request_id.empty()) {
      seq->request.request_id = fmt::format("req-{}", seq->seq_id);
    }
    if (!s.active_ids.insert(seq->request.request_id).second) {
      return InvalidArgument("request_id '{}' is already in flight", seq->request.request_id);
    }
    seq->arrival = s.arrival++;
    Message m{Message::Kind::kSubmit};
    m.seq = std::move(seq);
    s.inbox.push_back(std::move(m));
  }
  s.cv.notify_one();
  return Status::Ok();
}

void Scheduler::Cancel(const std::string& request_id) {
  if (!impl_->started) return;
  Message m{Message::Kind::kCancel};
  m.request_id = request_id;
  impl_->Post(std::move(m));
}

SchedulerStats Scheduler::Stats() const {
  std::lock_guard<std::mutex> lock(impl_->stats_mu);
  return impl_->stats;
}

void Scheduler::Shutdown(bool drain) {
  Impl& s = *impl_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.accepting = false;
    if (s.started && !s.shutdown_posted) {
      s.shutdown_posted = true;
      Message m{Message::Kind::kShutdown};
      m.drain = drain;
      s.inbox.push_back(std::move(m));
    }
  }
  s.cv.notify_one();
  if (s.loop_thread.joinable()) s.loop_thread.join();
  {
    std::lock_guard<std::mutex> lock(s.probe_mu);
    s.probe_stop = true;
  }
  s.probe_cv.notify_all();
  if (s.probe_thread.joinable()) s.probe_thread.join();
}

void Scheduler::Impl::Loop() {
  std::vector<OutEvent> events;
  events.reserve(1024);
  std::deque<Message> batch;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !inbox.empty(); });
      batch.swap(inbox);
    }
    int64_t cpu_begin = ThreadCpuMicros();
    for (Message& m : batch) Handle(m, &events);
    batch.clear();
    SendSteps();
    bool done = shutting_down && Idle();
    // Forget finished requests before their final event runs, so a callback may reuse the id.
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const OutEvent& e : events) {
        if (e.request_id.empty()) continue;
        active_ids.erase(e.request_id);
        where.erase(e.request_id);
        ++finished;
      }
    }
    PublishStats();
    for (const OutEvent& e : events) (*e.callback)(e.event);
    events.clear();
    loop_cpu_us += ThreadCpuMicros() - cpu_begin;  // callbacks included: they run on this thread
    if (done) return;
  }
}

bool Scheduler::Impl::Idle() const {
  for (const auto& slot : slots) {
    if (slot->outstanding > 0 || slot->batcher->load() > 0) return false;
  }
  return true;
}

void Scheduler::Impl::Handle(Message& m, std::vector<OutEvent>* events) {
  switch (m.kind) {
    case Message::Kind::kSubmit:
      Route(std::move(m.seq), events);
      break;
    case Message::Kind::kCancel: {
      auto it = where.find(m.request_id);
      if (it != where.end()) slots[it->second.first]->batcher->Cancel(it->second.second, events);
      break;
    }
    case Message::Kind::kResult: {
      WorkerSlot& slot = *slots[m.worker];
      --slot.outstanding;
      if (m.generation != slot.generation) {  // a step sent before the worker failed
        if (slot.outstanding == 0 && slot.back_info.has_value()) {
          Revive(m.worker, *slot.back_info, events);
        }
        break;
      }
      if (!m.status.ok()) {
        FailWorker(m.worker, m.status, events);
        break;
      }
      ++slot.steps;
      slot.forward_us += m.result.forward_us;
      slot.idle_us += m.result.idle_us;
      Status st = slot.batcher->OnStepResult(m.result, events);
      if (!st.ok()) FailWorker(m.worker, st, events);
      break;
    }
    case Message::Kind::kWorkerBack: {
      WorkerSlot& slot = *slots[m.worker];
      slot.probe_posted = false;
      if (slot.up && !slot.recovering) break;
      if (m.info.config.vocab_size != config.vocab_size || m.info.block_size != block_size ||
          m.info.config.max_position != config.max_position || m.info.num_blocks < 1) {
        ITE_LOG_ERROR("worker {} came back with a different model or pool; keeping it down",
                      m.worker);
        break;
      }
      if (slot.outstanding > 0) {
        slot.back_info = m.info;
      } else {
        Revive(m.worker, m.info, events);
      }
      break;
    }
    case Message::Kind::kRecoverTimeout: {
      WorkerSlot& slot = *slots[m.worker];
      slot.timeout_posted = false;
      const Status gone = Unavailable("worker {} did not come back within {} ms", m.worker,
                                      options.recover_grace_ms);
      if (slot.recovering) {
        FailWorker(m.worker, gone, events, /*hold=*/false);
      } else if (slot.holding && !slot.up) {
        slot.holding = false;
        for (auto& seq : slot.batcher->Fail(gone, events)) Route(std::move(seq), events, &gone);
      }
      break;
    }
    case Message::Kind::kShutdown:
      shutting_down = true;
      if (!m.drain) {
        for (auto& slot : slots) slot->batcher->CancelAll(events);
      }
      break;
  }
}

void Scheduler::Impl::Route(std::unique_ptr<Sequence> seq, std::vector<OutEvent>* events,
                            const Status* if_none) {
  int best = -1;
  int32_t min_load = INT32_MAX;
  for (auto& slot : slots) {
    if (slot->up) min_load = std::min(min_load, slot->batcher->load());
  }
  int32_t best_cached = -1, best_load = INT32_MAX;
  for (size_t i = 0; i < slots.size(); ++i) {
    WorkerSlot& slot = *slots[i];
    if (!slot.up) continue;
    int32_t load = slot.batcher->load();
    // A longer cached prefix wins unless that worker is much busier than the least loaded one.
    int32_t cached = load <= min_load + options.route_load_slack && seq->request.use_prefix_cache
                         ? slot.batcher->PeekCachedPrefix(seq->tokens)
                         : 0;
    if (cached > best_cached || (cached == best_cached && load < best_load)) {
      best = static_cast<int>(i);
      best_cached = cached;
      best_load = load;
    }
  }
  if (best < 0 && if_none == nullptr && options.recover_grace_ms > 0) {
    // Every worker is down: wait in the first one's queue for it to come back (a restart), up
    // to the grace; the probe takes it back or the deadline fails the queue.
    WorkerSlot& slot = *slots[0];
    if (!slot.holding) {
      slot.recover_deadline_ms = SteadyMillis() + options.recover_grace_ms;
      slot.holding = true;
      WakeProbe();
    }
    where[seq->request.request_id] = {0, seq->seq_id};
    slot.batcher->Enqueue(std::move(seq));
    return;
  }
  if (best < 0) {
    GenerationEvent ev;
    ev.finish = FinishReason::kError;
    ev.error = if_none != nullptr ? *if_none : Unavailable("no worker is available");
    ev.usage.prompt_tokens = seq->num_prompt;
    events->push_back({seq->on_event, seq->request.request_id, std::move(ev)});
    return;
  }
  where[seq->request.request_id] = {best, seq->seq_id};
  slots[best]->batcher->Enqueue(std::move(seq));
}

void Scheduler::Impl::FailWorker(int i, const Status& cause, std::vector<OutEvent>* events,
                                 bool hold) {
  WorkerSlot& slot = *slots[i];
  ITE_LOG_ERROR("worker {} ({}) failed: {}; failing its running requests", i, slot.info.device,
                cause.ToString());
  Status error = Unavailable("worker {} failed: {}", i, cause.message());
  std::vector<std::unique_ptr<Sequence>> reroute = slot.batcher->Fail(error, events);
  ++slot.generation;
  slot.up = false;
  slot.recovering = false;
  slot.holding = false;
  slot.back_info.reset();
  bool others_up = false;
  for (auto& other : slots) others_up = others_up || other->up;
  if (hold && !others_up && !reroute.empty() && options.recover_grace_ms > 0) {
    // Queued requests never reached the worker: they wait for it (a restart) for a while.
    ITE_LOG_WARN("worker {}: {} queued requests wait up to {} ms for it to come back", i,
                 reroute.size(), options.recover_grace_ms);
    for (auto& seq : reroute) slot.batcher->Enqueue(std::move(seq));
    slot.recover_deadline_ms = SteadyMillis() + options.recover_grace_ms;
    slot.holding = true;
  } else {
    for (auto& seq : reroute) Route(std::move(seq), events, &error);
  }
  WakeProbe();
}

// Stops sending steps to worker i, which lost its state between steps (restarted while idle),
// and has the probe clear it; its queued requests wait in its batcher meanwhile.
void Scheduler::Impl::StartRecovery(int i) {
  WorkerSlot& slot = *slots[i];
  ITE_LOG_WARN("worker {} ({}) lost its state (restarted?); clearing it before the next step", i,
               slot.info.device);
  slot.recover_deadline_ms = SteadyMillis() + options.recover_grace_ms;
  slot.recovering = true;
  WakeProbe();
}

// A fresh batcher for worker i. Requests still in the old one (a recovering worker's queue) move
// over; those with KV on the worker fail (their cache is gone with the worker's state).
void Scheduler::Impl::Revive(int i, const WorkerInfo& info, std::vector<OutEvent>* events) {
  WorkerSlot& slot = *slots[i];
  std::vector<std::unique_ptr<Sequence>> keep =
      slot.batcher->Fail(Unavailable("worker {} lost its state", i), events);
  slot.info = info;
  slot.batcher = std::make_unique<Batcher>(MakeBatcherOptions(), info);
  for (auto& seq : keep) slot.batcher->Enqueue(std::move(seq));
  slot.back_info.reset();
  slot.recovering = false;
  slot.holding = false;
  slot.up = true;
  ITE_LOG_INFO("worker {} ({}) is back with {} blocks", i, info.device, info.num_blocks);
  // Requests waiting on other down workers need not wait for those.
  for (auto& other : slots) {
    if (other->up || !other->holding) continue;
    other->holding = false;
    const Status moved = Unavailable("moved to worker {}", i);
    for (auto& seq : other->batcher->Fail(moved, events)) Route(std::move(seq), events);
  }
}

void Scheduler::Impl::SendSteps() {
  for (size_t i = 0; i < slots.size(); ++i) {
    WorkerSlot& slot = *slots[i];
    if (!slot.up || slot.recovering) continue;
    // A worker that lost its state (restarted) must be cleared before it runs another step.
    // With steps in flight, their failure takes the usual path (FailWorker) instead; either way
    // no new step goes out, so queued requests stay queued.
    if (slot.client->StateLost()) {
      if (slot.outstanding == 0) StartRecovery(static_cast<int>(i));
      continue;
    }
    while (slot.batcher->CanSendStep()) {
      StepRequest request;
      if (!slot.batcher->BuildStep(next_step_id, &request)) break;
      ++next_step_id;
      ++slot.outstanding;
      uint64_t generation = slot.generation;
      int worker = static_cast<int>(i);
      slot.client->StepAsync(std::move(request),
                             [this, worker, generation](StatusOr<StepResult> result) {
                               Message m{Message::Kind::kResult};
                               m.worker = worker;
                               m.generation = generation;
                               if (result.ok()) {
                                 m.result = std::move(result).value();
                               } else {
                                 m.status = result.status();
                               }
                               Post(std::move(m));
                             });
    }
  }
}

void Scheduler::Impl::PublishStats() {
  SchedulerStats s;
  for (auto& slot : slots) {
    WorkerStats w;
    w.up = slot->up;
    w.device = slot->info.device;
    slot->batcher->FillStats(&w);
    w.steps = slot->steps;
    w.worker_forward_us = slot->forward_us;
    w.worker_idle_us = slot->idle_us;
    s.running += w.running;
    s.waiting += w.waiting;
    s.steps += w.steps;
    s.preemptions += w.preemptions;
    s.workers.push_back(std::move(w));
  }
  s.finished_requests = finished;
  s.loop_cpu_us = loop_cpu_us;
  std::lock_guard<std::mutex> lock(stats_mu);
  stats = std::move(s);
}

void Scheduler::Impl::ProbeLoop() {
  std::unique_lock<std::mutex> lock(probe_mu);
  while (!probe_stop) {
    // Every probe interval, and at the nearest deadline of a worker holding queued requests.
    int64_t wait_ms = std::max(1, options.probe_interval_ms);
    for (auto& slot : slots) {
      if (slot->recovering || slot->holding) {
        wait_ms = std::clamp<int64_t>(slot->recover_deadline_ms - SteadyMillis() + 1, 1, wait_ms);
      }
    }
    probe_cv.wait_for(lock, std::chrono::milliseconds(wait_ms),
                      [this] { return probe_stop || probe_now; });
    probe_now = false;
    if (probe_stop) return;
    lock.unlock();
    for (size_t i = 0; i < slots.size(); ++i) {
      WorkerSlot& slot = *slots[i];
      if ((slot.recovering || slot.holding) && !slot.timeout_posted) {
        if (SteadyMillis() >= slot.recover_deadline_ms) {
          slot.timeout_posted = true;
          Message m{Message::Kind::kRecoverTimeout};
          m.worker = static_cast<int>(i);
          Post(std::move(m));
          continue;
        }
      }
      if ((slot.up && !slot.recovering) || slot.probe_posted) continue;
      StatusOr<WorkerInfo> info = slot.client->Info();
      if (!info.ok()) continue;
      // The restarted (or recovered) worker must forget every sequence of its past life.
      if (!slot.client->Clear().ok()) continue;
      slot.probe_posted = true;
      Message m{Message::Kind::kWorkerBack};
      m.worker = static_cast<int>(i);
      m.info = *info;
      Post(std::move(m));
    }
    lock.lock();
  }
}

}  // namespace ite
