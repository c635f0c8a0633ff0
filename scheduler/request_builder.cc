#include "scheduler/request_builder.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace ite {

bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;  // continuation byte first, C0/C1 overlong lead, or past F4
    }
    if (i + len > s.size()) return false;
    for (int k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

RequestBuilder::RequestBuilder(RequestBuilderOptions options,
                               std::shared_ptr<const Tokenizer> tokenizer,
                               std::optional<ChatTemplate> chat_template,
                               std::optional<ImageIntake> images)
    : options_(std::move(options)),
      tokenizer_(std::move(tokenizer)),
      chat_template_(std::move(chat_template)),
      images_(std::move(images)) {
  // Decoding one id gives the bytes its token stands for (U+FFFD, 3 bytes, for a lone partial
  // UTF-8 byte: more than it stands for, which only makes the bound looser, never wrong).
  const int32_t vocab = tokenizer_->vocab_size();
  for (int32_t id = 0; id < vocab; ++id) {
    const int32_t one[] = {id};
    max_token_bytes_ = std::max(max_token_bytes_, tokenizer_->Decode(one, false).size());
  }
  max_token_bytes_ = std::max<size_t>(max_token_bytes_, 1);
}

Status RequestBuilder::CheckTextFits(const char* field, size_t bytes) const {
  if (options_.max_context <= 0) return Status::Ok();
  // Every token stands for at most max_token_bytes_ bytes, so the text is at least
  // bytes / max_token_bytes_ tokens: past the context, tokenizing it would be wasted time and
  // memory (a 60 MB prompt took seconds and gigabytes).
  const size_t limit = static_cast<size_t>(options_.max_context - 1) * max_token_bytes_;
  if (bytes <= limit) return Status::Ok();
  return InvalidArgument(
      "{}: {} bytes of text cannot fit the context of {} tokens (no token is longer than {} "
      "bytes, so at most {} bytes fit)",
      field, bytes, options_.max_context, max_token_bytes_, limit);
}

StatusOr<std::vector<int32_t>> RequestBuilder::PromptTokens(const PromptInput& prompt,
                                                            std::string* rendered) const {
  ITE_ASSIGN_OR_RETURN(ExpandedPrompt p, Expand(prompt, rendered));
  const int32_t image_token = images_ ? images_->image_token_id() : -1;
  for (int32_t& t : p.tokens) {
    if (t < 0) t = image_token;  // only image positions hold (negative) keys
  }
  return std::move(p.tokens);
}

StatusOr<RequestBuilder::ExpandedPrompt> RequestBuilder::Expand(const PromptInput& prompt,
                                                                std::string* rendered) const {
  // Images first: a model without a vision tower says so before its chat template sees parts
  // it was never written for.
  ITE_ASSIGN_OR_RETURN(std::vector<ImageIntake::Prepared> images, PrepareImages(prompt));
  ExpandedPrompt out;
  ITE_ASSIGN_OR_RETURN(out.tokens, TextTokens(prompt, rendered));
  if (images_) {
    ITE_ASSIGN_OR_RETURN(out.images, images_->Expand(&out.tokens, images));
  }
  return out;
}

StatusOr<std::vector<int32_t>> RequestBuilder::TextTokens(const PromptInput& prompt,
                                                          std::string* rendered) const {
  if (prompt.token_ids.has_value()) {
    const std::vector<int32_t>& ids = *prompt.token_ids;
    if (ids.empty()) return InvalidArgument("prompt_token_ids: empty prompt");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= options_.vocab_size) {
        return InvalidArgument("prompt_token_ids[{}] = {}: outside the vocabulary [0, {})", i,
                               ids[i], options_.vocab_size);
      }
    }
    return ids;
  }
  if (prompt.text.has_value()) {
    const std::string& text = *prompt.text;
    if (text.empty()) return InvalidArgument("prompt: empty prompt");
    ITE_RETURN_IF_ERROR(CheckTextFits("prompt", text.size()));
    if (!IsValidUtf8(text)) return InvalidArgument("prompt: not valid UTF-8");
    std::vector<int32_t> tokens =
        tokenizer_->Encode(text, prompt.add_special_tokens.value_or(true));
    if (tokens.empty()) return InvalidArgument("prompt: tokenizes to no tokens");
    return tokens;
  }
  if (prompt.chat.has_value()) return ChatTokens(*prompt.chat, rendered);
  return InvalidArgument("prompt: empty prompt (set prompt, chat or prompt_token_ids)");
}

StatusOr<std::vector<int32_t>> RequestBuilder::ChatTokens(const std::vector<ChatMessage>& chat,
                                                          std::string* rendered) const {
  if (!chat_template_) {
    return InvalidArgument("chat: model '{}' has no chat template; send a raw prompt",
                           options_.model_name);
  }
  if (chat.empty()) return InvalidArgument("chat.messages: empty conversation");
  size_t content_bytes = 0;
  for (const ChatMessage& m : chat) {
    content_bytes += m.role.size();
    for (const ContentPart& part : m.content) content_bytes += part.text.size();
  }
  // Before rendering too: templates write every message's text into the prompt (one that dropped
  // a message this long would see it rejected all the same).
  ITE_RETURN_IF_ERROR(CheckTextFits("chat.messages", content_bytes));
  nlohmann::json messages = nlohmann::json::array();
  for (size_t i = 0; i < chat.size(); ++i) {
    const ChatMessage& m = chat[i];
    if (m.role.empty()) return InvalidArgument("chat.messages[{}].role: empty", i);
    if (!IsValidUtf8(m.role)) return InvalidArgument("chat.messages[{}].role: not UTF-8", i);
    // Text parts are joined with newlines into the one string the templates expect; a message
    // with images goes as a list of typed parts, as transformers passes multimodal content.
    bool has_image = false;
    for (const ContentPart& part : m.content) has_image |= part.kind == ContentPart::Kind::kImage;
    std::string content;
    nlohmann::json parts = nlohmann::json::array();
    for (size_t k = 0; k < m.content.size(); ++k) {
      const ContentPart& part = m.content[k];
      if (part.kind == ContentPart::Kind::kImage) {
        parts.push_back({{"type", "image"}});
        continue;
      }
      if (!IsValidUtf8(part.text)) {
        return InvalidArgument("chat.messages[{}].content: not valid UTF-8", i);
      }
      parts.push_back({{"type", "text"}, {"text", part.text}});
      if (k > 0) content += '\n';
      content += part.text;
    }
    if (has_image) {
      messages.push_back({{"role", m.role}, {"content", std::move(parts)}});
    } else {
      messages.push_back({{"role", m.role}, {"content", std::move(content)}});
    }
  }
  StatusOr<std::string> text_or = chat_template_->Render(messages, true);
  if (!text_or.ok()) {
    return InvalidArgument("chat: the model's chat template failed: {}",
                           text_or.status().message());
  }
  ITE_RETURN_IF_ERROR(CheckTextFits("chat", text_or->size()));
  // The template writes its own special tokens (BOS included), like HF apply_chat_template.
  std::vector<int32_t> tokens = tokenizer_->Encode(*text_or, false);
  if (rendered != nullptr) *rendered = std::move(text_or).value();
  if (tokens.empty()) return InvalidArgument("chat: renders to no tokens");
  return tokens;
}

StatusOr<SamplingParams> RequestBuilder::BuildSampling(const GenerateInput& r) const {
  const SamplingInput& in = r.sampling;
  SamplingParams p = options_.default_sampling;
  if (in.temperature.has_value()) {
    if (!(*in.temperature >= 0.0f) || !std::isfinite(*in.temperature)) {
      return InvalidArgument("sampling.temperature = {}: must be a finite number >= 0",
                             *in.temperature);
    }
    p.temperature = *in.temperature;
  }
  if (in.top_k.has_value()) {
    if (*in.top_k < 0) return InvalidArgument("sampling.top_k = {}: must be >= 0", *in.top_k);
    p.top_k = *in.top_k;
  }
  if (in.top_p.has_value()) {
    if (!(*in.top_p > 0.0f && *in.top_p <= 1.0f)) {
      return InvalidArgument("sampling.top_p = {}: must be in (0, 1]", *in.top_p);
    }
    p.top_p = *in.top_p;
  }
  if (in.min_p.has_value()) {
    if (!(*in.min_p >= 0.0f && *in.min_p <= 1.0f)) {
      return InvalidArgument("sampling.min_p = {}: must be in [0, 1]", *in.min_p);
    }
    p.min_p = *in.min_p;
  }
  if (in.repetition_penalty.has_value()) {
    if (!(*in.repetition_penalty > 0.0f) || !std::isfinite(*in.repetition_penalty)) {
      return InvalidArgument("sampling.repetition_penalty = {}: must be > 0",
                             *in.repetition_penalty);
    }
    p.repetition_penalty = *in.repetition_penalty;
  }
  if (!std::isfinite(in.presence_penalty) || !std::isfinite(in.frequency_penalty)) {
    return InvalidArgument("sampling.presence_penalty / frequency_penalty: must be finite");
  }
  p.presence_penalty = in.presence_penalty;
  p.frequency_penalty = in.frequency_penalty;
  if (in.seed.has_value()) {
    p.seed = *in.seed;
    p.has_seed = true;
  }
  if (r.top_logprobs < 0 || r.top_logprobs > options_.max_top_logprobs) {
    return InvalidArgument("top_logprobs = {}: must be in [0, {}]", r.top_logprobs,
                           options_.max_top_logprobs);
  }
  p.top_logprobs = r.top_logprobs;
  p.logprobs = r.logprobs || r.top_logprobs > 0;
  ITE_RETURN_IF_ERROR(p.Validate());
  return p;
}

StatusOr<std::vector<ImageIntake::Prepared>> RequestBuilder::PrepareImages(
    const PromptInput& prompt) const {
  std::vector<std::pair<const ImageInput*, std::string>> found;
  for (size_t i = 0; i < prompt.images.size(); ++i)
    found.emplace_back(&prompt.images[i], fmt::format("images[{}]", i));
  if (!found.empty() && !prompt.text.has_value())
    return InvalidArgument("images: only with a raw prompt (chat messages carry image parts)");
  if (prompt.chat.has_value()) {
    const std::vector<ChatMessage>& chat = *prompt.chat;
    for (size_t i = 0; i < chat.size(); ++i) {
      for (size_t p = 0; p < chat[i].content.size(); ++p) {
        if (chat[i].content[p].kind == ContentPart::Kind::kImage)
          found.emplace_back(&chat[i].content[p].image,
                             fmt::format("chat.messages[{}].parts[{}].image", i, p));
      }
    }
  }
  std::vector<ImageIntake::Prepared> out;
  if (found.empty()) return out;
  if (!images_)
    return InvalidArgument("{}: model '{}' takes no images", found[0].second, options_.model_name);
  if (static_cast<int32_t>(found.size()) > images_->max_images())
    return InvalidArgument("images: {} images, more than the limit of {} per request", found.size(),
                           images_->max_images());
  for (const auto& [image, what] : found) {
    ITE_ASSIGN_OR_RETURN(ImageIntake::Prepared p,
                         images_->Prepare(image->data, image->mime_type, what));
    out.push_back(std::move(p));
  }
  return out;
}

StatusOr<GenerationRequest> RequestBuilder::Build(const GenerateInput& r) const {
  if (!r.model.empty() && r.model != options_.model_name) {
    return InvalidArgument("model: unknown model '{}' (this server serves '{}')", r.model,
                           options_.model_name);
  }
  GenerationRequest out;
  if (r.max_tokens.has_value()) {
    if (*r.max_tokens < 1) {
      return InvalidArgument("max_tokens = {}: must be >= 1", *r.max_tokens);
    }
    out.max_tokens = *r.max_tokens;
  } else {
    out.max_tokens = options_.default_max_tokens;
  }
  if (r.min_tokens < 0 || r.min_tokens > out.max_tokens) {
    return InvalidArgument("min_tokens = {}: must be in [0, max_tokens = {}]", r.min_tokens,
                           out.max_tokens);
  }
  out.min_tokens = r.min_tokens;
  ITE_ASSIGN_OR_RETURN(out.sampling, BuildSampling(r));
  for (size_t i = 0; i < r.stop.size(); ++i) {
    if (r.stop[i].empty()) return InvalidArgument("stop[{}]: empty stop string", i);
    if (!IsValidUtf8(r.stop[i])) return InvalidArgument("stop[{}]: not valid UTF-8", i);
    out.stop.push_back(r.stop[i]);
  }
  for (size_t i = 0; i < r.stop_token_ids.size(); ++i) {
    int32_t id = r.stop_token_ids[i];
    if (id < 0 || id >= options_.vocab_size) {
      return InvalidArgument("stop_token_ids[{}] = {}: outside the vocabulary [0, {})", i, id,
                             options_.vocab_size);
    }
    out.stop_token_ids.push_back(id);
  }
  out.include_stop_str_in_output = r.include_stop_str_in_output;
  out.ignore_eos = r.ignore_eos;
  out.priority = r.priority;
  out.use_prefix_cache = !r.disable_prefix_cache;

  ITE_ASSIGN_OR_RETURN(ExpandedPrompt prompt, Expand(r.prompt, nullptr));
  out.prompt_tokens = std::move(prompt.tokens);
  out.images = std::move(prompt.images);
  if (images_) out.image_token_id = images_->image_token_id();
  auto n = static_cast<int32_t>(out.prompt_tokens.size());
  if (options_.max_context > 0 && n >= options_.max_context) {
    return InvalidArgument(
        "prompt: {} tokens leave no room in the context of {} tokens (at most {} prompt tokens)", n,
        options_.max_context, options_.max_context - 1);
  }
  return out;
}

}  // namespace ite
