#include "scheduler/chat/chat_template.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/gguf_reader.h"
#include "scheduler/chat/jinja_parser.h"
#include "scheduler/chat/jinja_renderer.h"

namespace ite {

struct ChatTemplate::Impl {
  // Template name ("default", "tool_use", ...) -> source and parsed program.
  std::map<std::string, std::string> sources;
  std::map<std::string, std::shared_ptr<const jinja::Program>> programs;
  std::map<std::string, std::string> special_tokens;
};

namespace {

// The named special tokens transformers passes to templates (SPECIAL_TOKENS_ATTRIBUTES).
constexpr const char* kSpecialTokenNames[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                              "pad_token", "cls_token", "mask_token"};

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open {}", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return DataLoss("error reading {}", path);
  return ss.str();
}

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A special token in tokenizer_config.json: a string, or an AddedToken dict {"content": ...}.
const std::string* TokenContent(const nlohmann::json& v) {
  if (v.is_string()) return v.get_ptr<const std::string*>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get_ptr<const std::string*>();
  }
  return nullptr;
}

}  // namespace

StatusOr<ChatTemplate> ChatTemplate::Build(std::map<std::string, std::string> sources,
                                           std::map<std::string, std::string> special_tokens,
                                           const std::string& origin) {
  auto impl = std::make_shared<Impl>();
  for (const auto& [name, source] : sources) {
    auto program = jinja::ParseTemplate(source);
    if (!program.ok()) {
      return InvalidArgument("{}: chat template '{}': {}", origin, name,
                             program.status().message());
    }
    impl->programs[name] = std::shared_ptr<const jinja::Program>(std::move(program).value());
  }
  impl->sources = std::move(sources);
  impl->special_tokens = std::move(special_tokens);
  return ChatTemplate(std::move(impl));
}

StatusOr<ChatTemplate> ChatTemplate::FromString(std::string source, std::string bos_token,
                                                std::string eos_token) {
  std::map<std::string, std::string> tokens{{"bos_token", std::move(bos_token)},
                                            {"eos_token", std::move(eos_token)}};
  return Build({{"default", std::move(source)}}, std::move(tokens), "template");
}

StatusOr<ChatTemplate> ChatTemplate::FromTokenizerConfig(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string config_path =
      fs::is_directory(path, ec) ? (fs::path(path) / "tokenizer_config.json").string() : path;
  ITE_ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
  nlohmann::json config = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return InvalidArgument("{}: not a JSON object", config_path);
  }
  std::map<std::string, std::string> tokens;
  for (const char* name : kSpecialTokenNames) {
    auto it = config.find(name);
    if (it == config.end() || it->is_null()) continue;
    const std::string* content = TokenContent(*it);
    if (!content) return InvalidArgument("{}: field '{}' is not a token string", config_path, name);
    tokens[name] = *content;
  }
  std::map<std::string, std::string> sources;
  auto tmpl = config.find("chat_template");
  if (tmpl != config.end() && tmpl->is_string()) {
    sources["default"] = tmpl->get<std::string>();
  } else if (tmpl != config.end() && tmpl->is_array()) {
    for (const auto& entry : *tmpl) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("template") || !entry["template"].is_string()) {
        return InvalidArgument(
            "{}: field 'chat_template' entries need string 'name' and "
            "'template'",
            config_path);
      }
      sources[entry["name"].get<std::string>()] = entry["template"].get<std::string>();
    }
  } else if (tmpl != config.end() && !tmpl->is_null()) {
    return InvalidArgument("{}: field 'chat_template' must be a string or a list", config_path);
  } else {
    // Newer transformers save the template beside the config: chat_template.jinja, or
    // chat_template.json ({"chat_template": "..."}, as processors of multimodal models do).
    fs::path dir = fs::path(config_path).parent_path();
    fs::path jinja_path = dir / "chat_template.jinja";
    fs::path json_path = dir / "chat_template.json";
    if (fs::exists(jinja_path, ec)) {
      ITE_ASSIGN_OR_RETURN(sources["default"], ReadFile(jinja_path.string()));
    } else if (fs::exists(json_path, ec)) {
      ITE_ASSIGN_OR_RETURN(std::string json_text, ReadFile(json_path.string()));
      nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object() || !j.contains("chat_template") ||
          !j["chat_template"].is_string()) {
        return InvalidArgument("{}: expected an object with a string field 'chat_template'",
                               json_path.string());
      }
      sources["default"] = j["chat_template"].get<std::string>();
    } else {
      return NotFound(
          "{}: no field 'chat_template', and no chat_template.jinja or chat_template.json beside "
          "it",
          config_path);
    }
  }
  return Build(std::move(sources), std::move(tokens), config_path);
}

StatusOr<ChatTemplate> ChatTemplate::FromGguf(const std::string& path) {
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> gguf, GgufFile::Open(path));
  if (!gguf->Find("tokenizer.chat_template")) {
    return NotFound("{}: no metadata key 'tokenizer.chat_template'", path);
  }
  ITE_ASSIGN_OR_RETURN(std::string source, gguf->GetString("tokenizer.chat_template"));
  std::map<std::string, std::string> tokens;
  if (gguf->Find("tokenizer.ggml.tokens")) {
    ITE_ASSIGN_OR_RETURN(std::vector<std::string> vocab,
                         gguf->GetStringArray("tokenizer.ggml.tokens"));
    static constexpr std::pair<const char*, const char*> kIds[] = {
        {"tokenizer.ggml.bos_token_id", "bos_token"},
        {"tokenizer.ggml.eos_token_id", "eos_token"},
        {"tokenizer.ggml.unknown_token_id", "unk_token"},
        {"tokenizer.ggml.seperator_token_id", "sep_token"},
        {"tokenizer.ggml.padding_token_id", "pad_token"},
        {"tokenizer.ggml.cls_token_id", "cls_token"},
        {"tokenizer.ggml.mask_token_id", "mask_token"}};
    for (auto [key, name] : kIds) {
      if (!gguf->Find(key)) continue;
      ITE_ASSIGN_OR_RETURN(int64_t id, gguf->GetInt(key));
      if (id < 0 || id >= static_cast<int64_t>(vocab.size())) {
        return InvalidArgument("{}: metadata '{}' = {} is outside the vocabulary ({} tokens)", path,
                               key, id, vocab.size());
      }
      tokens[name] = vocab[static_cast<size_t>(id)];
    }
  }
  return Build({{"default", std::move(source)}}, std::move(tokens), path);
}

StatusOr<ChatTemplate> ChatTemplate::FromFile(const std::string& path) {
  if (EndsWith(path, ".gguf")) return FromGguf(path);
  if (EndsWith(path, ".jinja") || EndsWith(path, ".j2")) {
    ITE_ASSIGN_OR_RETURN(std::string source, ReadFile(path));
    return Build({{"default", std::move(source)}}, {}, path);
  }
  return FromTokenizerConfig(path);
}

const std::string& ChatTemplate::source() const {
  static const std::string kEmpty;
  auto it = impl_->sources.find("default");
  return it == impl_->sources.end() ? kEmpty : it->second;
}

const std::map<std::string, std::string>& ChatTemplate::special_tokens() const {
  return impl_->special_tokens;
}

namespace {

// Names a message's reasoning is passed under; the first is what templates read.
constexpr const char* kReasoningFields[] = {"reasoning_content", "thinking", "reasoning"};

// transformers' _normalize_chat_messages + _alias_reasoning_fields.
template <typename Json>
StatusOr<jinja::Value> NormalizeMessages(const Json& messages) {
  if (!messages.is_array()) return InvalidArgument("messages must be a JSON array");
  if (messages.empty()) {
    return InvalidArgument(
        "Cannot apply chat template to an empty conversation. Provide at least "
        "one message.");
  }
  jinja::Value::List out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    if (!m.is_object()) return InvalidArgument("messages[{}] must be a JSON object", i);
    jinja::Value::Dict fields;
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it->is_null()) continue;
      fields.emplace_back(it.key(), jinja::Value::FromJson(*it));
    }
    const jinja::Value* reasoning = nullptr;
    for (const char* key : kReasoningFields) {
      for (const auto& [k, v] : fields) {
        if (k == key && !reasoning) reasoning = &v;
      }
    }
    if (reasoning) {
      // {"thinking": r, **message, "reasoning_content": r}: thinking keeps its first slot.
      jinja::Value r = *reasoning;
      jinja::Value::Dict aliased{{"thinking", r}};
      for (auto& [k, v] : fields) {
        if (k == "thinking") {
          aliased[0].second = v;
        } else {
          aliased.emplace_back(k, v);
        }
      }
      bool replaced = false;
      for (auto& [k, v] : aliased) {
        if (k == "reasoning_content") {
          v = r;
          replaced = true;
        }
      }
      if (!replaced) aliased.emplace_back("reasoning_content", r);
      fields = std::move(aliased);
    }
    out.push_back(jinja::Value::MakeDict(std::move(fields)));
  }
  return jinja::Value::MakeList(std::move(out));
}

}  // namespace

template <typename Json>
StatusOr<std::string> ChatTemplate::RenderImpl(const Json& messages, bool add_generation_prompt,
                                               const Json& extra) const {
  if (!extra.is_object()) return InvalidArgument("chat template variables must be a JSON object");
  ITE_ASSIGN_OR_RETURN(jinja::Value chat, NormalizeMessages(messages));
  jinja::Value tools = jinja::Value::None();
  jinja::Value documents = jinja::Value::None();
  jinja::Value::Dict vars;
  for (const auto& [k, v] : impl_->special_tokens) vars.emplace_back(k, jinja::Value(v));
  for (auto it = extra.begin(); it != extra.end(); ++it) {
    const std::string& key = it.key();
    if (key == "messages" || key == "add_generation_prompt") {
      return InvalidArgument("chat template variable '{}' is set by the renderer", key);
    }
    if (key == "tools" || key == "documents") {
      if (!it->is_null() && !it->is_array()) {
        return InvalidArgument("chat template variable '{}' must be a list", key);
      }
      if (it->is_array()) {
        for (const auto& entry : *it) {
          if (!entry.is_object()) {
            return InvalidArgument("each of '{}' must be a JSON object (a JSON schema)", key);
          }
        }
      }
      (key == "tools" ? tools : documents) = jinja::Value::FromJson(*it);
      continue;
    }
    bool replaced = false;
    for (auto& [name, value] : vars) {
      if (name == key) {
        value = jinja::Value::FromJson(*it);
        replaced = true;
      }
    }
    if (!replaced) vars.emplace_back(key, jinja::Value::FromJson(*it));
  }
  vars.emplace_back("messages", std::move(chat));
  vars.emplace_back("tools", tools);
  vars.emplace_back("documents", std::move(documents));
  vars.emplace_back("add_generation_prompt", jinja::Value(add_generation_prompt));

  // transformers' get_chat_template: "tool_use" when tools are given, else "default".
  auto pick = impl_->programs.end();
  if (!tools.is_none()) pick = impl_->programs.find("tool_use");
  if (pick == impl_->programs.end()) pick = impl_->programs.find("default");
  if (pick == impl_->programs.end()) {
    return InvalidArgument("this model has several chat templates and none named 'default'");
  }
  return jinja::Render(*pick->second, vars);
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::json& extra) const {
  return RenderImpl(messages, add_generation_prompt, extra);
}

StatusOr<std::string> ChatTemplate::Render(const nlohmann::ordered_json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::ordered_json& extra) const {
  return RenderImpl(messages, add_generation_prompt, extra);
}

}  // namespace ite
