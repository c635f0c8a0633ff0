// Architecture hyper-parameters of a Llama-family model, read from a Hugging Face config.json or
// from GGUF metadata. Everything downstream (backends, scheduler limits) reads only this struct.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "worker/model/vision_config.h"

namespace ite {

enum class ModelArch { kLlama, kQwen2 };

struct RopeScaling {
  // "none" or "llama3" (Llama 3.1/3.2 frequency scaling). Others are rejected at load.
  std::string type = "none";
  float factor = 1.0f;
  float low_freq_factor = 1.0f;
  float high_freq_factor = 4.0f;
  int32_t original_max_position = 8192;
};

// A tensor-parallel rank's share of the model (tensor_parallel.h). With size > 1 the head counts
// and intermediate_size of its ModelConfig are the rank's, vocab_size stays the whole vocabulary.
struct TensorShard {
  int32_t rank = 0;
  int32_t size = 1;
  int32_t lm_head_begin = 0;  // the rank's LM head holds vocabulary rows [begin, begin + rows)
  int32_t lm_head_rows = 0;   // 0: all of them (size 1)
};

struct ModelConfig {
  ModelArch arch = ModelArch::kLlama;
  std::string name;  // e.g. "SmolLM2-135M-Instruct", for ModelInfo and logs
  int32_t vocab_size = 0;
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // hidden_size / num_heads unless the config says otherwise
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  int32_t max_position = 2048;  // context length
  bool tie_embeddings = false;
  bool qkv_bias = false;  // Qwen2: Q, K and V projections carry a bias
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  // LLaVA: the vision tower and projector in front of the language model described above.
  std::optional<VisionConfig> vision;
  TensorShard shard;

  int32_t q_dim() const { return num_heads * head_dim; }
  int32_t kv_dim() const { return num_kv_heads * head_dim; }
  int32_t qkv_dim() const { return q_dim() + 2 * kv_dim(); }
};

}  // namespace ite
