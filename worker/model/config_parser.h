// ModelConfig from a Hugging Face config.json (+ generation_config.json) or from GGUF metadata.
// Both reject architectures other than Llama/Qwen2 and values that cannot describe a working
// model (non-positive sizes, heads not dividing, odd head_dim, unknown RoPE scaling), naming the
// file and the key.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "common/gguf_reader.h"
#include "common/status.h"
#include "worker/model/model_config.h"

namespace ite {

// `config` is the parsed config.json of `path`; `generation` the parsed generation_config.json
// or null (its eos_token_id, when present, replaces config.json's).
StatusOr<ModelConfig> ConfigFromHfJson(const nlohmann::json& config,
                                       const nlohmann::json& generation, const std::string& path);

// Reads `general.architecture` and the `<arch>.*` hyper-parameters. tie_embeddings is left false:
// it depends on whether the file has an `output.weight` tensor, which the loader checks.
StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& file);

// LlavaForConditionalGeneration: the language model from `text_config` (a Llama), the vision
// tower from `vision_config` (a CLIP vision model) and the LLaVA keys (image_token_index,
// vision_feature_layer, vision_feature_select_strategy, projector_hidden_act,
// multimodal_projector_bias). Fails naming the missing or unsupported key.
StatusOr<ModelConfig> LlavaConfigFromHfJson(const nlohmann::json& config,
                                            const nlohmann::json& generation,
                                            const std::string& path);

// Fields of a config.json object, with errors naming `path` and the key. A missing or null key
// gives `fallback`, or an error when there is none.
StatusOr<int32_t> JsonInt(const nlohmann::json& j, const char* key, const std::string& path,
                          std::optional<int32_t> fallback = std::nullopt);
StatusOr<float> JsonFloat(const nlohmann::json& j, const char* key, const std::string& path,
                          float fallback);

// Shared sanity checks (also used after the loader fills in the vocabulary size).
Status ValidateConfig(const ModelConfig& config, const std::string& path);

}  // namespace ite
