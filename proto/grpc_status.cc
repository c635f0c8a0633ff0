#include "proto/grpc_status.h"

namespace ite {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return Status::Ok();
  int code = static_cast<int>(status.error_code());
  switch (status.error_code()) {
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Status(static_cast<StatusCode>(code), status.error_message());
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      // A worker that misses its deadline is as good as gone for the scheduler.
      return Status(StatusCode::kUnavailable, "deadline exceeded: " + status.error_message());
    default:
      return Status(StatusCode::kInternal,
                    "grpc code " + std::to_string(code) + ": " + status.error_message());
  }
}

}  // namespace ite
