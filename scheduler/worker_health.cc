// Worker failure and recovery: failing a worker's running requests while its queued ones move
// or wait, clearing a worker that lost its state, taking a worker back, and the probe thread.
#include <algorithm>

#include "common/logging.h"
#include "common/model_fingerprint.h"
#include "scheduler/scheduler_impl.h"

namespace ite {

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
  slot.refused_why.clear();
  slot.refused_fingerprint.clear();
  slot.last_heard_ms = SteadyMillis();
  slot.up = true;
  ITE_LOG_INFO("{} is back ({}, {} blocks, model fingerprint {})", WorkerName(i), info.device,
               info.num_blocks, ShortFingerprint(info.model_fingerprint));
  // Requests waiting on other down workers need not wait for those.
  for (auto& other : slots) {
    if (other->up || !other->holding) continue;
    other->holding = false;
    const Status moved = Unavailable("moved to worker {}", i);
    for (auto& seq : other->batcher->Fail(moved, events)) Route(std::move(seq), events);
  }
}

std::string Scheduler::Impl::WorkerName(int i) const {
  const std::string address = slots[i]->client->address();
  return address.empty() ? fmt::format("worker {}", i) : fmt::format("worker {} ({})", i, address);
}

std::string Scheduler::Impl::CheckFingerprint(int i, const WorkerInfo& info) {
  const std::string& theirs = info.model_fingerprint;
  if (theirs.empty()) {
    ITE_LOG_WARN(
        "{} reports no model fingerprint (an ite-worker from before fingerprints?); only "
        "its model's shape is checked",
        WorkerName(i));
    return "";
  }
  if (fingerprint.empty()) {
    fingerprint = theirs;
    fingerprint_source = fmt::format("the first worker's, {}", WorkerName(i));
    ITE_LOG_INFO("model fingerprint {} pinned from {}: every other worker must serve the same",
                 theirs, WorkerName(i));
    return "";
  }
  if (theirs == fingerprint) return "";
  return fmt::format(
      "{} serves a model with fingerprint {}, not {} ({}): another model, or other weights of "
      "the same shape",
      WorkerName(i), theirs, fingerprint, fingerprint_source);
}

void Scheduler::Impl::RefuseWorker(int i, const std::string& why,
                                   const std::string& other_fingerprint,
                                   std::vector<OutEvent>* events) {
  WorkerSlot& slot = *slots[i];
  // The probe asks again every interval; a worker still refused for the same reason is not news.
  if (why != slot.refused_why) ITE_LOG_ERROR("{}; keeping it down", why);
  slot.refused_why = why;
  slot.refused_fingerprint = other_fingerprint;
  const Status error = Unavailable("{}", why);
  if (slot.up) {  // it restarted while idle (recovering): failed as a dead worker is
    FailWorker(i, error, events, /*hold=*/false);
  } else if (slot.holding) {
    slot.holding = false;
    for (auto& seq : slot.batcher->Fail(error, events)) Route(std::move(seq), events, &error);
  }
}

// A worker that is up is asked Health; one that has answered neither that nor a step for
// options.down_after_ms is reported to the loop, which marks it down. One whose client saw it
// lose its state (restarted while idle) is reported too, and the loop has it recovered.
void Scheduler::Impl::ProbeUpWorker(int i) {
  WorkerSlot& slot = *slots[i];
  if (slot.client->StateLost() && !slot.state_lost_posted) {
    slot.state_lost_posted = true;
    Message m{Message::Kind::kStateLost};
    m.worker = i;
    Post(std::move(m));
  }
  if (options.down_after_ms <= 0) return;
  if (slot.client->Health().ok()) {
    slot.last_heard_ms = SteadyMillis();
    return;
  }
  if (SteadyMillis() - slot.last_heard_ms < options.down_after_ms || slot.unresponsive_posted) {
    return;
  }
  ITE_LOG_WARN("worker {} has not answered for {} ms; marking it down", i,
               SteadyMillis() - slot.last_heard_ms);
  slot.unresponsive_posted = true;
  Message m{Message::Kind::kUnresponsive};
  m.worker = i;
  Post(std::move(m));
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
      if (slot.up && !slot.recovering) {
        ProbeUpWorker(static_cast<int>(i));
        continue;
      }
      if (slot.probe_posted) continue;
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
