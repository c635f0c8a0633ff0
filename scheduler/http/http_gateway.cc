#include "scheduler/http/http_gateway.h"

#include <httplib.h>
#include <sys/socket.h>

#include <ctime>
#include <thread>

#include "common/logging.h"
#include "scheduler/http/chat_page.h"
#include "scheduler/http/openai_generation.h"
#include "scheduler/http/openai_response.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {
namespace {

void SetJson(httplib::Response& res, const nlohmann::json& j) {
  res.set_content(OpenAiDump(j), "application/json");
}

}  // namespace

struct HttpGateway::Impl {
  RequestIntake* intake;
  HttpGatewayOptions options;
  OpenAiGeneration generation;
  std::unique_ptr<httplib::Server> owned_server;  // an httplib::SSLServer with TLS
  httplib::Server& server;
  std::thread thread;
  int port = 0;
  int64_t created = static_cast<int64_t>(std::time(nullptr));

  Impl(RequestIntake* in, HttpGatewayOptions o)
      : intake(in),
        options(std::move(o)),
        generation(in),
        owned_server(MakeServer(options)),
        server(*owned_server) {}

  static std::unique_ptr<httplib::Server> MakeServer(const HttpGatewayOptions& o) {
    if (o.tls_cert_file.empty()) return std::make_unique<httplib::Server>();
    return std::make_unique<httplib::SSLServer>(
        o.tls_cert_file.c_str(), o.tls_key_file.c_str(),
        o.tls_client_ca_file.empty() ? nullptr : o.tls_client_ca_file.c_str());
  }

  void Routes();
  void Models(httplib::Response& res) const;
  void Health(httplib::Response& res) const;
  void Tokenize(const httplib::Request& req, httplib::Response& res) const;
  void Detokenize(const httplib::Request& req, httplib::Response& res) const;
};

void HttpGateway::Impl::Routes() {
  // Before routing, so that no handler (nor a 404 naming the path) runs for a caller without a
  // key; /health stays open for probes, and the chat page's files for browsers (the page then
  // sends the key its user enters).
  server.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    const ApiKeys* keys = options.api_keys.get();
    if (keys == nullptr || keys->empty() || req.path == "/health" ||
        (req.method == "GET" && IsChatPagePath(req.path))) {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const std::string header = req.get_header_value("Authorization");
    if (keys->AllowsAuthorization(header)) return httplib::Server::HandlerResponse::Unhandled;
    OpenAiError e = OpenAiErrorBody(
        401, "invalid_request_error",
        header.empty() ? "an API key is required: send 'Authorization: Bearer <key>'"
                       : "invalid API key",
        "", "invalid_api_key");
    res.status = e.http_status;
    res.set_header("WWW-Authenticate", "Bearer");
    SetJson(res, e.body);
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generation.Handle(OpenAiEndpoint::kCompletions, req, res);
  });
  server.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    generation.Handle(OpenAiEndpoint::kChat, req, res);
  });
  server.Get("/v1/models",
             [this](const httplib::Request&, httplib::Response& res) { Models(res); });
  server.Get("/health", [this](const httplib::Request&, httplib::Response& res) { Health(res); });
  server.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(intake->metrics().Render(intake->scheduler().Stats()),
                    "text/plain; version=0.0.4; charset=utf-8");
  });
  AddChatPageRoutes(server);
  server.Post("/tokenize",
              [this](const httplib::Request& req, httplib::Response& res) { Tokenize(req, res); });
  server.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    Detokenize(req, res);
  });
  // Whatever httplib answers by itself (unknown route 404, wrong method, body too large) gets an
  // OpenAI error body too. A body over the limit is a bad request like any other (400).
  server.set_error_handler(
      httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
        OpenAiError e;
        if (res.status == 413) {
          e = OpenAiErrorBody(400, "invalid_request_error", "body: larger than the server's limit",
                              "", "request_too_large");
        } else if (res.status == 404) {
          e = OpenAiErrorBody(404, "invalid_request_error",
                              fmt::format("{} {}: no such route", req.method, req.path));
        } else {
          e = OpenAiErrorBody(res.status, "invalid_request_error",
                              fmt::format("{} {}: HTTP {}", req.method, req.path, res.status));
        }
        res.status = e.http_status;
        SetJson(res, e.body);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown exception";
        try {
          if (ep) std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        ITE_LOG_ERROR("{} {}: unexpected exception: {}", req.method, req.path, what);
        OpenAiError e = OpenAiErrorBody(500, "server_error", "internal error: " + what);
        res.status = e.http_status;
        SetJson(res, e.body);
      });
}

void HttpGateway::Impl::Models(httplib::Response& res) const {
  nlohmann::json model = {{"id", intake->options().model_name},
                          {"object", "model"},
                          {"created", created},
                          {"owned_by", "ite-infer"},
                          {"max_model_len", intake->scheduler().max_context()},
                          // Beyond OpenAI's fields: what a client drawing random token-id
                          // prompts needs (ite-client bench --api openai).
                          {"vocab_size", intake->options().vocab_size}};
  SetJson(res, {{"object", "list"}, {"data", nlohmann::json::array({model})}});
}

void HttpGateway::Impl::Health(httplib::Response& res) const {
  SchedulerStats stats = intake->scheduler().Stats();
  bool any_up = false;
  for (const WorkerStats& w : stats.workers) any_up = any_up || w.up;
  if (!intake->accepting()) {
    SetOpenAiError(res, Unavailable("server is shutting down"));
  } else if (!any_up) {
    SetOpenAiError(res, Unavailable("no worker is available"));
  } else {
    res.status = 200;
  }
}

void HttpGateway::Impl::Tokenize(const httplib::Request& req, httplib::Response& res) const {
  StatusOr<TokenizeBody> body = ParseTokenizeBody(req.body);
  if (!body.ok()) return SetOpenAiError(res, body.status());
  StatusOr<TokenizeOutput> out = intake->Tokenize(body->prompt, body->return_token_strs);
  if (!out.ok()) return SetOpenAiError(res, out.status());
  nlohmann::json j = {{"tokens", out->token_ids},
                      {"count", out->token_ids.size()},
                      {"max_model_len", intake->scheduler().max_context()}};
  if (body->return_token_strs) j["token_strs"] = out->tokens;
  SetJson(res, j);
}

void HttpGateway::Impl::Detokenize(const httplib::Request& req, httplib::Response& res) const {
  StatusOr<std::vector<int32_t>> ids = ParseDetokenizeBody(req.body);
  if (!ids.ok()) return SetOpenAiError(res, ids.status());
  StatusOr<std::string> text = intake->Detokenize(*ids, /*skip_special_tokens=*/false);
  if (!text.ok()) return SetOpenAiError(res, text.status());
  SetJson(res, {{"prompt", *text}});
}

HttpGateway::HttpGateway(RequestIntake* intake, HttpGatewayOptions options)
    : impl_(std::make_unique<Impl>(intake, std::move(options))) {}

HttpGateway::~HttpGateway() { Stop(); }

Status HttpGateway::Start() {
  Impl& s = *impl_;
  // A certificate that does not load must stop start-up, never fall back to plaintext.
  if (!s.options.tls_cert_file.empty() && !s.server.is_valid()) {
    return InvalidArgument("HTTP: TLS certificate {} / key {} / client CA '{}' cannot be used",
                           s.options.tls_cert_file, s.options.tls_key_file,
                           s.options.tls_client_ca_file);
  }
  s.Routes();
  s.server.set_payload_max_length(s.options.max_body_bytes);
  const int threads = std::max(1, s.options.threads);
  s.server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // The library listens with a backlog of 5, so a burst of new connections (a benchmark's
  // clients starting together) overflows it: SYNs are dropped and retried a second later, or
  // connections reset. Linux lets listen() be called again to raise the backlog, so keep the
  // listening socket's descriptor (the options callback replaces the default SO_REUSEADDR).
  // The default also sets SO_REUSEPORT, which would let a second server bind the same port and
  // the kernel split clients between the two; SO_REUSEADDR alone still allows a quick restart.
  int listen_fd = -1;
  s.server.set_socket_options([&listen_fd](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });
  if (s.options.port == 0) {
    s.port = s.server.bind_to_any_port(s.options.host);
  } else {
    s.port = s.server.bind_to_port(s.options.host, s.options.port) ? s.options.port : -1;
  }
  if (s.port <= 0) {
    return Unavailable("HTTP: cannot listen on {}:{}", s.options.host, s.options.port);
  }
  if (listen_fd >= 0 && ::listen(listen_fd, s.options.listen_backlog) != 0) {
    ITE_LOG_WARN("HTTP: cannot raise the listen backlog to {}", s.options.listen_backlog);
  }
  s.thread = std::thread([&s] { s.server.listen_after_bind(); });
  return Status::Ok();
}

int HttpGateway::port() const { return impl_->port; }

void HttpGateway::Stop() {
  Impl& s = *impl_;
  if (!s.thread.joinable()) return;
  s.server.stop();
  s.thread.join();
}

}  // namespace ite
