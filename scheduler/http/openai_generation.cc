#include "scheduler/http/openai_generation.h"

#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include "common/logging.h"
#include "scheduler/http/client_connection.h"
#include "scheduler/http/openai_response.h"

namespace ite {
namespace {

using Clock = std::chrono::steady_clock;
using Sessions = std::vector<std::unique_ptr<GenerationSession>>;

constexpr auto kKeepAlive = std::chrono::milliseconds(100);
// How often a whole (non-streamed) response checks that its client is still there.
constexpr auto kConnectionCheck = std::chrono::milliseconds(100);

// A request id the client sent (X-Request-Id), if it is short printable ASCII.
std::string ClientRequestId(const httplib::Request& req) {
  std::string id = req.get_header_value("X-Request-Id");
  if (id.size() > 128) return "";
  for (char c : id) {
    if (c < 0x21 || c > 0x7e) return "";
  }
  return id;
}

// The SSE stream of one request: its sessions (choice index = position), polled in turn.
struct Stream {
  OpenAiResponseHeader header;
  bool include_usage = false;
  int n = 1;
  Sessions sessions;
  std::vector<bool> started;
  std::vector<size_t> offsets;  // text bytes sent per choice (completions' text_offset)
  std::vector<Usage> usage;
  size_t remaining = 0;
  Clock::time_point last_write = Clock::now();
  std::string id;

  bool Send(httplib::DataSink& sink, const std::string& data) {
    last_write = Clock::now();
    return sink.write(data.data(), data.size());
  }
  bool SendJson(httplib::DataSink& sink, const nlohmann::json& j) {
    return Send(sink, "data: " + OpenAiDump(j) + "\n\n");
  }

  // The next chunk of any unfinished session, waiting up to about `wait`; sets `*index`.
  std::optional<GenerationChunk> Poll(std::chrono::milliseconds wait, size_t* index) {
    if (sessions.size() == 1) {
      *index = 0;
      return sessions[0]->finished() ? std::nullopt : sessions[0]->Next(wait);
    }
    const auto deadline = Clock::now() + wait;
    do {
      for (size_t i = 0; i < sessions.size(); ++i) {
        if (sessions[i]->finished()) continue;
        if (std::optional<GenerationChunk> c = sessions[i]->Next(std::chrono::milliseconds(0))) {
          *index = i;
          return c;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    } while (Clock::now() < deadline);
    return std::nullopt;
  }

  // One call of httplib's content provider: false ends the response (the client is gone).
  bool Step(httplib::DataSink& sink) {
    if (remaining == 0) {
      if (include_usage && !SendJson(sink, OpenAiUsageChunk(header, OpenAiUsage(usage, n)))) {
        return false;
      }
      if (!Send(sink, "data: [DONE]\n\n")) return false;
      sink.done();
      return true;
    }
    size_t i = 0;
    std::optional<GenerationChunk> chunk = Poll(std::chrono::milliseconds(50), &i);
    if (!chunk.has_value()) {
      return Clock::now() - last_write < kKeepAlive || Send(sink, ": keep-alive\n\n");
    }
    if (chunk->finish != FinishReason::kNone) {
      --remaining;
      usage[i] = chunk->usage;
    }
    if (chunk->finish == FinishReason::kError) {
      ITE_LOG_WARN("request {} failed: {}", sessions[i]->request_id(), chunk->error.ToString());
      return SendJson(sink, OpenAiErrorFor(chunk->error).body);
    }
    nlohmann::json j =
        OpenAiStreamChunk(header, static_cast<int>(i), *chunk, !started[i], offsets[i]);
    if (include_usage) j["usage"] = nullptr;
    started[i] = true;
    offsets[i] += chunk->text.size();
    return SendJson(sink, j);
  }
};

}  // namespace

void SetOpenAiError(httplib::Response& res, const Status& status) {
  OpenAiError e = OpenAiErrorFor(status);
  res.status = e.http_status;
  res.set_content(OpenAiDump(e.body), "application/json");
}

OpenAiGeneration::OpenAiGeneration(RequestIntake* intake) : intake_(intake) {
  std::random_device rd;
  id_prefix_ = fmt::format("{:08x}", rd());
}

void OpenAiGeneration::Handle(OpenAiEndpoint endpoint, const httplib::Request& req,
                              httplib::Response& res) {
  StatusOr<OpenAiRequest> parsed = ParseOpenAiRequest(endpoint, req.body);
  if (!parsed.ok()) {
    SetOpenAiError(res, parsed.status());
    return;
  }
  OpenAiRequest& r = *parsed;
  const bool chat = endpoint == OpenAiEndpoint::kChat;
  std::string id = ClientRequestId(req);
  if (id.empty()) id = fmt::format("{}-{}{:x}", chat ? "chatcmpl" : "cmpl", id_prefix_, next_id_++);
  res.set_header("X-Request-Id", id);

  OpenAiResponseHeader header;
  header.endpoint = endpoint;
  header.id = id;
  header.created = static_cast<int64_t>(std::time(nullptr));
  header.model = r.model.empty() ? intake_->options().model_name : r.model;
  header.logprobs = chat ? r.chat_logprobs : r.completion_logprobs >= 0;
  Sessions sessions;
  for (size_t p = 0; p < r.inputs.size(); ++p) {
    GenerateInput& in = r.inputs[p];
    in.request_id = r.inputs.size() == 1 ? id : fmt::format("{}-p{}", id, p);
    StatusOr<Sessions> s = intake_->Submit(in, r.n);
    if (!s.ok()) {
      SetOpenAiError(res, s.status());  // the sessions already made cancel as they go
      return;
    }
    for (auto& session : *s) sessions.push_back(std::move(session));
  }
  if (!r.user.empty()) ITE_LOG_DEBUG("request {} from user '{}'", id, r.user);

  if (r.stream) {
    auto stream = std::make_shared<Stream>();
    stream->header = std::move(header);
    stream->include_usage = r.include_usage;
    stream->n = r.n;
    stream->remaining = sessions.size();
    stream->started.assign(sessions.size(), false);
    stream->offsets.assign(sessions.size(), 0);
    stream->usage.assign(sessions.size(), Usage());
    stream->sessions = std::move(sessions);
    stream->id = id;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [stream](size_t, httplib::DataSink& sink) { return stream->Step(sink); },
        [stream](bool success) {
          if (!success || stream->remaining > 0) {
            ITE_LOG_INFO("request {}: client went away, cancelling", stream->id);
          }
          stream->sessions.clear();  // cancels unfinished generations, freeing their blocks
        });
    return;
  }

  // A whole response writes nothing until the end, so the client's connection is watched
  // instead: one that closes cancels every session (their destructors), freeing the blocks.
  ClientConnection connection(req);
  const auto started = Clock::now();
  std::vector<OpenAiChoice> choices(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    while (choices[i].finish == FinishReason::kNone) {
      std::optional<GenerationChunk> c = sessions[i]->Next(kConnectionCheck);
      if (Clock::now() - started >= kConnectionCheck && connection.Closed()) {
        ITE_LOG_INFO("request {}: client went away, cancelling", id);
        sessions.clear();
        // Nobody reads it; nginx's 499 names the case in the server's own access logs.
        OpenAiError e =
            OpenAiErrorBody(499, "invalid_request_error", "the client closed the connection", "",
                            "client_closed_request");
        res.status = e.http_status;
        res.set_content(OpenAiDump(e.body), "application/json");
        return;
      }
      if (!c.has_value()) continue;
      if (c->finish == FinishReason::kError) {
        ITE_LOG_WARN("request {} failed: {}", sessions[i]->request_id(), c->error.ToString());
        SetOpenAiError(res, c->error);
        return;
      }
      choices[i].text += c->text;
      for (PositionLogprob& p : c->logprobs) choices[i].logprobs.push_back(std::move(p));
      choices[i].finish = c->finish;
      choices[i].usage = c->usage;
    }
  }
  res.set_content(OpenAiDump(OpenAiResponse(header, choices, r.n)), "application/json");
}

}  // namespace ite
