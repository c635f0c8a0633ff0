#include "clients/client_common.h"

namespace ite::client {

int ExitCodeFor(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitInvalidArgument;
    default:
      return kExitOther;
  }
}

std::shared_ptr<grpc::Channel> Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                       grpc::Status* status) {
  grpc::ChannelArguments args;
  // Long generations stream for minutes; keepalive notices a dead server without waiting for TCP.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetMaxReceiveMessageSize(64 << 20);
  auto channel = grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + timeout)) {
    *status =
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "cannot connect to " + addr + " within " +
                                                        std::to_string(timeout.count()) + " ms");
    return nullptr;
  }
  *status = grpc::Status::OK;
  return channel;
}

grpc::Status StreamGenerate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            grpc::ClientContext* context,
                            const std::function<void(const ite::v1::GenerateResponse&)>& on_chunk) {
  auto reader = stub.Generate(context, req);
  ite::v1::GenerateResponse chunk;
  while (reader->Read(&chunk)) on_chunk(chunk);
  return reader->Finish();
}

}  // namespace ite::client
