#include "worker/model/config_parser.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

namespace ite {

namespace {

using json = nlohmann::json;

// Upper bound for any single dimension: keeps products like q_dim * hidden far from overflow.
constexpr int64_t kMaxDim = 1 << 20;

// Narrows to float, refusing what float cannot hold (the cast itself would be undefined).
StatusOr<float> ToFloat(double v, const std::string& path, std::string_view key) {
  if (!std::isfinite(v) || std::fabs(v) > 3.0e38) {
    return InvalidArgument("{}: '{}' = {} is not a finite float", path, key, v);
  }
  return static_cast<float>(v);
}

// eos_token_id / bos_token_id may be an int, a list of ints, or null.
StatusOr<std::vector<int32_t>> JsonIds(const json& j, const char* key, const std::string& path) {
  std::vector<int32_t> ids;
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ids;
  auto add = [&](const json& v) -> Status {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      return InvalidArgument("{}: '{}' holds a non-id value {}", path, key, v.dump());
    }
    ids.push_back(v.get<int32_t>());
    return Status::Ok();
  };
  if (it->is_array()) {
    for (const json& v : *it) ITE_RETURN_IF_ERROR(add(v));
  } else {
    ITE_RETURN_IF_ERROR(add(*it));
  }
  return ids;
}

Status ParseHfRope(const json& config, const std::string& path, ModelConfig* c) {
  // transformers 5 folds rope_theta and the scaling into `rope_parameters`; older configs use
  // top-level `rope_theta` and `rope_scaling`.
  const json* params = nullptr;
  if (auto it = config.find("rope_parameters"); it != config.end() && it->is_object()) {
    params = &*it;
  } else if (auto it2 = config.find("rope_scaling"); it2 != config.end() && !it2->is_null()) {
    if (!it2->is_object()) return InvalidArgument("{}: 'rope_scaling' is not an object", path);
    params = &*it2;
  }
  ITE_ASSIGN_OR_RETURN(c->rope_theta, JsonFloat(config, "rope_theta", path, 10000.0f));
  if (params == nullptr) return Status::Ok();
  ITE_ASSIGN_OR_RETURN(c->rope_theta, JsonFloat(*params, "rope_theta", path, c->rope_theta));
  std::string type = "default";
  for (const char* key : {"rope_type", "type"}) {
    auto it = params->find(key);
    if (it != params->end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  if (type == "default") return Status::Ok();
  if (type != "llama3") {
    return Unimplemented("{}: rope scaling type '{}' is not supported (only llama3)", path, type);
  }
  RopeScaling& r = c->rope_scaling;
  r.type = "llama3";
  ITE_ASSIGN_OR_RETURN(r.factor, JsonFloat(*params, "factor", path, r.factor));
  ITE_ASSIGN_OR_RETURN(r.low_freq_factor,
                       JsonFloat(*params, "low_freq_factor", path, r.low_freq_factor));
  ITE_ASSIGN_OR_RETURN(r.high_freq_factor,
                       JsonFloat(*params, "high_freq_factor", path, r.high_freq_factor));
  ITE_ASSIGN_OR_RETURN(r.original_max_position, JsonInt(*params, "original_max_position_embeddings",
                                                        path, r.original_max_position));
  if (!(r.factor >= 1.0f) || !(r.high_freq_factor > r.low_freq_factor) ||
      !(r.low_freq_factor > 0.0f) || r.original_max_position <= 0) {
    return InvalidArgument("{}: llama3 rope scaling parameters are inconsistent", path);
  }
  return Status::Ok();
}

}  // namespace

StatusOr<int32_t> JsonInt(const json& j, const char* key, const std::string& path,
                          std::optional<int32_t> fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    return InvalidArgument("{}: missing integer '{}'", path, key);
  }
  if (!it->is_number_integer() ||
      (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t{INT64_MAX})) {
    return InvalidArgument("{}: '{}' is not an integer in range", path, key);
  }
  int64_t v = it->get<int64_t>();
  if (v < -1 || v > kMaxDim * 1024)
    return InvalidArgument("{}: '{}' = {} is out of range", path, key, v);
  return static_cast<int32_t>(v);
}

StatusOr<float> JsonFloat(const json& j, const char* key, const std::string& path, float fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number()) return InvalidArgument("{}: '{}' is not a number", path, key);
  return ToFloat(it->get<double>(), path, key);
}

Status ValidateConfig(const ModelConfig& c, const std::string& path) {
  auto positive = [&](int64_t v, const char* what) -> Status {
    if (v <= 0 || v > kMaxDim) return InvalidArgument("{}: {} = {} is out of range", path, what, v);
    return Status::Ok();
  };
  ITE_RETURN_IF_ERROR(positive(c.vocab_size, "vocab size"));
  ITE_RETURN_IF_ERROR(positive(c.hidden_size, "hidden size"));
  ITE_RETURN_IF_ERROR(positive(c.intermediate_size, "intermediate size"));
  ITE_RETURN_IF_ERROR(positive(c.num_layers, "layer count"));
  ITE_RETURN_IF_ERROR(positive(c.num_heads, "attention head count"));
  ITE_RETURN_IF_ERROR(positive(c.num_kv_heads, "kv head count"));
  ITE_RETURN_IF_ERROR(positive(c.head_dim, "head dim"));
  ITE_RETURN_IF_ERROR(positive(c.max_position, "context length"));
  if (c.num_heads % c.num_kv_heads != 0) {
    return InvalidArgument("{}: {} attention heads are not a multiple of {} kv heads", path,
                           c.num_heads, c.num_kv_heads);
  }
  if (c.head_dim % 2 != 0) return InvalidArgument("{}: head dim {} is odd", path, c.head_dim);
  if (static_cast<int64_t>(c.num_heads) * c.head_dim > kMaxDim) {
    return InvalidArgument("{}: heads * head_dim is out of range", path);
  }
  if (!(c.rms_norm_eps > 0.0f) || !(c.rope_theta > 0.0f)) {
    return InvalidArgument("{}: rms_norm_eps and rope_theta must be positive", path);
  }
  return Status::Ok();
}

StatusOr<ModelConfig> ConfigFromHfJson(const json& config, const json& generation,
                                       const std::string& path) {
  if (!config.is_object()) return InvalidArgument("{}: config is not a JSON object", path);
  std::string arch;
  if (auto it = config.find("architectures");
      it != config.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    arch = (*it)[0].get<std::string>();
  } else if (auto mt = config.find("model_type"); mt != config.end() && mt->is_string()) {
    arch = mt->get<std::string>();
  }
  if (arch == "LlavaForConditionalGeneration" || arch == "llava") {
    return LlavaConfigFromHfJson(config, generation, path);
  }
  ModelConfig c;
  if (arch == "LlamaForCausalLM" || arch == "llama") {
    c.arch = ModelArch::kLlama;
  } else if (arch == "Qwen2ForCausalLM" || arch == "qwen2") {
    c.arch = ModelArch::kQwen2;
    c.qkv_bias = true;
  } else {
    return Unimplemented(
        "{}: architecture '{}' is not supported (LlamaForCausalLM, "
        "Qwen2ForCausalLM, LlavaForConditionalGeneration are)",
        path, arch);
  }
  if (auto it = config.find("attention_bias");
      it != config.end() && it->is_boolean() && it->get<bool>() && c.arch == ModelArch::kLlama) {
    return Unimplemented("{}: Llama with attention_bias=true is not supported", path);
  }
  c.name = std::filesystem::path(path).parent_path().filename().string();
  ITE_ASSIGN_OR_RETURN(c.hidden_size, JsonInt(config, "hidden_size", path));
  ITE_ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(config, "intermediate_size", path));
  ITE_ASSIGN_OR_RETURN(c.num_layers, JsonInt(config, "num_hidden_layers", path));
  ITE_ASSIGN_OR_RETURN(c.num_heads, JsonInt(config, "num_attention_heads", path));
  ITE_ASSIGN_OR_RETURN(c.num_kv_heads, JsonInt(config, "num_key_value_heads", path, c.num_heads));
  ITE_ASSIGN_OR_RETURN(c.vocab_size, JsonInt(config, "vocab_size", path));
  if (c.num_heads <= 0) return InvalidArgument("{}: 'num_attention_heads' must be positive", path);
  if (config.contains("head_dim") && !config["head_dim"].is_null()) {
    ITE_ASSIGN_OR_RETURN(c.head_dim, JsonInt(config, "head_dim", path));
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return InvalidArgument("{}: hidden_size {} is not a multiple of num_attention_heads {}", path,
                             c.hidden_size, c.num_heads);
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  ITE_ASSIGN_OR_RETURN(c.rms_norm_eps, JsonFloat(config, "rms_norm_eps", path, 1e-6f));
  ITE_RETURN_IF_ERROR(ParseHfRope(config, path, &c));
  ITE_ASSIGN_OR_RETURN(c.max_position, JsonInt(config, "max_position_embeddings", path, 2048));
  if (auto it = config.find("tie_word_embeddings"); it != config.end() && !it->is_null()) {
    if (!it->is_boolean()) return InvalidArgument("{}: 'tie_word_embeddings' is not a bool", path);
    c.tie_embeddings = it->get<bool>();
  }
  ITE_ASSIGN_OR_RETURN(std::vector<int32_t> bos, JsonIds(config, "bos_token_id", path));
  if (!bos.empty()) c.bos_token_id = bos[0];
  ITE_ASSIGN_OR_RETURN(c.eos_token_ids, JsonIds(config, "eos_token_id", path));
  if (generation.is_object() && generation.contains("eos_token_id")) {
    ITE_ASSIGN_OR_RETURN(std::vector<int32_t> eos,
                         JsonIds(generation, "eos_token_id", path + " (generation_config.json)"));
    if (!eos.empty()) c.eos_token_ids = eos;
  }
  ITE_RETURN_IF_ERROR(ValidateConfig(c, path));
  return c;
}

namespace {

StatusOr<int32_t> GgufInt(const GgufFile& f, const std::string& key,
                          std::optional<int32_t> fallback = std::nullopt) {
  if (f.Find(key) == nullptr && fallback) return *fallback;
  ITE_ASSIGN_OR_RETURN(int64_t v, f.GetInt(key));
  if (v < 0 || v > kMaxDim * 1024) {
    return InvalidArgument("{}: metadata key '{}' = {} is out of range", f.path(), key, v);
  }
  return static_cast<int32_t>(v);
}

StatusOr<float> GgufFloat(const GgufFile& f, const std::string& key, float fallback) {
  if (f.Find(key) == nullptr) return fallback;
  ITE_ASSIGN_OR_RETURN(double v, f.GetFloat(key));
  return ToFloat(v, f.path(), key);
}

// Llama 3.1 frequency scaling: the per-frequency divisor for base frequency `inv_freq`.
double Llama3Factor(double inv_freq, const RopeScaling& r) {
  const double kPi = 3.14159265358979323846;
  const double wavelen = 2 * kPi / inv_freq;
  const double low_wavelen = r.original_max_position / r.low_freq_factor;
  const double high_wavelen = r.original_max_position / r.high_freq_factor;
  if (wavelen < high_wavelen) return 1.0;
  if (wavelen > low_wavelen) return r.factor;
  const double smooth = (r.original_max_position / wavelen - r.low_freq_factor) /
                        (r.high_freq_factor - r.low_freq_factor);
  return 1.0 / ((1.0 - smooth) / r.factor + smooth);
}

// llama.cpp's converter stores Llama 3.x RoPE scaling not as metadata but as the tensor
// `rope_freqs.weight`: one divisor per frequency. ModelConfig describes scaling by parameters, so
// the stored divisors are accepted when the released Llama 3.x parameters (low 1, high 4,
// original context 8192, factor = the largest divisor) reproduce them, and rejected otherwise.
Status RopeScalingFromFactors(const GgufFile& f, const GgufTensorInfo& t, ModelConfig* c) {
  const int64_t n = c->head_dim / 2;
  if (n <= 0 || n > kMaxDim)
    return InvalidArgument("{}: head dim {} is out of range", f.path(), c->head_dim);
  if (t.type != GgmlType::F32 || t.dims.size() != 1 || t.dims[0] != n) {
    return InvalidArgument("{}: tensor 'rope_freqs.weight' must be F32 [{}]", f.path(), n);
  }
  std::vector<float> stored(static_cast<size_t>(n));
  std::memcpy(stored.data(), t.data, stored.size() * sizeof(float));
  RopeScaling r;
  r.type = "llama3";
  r.factor = *std::max_element(stored.begin(), stored.end());
  r.low_freq_factor = 1.0f;
  r.high_freq_factor = 4.0f;
  r.original_max_position = 8192;
  for (int64_t i = 0; i < n; ++i) {
    const double inv_freq = std::pow(static_cast<double>(c->rope_theta), -2.0 * i / c->head_dim);
    const double want = Llama3Factor(inv_freq, r);
    if (!(std::fabs(stored[i] - want) <= 1e-3 * want)) {
      return Unimplemented(
          "{}: 'rope_freqs.weight'[{}] = {} does not match Llama 3 scaling "
          "(expected {}); other precomputed RoPE factors are not supported",
          f.path(), i, stored[i], want);
    }
  }
  if (r.factor > 1.0f) c->rope_scaling = r;
  return Status::Ok();
}

}  // namespace

StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& f) {
  ITE_ASSIGN_OR_RETURN(std::string arch, f.GetString("general.architecture"));
  ModelConfig c;
  if (arch == "llama") {
    c.arch = ModelArch::kLlama;
  } else if (arch == "qwen2") {
    c.arch = ModelArch::kQwen2;
    c.qkv_bias = true;
  } else {
    return Unimplemented("{}: general.architecture '{}' is not supported (llama, qwen2 are)",
                         f.path(), arch);
  }
  const std::string p = arch + ".";
  if (auto name = f.GetString("general.name"); name.ok()) c.name = *name;
  ITE_ASSIGN_OR_RETURN(c.hidden_size, GgufInt(f, p + "embedding_length"));
  ITE_ASSIGN_OR_RETURN(c.intermediate_size, GgufInt(f, p + "feed_forward_length"));
  ITE_ASSIGN_OR_RETURN(c.num_layers, GgufInt(f, p + "block_count"));
  ITE_ASSIGN_OR_RETURN(c.num_heads, GgufInt(f, p + "attention.head_count"));
  ITE_ASSIGN_OR_RETURN(c.num_kv_heads, GgufInt(f, p + "attention.head_count_kv", c.num_heads));
  ITE_ASSIGN_OR_RETURN(c.max_position, GgufInt(f, p + "context_length", 2048));
  if (c.num_heads <= 0) {
    return InvalidArgument("{}: '{}attention.head_count' must be positive", f.path(), p);
  }
  int32_t default_head_dim = c.hidden_size / c.num_heads;
  ITE_ASSIGN_OR_RETURN(c.head_dim, GgufInt(f, p + "attention.key_length", default_head_dim));
  ITE_ASSIGN_OR_RETURN(int32_t rope_dim, GgufInt(f, p + "rope.dimension_count", c.head_dim));
  if (rope_dim != c.head_dim) {
    return Unimplemented(
        "{}: partial RoPE ({}rope.dimension_count {} != head dim {}) is not "
        "supported",
        f.path(), p, rope_dim, c.head_dim);
  }
  ITE_ASSIGN_OR_RETURN(c.rms_norm_eps, GgufFloat(f, p + "attention.layer_norm_rms_epsilon", 1e-5f));
  ITE_ASSIGN_OR_RETURN(c.rope_theta, GgufFloat(f, p + "rope.freq_base", 10000.0f));
  if (f.Find(p + "rope.scaling.type") != nullptr) {
    ITE_ASSIGN_OR_RETURN(std::string type, f.GetString(p + "rope.scaling.type"));
    if (type != "none") {
      return Unimplemented("{}: '{}rope.scaling.type' = '{}' is not supported", f.path(), p, type);
    }
  }
  if (const GgufTensorInfo* factors = f.FindTensor("rope_freqs.weight")) {
    ITE_RETURN_IF_ERROR(RopeScalingFromFactors(f, *factors, &c));
  }
  // Vocabulary: the token list is authoritative; the embedding shape is checked against it.
  if (f.Find("tokenizer.ggml.tokens") != nullptr) {
    ITE_ASSIGN_OR_RETURN(std::vector<std::string> tokens,
                         f.GetStringArray("tokenizer.ggml.tokens"));
    c.vocab_size = static_cast<int32_t>(std::min<size_t>(tokens.size(), INT32_MAX));
  } else if (f.Find(p + "vocab_size") != nullptr) {
    ITE_ASSIGN_OR_RETURN(c.vocab_size, GgufInt(f, p + "vocab_size"));
  } else if (const GgufTensorInfo* emb = f.FindTensor("token_embd.weight");
             emb != nullptr && emb->dims.size() == 2) {
    c.vocab_size = static_cast<int32_t>(std::min<int64_t>(emb->dims[1], INT32_MAX));
  }
  ITE_ASSIGN_OR_RETURN(c.bos_token_id, GgufInt(f, "tokenizer.ggml.bos_token_id", -1));
  for (const char* key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                          "tokenizer.ggml.eom_token_id"}) {
    if (f.Find(key) == nullptr) continue;
    ITE_ASSIGN_OR_RETURN(int32_t id, GgufInt(f, key));
    if (std::find(c.eos_token_ids.begin(), c.eos_token_ids.end(), id) == c.eos_token_ids.end()) {
      c.eos_token_ids.push_back(id);
    }
  }
  ITE_RETURN_IF_ERROR(ValidateConfig(c, f.path()));
  return c;
}

}  // namespace ite
