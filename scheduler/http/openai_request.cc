#include "scheduler/http/openai_request.h"

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "scheduler/http/image_data_url.h"

namespace ite {
namespace {

using Json = nlohmann::json;

const char* TypeName(const Json& v) {
  if (v.is_boolean()) return "a boolean";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  if (v.is_object()) return "an object";
  return "null";
}

// Typed access to the top-level fields of one request object; null counts as absent.
class Fields {
 public:
  explicit Fields(const Json& object) : object_(object) {}

  const Json* Find(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  Status Number(const char* key, std::optional<double>* out) const {
    const Json* v = Find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_number()) return InvalidArgument("{}: expected a number, got {}", key, TypeName(*v));
    *out = v->get<double>();
    return Status::Ok();
  }

  // Within [lo, hi] (OpenAI's documented range).
  Status NumberIn(const char* key, double lo, double hi, std::optional<double>* out) const {
    ITE_RETURN_IF_ERROR(Number(key, out));
    if (out->has_value() && !(**out >= lo && **out <= hi)) {
      return InvalidArgument("{} = {}: must be in [{}, {}]", key, **out, lo, hi);
    }
    return Status::Ok();
  }

  Status Int(const char* key, int64_t lo, int64_t hi, std::optional<int64_t>* out) const {
    const Json* v = Find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_number()) {
      return InvalidArgument("{}: expected an integer, got {}", key, TypeName(*v));
    }
    if (v->is_number_float()) {
      const double d = v->get<double>();
      if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != std::floor(d)) {
        return InvalidArgument("{} = {}: expected an integer in [{}, {}]", key, d, lo, hi);
      }
      *out = static_cast<int64_t>(d);
      return Status::Ok();
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
      return InvalidArgument("{} = {}: must be in [{}, {}]", key, v->get<uint64_t>(), lo, hi);
    }
    const int64_t i = v->get<int64_t>();
    if (i < lo || i > hi) return InvalidArgument("{} = {}: must be in [{}, {}]", key, i, lo, hi);
    *out = i;
    return Status::Ok();
  }

  Status Bool(const char* key, std::optional<bool>* out) const {
    const Json* v = Find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_boolean()) {
      return InvalidArgument("{}: expected a boolean, got {}", key, TypeName(*v));
    }
    *out = v->get<bool>();
    return Status::Ok();
  }

  Status String(const char* key, std::optional<std::string>* out) const {
    const Json* v = Find(key);
    if (v == nullptr) return Status::Ok();
    if (!v->is_string()) return InvalidArgument("{}: expected a string, got {}", key, TypeName(*v));
    *out = v->get<std::string>();
    return Status::Ok();
  }

  // A field we cannot honour: absent, null or its "off" value only.
  Status Unsupported(const char* key, const Json& off) const {
    const Json* v = Find(key);
    if (v == nullptr || *v == off) return Status::Ok();
    if ((v->is_array() || v->is_object()) && v->empty()) return Status::Ok();
    return InvalidArgument("{}: not supported by this server", key);
  }

 private:
  const Json& object_;
};

Status IntList(const Json& v, const std::string& name, std::vector<int32_t>* out) {
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& e = v[i];
    if (!e.is_number_integer()) {
      return InvalidArgument("{}[{}]: expected an integer token id, got {}", name, i, TypeName(e));
    }
    const int64_t id = e.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return InvalidArgument("{}[{}] = {}: not a token id", name, i, id);
    }
    out->push_back(static_cast<int32_t>(id));
  }
  return Status::Ok();
}

// "prompt": a string, a list of strings, a list of token ids, or a list of token-id lists.
Status ParsePrompts(const Json& v, const OpenAiParseLimits& limits, std::vector<PromptInput>* out) {
  if (v.is_string()) {
    out->emplace_back().text = v.get<std::string>();
    return Status::Ok();
  }
  if (!v.is_array()) {
    return InvalidArgument("prompt: expected a string, an array of strings or token ids, got {}",
                           TypeName(v));
  }
  if (v.empty()) return InvalidArgument("prompt: empty array");
  if (v[0].is_number()) {
    PromptInput p;
    p.token_ids.emplace();
    ITE_RETURN_IF_ERROR(IntList(v, "prompt", &*p.token_ids));
    out->push_back(std::move(p));
    return Status::Ok();
  }
  if (v.size() > static_cast<size_t>(limits.max_prompts)) {
    return InvalidArgument("prompt: {} prompts; at most {} in one request", v.size(),
                           limits.max_prompts);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& e = v[i];
    if (e.is_string()) {
      out->emplace_back().text = e.get<std::string>();
    } else if (e.is_array()) {
      PromptInput p;
      p.token_ids.emplace();
      ITE_RETURN_IF_ERROR(IntList(e, fmt::format("prompt[{}]", i), &*p.token_ids));
      out->push_back(std::move(p));
    } else {
      return InvalidArgument("prompt[{}]: expected a string or an array of token ids, got {}", i,
                             TypeName(e));
    }
  }
  return Status::Ok();
}

// {"type": "image_url", "image_url": {"url": "data:...", "detail": ...}}. `detail` is accepted
// and has no effect: a LLaVA-1.5 tower sees every image at its one resolution.
StatusOr<ImageInput> ParseImageUrlPart(const Json& part, size_t i, size_t k) {
  const std::string where = fmt::format("messages[{}].content[{}].image_url", i, k);
  auto image_url = part.find("image_url");
  if (image_url == part.end() || !image_url->is_object()) {
    return InvalidArgument("{}: expected an object with a url", where);
  }
  auto url = image_url->find("url");
  if (url == image_url->end() || !url->is_string()) {
    return InvalidArgument("{}.url: expected a string", where);
  }
  auto detail = image_url->find("detail");
  if (detail != image_url->end() && !detail->is_null() &&
      !(detail->is_string() && (*detail == "auto" || *detail == "low" || *detail == "high"))) {
    return InvalidArgument("{}.detail: expected \"auto\", \"low\" or \"high\"", where);
  }
  return ImageFromDataUrl(url->get_ref<const std::string&>(), where + ".url");
}

Status ParseMessages(const Json& v, const OpenAiParseLimits& limits,
                     std::vector<ChatMessage>* out) {
  if (!v.is_array()) return InvalidArgument("messages: expected an array, got {}", TypeName(v));
  if (v.empty()) return InvalidArgument("messages: empty conversation");
  if (v.size() > static_cast<size_t>(limits.max_messages)) {
    return InvalidArgument("messages: {} messages; at most {}", v.size(), limits.max_messages);
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& m = v[i];
    if (!m.is_object()) {
      return InvalidArgument("messages[{}]: expected an object, got {}", i, TypeName(m));
    }
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) {
      return InvalidArgument("messages[{}].role: expected a string", i);
    }
    ChatMessage msg;
    msg.role = role->get<std::string>();
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      // An assistant turn that only called tools has no content; keep the turn, empty.
      msg.content.push_back({ContentPart::Kind::kText, "", {}});
    } else if (content->is_string()) {
      msg.content.push_back({ContentPart::Kind::kText, content->get<std::string>(), {}});
    } else if (content->is_array()) {
      for (size_t k = 0; k < content->size(); ++k) {
        const Json& part = (*content)[k];
        auto type = part.is_object() ? part.find("type") : part.end();
        if (!part.is_object() || type == part.end() || !type->is_string()) {
          return InvalidArgument("messages[{}].content[{}]: expected an object with a type", i, k);
        }
        if (*type == "image_url") {
          ITE_ASSIGN_OR_RETURN(ImageInput image, ParseImageUrlPart(part, i, k));
          msg.content.push_back({ContentPart::Kind::kImage, {}, std::move(image)});
          continue;
        }
        if (*type != "text") {
          return InvalidArgument("messages[{}].content[{}].type: '{}' is not supported", i, k,
                                 type->get<std::string>());
        }
        auto text = part.find("text");
        if (text == part.end() || !text->is_string()) {
          return InvalidArgument("messages[{}].content[{}].text: expected a string", i, k);
        }
        msg.content.push_back({ContentPart::Kind::kText, text->get<std::string>(), {}});
      }
    } else {
      return InvalidArgument("messages[{}].content: expected a string or an array of parts, got {}",
                             i, TypeName(*content));
    }
    out->push_back(std::move(msg));
  }
  return Status::Ok();
}

Status ParseStop(const Fields& f, const OpenAiParseLimits& limits, std::vector<std::string>* out) {
  const Json* v = f.Find("stop");
  if (v == nullptr) return Status::Ok();
  if (v->is_string()) {
    out->push_back(v->get<std::string>());
    return Status::Ok();
  }
  if (!v->is_array()) {
    return InvalidArgument("stop: expected a string or an array of strings, got {}", TypeName(*v));
  }
  if (v->size() > static_cast<size_t>(limits.max_stop)) {
    return InvalidArgument("stop: {} stop strings; at most {}", v->size(), limits.max_stop);
  }
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      return InvalidArgument("stop[{}]: expected a string, got {}", i, TypeName((*v)[i]));
    }
    out->push_back((*v)[i].get<std::string>());
  }
  return Status::Ok();
}

// The fields both endpoints share, into `in` (the prompt is set by the caller).
Status ParseCommon(const Fields& f, const OpenAiParseLimits& limits, GenerateInput* in) {
  std::optional<double> d;
  ITE_RETURN_IF_ERROR(f.NumberIn("temperature", 0.0, 2.0, &d));
  if (d) in->sampling.temperature = static_cast<float>(*d);
  d.reset();
  ITE_RETURN_IF_ERROR(f.Number("top_p", &d));
  if (d) in->sampling.top_p = static_cast<float>(*d);
  d.reset();
  ITE_RETURN_IF_ERROR(f.NumberIn("presence_penalty", -2.0, 2.0, &d));
  if (d) in->sampling.presence_penalty = static_cast<float>(*d);
  d.reset();
  ITE_RETURN_IF_ERROR(f.NumberIn("frequency_penalty", -2.0, 2.0, &d));
  if (d) in->sampling.frequency_penalty = static_cast<float>(*d);
  d.reset();
  ITE_RETURN_IF_ERROR(f.Number("min_p", &d));
  if (d) in->sampling.min_p = static_cast<float>(*d);
  d.reset();
  ITE_RETURN_IF_ERROR(f.Number("repetition_penalty", &d));
  if (d) in->sampling.repetition_penalty = static_cast<float>(*d);

  std::optional<int64_t> i;
  // vLLM's convention: top_k -1 (or 0) is off.
  ITE_RETURN_IF_ERROR(f.Int("top_k", -1, std::numeric_limits<int32_t>::max(), &i));
  if (i) in->sampling.top_k = *i < 0 ? 0 : static_cast<int32_t>(*i);
  i.reset();
  ITE_RETURN_IF_ERROR(
      f.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max(), &i));
  if (i) in->sampling.seed = static_cast<uint64_t>(*i);
  i.reset();
  ITE_RETURN_IF_ERROR(f.Int("min_tokens", 0, std::numeric_limits<int32_t>::max(), &i));
  if (i) in->min_tokens = static_cast<int32_t>(*i);

  std::optional<bool> b;
  ITE_RETURN_IF_ERROR(f.Bool("ignore_eos", &b));
  in->ignore_eos = b.value_or(false);
  b.reset();
  ITE_RETURN_IF_ERROR(f.Bool("include_stop_str_in_output", &b));
  in->include_stop_str_in_output = b.value_or(false);

  ITE_RETURN_IF_ERROR(ParseStop(f, limits, &in->stop));
  if (const Json* ids = f.Find("stop_token_ids")) {
    if (!ids->is_array()) {
      return InvalidArgument("stop_token_ids: expected an array of token ids, got {}",
                             TypeName(*ids));
    }
    ITE_RETURN_IF_ERROR(IntList(*ids, "stop_token_ids", &in->stop_token_ids));
  }
  ITE_RETURN_IF_ERROR(f.Unsupported("logit_bias", Json::object()));
  ITE_RETURN_IF_ERROR(f.Unsupported("best_of", 1));
  return Status::Ok();
}

// max_tokens (both) or max_completion_tokens (chat; wins when both are set).
Status ParseMaxTokens(const Fields& f, OpenAiEndpoint endpoint, GenerateInput* in) {
  std::optional<int64_t> i;
  const int64_t hi = std::numeric_limits<int32_t>::max();
  if (endpoint == OpenAiEndpoint::kChat) {
    ITE_RETURN_IF_ERROR(f.Int("max_completion_tokens", 1, hi, &i));
  }
  if (!i) ITE_RETURN_IF_ERROR(f.Int("max_tokens", 1, hi, &i));
  if (i) in->max_tokens = static_cast<int32_t>(*i);
  return Status::Ok();
}

// The body as a JSON object, or INVALID_ARGUMENT saying why not.
StatusOr<Json> ParseObject(std::string_view body, const OpenAiParseLimits& limits) {
  Json root;
  bool too_deep = false;
  Json::parser_callback_t depth_check = [&](int depth, Json::parse_event_t, Json&) {
    if (depth > limits.max_depth) too_deep = true;
    return !too_deep;
  };
  try {
    root = Json::parse(body, depth_check, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    const std::string what = e.what();
    const size_t at = what.find("] ");
    return InvalidArgument("body: not valid JSON ({})",
                           at == std::string::npos ? what : what.substr(at + 2));
  }
  if (too_deep) {
    return InvalidArgument("body: JSON nested deeper than {} levels", limits.max_depth);
  }
  if (!root.is_object()) {
    return InvalidArgument("body: expected a JSON object, got {}", TypeName(root));
  }
  return root;
}

}  // namespace

StatusOr<OpenAiRequest> ParseOpenAiRequest(OpenAiEndpoint endpoint, std::string_view body,
                                           const OpenAiParseLimits& limits) {
  StatusOr<Json> parsed = ParseObject(body, limits);
  if (!parsed.ok()) return parsed.status();
  const Json& root = *parsed;
  const Fields f(root);
  OpenAiRequest out;
  out.endpoint = endpoint;

  std::optional<std::string> s;
  ITE_RETURN_IF_ERROR(f.String("model", &s));
  out.model = s.value_or("");
  s.reset();
  ITE_RETURN_IF_ERROR(f.String("user", &s));
  out.user = s.value_or("");

  std::optional<int64_t> i;
  ITE_RETURN_IF_ERROR(f.Int("n", 1, limits.max_n, &i));
  out.n = static_cast<int>(i.value_or(1));
  std::optional<bool> b;
  ITE_RETURN_IF_ERROR(f.Bool("stream", &b));
  out.stream = b.value_or(false);
  if (const Json* so = f.Find("stream_options")) {
    if (!out.stream) return InvalidArgument("stream_options: only allowed when stream is true");
    if (!so->is_object()) {
      return InvalidArgument("stream_options: expected an object, got {}", TypeName(*so));
    }
    std::optional<bool> usage;
    ITE_RETURN_IF_ERROR(Fields(*so).Bool("include_usage", &usage));
    out.include_usage = usage.value_or(false);
  }

  GenerateInput common;
  common.model = out.model;
  ITE_RETURN_IF_ERROR(ParseCommon(f, limits, &common));
  ITE_RETURN_IF_ERROR(ParseMaxTokens(f, endpoint, &common));

  std::vector<PromptInput> prompts;
  if (endpoint == OpenAiEndpoint::kCompletions) {
    const Json* prompt = f.Find("prompt");
    if (prompt == nullptr) return InvalidArgument("prompt: required");
    ITE_RETURN_IF_ERROR(ParsePrompts(*prompt, limits, &prompts));
    i.reset();
    ITE_RETURN_IF_ERROR(f.Int("logprobs", 0, 20, &i));
    if (i) {
      out.completion_logprobs = static_cast<int32_t>(*i);
      common.logprobs = true;
      common.top_logprobs = out.completion_logprobs;
    }
    ITE_RETURN_IF_ERROR(f.Unsupported("echo", false));
    ITE_RETURN_IF_ERROR(f.Unsupported("suffix", ""));
  } else {
    const Json* messages = f.Find("messages");
    if (messages == nullptr) return InvalidArgument("messages: required");
    PromptInput p;
    p.chat.emplace();
    ITE_RETURN_IF_ERROR(ParseMessages(*messages, limits, &*p.chat));
    prompts.push_back(std::move(p));
    b.reset();
    ITE_RETURN_IF_ERROR(f.Bool("logprobs", &b));
    out.chat_logprobs = b.value_or(false);
    i.reset();
    ITE_RETURN_IF_ERROR(f.Int("top_logprobs", 0, 20, &i));
    if (i && !out.chat_logprobs) {
      return InvalidArgument("top_logprobs: requires logprobs to be true");
    }
    common.logprobs = out.chat_logprobs;
    common.top_logprobs = static_cast<int32_t>(i.value_or(0));
    ITE_RETURN_IF_ERROR(f.Unsupported("tools", Json::array()));
    if (const Json* format = f.Find("response_format")) {
      const Json* type =
          format->is_object() && format->contains("type") ? &(*format)["type"] : nullptr;
      if (type == nullptr || *type != "text") {
        return InvalidArgument("response_format: only {{\"type\": \"text\"}} is supported");
      }
    }
  }
  for (PromptInput& p : prompts) {
    GenerateInput in = common;
    in.prompt = std::move(p);
    out.inputs.push_back(std::move(in));
  }
  return out;
}

StatusOr<TokenizeBody> ParseTokenizeBody(std::string_view body, const OpenAiParseLimits& limits) {
  StatusOr<Json> parsed = ParseObject(body, limits);
  if (!parsed.ok()) return parsed.status();
  const Fields f(*parsed);
  TokenizeBody out;
  std::optional<bool> b;
  ITE_RETURN_IF_ERROR(f.Bool("return_token_strs", &b));
  out.return_token_strs = b.value_or(false);
  b.reset();
  ITE_RETURN_IF_ERROR(f.Bool("add_special_tokens", &b));
  out.prompt.add_special_tokens = b;
  const Json* messages = f.Find("messages");
  const Json* prompt = f.Find("prompt");
  if ((messages == nullptr) == (prompt == nullptr)) {
    return InvalidArgument("prompt: set exactly one of prompt or messages");
  }
  if (prompt != nullptr) {
    if (!prompt->is_string()) {
      return InvalidArgument("prompt: expected a string, got {}", TypeName(*prompt));
    }
    out.prompt.text = prompt->get<std::string>();
  } else {
    out.prompt.chat.emplace();
    ITE_RETURN_IF_ERROR(ParseMessages(*messages, limits, &*out.prompt.chat));
  }
  return out;
}

StatusOr<std::vector<int32_t>> ParseDetokenizeBody(std::string_view body,
                                                   const OpenAiParseLimits& limits) {
  StatusOr<Json> parsed = ParseObject(body, limits);
  if (!parsed.ok()) return parsed.status();
  const Json* tokens = Fields(*parsed).Find("tokens");
  if (tokens == nullptr) return InvalidArgument("tokens: required");
  if (!tokens->is_array()) {
    return InvalidArgument("tokens: expected an array of token ids, got {}", TypeName(*tokens));
  }
  std::vector<int32_t> ids;
  ITE_RETURN_IF_ERROR(IntList(*tokens, "tokens", &ids));
  return ids;
}

std::string OpenAiParamOf(std::string_view message) {
  size_t end = 0;
  while (end < message.size()) {
    const char c = message[end];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) break;
    ++end;
  }
  std::string name(message.substr(0, end));
  // A field name is followed by ':', '[' or " = " / " / "; a sentence's first word is not.
  const std::string_view rest = message.substr(end);
  const bool named = rest.rfind(":", 0) == 0 || rest.rfind("[", 0) == 0 ||
                     rest.rfind(" = ", 0) == 0 || rest.rfind(" / ", 0) == 0;
  if (!named || name.empty() || name == "body") return "";
  if (name.rfind("sampling.", 0) == 0) name = name.substr(9);
  if (name.rfind("chat", 0) == 0) return "messages";
  if (name == "prompt_token_ids") return "prompt";
  // "presence_penalty / frequency_penalty: ..." names two: keep the first.
  return name;
}

}  // namespace ite
