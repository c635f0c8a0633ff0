// Runs a gRPC server the same way in every ite process: the standard health service
// (grpc.health.v1) and server reflection on, the credentials the caller made (plaintext by
// default; TLS, mTLS and API keys from proto/grpc_security.h), graceful stop on SIGTERM/SIGINT.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace ite {

struct GrpcServerOptions {
  std::string name;  // for logs: "ite-worker", "ite-scheduler"
  std::string host = "127.0.0.1";
  int port = 0;  // 0: the kernel picks a free port (see ready_file)
  std::shared_ptr<grpc::ServerCredentials> credentials;  // null: plaintext
  // When set, the bound port is written here (atomically, via rename) once the server serves:
  // a parent process waits for this file instead of guessing free ports.
  std::string ready_file;
  int shutdown_grace_ms = 5000;  // in-flight calls get this long after `before_shutdown`
  // Work that must finish before the process takes requests (a scheduler waiting for its
  // workers), run on a thread of its own once the server listens. Meanwhile health reports
  // NOT_SERVING (so readiness probes hold traffic back) while kHealthLivenessService reports
  // SERVING (so liveness probes leave a waiting process alone). OK: health turns SERVING and the
  // ready file is written; an error ends the server. It must return soon after `stopping`
  // turns true (on SIGTERM/SIGINT); one still running `start_up_stop_ms` later is not waited
  // for: the process exits at once (code 0), as nothing was being served.
  std::function<Status(const std::atomic<bool>& stopping)> start_up;
  int start_up_stop_ms = 1500;
  // Once serving, health follows this (asked every `ready_poll_ms`): NOT_SERVING while it says
  // false (a scheduler whose workers are all down), SERVING again when it says true. Unset:
  // SERVING until shutdown.
  std::function<bool()> ready;
  int ready_poll_ms = 200;
  // Health service names that report what the unnamed service ("") reports, for clients that
  // ask per service ("ite.v1.Generation").
  std::vector<std::string> health_services;
};

// The health service name that reports SERVING for as long as the server answers at all,
// during start-up and drain too: what a liveness probe should ask for. The unnamed service ("")
// is SERVING only while the process takes requests.
inline constexpr char kHealthLivenessService[] = "liveness";

// Blocks SIGTERM and SIGINT in the calling thread and every thread it creates later, so that
// RunGrpcServer can receive them with sigwait. Call first thing in main(), before any thread.
void BlockShutdownSignals();

// Builds and starts the server, runs `options.start_up` if set, then blocks until SIGTERM or
// SIGINT. Then it runs `before_shutdown` (e.g. drain running requests; only if start-up
// succeeded) while calls still flow, and shuts the server down. Returns an error if the port
// cannot be bound or start-up failed.
Status RunGrpcServer(const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
                     const std::function<void()>& before_shutdown);

}  // namespace ite
