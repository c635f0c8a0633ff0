// The vision tower and projector tensors of a LLaVA checkpoint into VisionWeights
// (vision_weights.h): every tensor checked for presence and shape against the config, Q/K/V
// fused, the conv kernel flattened, the class embedding folded into the position table.
#pragma once

#include "common/status.h"
#include "worker/model/vision_config.h"
#include "worker/model/vision_weights.h"
#include "worker/model/weight_builder.h"

namespace ite {

// Finds the tower under any of the names checkpoints use ("vision_tower.vision_model.",
// "vision_tower.", "model.vision_tower."; the projector under "multi_modal_projector." or
// "model.multi_modal_projector."). `text_hidden`: the language model's hidden size.
StatusOr<VisionWeights> BuildVisionWeights(const VisionConfig& config, int32_t text_hidden,
                                           const TensorSet& set, DType dtype);

}  // namespace ite
