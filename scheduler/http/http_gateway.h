// The OpenAI-compatible HTTP API of ite-scheduler (cpp-httplib), a thin adapter over
// RequestIntake beside the gRPC service and sharing its scheduler:
//   POST /v1/completions, /v1/chat/completions   (stream: SSE `data:` chunks, then [DONE])
//   GET  /v1/models, /health, /metrics (Prometheus) POST /tokenize, /detokenize
//   GET  / (the chat page, chat_page.h)
// Bodies are parsed by ParseOpenAiRequest; errors are OpenAI error bodies with the right status
// (openai_response.h), never a crash or an empty reply. A streaming client that disconnects is
// noticed at the next write (tokens, or an SSE comment every 100 ms while none come), one
// waiting for a whole response by watching its connection every 100 ms (client_connection.h);
// either way its generation is cancelled, freeing its KV blocks.
//
// Security: with a certificate it serves HTTPS only (never the same port in plaintext); with API
// keys every route but /health needs `Authorization: Bearer KEY`, else 401 with an OpenAI error
// body.
//
// Threads: requests run on the server's own pool (`threads`: one per concurrent request, a
// stream holds its thread); Start and Stop from the owning thread.
#pragma once

#include <memory>
#include <string>

#include "common/api_keys.h"
#include "common/status.h"
#include "scheduler/request_intake.h"

namespace ite {

struct HttpGatewayOptions {
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (see HttpGateway::port)
  size_t max_body_bytes = 8u << 20;
  int threads = 64;           // concurrent requests; more wait for a free thread
  int listen_backlog = 1024;  // connections the kernel queues before they are accepted
  std::string tls_cert_file;  // PEM; with tls_key_file: HTTPS
  std::string tls_key_file;   // PEM
  std::string tls_client_ca_file;  // PEM; non-empty: clients need a certificate from this CA
  std::shared_ptr<const ApiKeys> api_keys;  // null or empty: no key needed
};

class HttpGateway {
 public:
  // `intake` must outlive the gateway.
  HttpGateway(RequestIntake* intake, HttpGatewayOptions options);
  ~HttpGateway();  // Stop()

  // Binds and starts serving on a thread of its own. Fails when the port cannot be bound.
  Status Start();
  int port() const;  // the bound port, after Start
  // Stops accepting and closes connections; running streams are cancelled. Idempotent.
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ite
