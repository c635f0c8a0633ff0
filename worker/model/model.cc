#include "worker/model/model.h"

#include <unordered_set>

namespace ite {

Status ValidateModelConfig(const ModelConfig& c) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.intermediate_size <= 0) {
    return InvalidArgument(
        "bad model config (vocab {}, hidden {}, layers {}, heads {}/{}, head_dim {}, "
        "intermediate {})",
        c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim,
        c.intermediate_size);
  }
  return Status::Ok();
}

Status CheckWeightShape(const Tensor& t, const std::string& name, std::vector<int64_t> shape) {
  if (t.empty()) return InvalidArgument("weight {} is missing", name);
  if (t.shape != shape) {
    Tensor want;
    want.shape = std::move(shape);
    return InvalidArgument("weight {} has shape {}, expected {}", name, t.ShapeString(),
                           want.ShapeString());
  }
  return Status::Ok();
}

int64_t WeightBytes(const ModelWeights& w) {
  std::unordered_set<const void*> seen;
  int64_t n = 0;
  auto add = [&](const Tensor& t) {
    if (!t.empty() && seen.insert(t.data).second) n += static_cast<int64_t>(t.nbytes());
  };
  add(w.token_embedding);
  add(w.final_norm);
  add(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const Tensor* t :
         {&l.attn_norm, &l.wqkv, &l.bqkv, &l.wo, &l.ffn_norm, &l.w_gate_up, &l.w_down})
      add(*t);
  }
  return n;
}

StatusOr<std::unique_ptr<Model>> CreateModel(const ModelConfig& config, const ModelWeights& weights,
                                             ModelOps* ops) {
  ITE_RETURN_IF_ERROR(ValidateModelConfig(config));
  switch (config.arch) {
    // Qwen2 is the Llama graph with a bias on the fused QKV projection, which the weights carry.
    case ModelArch::kLlama:
    case ModelArch::kQwen2:
      return CreateLlamaModel(config, weights, ops);
  }
  return Unimplemented("model architecture {} has no forward pass", static_cast<int>(config.arch));
}

}  // namespace ite
