// The OpenAI target of `ite-client bench`: streamed POST /v1/completions (SSE) with the same
// prompts (token ids, or text) and sampling as the gRPC target, so one load measures both front
// ends. Each request opens its own connection, as a client without a connection pool does.
// Tokens are counted as the stream's chunks: ite-infer sends one chunk per token (as vLLM and
// its benchmark count them); the usage chunk at the end gives the exact totals.
#include <fmt/format.h>
#include <httplib.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "clients/bench_target.h"

namespace ite::client {
namespace {

using Json = nlohmann::json;

grpc::StatusCode CodeForHttp(int status) {
  switch (status) {
    case 400:
    case 413:
    case 422:
      return grpc::StatusCode::INVALID_ARGUMENT;
    case 404:
      return grpc::StatusCode::NOT_FOUND;
    case 429:
      return grpc::StatusCode::RESOURCE_EXHAUSTED;
    case 503:
      return grpc::StatusCode::UNAVAILABLE;
    case 504:
      return grpc::StatusCode::DEADLINE_EXCEEDED;
    default:
      return status >= 500 ? grpc::StatusCode::INTERNAL : grpc::StatusCode::UNKNOWN;
  }
}

// An error response's message: the OpenAI error body's, or the start of whatever came.
std::string ErrorMessage(int status, const std::string& body) {
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object() && j.contains("error") && j["error"].is_object() &&
      j["error"].value("message", Json()).is_string()) {
    return fmt::format("HTTP {}: {}", status, j["error"]["message"].get<std::string>());
  }
  return fmt::format("HTTP {}: {}", status, body.substr(0, 200));
}

class OpenAiBenchTarget : public BenchTarget {
 public:
  OpenAiBenchTarget(std::string url, int32_t timeout_ms) : url_(std::move(url)) {
    // httplib wants scheme://host:port; a base URL as the OpenAI SDKs take it ends in /v1.
    base_ = url_;
    const size_t scheme = base_.find("://");
    const size_t path = base_.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    if (path != std::string::npos) base_.resize(path);
    timeout_ms_ = std::max(1, timeout_ms);
  }

  grpc::Status Prepare(BenchModel* model) override {
    if (base_.rfind("http://", 0) != 0) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("--url {}: must be http://HOST:PORT", url_));
    }
    httplib::Client cli(base_);
    if (!cli.is_valid()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          fmt::format("--url {}: not a valid http://HOST:PORT", url_));
    }
    Configure(cli);
    httplib::Result res = cli.Get("/v1/models");
    if (!res) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, TransportError(res.error()));
    }
    if (res->status != 200) {
      return grpc::Status(CodeForHttp(res->status), ErrorMessage(res->status, res->body));
    }
    Json j = Json::parse(res->body, nullptr, false);
    if (!j.is_object() || !j.value("data", Json()).is_array() || j["data"].empty() ||
        !j["data"][0].is_object() || !j["data"][0].value("id", Json()).is_string()) {
      return grpc::Status(grpc::StatusCode::INTERNAL,
                          fmt::format("{}/v1/models: no model in the answer", base_));
    }
    model_ = j["data"][0]["id"].get<std::string>();
    const Json vocab = j["data"][0].value("vocab_size", Json());
    model->vocab_size = vocab.is_number_integer() ? vocab.get<int32_t>() : 0;
    return grpc::Status::OK;
  }

  BenchCallResult Run(const BenchCall& call, const std::function<void(int)>& on_tokens,
                      CallCanceller* canceller) override {
    BenchCallResult r;
    Json body = {{"model", model_},
                 {"max_tokens", call.max_tokens},
                 {"temperature", call.temperature},
                 {"seed", call.seed},
                 {"ignore_eos", call.ignore_eos},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}}};
    if (call.prompt_text != nullptr) {
      body["prompt"] = *call.prompt_text;
    } else {
      body["prompt"] = *call.prompt_ids;
    }
    httplib::Request req;
    req.method = "POST";
    req.path = "/v1/completions";
    req.set_header("Content-Type", "application/json");
    req.set_header("X-Request-Id", call.request_id);
    req.body = body.dump();

    int status = 0;
    std::string pending, error_body, stream_error;
    std::atomic<bool> cancelled{false};
    req.response_handler = [&](const httplib::Response& res) {
      status = res.status;
      return true;
    };
    req.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
      if (cancelled) return false;
      if (status != 200) {
        if (error_body.size() < 4096) error_body.append(data, size);
        return true;
      }
      for (size_t i = 0; i < size; ++i) {
        if (data[i] != '\r') pending.push_back(data[i]);  // events may end in \r\n\r\n
      }
      for (size_t end; (end = pending.find("\n\n")) != std::string::npos;) {
        OnEvent(std::string_view(pending).substr(0, end), on_tokens, &r, &stream_error);
        pending.erase(0, end + 2);
      }
      return true;
    };

    httplib::Client cli(base_);
    Configure(cli);
    canceller->Set([&] {
      cancelled = true;
      cli.stop();
    });
    httplib::Result res = cli.send(req);
    canceller->Set([] {});
    if (cancelled) {
      r.status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    } else if (!res) {
      r.status = grpc::Status(grpc::StatusCode::UNAVAILABLE, TransportError(res.error()));
    } else if (status != 200) {
      r.status = grpc::Status(CodeForHttp(status), ErrorMessage(status, error_body));
    } else if (!stream_error.empty()) {
      r.status = grpc::Status(grpc::StatusCode::INTERNAL, stream_error);
    }
    return r;
  }

  const std::string& address() const override { return url_; }

 private:
  void Configure(httplib::Client& cli) const {
    cli.set_connection_timeout(timeout_ms_ / 1000, (timeout_ms_ % 1000) * 1000);
    // Queued requests see nothing for a while (ite-infer sends SSE comments meanwhile, other
    // servers may not).
    cli.set_read_timeout(600, 0);
    cli.set_keep_alive(false);
  }

  // One SSE event: `data: {chunk}`, `data: [DONE]` or a comment.
  static void OnEvent(std::string_view event, const std::function<void(int)>& on_tokens,
                      BenchCallResult* r, std::string* stream_error) {
    if (event.rfind("data:", 0) != 0) return;
    std::string_view data = event.substr(5);
    while (!data.empty() && data.front() == ' ') data.remove_prefix(1);
    if (data == "[DONE]") return;
    Json j = Json::parse(data, nullptr, false);
    if (!j.is_object()) {
      *stream_error = fmt::format("a stream chunk is not JSON: {}", data.substr(0, 200));
      return;
    }
    if (j.contains("error")) {
      const Json& e = j["error"];
      *stream_error = e.is_object() && e.value("message", Json()).is_string()
                          ? e["message"].get<std::string>()
                          : "an error object in the stream";
      return;
    }
    if (const Json u = j.value("usage", Json()); u.is_object()) {
      const Json p = u.value("prompt_tokens", Json()), c = u.value("completion_tokens", Json());
      if (p.is_number_integer()) r->prompt_tokens = p.get<int32_t>();
      if (c.is_number_integer()) r->completion_tokens = c.get<int32_t>();
    }
    const Json choices = j.value("choices", Json::array());
    if (!choices.is_array()) return;
    for (const Json& c : choices) {
      if (!c.is_object()) continue;
      // A chunk that only carries the finish reason brings no token.
      const bool finish = c.contains("finish_reason") && !c["finish_reason"].is_null();
      const Json t = c.value("text", Json());
      const bool text = t.is_string() && !t.get_ref<const std::string&>().empty();
      if (text || !finish) on_tokens(1);
    }
  }

  std::string TransportError(httplib::Error e) const {
    return fmt::format("{}: {} (is the server running there?)", base_,
                       e == httplib::Error::Connection
                           ? "cannot connect"
                           : "request failed: " + httplib::to_string(e));
  }

  std::string url_, base_, model_;
  int32_t timeout_ms_ = 5000;
};

}  // namespace

std::unique_ptr<BenchTarget> MakeOpenAiBenchTarget(const std::string& url, int32_t timeout_ms) {
  return std::make_unique<OpenAiBenchTarget>(url, timeout_ms);
}

}  // namespace ite::client
