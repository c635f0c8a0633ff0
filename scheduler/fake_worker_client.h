// Test support: a WorkerClient running the deterministic fake model (worker/service/
// fake_backend.h) through a real WorkerEngine on its own thread, with knobs a test needs: pause
// and resume the worker, make it fail (steps and Info answer UNAVAILABLE) and heal it, and
// counters of what it was asked to do.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "common/protocol/worker_client.h"

namespace ite {

struct FakeWorkerOptions {
  int32_t vocab = 1000;
  int32_t max_position = 4096;
  int32_t block_size = 4;
  int32_t num_blocks = 1024;
  std::vector<int32_t> eos_token_ids;
  std::string device = "fake";
  std::string model_fingerprint;  // reported in Info (WorkerInfo.model_fingerprint)
  std::string address;            // what address() answers
};

struct FakeWorkerCounters {
  int64_t steps = 0;
  int64_t max_step_tokens = 0;  // most tokens run in one step (decodes count 1)
  int64_t max_inflight = 0;     // most steps sent and not yet answered
  int64_t decodes_without_tokens = 0;
  int64_t block_copies = 0;
  int64_t block_ids_sent = 0;  // block-table entries carried by all steps
  int64_t joins = 0;           // sequences that (re)joined with sampling params
  int64_t clears = 0;
};

class FakeWorkerClient : public WorkerClient {
 public:
  explicit FakeWorkerClient(const FakeWorkerOptions& options);
  ~FakeWorkerClient() override;

  StatusOr<WorkerInfo> Info() override;
  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override;
  Status Health() override;
  Status Clear() override;
  bool StateLost() override;
  std::string address() const override { return address_; }

  // While paused, steps are held (in order) and run on Resume.
  void Pause();
  void Resume();
  // From now on every step answers `error` and Info/Health fail, until Heal.
  void Fail(Status error);
  void Heal();
  // A restart between steps: the engine forgets every sequence, StateLost() turns true and
  // steps fail UNAVAILABLE until a successful Clear() (as GrpcWorkerClient behaves).
  void LoseState();
  // What Info reports from now on: a restart with another model (of the same shape).
  void SetModelFingerprint(std::string fingerprint);

  FakeWorkerCounters counters() const;
  // When Health last answered OK (the clock's epoch if never).
  std::chrono::steady_clock::time_point last_healthy() const;

 private:
  void Forward(StepRequest request, std::function<void(StatusOr<StepResult>)> done);

  std::unique_ptr<WorkerClient> inner_;
  const std::string address_;
  mutable std::mutex mu_;
  bool paused_ = false;
  std::deque<std::pair<StepRequest, std::function<void(StatusOr<StepResult>)>>> held_;
  Status failure_;
  std::string model_fingerprint_;
  bool state_lost_ = false;
  FakeWorkerCounters counters_;
  int64_t inflight_ = 0;
  std::chrono::steady_clock::time_point last_healthy_{};
};

}  // namespace ite
