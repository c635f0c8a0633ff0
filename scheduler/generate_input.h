// What a client asks for, independent of the front end that received it (gRPC or the OpenAI HTTP
// gateway): the request description that RequestBuilder validates and tokenizes. Front ends fill
// it from their own wire format and nothing else; every check lives behind it, so both APIs
// accept and reject the same requests with the same messages.
//
// Unset optionals mean "the server's default" (written beside each field).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ite {

// An image as the client sent it: its encoded bytes (PNG, JPEG, GIF, WebP) and their MIME type.
struct ImageInput {
  std::string data;
  std::string mime_type;
};

// One piece of a chat message's content: text or an image (a LLaVA model's chat template places
// the image's positions where the part stands).
struct ContentPart {
  enum class Kind { kText, kImage };
  Kind kind = Kind::kText;
  std::string text;  // kText: UTF-8 (checked by RequestBuilder)
  ImageInput image;  // kImage
};

struct ChatMessage {
  std::string role;  // what the chat template expects: "system", "user", "assistant", ...
  std::vector<ContentPart> content;

  static ChatMessage Text(std::string role, std::string text) {
    return {std::move(role), {ContentPart{ContentPart::Kind::kText, std::move(text), {}}}};
  }
};

// The prompt: exactly one of text, chat or token_ids is set (RequestBuilder rejects none).
struct PromptInput {
  std::optional<std::string> text;                // raw UTF-8, tokenized as is
  std::optional<std::vector<ChatMessage>> chat;   // rendered with the model's chat template
  std::optional<std::vector<int32_t>> token_ids;  // already tokenized
  // For `text`: add BOS etc. Unset: true. Ignored for chat (the template writes its own).
  std::optional<bool> add_special_tokens;
  // For `text`: one image for each `<image>` in it, in order (chat carries image parts).
  std::vector<ImageInput> images;
};

// Unset fields take the model's defaults (generation_config.json), else the API's (written here).
struct SamplingInput {
  std::optional<float> temperature;         // API default 1.0; 0: greedy
  std::optional<int32_t> top_k;             // API default 0: off
  std::optional<float> top_p;               // API default 1.0
  std::optional<float> min_p;               // API default 0: off
  std::optional<float> repetition_penalty;  // API default 1.0
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;  // unset: a random seed
};

struct GenerateInput {
  std::string request_id;  // empty: the intake makes one
  std::string model;       // empty or the served model's name
  PromptInput prompt;
  SamplingInput sampling;
  std::optional<int32_t> max_tokens;  // unset: the server's default
  // Stop conditions are not checked before this many tokens are generated (an EOS sampled
  // earlier stays in the output, as with ignore_eos).
  int32_t min_tokens = 0;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  bool include_stop_str_in_output = false;
  bool ignore_eos = false;
  bool logprobs = false;
  int32_t top_logprobs = 0;  // implies logprobs
  int32_t priority = 0;
  bool disable_prefix_cache = false;
};

}  // namespace ite
