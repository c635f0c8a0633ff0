// ite::Status <-> grpc::Status at the gRPC edge. The numeric codes are the same by design
// (common/status.h), so conversion keeps the code and the message.
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace ite {

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status);

}  // namespace ite
