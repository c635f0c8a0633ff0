// Chat templates: turns a conversation into the prompt text a model was trained on, rendering the
// model's Jinja2 template byte-identically to transformers' `apply_chat_template(...,
// tokenize=False)` (jinja2 ImmutableSandboxedEnvironment, trim_blocks + lstrip_blocks,
// raise_exception, strftime_now, transformers' tojson).
//
// What Render passes to the template, as transformers does:
//   messages               the messages, with null-valued keys dropped and reasoning aliased
//                          (reasoning_content / thinking / reasoning fill each other)
//   tools, documents       from `extra` (None when absent)
//   add_generation_prompt
//   bos_token, eos_token, unk_token, pad_token, ...  the tokenizer's named special tokens
//   every other key of `extra` (date_string, enable_thinking, ...), overriding special tokens.
//
// Key order matters for `tojson` (transformers does not sort keys): pass nlohmann::ordered_json
// to keep the request's order; nlohmann::json inputs render with keys in sorted order.
//
// Thread safety: a ChatTemplate is immutable; any thread may Render concurrently. Copies share
// the parsed template.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace ite {

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  // tokenizer_config.json (or the folder holding it): its "chat_template" (a string, or a list
  // of {name, template} where "default" and "tool_use" are used), else chat_template.jinja
  // beside it; the special tokens from the config.
  static StatusOr<ChatTemplate> FromTokenizerConfig(const std::string& path);
  // GGUF metadata "tokenizer.chat_template"; special tokens from tokenizer.ggml.*_token_id.
  static StatusOr<ChatTemplate> FromGguf(const std::string& path);
  // A .gguf file, a tokenizer_config.json, a folder holding one, or a raw .jinja template.
  static StatusOr<ChatTemplate> FromFile(const std::string& path);
  static StatusOr<ChatTemplate> FromString(std::string source, std::string bos_token,
                                           std::string eos_token);

  // messages: JSON array of {role, content, ...}; extra: more variables (tools, date_string, ...)
  StatusOr<std::string> Render(const nlohmann::json& messages, bool add_generation_prompt,
                               const nlohmann::json& extra = nlohmann::json::object()) const;
  StatusOr<std::string> Render(
      const nlohmann::ordered_json& messages, bool add_generation_prompt,
      const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  // The default template's source, and the named special tokens passed to it.
  const std::string& source() const;
  const std::map<std::string, std::string>& special_tokens() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  static StatusOr<ChatTemplate> Build(std::map<std::string, std::string> sources,
                                      std::map<std::string, std::string> special_tokens,
                                      const std::string& origin);
  template <typename Json>
  StatusOr<std::string> RenderImpl(const Json& messages, bool add_generation_prompt,
                                   const Json& extra) const;

  std::shared_ptr<const Impl> impl_;
};

}  // namespace ite
