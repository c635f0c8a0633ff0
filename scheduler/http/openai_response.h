// OpenAI response bodies: completions and chat completions (whole and as stream chunks), usage,
// the model list and error bodies ({"error": {"message", "type", "param", "code"}}).
// Only JSON building: the gateway decides what to send when.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "scheduler/generation_session.h"
#include "scheduler/http/openai_request.h"

namespace ite {

// What one response shares across its chunks.
struct OpenAiResponseHeader {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  std::string id;       // "cmpl-..." / "chatcmpl-..."
  int64_t created = 0;  // Unix seconds
  std::string model;
  bool logprobs = false;  // logprobs asked for
};

// One choice, gathered from its session's chunks (non-streamed responses).
struct OpenAiChoice {
  std::string text;
  std::vector<PositionLogprob> logprobs;
  FinishReason finish = FinishReason::kNone;
  Usage usage;
};

// Usage of a whole response: prompt tokens counted once per prompt (choice j * n), completion
// tokens over every choice.
nlohmann::json OpenAiUsage(const std::vector<Usage>& choices, int n);

nlohmann::json OpenAiResponse(const OpenAiResponseHeader& header,
                              const std::vector<OpenAiChoice>& choices, int n);

// One stream chunk for choice `index`. `first`: the choice's first chunk (chat sends the
// assistant role then). `text_offset`: completions' logprobs offsets continue from here.
nlohmann::json OpenAiStreamChunk(const OpenAiResponseHeader& header, int index,
                                 const GenerationChunk& chunk, bool first, size_t text_offset);
// The usage-only chunk that ends a stream with include_usage.
nlohmann::json OpenAiUsageChunk(const OpenAiResponseHeader& header, const nlohmann::json& usage);

const char* OpenAiFinishReason(FinishReason reason);  // "stop", "length", "abort"; null: ""

struct OpenAiError {
  int http_status = 500;
  nlohmann::json body;
};
// INVALID_ARGUMENT -> 400 invalid_request_error (param from the message), an unknown model ->
// 404 model_not_found, UNAVAILABLE -> 503, anything else -> 500.
OpenAiError OpenAiErrorFor(const Status& status);
OpenAiError OpenAiErrorBody(int http_status, const std::string& type, const std::string& message,
                            const std::string& param = "", const std::string& code = "");

// Serializes for the wire; invalid UTF-8 (none expected) is replaced, never thrown on.
std::string OpenAiDump(const nlohmann::json& j);

}  // namespace ite
