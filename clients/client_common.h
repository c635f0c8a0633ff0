// Shared pieces of ite-client: exit codes, channel set-up, status messages, and one streamed
// Generate call.
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
  kExitInterrupted = 130,  // Ctrl-C (128 + SIGINT), after partial results were printed
};

constexpr const char* kExitHelp =
    "Exit codes: 0 ok, 1 other error, 2 usage error, 3 cannot connect / server unavailable /\n"
    "deadline exceeded, 4 invalid argument (the server rejected the request; message on stderr),\n"
    "130 interrupted by Ctrl-C (bench prints the partial results first).";

// Maps a failed call's status to the exit code above.
int ExitCodeFor(const grpc::Status& status);

// A one-line explanation of a failed call for a person: the status name, the server's message,
// and a hint where the code alone says little (UNIMPLEMENTED usually means `addr` is a worker's
// port, not the public service's).
std::string DescribeStatus(const grpc::Status& status, const std::string& addr);

// Prints "ite-client WHAT: <DescribeStatus>" on stderr and returns ExitCodeFor(status).
int Fail(const std::string& what, const grpc::Status& status, const std::string& addr);

// TLS files and API key for every connection this process opens (one subcommand runs per
// process, so one setting serves them all); AddConnectionFlags fills them in.
struct ConnectionSecurity {
  std::string tls_ca;    // non-empty (or tls_cert): TLS, the server checked against this CA
  std::string tls_cert;  // client certificate (mTLS)
  std::string tls_key;
  std::string tls_server_name;  // the name the server's certificate must carry, if not addr's
  std::string api_key;          // sent as 'authorization: Bearer KEY'
};
ConnectionSecurity& Security();

// Opens a channel (TLS and API key per Security()) to `addr` and waits up to `timeout` for it to
// connect. A refused connection fails at the first attempt (gRPC would retry until the deadline);
// an address that does not answer at all fails after `timeout`. Both give UNAVAILABLE with a
// message, as does a failed TLS handshake (an untrusted server certificate); unreadable TLS files
// give INVALID_ARGUMENT.
std::shared_ptr<grpc::Channel> Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                       grpc::Status* status);

// Runs one Generate call and passes every chunk to `on_chunk` as it arrives. Returns the call's
// final status. `context` lets the caller cancel from another thread.
grpc::Status StreamGenerate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            grpc::ClientContext* context,
                            const std::function<void(const ite::v1::GenerateResponse&)>& on_chunk);

}  // namespace ite::client
