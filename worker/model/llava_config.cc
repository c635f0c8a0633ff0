// LlavaForConditionalGeneration's config.json: a Llama under `text_config`, a CLIP vision model
// under `vision_config`, and the keys that join them.
#include "worker/model/config_parser.h"

namespace ite {
namespace {

using json = nlohmann::json;

constexpr int32_t kMaxVisionDim = 1 << 16;

StatusOr<std::string> JsonString(const json& j, const char* key, const std::string& path,
                                 const std::string& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) return InvalidArgument("{}: '{}' is not a string", path, key);
  return it->get<std::string>();
}

StatusOr<ActFn> ParseAct(const std::string& name, const std::string& path, const char* key) {
  if (name == "gelu") return ActFn::kGelu;
  if (name == "quick_gelu") return ActFn::kQuickGelu;
  return Unimplemented("{}: '{}' = '{}' is not supported (gelu, quick_gelu are)", path, key, name);
}

StatusOr<VisionConfig> ParseVision(const json& v, const json& top, const std::string& path) {
  const std::string where = path + " vision_config";
  if (auto mt = v.find("model_type");
      mt != v.end() && (!mt->is_string() || mt->get<std::string>() != "clip_vision_model")) {
    return Unimplemented("{}: model_type {} is not supported (clip_vision_model is)", where,
                         mt->dump());
  }
  VisionConfig c;
  ITE_ASSIGN_OR_RETURN(c.hidden_size, JsonInt(v, "hidden_size", where, 768));
  ITE_ASSIGN_OR_RETURN(c.intermediate_size, JsonInt(v, "intermediate_size", where, 3072));
  ITE_ASSIGN_OR_RETURN(c.num_layers, JsonInt(v, "num_hidden_layers", where, 12));
  ITE_ASSIGN_OR_RETURN(c.num_heads, JsonInt(v, "num_attention_heads", where, 12));
  ITE_ASSIGN_OR_RETURN(c.image_size, JsonInt(v, "image_size", where, 224));
  ITE_ASSIGN_OR_RETURN(c.patch_size, JsonInt(v, "patch_size", where, 32));
  ITE_ASSIGN_OR_RETURN(c.num_channels, JsonInt(v, "num_channels", where, 3));
  ITE_ASSIGN_OR_RETURN(c.layer_norm_eps, JsonFloat(v, "layer_norm_eps", where, 1e-5f));
  ITE_ASSIGN_OR_RETURN(std::string act, JsonString(v, "hidden_act", where, "quick_gelu"));
  ITE_ASSIGN_OR_RETURN(c.act, ParseAct(act, where, "hidden_act"));
  for (auto [value, what] : {std::pair{c.hidden_size, "hidden_size"},
                             {c.intermediate_size, "intermediate_size"},
                             {c.num_layers, "num_hidden_layers"},
                             {c.num_heads, "num_attention_heads"},
                             {c.image_size, "image_size"},
                             {c.patch_size, "patch_size"}}) {
    if (value <= 0 || value > kMaxVisionDim)
      return InvalidArgument("{}: '{}' = {} is out of range", where, what, value);
  }
  if (c.num_channels != 3)
    return Unimplemented("{}: num_channels {} (only RGB, 3, is supported)", where, c.num_channels);
  if (c.hidden_size % c.num_heads != 0)
    return InvalidArgument("{}: hidden_size {} is not a multiple of num_attention_heads {}", where,
                           c.hidden_size, c.num_heads);
  if (c.image_size % c.patch_size != 0)
    return InvalidArgument("{}: image_size {} is not a multiple of patch_size {}", where,
                           c.image_size, c.patch_size);
  if (c.num_patches() > 16384)
    return InvalidArgument("{}: {} patches per image is out of range", where, c.num_patches());
  if (!(c.layer_norm_eps > 0.0f))
    return InvalidArgument("{}: layer_norm_eps must be positive", where);

  auto layer = top.find("vision_feature_layer");
  int64_t feature_layer = -2;
  if (layer != top.end() && !layer->is_null()) {
    if (!layer->is_number_integer())
      return Unimplemented("{}: vision_feature_layer {} (only one layer, an integer, is supported)",
                           path, layer->dump());
    feature_layer = layer->get<int64_t>();
  }
  // hidden_states has num_layers + 1 entries (the embeddings, then each layer's output).
  const int64_t index = feature_layer < 0 ? c.num_layers + 1 + feature_layer : feature_layer;
  if (index < 0 || index > c.num_layers)
    return InvalidArgument("{}: vision_feature_layer {} is outside the {} layers", path,
                           feature_layer, c.num_layers);
  c.feature_layers = static_cast<int32_t>(index);
  ITE_ASSIGN_OR_RETURN(std::string strategy,
                       JsonString(top, "vision_feature_select_strategy", path, "default"));
  if (strategy != "default" && strategy != "full")
    return Unimplemented("{}: vision_feature_select_strategy '{}' (default, full are supported)",
                         path, strategy);
  c.drop_cls = strategy == "default";
  ITE_ASSIGN_OR_RETURN(std::string proj_act, JsonString(top, "projector_hidden_act", path, "gelu"));
  ITE_ASSIGN_OR_RETURN(c.projector_act, ParseAct(proj_act, path, "projector_hidden_act"));
  if (auto b = top.find("multimodal_projector_bias"); b != top.end() && !b->is_null()) {
    if (!b->is_boolean())
      return InvalidArgument("{}: 'multimodal_projector_bias' is not a bool", path);
    c.projector_bias = b->get<bool>();
  }
  const char* token_key =
      top.contains("image_token_index") ? "image_token_index" : "image_token_id";
  ITE_ASSIGN_OR_RETURN(c.image_token_id, JsonInt(top, token_key, path, 32000));
  return c;
}

}  // namespace

StatusOr<ModelConfig> LlavaConfigFromHfJson(const json& config, const json& generation,
                                            const std::string& path) {
  auto text = config.find("text_config");
  if (text == config.end() || !text->is_object())
    return InvalidArgument("{}: LLaVA config has no object 'text_config'", path);
  auto vision = config.find("vision_config");
  if (vision == config.end() || !vision->is_object())
    return InvalidArgument("{}: LLaVA config has no object 'vision_config'", path);
  json text_config = *text;
  if (!text_config.contains("model_type")) text_config["model_type"] = "llama";
  if (text_config.contains("architectures")) text_config.erase("architectures");
  const std::string mt = text_config["model_type"].is_string()
                             ? text_config["model_type"].get<std::string>()
                             : std::string();
  if (mt != "llama")
    return Unimplemented("{}: text_config model_type '{}' is not supported (llama is)", path, mt);
  // transformers keeps the top-level tie flag authoritative for the composite model.
  if (auto tie = config.find("tie_word_embeddings"); tie != config.end() && tie->is_boolean())
    text_config["tie_word_embeddings"] = *tie;
  ITE_ASSIGN_OR_RETURN(ModelConfig c, ConfigFromHfJson(text_config, generation, path));
  ITE_ASSIGN_OR_RETURN(VisionConfig v, ParseVision(*vision, config, path));
  if (v.image_token_id < 0 || v.image_token_id >= c.vocab_size)
    return InvalidArgument("{}: image_token_index {} is outside the vocabulary of {}", path,
                           v.image_token_id, c.vocab_size);
  if (v.image_tokens() >= c.max_position)
    return InvalidArgument("{}: one image takes {} positions, the context has {}", path,
                           v.image_tokens(), c.max_position);
  c.vision = v;
  return c;
}

}  // namespace ite
