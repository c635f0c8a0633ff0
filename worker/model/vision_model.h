// The LLaVA vision side written once over ModelOps: the CLIP vision tower (patch embedding as a
// matmul over the image's patches, class token, position embeddings, pre-layernorm, pre-norm
// encoder layers with non-causal attention and a quick-GELU MLP) up to the configured feature
// layer, then the two-layer projector into the language model's embedding space.
#pragma once

#include <memory>
#include <span>

#include "common/status.h"
#include "worker/model/model_config.h"
#include "worker/model/model_ops.h"
#include "worker/model/model_weights.h"

namespace ite {

class VisionModel {
 public:
  virtual ~VisionModel() = default;
  // pixels [3, image_size, image_size] (the image processor's output) -> out [image_tokens,
  // text hidden], in the ops' activation dtype and memory (caller-owned).
  virtual Status Encode(ModelOps* ops, std::span<const float> pixels, Activation out) const = 0;
  // The tower's output before the projector, [image_tokens, vision hidden], in the ops'
  // kVisionX buffer (for goldens).
  virtual StatusOr<Activation> Features(ModelOps* ops, std::span<const float> pixels) const = 0;
};

// Fails with a Status naming the tensor when a weight is missing or mis-shaped.
StatusOr<std::unique_ptr<VisionModel>> CreateVisionModel(const ModelConfig& config,
                                                         const VisionWeights& weights,
                                                         ModelOps* ops);

// Rows of the patch matrix the tower multiplies with its flattened conv kernel: row 0 zeros (the
// class token's slot), then one row per patch in raster order, each (channel, y, x).
std::vector<float> ImagePatches(const VisionConfig& config, std::span<const float> pixels);

}  // namespace ite
