// The ite.v1.Worker gRPC service over one WorkerEngine (proto/ite/v1/worker.proto).
//
// StepStream pipelines: a reader thread submits each step as it arrives while the handler thread
// waits for the previous one's result and writes it, so the GPU runs step N+1 right behind step
// N (the scheduler keeps two in flight). The unary Step, Info and Clear take one mutex and run
// between steps; one scheduler drives one StepStream, so it is uncontended. Engine errors end
// the call with the engine's status code and message; nothing throws.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>

#include "proto/ite/v1/worker.grpc.pb.h"
#include "worker/service/worker_engine.h"

namespace ite {

class GrpcWorkerService final : public ite::v1::Worker::Service {
 public:
  // `on_device_failure` runs once, after a failed step, when the engine's device can run no
  // more steps (ite-worker exits then, so that its supervisor restarts it).
  explicit GrpcWorkerService(std::unique_ptr<WorkerEngine> engine,
                             std::function<void()> on_device_failure = nullptr);

  grpc::Status Info(grpc::ServerContext* context, const ite::v1::WorkerInfoRequest* request,
                    ite::v1::WorkerInfo* response) override;
  grpc::Status Step(grpc::ServerContext* context, const ite::v1::StepRequest* request,
                    ite::v1::StepResult* response) override;
  grpc::Status StepStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<ite::v1::StepResult, ite::v1::StepRequest>* stream) override;
  grpc::Status Clear(grpc::ServerContext* context, const ite::v1::WorkerClearRequest* request,
                     ite::v1::WorkerClearResponse* response) override;
  grpc::Status Health(grpc::ServerContext* context, const ite::v1::WorkerHealthRequest* request,
                      ite::v1::WorkerHealthResponse* response) override;

 private:
  // Runs one step under the engine mutex and encodes its result.
  grpc::Status RunStep(const ite::v1::StepRequest& request, ite::v1::StepResult* response);
  // Collects the oldest submitted step and encodes it (StepStream's writer side).
  grpc::Status CollectStep(int64_t step_id, std::chrono::steady_clock::time_point submitted,
                           ite::v1::StepResult* response);

  // After a failed step: whether the device is gone (then on_device_failure_ runs, once).
  void CheckDevice();

  std::function<void()> on_device_failure_;
  std::once_flag device_failure_once_;
  std::mutex engine_mu_;
  std::unique_ptr<WorkerEngine> engine_;  // guarded by engine_mu_
  std::atomic<int64_t> steps_{0};
  std::atomic<int64_t> busy_us_{0};
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace ite
