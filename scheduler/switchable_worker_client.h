// SwitchableWorkerClient: one scheduler worker slot whose worker process can change. Worker
// discovery points it at an address (a pod that appeared) or at none (the pod went away); the
// client for an address comes from a factory (gRPC in ite-scheduler, fakes in tests).
//
// A switch drops the old connection: steps in flight on it fail UNAVAILABLE (the scheduler
// fails that worker's running requests and drops its cache state, as for a dead worker), and
// StateLost() is true until a Clear() succeeds, so the scheduler clears the new worker before
// it runs a step there. With no address, Info, Health and Clear fail UNAVAILABLE and steps
// fail UNAVAILABLE on a thread of this client's own (never inside StepAsync).
//
// Threads: every method may be called from any thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/protocol/worker_client.h"

namespace ite {

class SwitchableWorkerClient final : public WorkerClient {
 public:
  using Factory = std::function<std::unique_ptr<WorkerClient>(const std::string& address)>;

  explicit SwitchableWorkerClient(Factory factory);
  ~SwitchableWorkerClient() override;

  SwitchableWorkerClient(const SwitchableWorkerClient&) = delete;
  SwitchableWorkerClient& operator=(const SwitchableWorkerClient&) = delete;

  // "" for none. The same address again is a no-op.
  void SetAddress(const std::string& address);
  std::string address() const override;

  StatusOr<WorkerInfo> Info() override;
  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override;
  Status Health() override;
  Status Clear() override;
  bool StateLost() override;

 private:
  using Done = std::function<void(StatusOr<StepResult>)>;
  std::shared_ptr<WorkerClient> Current(std::string* address) const;
  void FailLoop();

  const Factory factory_;
  mutable std::mutex mu_;
  std::string address_;                   // guarded by mu_
  std::shared_ptr<WorkerClient> client_;  // guarded by mu_; null without an address
  bool switched_ = false;                 // guarded by mu_; cleared by a successful Clear
  std::condition_variable fail_cv_;
  std::deque<Done> to_fail_;  // guarded by mu_
  bool stopping_ = false;     // guarded by mu_
  std::thread failer_;
};

}  // namespace ite
