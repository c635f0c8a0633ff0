// OpenAI request bodies (POST /v1/completions, /v1/chat/completions) -> GenerateInput.
//
// Checks what the OpenAI API checks before a request reaches the intake: JSON syntax, field types,
// OpenAI's ranges (temperature in [0, 2], penalties in [-2, 2], n in [1, 128]), and field
// combinations (stream_options needs stream, top_logprobs needs logprobs). Everything else
// (prompt length, top_p, stop strings, ...) is RequestBuilder's, shared with gRPC. Unknown fields
// are ignored as OpenAI does; known ones we cannot honour (tools, logit_bias, echo, ...) are
// rejected rather than silently dropped. Every error is INVALID_ARGUMENT whose message starts
// with the offending parameter's name (see OpenAiParamOf).
//
// Pure functions over the body text: no I/O, safe on any input (fuzzed by openai_request_fuzz).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scheduler/generate_input.h"

namespace ite {

enum class OpenAiEndpoint { kCompletions, kChat };

struct OpenAiRequest {
  OpenAiEndpoint endpoint = OpenAiEndpoint::kCompletions;
  // One per prompt: a completions request may carry a list of prompts; a chat request has one.
  std::vector<GenerateInput> inputs;
  int n = 1;  // continuations per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  // Completions: `logprobs` = N asks for the sampled token's logprob and N alternatives (-1:
  // none). Chat: logprobs (bool) and top_logprobs. Both end up in each input.
  int32_t completion_logprobs = -1;
  bool chat_logprobs = false;
  std::string model;  // as sent (echoed in responses); empty when absent
  std::string user;   // as sent, for logs
};

// Limits on a request body's shape, beyond the HTTP server's byte limit.
struct OpenAiParseLimits {
  int max_depth = 32;       // JSON nesting
  int max_prompts = 256;    // completions: prompts in one request
  int max_n = 128;          // OpenAI's bound
  int max_stop = 16;        // stop strings
  int max_messages = 4096;  // chat turns
};

StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body,
                                           const OpenAiParseLimits& limits = {});

// POST /tokenize (vLLM's shape): {"prompt": text} or {"messages": [...]}, optional
// "add_special_tokens" (text only) and "return_token_strs".
struct TokenizeBody {
  PromptInput prompt;
  bool return_token_strs = false;
};
StatusOr<TokenizeBody> ParseTokenizeBody(std::string_view body,
                                         const OpenAiParseLimits& limits = {});
// POST /detokenize: {"tokens": [ids]}.
StatusOr<std::vector<int32_t>> ParseDetokenizeBody(std::string_view body,
                                                   const OpenAiParseLimits& limits = {});

// The parameter an error message names (its leading identifier, with the intake's field paths
// mapped to OpenAI's names: "sampling.top_p = 2: ..." -> "top_p", "chat.messages[1].role" ->
// "messages"); empty when the message names none.
std::string OpenAiParamOf(std::string_view message);

}  // namespace ite
