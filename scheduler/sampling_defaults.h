// A model's own sampling defaults, taken as vLLM takes them: temperature, top_k, top_p, min_p and
// repetition_penalty from a Hugging Face folder's generation_config.json (do_sample is not read).
// A request's own values win over these; a model without the file (a GGUF) keeps the API's
// defaults (temperature 1, no filtering).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/protocol/sampling_params.h"
#include "common/status.h"

namespace ite {

// The defaults for the model at `model_path` (a .gguf file or a folder). A malformed
// generation_config.json is an InvalidArgument naming the file and the key.
StatusOr<SamplingParams> SamplingDefaultsForModel(const std::string& model_path);

// The same from an already parsed generation_config.json; `source` names it in errors.
StatusOr<SamplingParams> SamplingDefaultsFromJson(const nlohmann::json& config,
                                                  const std::string& source);

// "temperature 0.6, top_p 0.9" for a log line; "none" when every value is the API's default.
std::string DescribeSamplingDefaults(const SamplingParams& p);

}  // namespace ite
