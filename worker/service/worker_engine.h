// WorkerEngine executes StepRequests on a Backend: it keeps, per sequence, the sampler (RNG and
// penalty counts) and the last sampled token, so decode steps need no token from the scheduler.
// It validates every request (unknown sequences, block ids out of range, tokens past the
// vocabulary) and answers with a Status rather than crashing: a scheduler bug or a stale request
// after a restart must not take the worker down.
//
// Thread safety: one caller at a time (the gRPC service and the in-process client serialize).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/protocol/step.h"
#include "common/status.h"
#include "worker/backend/backend.h"

namespace ite {

class WorkerEngine {
 public:
  // `device` is reported in WorkerInfo (e.g. "cpu").
  WorkerEngine(std::unique_ptr<Backend> backend, std::string device);
  ~WorkerEngine();

  WorkerEngine(const WorkerEngine&) = delete;
  WorkerEngine& operator=(const WorkerEngine&) = delete;

  // Runs one step. On an error nothing about the sequences of this step is guaranteed; the
  // scheduler treats it as a worker failure.
  StatusOr<StepResult> Step(const StepRequest& request);

  WorkerInfo Info() const;

  // Drops all sequence state (samplers, last tokens). KV contents are left as they are: the
  // scheduler's block tables, reset along with this, are the only meaning they have.
  Status Clear();

  int64_t num_sequences() const { return static_cast<int64_t>(seqs_.size()); }

 private:
  struct SeqState;

  Status Validate(const StepRequest& request) const;

  std::unique_ptr<Backend> backend_;
  std::string device_;
  std::unordered_map<int64_t, std::unique_ptr<SeqState>> seqs_;
  std::chrono::steady_clock::time_point last_step_end_{};
  bool has_stepped_ = false;
};

}  // namespace ite
