#include "worker/service/grpc_worker_service.h"

#include <condition_variable>
#include <deque>
#include <thread>

#include "common/logging.h"
#include "proto/grpc_status.h"
#include "proto/step_codec.h"

namespace ite {
namespace {
int64_t MicrosSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
      .count();
}
}  // namespace

GrpcWorkerService::GrpcWorkerService(std::unique_ptr<WorkerEngine> engine,
                                     std::function<void()> on_device_failure)
    : on_device_failure_(std::move(on_device_failure)), engine_(std::move(engine)) {}

void GrpcWorkerService::CheckDevice() {
  if (!engine_->backend_failed() || !on_device_failure_) return;
  std::call_once(device_failure_once_, on_device_failure_);
}

grpc::Status GrpcWorkerService::Info(grpc::ServerContext*, const ite::v1::WorkerInfoRequest*,
                                     ite::v1::WorkerInfo* response) {
  std::lock_guard<std::mutex> lock(engine_mu_);
  EncodeWorkerInfo(engine_->Info(), response);
  return grpc::Status::OK;
}

grpc::Status GrpcWorkerService::RunStep(const ite::v1::StepRequest& request,
                                        ite::v1::StepResult* response) {
  StepRequest step = DecodeStepRequest(request);
  auto start = std::chrono::steady_clock::now();
  StatusOr<StepResult> result = [&] {
    std::lock_guard<std::mutex> lock(engine_mu_);
    return engine_->Step(step);
  }();
  busy_us_ += MicrosSince(start);
  ++steps_;
  if (!result.ok()) {
    ITE_LOG_WARN("step {} failed: {}", request.step_id(), result.status().ToString());
    CheckDevice();
    return ToGrpcStatus(result.status());
  }
  EncodeStepResult(*result, response);
  return grpc::Status::OK;
}

grpc::Status GrpcWorkerService::Step(grpc::ServerContext*, const ite::v1::StepRequest* request,
                                     ite::v1::StepResult* response) {
  return RunStep(*request, response);
}

grpc::Status GrpcWorkerService::CollectStep(int64_t step_id,
                                            std::chrono::steady_clock::time_point submitted,
                                            ite::v1::StepResult* response) {
  StatusOr<StepResult> result = engine_->Collect();
  busy_us_ += MicrosSince(submitted);
  ++steps_;
  if (!result.ok()) {
    ITE_LOG_WARN("step {} failed: {}", step_id, result.status().ToString());
    CheckDevice();
    return ToGrpcStatus(result.status());
  }
  EncodeStepResult(*result, response);
  return grpc::Status::OK;
}

grpc::Status GrpcWorkerService::StepStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<ite::v1::StepResult, ite::v1::StepRequest>* stream) {
  struct Submitted {
    int64_t step_id = 0;
    std::chrono::steady_clock::time_point at;
    Status status;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Submitted> submitted;  // in order; each one's result is collected in turn
  bool reading = true;
  // The reader submits each step as soon as it arrives; after a rejected step it stops.
  std::thread reader([&] {
    ite::v1::StepRequest request;
    while (stream->Read(&request)) {
      const StepRequest step = DecodeStepRequest(request);
      Submitted s{request.step_id(), std::chrono::steady_clock::now(), engine_->Submit(step)};
      const bool ok = s.status.ok();
      {
        std::lock_guard<std::mutex> lock(mu);
        submitted.push_back(std::move(s));
        if (!ok) reading = false;  // with the rejected step, so the handler sees both at once
      }
      cv.notify_one();
      if (!ok) return;
    }
    std::lock_guard<std::mutex> lock(mu);
    reading = false;
    cv.notify_one();
  });
  grpc::Status status = grpc::Status::OK;
  ite::v1::StepResult result;
  while (true) {
    Submitted next;
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return !submitted.empty() || !reading; });
      if (submitted.empty()) break;  // the scheduler closed the stream
      next = std::move(submitted.front());
      submitted.pop_front();
    }
    if (!next.status.ok()) {
      ITE_LOG_WARN("step {} rejected: {}", next.step_id, next.status.ToString());
      CheckDevice();
      status = ToGrpcStatus(next.status);
      break;
    }
    result.Clear();
    status = CollectStep(next.step_id, next.at, &result);
    if (!status.ok()) break;
    if (!stream->Write(result)) {
      status = grpc::Status(grpc::StatusCode::UNAVAILABLE, "step stream closed by the scheduler");
      break;
    }
  }
  // A reader still blocked in Read returns once the call is cancelled (the scheduler then sees
  // CANCELLED; a rejected step ends the reader itself and keeps its own code).
  bool reader_done;
  {
    std::lock_guard<std::mutex> lock(mu);
    reader_done = !reading;
  }
  if (!status.ok() && !reader_done) context->TryCancel();
  reader.join();
  // Steps submitted but not collected (the stream ended early) are collected and dropped, so
  // the engine's queue is empty for the next stream.
  for (const Submitted& s : submitted) {
    if (s.status.ok()) (void)engine_->Collect();
  }
  if (status.ok() && context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "step stream cancelled by the scheduler");
  }
  return status;
}

grpc::Status GrpcWorkerService::Clear(grpc::ServerContext*, const ite::v1::WorkerClearRequest*,
                                      ite::v1::WorkerClearResponse*) {
  std::lock_guard<std::mutex> lock(engine_mu_);
  return ToGrpcStatus(engine_->Clear());
}

grpc::Status GrpcWorkerService::Health(grpc::ServerContext*, const ite::v1::WorkerHealthRequest*,
                                       ite::v1::WorkerHealthResponse* response) {
  // No engine lock: health must answer while a long step runs.
  response->set_steps(steps_.load());
  response->set_busy_us(busy_us_.load());
  response->set_uptime_us(MicrosSince(start_));
  return grpc::Status::OK;
}

}  // namespace ite
