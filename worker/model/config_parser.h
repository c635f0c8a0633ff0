// ModelConfig from a Hugging Face config.json (+ generation_config.json) or from GGUF metadata.
// Both reject architectures other than Llama/Qwen2 and values that cannot describe a working
// model (non-positive sizes, heads not dividing, odd head_dim, unknown RoPE scaling), naming the
// file and the key.
#pragma once

#include <nlohmann/json.hpp>
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

// Shared sanity checks (also used after the loader fills in the vocabulary size).
Status ValidateConfig(const ModelConfig& config, const std::string& path);

}  // namespace ite
