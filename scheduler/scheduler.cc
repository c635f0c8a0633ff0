#include "scheduler/scheduler.h"

#include <fmt/ranges.h>
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
#include "scheduler/scheduler_impl.h"
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

int64_t ThreadCpuMicros() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1000000 + ts.tv_nsec / 1000;
}

}  // namespace

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

Scheduler::~Scheduler() {
  Shutdown(false);
  // The clients go first, while the inbox's mutex and condition variable still exist: a client's
  // thread may still be running the `done` callback of a step the loop no longer waits for, and
  // that callback posts to the inbox. Destroying a client joins its threads. (TSan saw the
  // condition variable destroyed under a notify from such a callback.)
  for (std::unique_ptr<WorkerSlot>& slot : impl_->slots) slot->client.reset();
}

const ModelInfo& Scheduler::model_info() const { return impl_->model; }
int32_t Scheduler::max_context() const { return impl_->max_context; }
int32_t Scheduler::block_size() const { return impl_->block_size; }

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
  // Workers that do not answer yet start down; the probe takes each in when it answers (a pod
  // that is still loading its weights, or not scheduled yet). One must answer: the model comes
  // from it.
  int first = -1;
  s.fingerprint = o.model_fingerprint;
  s.fingerprint_source = "the scheduler's model";
  std::vector<StatusOr<WorkerInfo>> infos;
  for (size_t i = 0; i < s.slots.size(); ++i) {
    infos.push_back(s.slots[i]->client->Info());
    StatusOr<WorkerInfo>& info = infos.back();
    if (!info.ok()) continue;
    // A worker that served an earlier scheduler (this process restarted) may still hold that
    // one's sequences: it starts afresh, as a worker taken back does.
    if (Status cleared = s.slots[i]->client->Clear(); !cleared.ok()) {
      info = cleared;
      continue;
    }
    if (info->block_size < 1 || info->num_blocks < 1 || info->model.vocab_size < 1) {
      return InvalidArgument("worker {}: block_size {}, num_blocks {}, vocab {}", i,
                             info->block_size, info->num_blocks, info->model.vocab_size);
    }
    if (std::string why = s.CheckFingerprint(static_cast<int>(i), *info); !why.empty()) {
      return FailedPrecondition("{}; refusing to serve with it", why);
    }
    if (first < 0) {
      first = static_cast<int>(i);
      continue;
    }
    const WorkerInfo& f = *infos[first];
    if (info->model.vocab_size != f.model.vocab_size || info->block_size != f.block_size ||
        info->model.max_position != f.model.max_position) {
      return InvalidArgument(
          "worker {} serves a different model than worker {} (vocab {} vs {}, block_size {} vs "
          "{}, context {} vs {})",
          i, first, info->model.vocab_size, f.model.vocab_size, info->block_size, f.block_size,
          info->model.max_position, f.model.max_position);
    }
  }
  if (first < 0) {
    return Unavailable("no worker answered Info (worker 0: {})", infos[0].status().message());
  }
  s.min_pool_blocks = infos[first]->num_blocks;
  std::vector<int> absent;
  for (size_t i = 0; i < s.slots.size(); ++i) {
    WorkerSlot& slot = *s.slots[i];
    const bool answered = infos[i].ok();
    slot.info = answered ? *infos[i] : *infos[first];
    slot.batcher = std::make_unique<Batcher>(s.MakeBatcherOptions(), slot.info);
    slot.up = answered;
    if (answered) {
      s.min_pool_blocks = std::min(s.min_pool_blocks, slot.info.num_blocks);
    } else {
      // The batcher is shaped like the first worker's until this one answers and the probe
      // replaces both (Revive).
      slot.info.device.clear();
      slot.info.model_fingerprint.clear();
      absent.push_back(static_cast<int>(i));
    }
  }
  if (!absent.empty()) {
    // One line, not one per worker: a name-discovered pool has many empty slots.
    ITE_LOG_WARN("workers {} do not answer yet (worker {}: {}); starting without them",
                 fmt::join(absent, ", "), absent[0], infos[absent[0]].status().message());
  }
  s.model = infos[first]->model;
  s.block_size = infos[first]->block_size;
  s.max_context = s.model.max_position;
  if (o.max_context > 0) s.max_context = std::min(s.max_context, o.max_context);
  s.started = true;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.accepting = true;
  }
  for (auto& slot : s.slots) slot->last_heard_ms = SteadyMillis();
  s.PublishStats();
  s.loop_thread = std::thread([&s] { s.Loop(); });
  s.probe_thread = std::thread([&s] { s.ProbeLoop(); });
  return Status::Ok();
}

Status Scheduler::Impl::Validate(const GenerationRequest& r) const {
  if (r.prompt_tokens.empty()) return InvalidArgument("prompt_tokens is empty");
  if (r.max_tokens < 1)
    return InvalidArgument("max_tokens must be at least 1, got {}", r.max_tokens);
  if (r.min_tokens < 0 || r.min_tokens > r.max_tokens) {
    return InvalidArgument("min_tokens must be in [0, max_tokens = {}], got {}", r.max_tokens,
                           r.min_tokens);
  }
  const int64_t total = static_cast<int64_t>(r.prompt_tokens.size()) + r.max_tokens;
  if (total > max_context) {
    return InvalidArgument(
        "prompt ({} tokens) + max_tokens ({}) = {} exceeds the context length {}",
        r.prompt_tokens.size(), r.max_tokens, total, max_context);
  }
  const int32_t vocab = model.vocab_size;
  // Image positions hold negative cache keys (PromptImage); every other token must be real.
  std::vector<bool> image_position(r.prompt_tokens.size(), false);
  if (!r.images.empty()) {
    if (model.image_tokens <= 0 || r.image_token_id != model.image_token_id)
      return InvalidArgument("images: the model takes no images (or another image token)");
    for (const PromptImage& im : r.images) {
      const int64_t end = int64_t{im.position} + model.image_tokens;
      if (im.position < 0 || end > static_cast<int64_t>(r.prompt_tokens.size()) ||
          im.pixels == nullptr ||
          im.pixels->size() != size_t{3} * model.image_size * model.image_size)
        return InvalidArgument(
            "images: an image at position {} does not fit the prompt or the "
            "vision tower",
            im.position);
      for (int64_t p = im.position; p < end; ++p) image_position[p] = true;
    }
  }
  for (size_t i = 0; i < r.prompt_tokens.size(); ++i) {
    const int32_t t = r.prompt_tokens[i];
    if (image_position[i] ? t >= 0 : (t < 0 || t >= vocab)) {
      return InvalidArgument("prompt_tokens[{}] = {} is outside the vocabulary [0, {})", i, t,
                             vocab);
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
  seq->stop = StopChecker(s.tokenizer.get(), request.stop, request.include_stop_str_in_output);
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
    if (s.options.max_waiting > 0) {
      const size_t limit =
          s.slots.size() * static_cast<size_t>(s.options.max_running + s.options.max_waiting);
      if (s.active_ids.size() >= limit) {
        return ResourceExhausted(
            "the queue is full: {} requests in flight, at most {} ({} worker(s) x ({} running + "
            "{} waiting)); retry later",
            s.active_ids.size(), limit, s.slots.size(), s.options.max_running,
            s.options.max_waiting);
      }
    }
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

bool Scheduler::AnyWorkerUp() const {
  if (!impl_->started) return false;
  for (const auto& slot : impl_->slots) {
    if (slot->up) return true;
  }
  return false;
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
      slot.last_heard_ms = SteadyMillis();
      if (options.on_step) options.on_step(m.worker, m.result);
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
      std::string why;
      std::string other_fingerprint;  // set when that is why
      if (m.info.model.vocab_size != model.vocab_size || m.info.block_size != block_size ||
          m.info.model.max_position != model.max_position || m.info.num_blocks < 1) {
        why = fmt::format(
            "{} came back with a different model or pool (vocab {} vs {}, block_size {} vs {}, "
            "context {} vs {}, {} blocks)",
            WorkerName(m.worker), m.info.model.vocab_size, model.vocab_size, m.info.block_size,
            block_size, m.info.model.max_position, model.max_position, m.info.num_blocks);
      } else {
        why = CheckFingerprint(m.worker, m.info);
        if (!why.empty()) other_fingerprint = m.info.model_fingerprint;
      }
      if (!why.empty()) {
        RefuseWorker(m.worker, why, other_fingerprint, events);
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
    case Message::Kind::kUnresponsive: {
      WorkerSlot& slot = *slots[m.worker];
      slot.unresponsive_posted = false;
      // A step result may have come in since the probe gave up on the worker.
      const int64_t silent_ms = SteadyMillis() - slot.last_heard_ms;
      if (!slot.up || slot.recovering || silent_ms < options.down_after_ms) break;
      FailWorker(m.worker,
                 Unavailable("it answered neither a health probe nor a step for {} ms (stopped "
                             "or hung?)",
                             silent_ms),
                 events);
      break;
    }
    case Message::Kind::kStateLost: {
      // Restarted while idle: recovered now rather than at its next request, so that one back
      // with another model is refused (and shown down) at once.
      WorkerSlot& slot = *slots[m.worker];
      slot.state_lost_posted = false;
      if (slot.up && !slot.recovering && slot.outstanding == 0 && slot.client->StateLost()) {
        StartRecovery(m.worker);
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
  if (!seq->request.fork_of.empty()) {
    auto parent = where.find(seq->request.fork_of);
    if (parent != where.end() && slots[parent->second.first]->up) {
      seq->fork_parent = parent->second.second;
      where[seq->request.request_id] = {parent->second.first, seq->seq_id};
      slots[parent->second.first]->batcher->Enqueue(std::move(seq));
      return;
    }
  }
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
    w.model_fingerprint = slot->info.model_fingerprint;
    w.refused_fingerprint = slot->refused_fingerprint;
    s.running += w.running;
    s.waiting += w.waiting;
    s.steps += w.steps;
    s.preemptions += w.preemptions;
    s.workers.push_back(std::move(w));
  }
  s.finished_requests = finished;
  s.loop_cpu_us = loop_cpu_us;
  s.model_fingerprint = fingerprint;
  std::lock_guard<std::mutex> lock(stats_mu);
  stats = std::move(s);
}

}  // namespace ite
