// WorkerEngine executes StepRequests on a Backend. The backend keeps each sequence's sampler and
// last sampled token (so decode steps need no token from the scheduler); the engine keeps what it
// needs to validate every request (known sequences, their KV length and block table) and answers
// with a Status rather than crashing: a scheduler bug or a stale request after a restart must not
// take the worker down.
//
// Pipelining: Submit() hands a step to the backend, which may still be running the previous
// one (the CUDA backend queues it on the GPU behind it), and Collect() returns results in
// submission order. Thread safety: Submit and Collect may be called from two threads, one
// each, so a step can be submitted while the caller waits for the previous one; Info and Clear
// from either, between steps.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/protocol/step.h"
#include "common/status.h"
#include "worker/backend/backend.h"
#include "worker/service/worker_metrics.h"

namespace ite {

class WorkerEngine {
 public:
  // `device` and `model_fingerprint` (common/model_fingerprint.h of the files the backend's model
  // was loaded from; empty when it has none, as a fake model) are reported in WorkerInfo.
  WorkerEngine(std::unique_ptr<Backend> backend, std::string device,
               std::string model_fingerprint = "");
  ~WorkerEngine();

  WorkerEngine(const WorkerEngine&) = delete;
  WorkerEngine& operator=(const WorkerEngine&) = delete;

  // Validates and starts a step. A rejected step changes nothing; a failure after it started
  // leaves nothing about its sequences guaranteed (the scheduler treats it as a worker failure).
  Status Submit(const StepRequest& request);
  // The result of the oldest submitted step not collected yet (waits for it).
  StatusOr<StepResult> Collect();
  // Submit + Collect.
  StatusOr<StepResult> Step(const StepRequest& request);
  // Submitted steps not collected yet.
  int32_t pending() const;

  WorkerInfo Info() const;

  // Drops all sequence state (samplers, last tokens), also of steps still in flight. KV contents
  // are left as they are: the scheduler's block tables, reset along with this, are the only
  // meaning they have.
  Status Clear();

  int64_t num_sequences() const;
  // Prometheus text of the worker's steps and KV pool (worker_metrics.h); any thread.
  std::string RenderMetrics() const;
  // The backend's device can run no more steps (Backend::failed).
  bool backend_failed() const { return backend_->failed(); }

 private:
  struct SeqState;
  struct Pending {
    int64_t step_id = 0;
    std::vector<int64_t> sampled_seq_ids;  // the sequences with sample=true, in request order
    std::chrono::steady_clock::time_point submitted;
    bool forward = false;   // false: only releases and block copies, nothing to collect
    int32_t sequences = 0;  // in the forward
  };

  Status Validate(const StepRequest& request) const;

  std::unique_ptr<Backend> backend_;
  std::string device_;
  std::string model_fingerprint_;
  // Sequence state and the pending queue. Held through the backend's Submit, not while Collect
  // waits for the device.
  mutable std::mutex mu_;
  std::unordered_map<int64_t, std::unique_ptr<SeqState>> seqs_;
  std::deque<Pending> pending_;
  ForwardBatch batch_;  // reused
  WorkerMetrics metrics_;
};

}  // namespace ite
