// The model as the scheduler sees it: what it needs to check that its workers agree, to size
// requests and to answer ModelInfo. The full architecture (worker/model/model_config.h) stays
// with the worker; DescribeModel (worker/model/describe_model.h) derives this from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ite {

struct ModelInfo {
  std::string name;            // e.g. "SmolLM2-135M-Instruct"
  std::string arch = "llama";  // "llama" | "qwen2"
  int32_t vocab_size = 0;
  int32_t max_position = 0;  // context length
  int32_t num_layers = 0;
  int32_t hidden_size = 0;
  std::vector<int32_t> eos_token_ids;  // ends a sequence unless the request ignores EOS
  // LLaVA: the prompt token standing for each image position, the positions one image takes and
  // the square size its pixel values must have. -1 / 0 for a text-only model.
  int32_t image_token_id = -1;
  int32_t image_tokens = 0;
  int32_t image_size = 0;
};

}  // namespace ite
