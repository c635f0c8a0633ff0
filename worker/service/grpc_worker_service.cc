#include "worker/service/grpc_worker_service.h"

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

GrpcWorkerService::GrpcWorkerService(std::unique_ptr<WorkerEngine> engine)
    : engine_(std::move(engine)) {}

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
    return ToGrpcStatus(result.status());
  }
  EncodeStepResult(*result, response);
  return grpc::Status::OK;
}

grpc::Status GrpcWorkerService::Step(grpc::ServerContext*, const ite::v1::StepRequest* request,
                                     ite::v1::StepResult* response) {
  return RunStep(*request, response);
}

grpc::Status GrpcWorkerService::StepStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<ite::v1::StepResult, ite::v1::StepRequest>* stream) {
  // Requests that arrive while a step runs wait in the stream's buffer, so the next step starts
  // as soon as this one's result is written: the scheduler's round trip is hidden.
  ite::v1::StepRequest request;
  ite::v1::StepResult result;
  while (stream->Read(&request)) {
    result.Clear();
    grpc::Status status = RunStep(request, &result);
    if (!status.ok()) return status;
    if (!stream->Write(result)) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "step stream closed by the scheduler");
    }
  }
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "step stream cancelled by the scheduler");
  }
  return grpc::Status::OK;
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
