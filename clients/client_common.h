// Shared pieces of ite-client: exit codes, channel set-up, and one streamed Generate call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "proto/ite/v1/generation.grpc.pb.h"

namespace ite::client {

// Exit codes a script can rely on (documented in --help and README.md).
enum ExitCode : int {
  kExitOk = 0,
  kExitOther = 1,
  kExitUsage = 2,
  kExitUnavailable = 3,  // cannot connect, server or worker unavailable, deadline exceeded
  kExitInvalidArgument = 4,
};

// Maps a failed call's status to the exit code above.
int ExitCodeFor(const grpc::Status& status);

// Opens an insecure channel to `addr` and waits up to `timeout` for it to connect, so an address
// with nothing behind it fails quickly with kExitUnavailable instead of on the first call.
std::shared_ptr<grpc::Channel> Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                       grpc::Status* status);

// Runs one Generate call and passes every chunk to `on_chunk` as it arrives. Returns the call's
// final status. `context` lets the caller cancel from another thread.
grpc::Status StreamGenerate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            grpc::ClientContext* context,
                            const std::function<void(const ite::v1::GenerateResponse&)>& on_chunk);

}  // namespace ite::client
