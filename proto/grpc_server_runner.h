// Runs a gRPC server the same way in every ite process: the standard health service
// (grpc.health.v1) and server reflection on, insecure credentials (inside a cluster or on
// loopback; put TLS in front), graceful stop on SIGTERM/SIGINT.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"

namespace ite {

struct GrpcServerOptions {
  std::string name;  // for logs: "ite-worker", "ite-scheduler"
  std::string host = "127.0.0.1";
  int port = 0;  // 0: the kernel picks a free port (see ready_file)
  // When set, the bound port is written here (atomically, via rename) once the server serves:
  // a parent process waits for this file instead of guessing free ports.
  std::string ready_file;
  int shutdown_grace_ms = 5000;  // in-flight calls get this long after `before_shutdown`
};

// Blocks SIGTERM and SIGINT in the calling thread and every thread it creates later, so that
// RunGrpcServer can receive them with sigwait. Call first thing in main(), before any thread.
void BlockShutdownSignals();

// Builds and starts the server, then blocks until SIGTERM or SIGINT. Then it runs
// `before_shutdown` (e.g. drain running requests) while calls still flow, and shuts the server
// down. Returns an error if the port cannot be bound.
Status RunGrpcServer(const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
                     const std::function<void()>& before_shutdown);

}  // namespace ite
