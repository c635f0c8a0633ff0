// Weights of a LLaVA vision tower (CLIP ViT) and projector, as the model layer consumes them.
// Layouts (row-major, nn.Linear [out, in]):
//   patch_embedding   [hidden, channels * patch * patch]  the conv kernel, flattened (c, y, x)
//   position_table    [num_patches + 1, hidden]  position embeddings, the class embedding added
//                                                to row 0 (the class token's input is zero)
//   pre_norm_w/_b     [hidden]
//   per layer: norm1_w/_b [hidden]; wqkv [3 * hidden, hidden] (rows Q, K, V); bqkv [3 * hidden];
//              wo [hidden, hidden]; bo [hidden]; norm2_w/_b [hidden];
//              fc1 [inter, hidden]; b1 [inter]; fc2 [hidden, inter]; b2 [hidden]
//   projector: w1 [text_hidden, hidden]; b1 [text_hidden]; w2 [text_hidden, text_hidden]; b2
// Only the layers the features need are loaded (VisionConfig::feature_layers).
#pragma once

#include <vector>

#include "worker/model/tensor.h"

namespace ite {

struct VisionLayerWeights {
  Tensor norm1_w, norm1_b;
  Tensor wqkv, bqkv;
  Tensor wo, bo;
  Tensor norm2_w, norm2_b;
  Tensor fc1, b1;
  Tensor fc2, b2;
};

struct VisionWeights {
  Tensor patch_embedding;
  Tensor position_table;
  Tensor pre_norm_w, pre_norm_b;
  std::vector<VisionLayerWeights> layers;
  Tensor proj_w1, proj_b1, proj_w2, proj_b2;

  bool empty() const { return patch_embedding.empty(); }
};

}  // namespace ite
