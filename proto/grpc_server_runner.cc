#include "proto/grpc_server_runner.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <csignal>

#include "common/logging.h"
#include "common/ready_file.h"

namespace ite {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

Status RunGrpcServer(const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
                     const std::function<void()>& before_shutdown) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  std::string address = options.host + ":" + std::to_string(options.port);
  // IPv6 literals need brackets in a gRPC address.
  if (options.host.find(':') != std::string::npos) {
    address = "[" + options.host + "]:" + std::to_string(options.port);
  }
  int bound_port = 0;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &bound_port);
  builder.SetMaxReceiveMessageSize(64 << 20);
  builder.SetMaxSendMessageSize(64 << 20);
  // Notice dead peers (a scheduler or a client that vanished) without waiting for TCP.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || bound_port == 0) {
    return Unavailable("{}: cannot listen on {} (port in use or host not local?)", options.name,
                       address);
  }
  ITE_LOG_INFO("{} listening on {}:{}", options.name, options.host, bound_port);
  if (!options.ready_file.empty()) {
    Status s = WriteReadyFile(options.ready_file, bound_port);
    if (!s.ok()) {
      server->Shutdown();
      return s;
    }
  }

  sigset_t set = ShutdownSignals();
  int sig = 0;
  sigwait(&set, &sig);
  ITE_LOG_INFO("{}: signal {} received, shutting down", options.name, sig);
  server->GetHealthCheckService()->SetServingStatus(false);
  if (before_shutdown) before_shutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options.shutdown_grace_ms));
  server->Wait();
  ITE_LOG_INFO("{}: stopped", options.name);
  return Status::Ok();
}

}  // namespace ite
