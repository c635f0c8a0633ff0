#include "proto/grpc_server_runner.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

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
  builder.AddListeningPort(
      address, options.credentials ? options.credentials : grpc::InsecureServerCredentials(),
      &bound_port);
  // gRPC turns SO_REUSEPORT on by default: a second server on the same port would then start
  // and the kernel would split clients between the two. One port, one server.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
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
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  // Per name: SetServingStatus(bool) would set every service, "liveness" too.
  auto set_ready = [&](bool ready) {
    health->SetServingStatus("", ready);
    for (const std::string& name : options.health_services) health->SetServingStatus(name, ready);
  };
  set_ready(!options.start_up);
  health->SetServingStatus(kHealthLivenessService, true);

  // Start-up runs beside the signal wait, so SIGTERM is answered while it waits.
  enum class Phase { kStarting, kSucceeded, kFailed };
  std::atomic<Phase> phase{options.start_up ? Phase::kStarting : Phase::kSucceeded};
  std::atomic<bool> stopping{false};
  std::mutex start_mu;
  std::condition_variable start_cv;
  Status start_status;
  std::thread starter;
  if (options.start_up) {
    starter = std::thread([&] {
      Status st = options.start_up(stopping);
      std::lock_guard<std::mutex> lock(start_mu);
      start_status = st;
      phase = st.ok() ? Phase::kSucceeded : Phase::kFailed;
      start_cv.notify_all();
    });
  }
  bool serving = false;
  bool ready = false;  // what health says now
  auto become_serving = [&]() -> Status {
    serving = true;
    ready = !options.ready || options.ready();
    set_ready(ready);
    if (options.start_up) ITE_LOG_INFO("{}: serving", options.name);
    if (options.ready_file.empty()) return Status::Ok();
    return WriteReadyFile(options.ready_file, bound_port);
  };

  sigset_t set = ShutdownSignals();
  int sig = 0;
  Status result = Status::Ok();
  while (true) {
    if (!serving && phase == Phase::kSucceeded) {
      result = become_serving();
      if (!result.ok()) break;
    }
    if (phase == Phase::kFailed) break;
    if (serving && !options.ready) {
      sigwait(&set, &sig);
      break;
    }
    if (serving) {
      timespec poll{options.ready_poll_ms / 1000, (options.ready_poll_ms % 1000) * 1000000L};
      sig = sigtimedwait(&set, nullptr, &poll);
      if (sig > 0) break;
      if (bool now = options.ready(); now != ready) {
        ready = now;
        set_ready(ready);
        if (ready) {
          ITE_LOG_INFO("{}: serving again", options.name);
        } else {
          ITE_LOG_WARN("{}: health NOT_SERVING: nothing can serve requests now", options.name);
        }
      }
      continue;
    }
    timespec tick{0, 50 * 1000 * 1000};
    sig = sigtimedwait(&set, nullptr, &tick);
    if (sig > 0) break;
  }
  if (sig > 0) ITE_LOG_INFO("{}: signal {} received, shutting down", options.name, sig);
  stopping = true;
  if (starter.joinable()) {
    std::unique_lock<std::mutex> lock(start_mu);
    if (!start_cv.wait_for(lock, std::chrono::milliseconds(options.start_up_stop_ms),
                           [&] { return phase != Phase::kStarting; })) {
      ITE_LOG_WARN("{}: start-up did not stop within {} ms; exiting without it", options.name,
                   options.start_up_stop_ms);
      spdlog::default_logger()->flush();
      std::fflush(nullptr);
      std::_Exit(0);
    }
    lock.unlock();
    starter.join();
    if (phase == Phase::kFailed && sig <= 0) result = start_status;
  }
  set_ready(false);
  // Still answering: a liveness probe must not kill a process that is draining.
  health->SetServingStatus(kHealthLivenessService, true);
  if (phase == Phase::kSucceeded && before_shutdown) before_shutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options.shutdown_grace_ms));
  server->Wait();
  ITE_LOG_INFO("{}: stopped", options.name);
  return result;
}

}  // namespace ite
