#include "worker/model/describe_model.h"

namespace ite {

ModelInfo DescribeModel(const ModelConfig& config) {
  ModelInfo info;
  info.name = config.name;
  info.arch = config.arch == ModelArch::kQwen2 ? "qwen2" : "llama";
  info.vocab_size = config.vocab_size;
  info.max_position = config.max_position;
  info.num_layers = config.num_layers;
  info.hidden_size = config.hidden_size;
  info.eos_token_ids = config.eos_token_ids;
  if (config.vision) {
    info.image_token_id = config.vision->image_token_id;
    info.image_tokens = config.vision->image_tokens();
    info.image_size = config.vision->image_size;
  }
  return info;
}

}  // namespace ite
