// Weights of a loaded model, fused as the backends consume them. Layouts (all row-major):
//   token_embedding [vocab, hidden]
//   per layer:
//     attn_norm  [hidden]
//     wqkv       [q_dim + 2 * kv_dim, hidden]   rows: Q (num_heads*head_dim), then K, then V
//     bqkv       [q_dim + 2 * kv_dim] or empty   (Qwen2 only)
//     wo         [hidden, q_dim]
//     ffn_norm   [hidden]
//     w_gate_up  [2 * intermediate, hidden]      rows: gate, then up
//     w_down     [hidden, intermediate]
//   final_norm [hidden]
//   lm_head    [vocab, hidden]   (shares storage with token_embedding when tied)
// Q and K rows are in the Hugging Face order (rotate_half / "neox" RoPE), also for GGUF files,
// whose llama converter permutes them; the GGUF loader undoes that permutation.
#pragma once

#include <vector>

#include "worker/model/model_config.h"
#include "worker/model/tensor.h"
#include "worker/model/vision_weights.h"

namespace ite {

struct LayerWeights {
  Tensor attn_norm;
  Tensor wqkv;
  Tensor bqkv;
  Tensor wo;
  Tensor ffn_norm;
  Tensor w_gate_up;
  Tensor w_down;
};

struct ModelWeights {
  Tensor token_embedding;
  std::vector<LayerWeights> layers;
  Tensor final_norm;
  Tensor lm_head;
  VisionWeights vision;  // empty unless config.vision
};

}  // namespace ite
