#include "worker/service/metrics_http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <thread>

#include "common/ready_file.h"

namespace ite {

struct MetricsHttpServer::Impl {
  MetricsHttpServerOptions options;
  std::function<std::string()> render;
  httplib::Server server;
  std::thread thread;
  int port = 0;
};

MetricsHttpServer::MetricsHttpServer(MetricsHttpServerOptions options,
                                     std::function<std::string()> render)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->render = std::move(render);
}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

Status MetricsHttpServer::Start() {
  Impl& s = *impl_;
  s.server.Get("/metrics", [&s](const httplib::Request&, httplib::Response& res) {
    res.set_content(s.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s.server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let a second process
  // bind the same port and take half the scrapes.
  s.server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  if (s.options.port == 0) {
    s.port = s.server.bind_to_any_port(s.options.host);
  } else {
    s.port = s.server.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    return Unavailable("metrics: cannot listen on {}:{}", s.options.host, s.options.port);
  }
  s.thread = std::thread([&s] { s.server.listen_after_bind(); });
  if (!s.options.ready_file.empty()) {
    ITE_RETURN_IF_ERROR(WriteReadyFile(s.options.ready_file, s.port));
  }
  return Status::Ok();
}

int MetricsHttpServer::port() const { return impl_->port; }

void MetricsHttpServer::Stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.server.stop();
  s.thread.join();
}

}  // namespace ite
