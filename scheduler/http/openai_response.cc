#include "scheduler/http/openai_response.h"

namespace ite {
namespace {

using Json = nlohmann::json;

Json Bytes(const std::string& s) {
  Json out = Json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

Json ChatLogprobs(const std::vector<PositionLogprob>& positions) {
  Json content = Json::array();
  for (const PositionLogprob& p : positions) {
    Json top = Json::array();
    for (const ChunkLogprob& t : p.top) {
      top.push_back({{"token", t.text}, {"logprob", t.logprob}, {"bytes", Bytes(t.text)}});
    }
    content.push_back({{"token", p.sampled.text},
                       {"logprob", p.sampled.logprob},
                       {"bytes", Bytes(p.sampled.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

// The legacy completions layout: parallel arrays, alternatives as {token text: logprob}.
Json CompletionLogprobs(const std::vector<PositionLogprob>& positions, size_t text_offset) {
  Json tokens = Json::array(), logprobs = Json::array(), top = Json::array(),
       offsets = Json::array();
  for (const PositionLogprob& p : positions) {
    tokens.push_back(p.sampled.text);
    logprobs.push_back(p.sampled.logprob);
    Json alternatives = Json::object();
    for (const ChunkLogprob& t : p.top) {
      if (!alternatives.contains(t.text)) alternatives[t.text] = t.logprob;
    }
    top.push_back(std::move(alternatives));
    offsets.push_back(text_offset);
    text_offset += p.sampled.text.size();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(logprobs)},
          {"top_logprobs", std::move(top)},
          {"text_offset", std::move(offsets)}};
}

Json FinishJson(FinishReason reason) {
  const char* name = OpenAiFinishReason(reason);
  return *name == '\0' ? Json(nullptr) : Json(name);
}

Json LogprobsJson(const OpenAiResponseHeader& h, const std::vector<PositionLogprob>& positions,
                  size_t text_offset) {
  if (!h.logprobs) return nullptr;
  return h.endpoint == OpenAiEndpoint::kChat ? ChatLogprobs(positions)
                                             : CompletionLogprobs(positions, text_offset);
}

Json Envelope(const OpenAiResponseHeader& h, bool chunk) {
  const bool chat = h.endpoint == OpenAiEndpoint::kChat;
  const char* object =
      chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  return {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
}

}  // namespace

const char* OpenAiFinishReason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
    case FinishReason::kError:
      return "abort";
    case FinishReason::kNone:
      return "";
  }
  return "";
}

Json OpenAiUsage(const std::vector<Usage>& choices, int n) {
  int64_t prompt = 0, completion = 0, cached = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    if (n <= 1 || i % static_cast<size_t>(n) == 0) {
      prompt += choices[i].prompt_tokens;
      cached += choices[i].cached_tokens;
    }
    completion += choices[i].completion_tokens;
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

Json OpenAiResponse(const OpenAiResponseHeader& h, const std::vector<OpenAiChoice>& choices,
                    int n) {
  Json out = Envelope(h, /*chunk=*/false);
  Json list = Json::array();
  std::vector<Usage> usage;
  for (size_t i = 0; i < choices.size(); ++i) {
    const OpenAiChoice& c = choices[i];
    Json choice = {{"index", i},
                   {"logprobs", LogprobsJson(h, c.logprobs, 0)},
                   {"finish_reason", FinishJson(c.finish)}};
    if (h.endpoint == OpenAiEndpoint::kChat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = c.text;
    }
    list.push_back(std::move(choice));
    usage.push_back(c.usage);
  }
  out["choices"] = std::move(list);
  out["usage"] = OpenAiUsage(usage, n);
  return out;
}

Json OpenAiStreamChunk(const OpenAiResponseHeader& h, int index, const GenerationChunk& chunk,
                       bool first, size_t text_offset) {
  Json out = Envelope(h, /*chunk=*/true);
  Json choice = {{"index", index},
                 {"logprobs", LogprobsJson(h, chunk.logprobs, text_offset)},
                 {"finish_reason", FinishJson(chunk.finish)}};
  if (h.endpoint == OpenAiEndpoint::kChat) {
    Json delta = Json::object();
    if (first) delta["role"] = "assistant";
    if (first || !chunk.text.empty()) delta["content"] = chunk.text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = chunk.text;
  }
  out["choices"] = Json::array({std::move(choice)});
  return out;
}

Json OpenAiUsageChunk(const OpenAiResponseHeader& h, const Json& usage) {
  Json out = Envelope(h, /*chunk=*/true);
  out["choices"] = Json::array();
  out["usage"] = usage;
  return out;
}

OpenAiError OpenAiErrorBody(int http_status, const std::string& type, const std::string& message,
                            const std::string& param, const std::string& code) {
  OpenAiError e;
  e.http_status = http_status;
  e.body = {{"error",
             {{"message", message},
              {"type", type},
              {"param", param.empty() ? Json(nullptr) : Json(param)},
              {"code", code.empty() ? Json(nullptr) : Json(code)}}}};
  return e;
}

OpenAiError OpenAiErrorFor(const Status& status) {
  const std::string& m = status.message();
  switch (status.code()) {
    case StatusCode::kInvalidArgument:
    case StatusCode::kOutOfRange:
    case StatusCode::kResourceExhausted: {  // a request bigger than a worker's KV pool
      const std::string param = OpenAiParamOf(m);
      if (param == "model" && m.find("unknown model") != std::string::npos) {
        return OpenAiErrorBody(404, "invalid_request_error", m, param, "model_not_found");
      }
      return OpenAiErrorBody(400, "invalid_request_error", m, param);
    }
    case StatusCode::kNotFound:
      return OpenAiErrorBody(404, "invalid_request_error", m);
    case StatusCode::kUnavailable:
      return OpenAiErrorBody(503, "server_error", m, "", "unavailable");
    case StatusCode::kCancelled:
      return OpenAiErrorBody(499, "server_error", m);
    default:
      return OpenAiErrorBody(500, "server_error", m);
  }
}

std::string OpenAiDump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace ite
