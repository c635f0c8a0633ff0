// RequestBuilder turns a front end's GenerateInput into a scheduler GenerationRequest: validates
// every field (each error is INVALID_ARGUMENT whose message starts with the field's name),
// renders chats with the model's template and tokenizes. Proto-free, so the gRPC service and the
// HTTP gateway share it, and it is unit-tested without sockets.
//
// Thread safety: const methods only; one instance serves every call.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "common/status.h"
#include "scheduler/chat/chat_template.h"
#include "scheduler/generate_input.h"
#include "scheduler/image_intake.h"
#include "scheduler/scheduler.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

struct RequestBuilderOptions {
  std::string model_name;   // requests naming another model are rejected
  int32_t max_context = 0;  // prompt + completion tokens; the prompt must leave room for 1
  int32_t vocab_size = 0;   // bound for prompt_token_ids
  int32_t default_max_tokens = 256;
  int32_t max_top_logprobs = 20;
  // What unset sampling fields take (temperature, top_k, top_p, min_p, repetition_penalty): the
  // model's generation_config.json (scheduler/sampling_defaults.h), else the API's defaults.
  SamplingParams default_sampling;
};

class RequestBuilder {
 public:
  // `chat_template` may be empty: chat requests are then rejected. `images` empty: requests
  // with images are rejected (a model without a vision tower).
  RequestBuilder(RequestBuilderOptions options, std::shared_ptr<const Tokenizer> tokenizer,
                 std::optional<ChatTemplate> chat_template,
                 std::optional<ImageIntake> images = std::nullopt);

  // The prompt tokens of a Generate input as the model sees them (Tokenize's answer): each
  // image placeholder expanded to the model's image positions (576 for LLaVA-1.5), each holding
  // the image token id, so the count is what generation charges. The images are decoded too, so
  // a prompt Build would refuse is refused here with the same message. `rendered` gets the chat
  // template's output for chat inputs.
  StatusOr<std::vector<int32_t>> PromptTokens(const PromptInput& prompt,
                                              std::string* rendered) const;

  // Everything but request_id (the intake assigns one when the client sends none).
  StatusOr<GenerationRequest> Build(const GenerateInput& request) const;

  const RequestBuilderOptions& options() const { return options_; }
  // The most bytes of text any one token can stand for (special tokens included): a text longer
  // than max_context times this cannot fit, so it is rejected before it is tokenized.
  size_t max_token_bytes() const { return max_token_bytes_; }
  bool has_chat_template() const { return chat_template_.has_value(); }

 private:
  struct ExpandedPrompt {
    std::vector<int32_t> tokens;  // image positions hold their cache keys (see PromptImage)
    std::vector<PromptImage> images;
  };
  // The prompt tokenized, its images decoded and expanded in place: the one path that Build and
  // PromptTokens share.
  StatusOr<ExpandedPrompt> Expand(const PromptInput& prompt, std::string* rendered) const;
  StatusOr<std::vector<int32_t>> TextTokens(const PromptInput& prompt, std::string* rendered) const;
  StatusOr<SamplingParams> BuildSampling(const GenerateInput& request) const;
  StatusOr<std::vector<int32_t>> ChatTokens(const std::vector<ChatMessage>& chat,
                                            std::string* rendered) const;
  // The request's images (raw prompt: `images`; chat: the messages' image parts), decoded and
  // preprocessed, in prompt order.
  StatusOr<std::vector<ImageIntake::Prepared>> PrepareImages(const PromptInput& prompt) const;
  // InvalidArgument when `bytes` of text are sure to be more tokens than the context holds.
  Status CheckTextFits(const char* field, size_t bytes) const;

  RequestBuilderOptions options_;
  std::shared_ptr<const Tokenizer> tokenizer_;
  std::optional<ChatTemplate> chat_template_;
  std::optional<ImageIntake> images_;
  size_t max_token_bytes_ = 0;
};

// True when `s` is well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool IsValidUtf8(std::string_view s);

}  // namespace ite
