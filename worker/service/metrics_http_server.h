// A small HTTP server for GET /metrics (Prometheus text) beside a process's gRPC service:
// ite-worker's --metrics-port. Anything else is 404. cpp-httplib, a few threads of its own.
//
// Threads: Start and Stop from the owning thread; `render` runs on the server's threads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace ite {

struct MetricsHttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;            // 0: any free port (see port())
  std::string ready_file;  // when set, the bound port is written here once serving
};

class MetricsHttpServer {
 public:
  MetricsHttpServer(MetricsHttpServerOptions options, std::function<std::string()> render);
  ~MetricsHttpServer();  // Stop()

  Status Start();  // binds (fails when the port is taken) and serves on a thread of its own
  int port() const;
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ite
