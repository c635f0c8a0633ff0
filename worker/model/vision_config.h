// The vision side of a LLaVA-1.5 model (LlavaForConditionalGeneration): a CLIP vision tower and
// the projector that maps its features into the language model's embedding space. Read from
// config.json's `vision_config` and the LLaVA keys beside it.
#pragma once

#include <cstdint>

namespace ite {

// Element-wise activations of the vision tower and the projector.
enum class ActFn {
  kGelu,       // x * Phi(x), the erf form (nn.GELU, ACT2FN["gelu"])
  kQuickGelu,  // x * sigmoid(1.702 x) (CLIP's "quick_gelu")
};

struct VisionConfig {
  int32_t hidden_size = 0;
  int32_t intermediate_size = 0;
  int32_t num_layers = 0;  // layers in the checkpoint
  int32_t num_heads = 0;
  int32_t image_size = 0;  // square input, pixels per side
  int32_t patch_size = 0;
  int32_t num_channels = 3;
  float layer_norm_eps = 1e-5f;
  ActFn act = ActFn::kQuickGelu;
  // The features are the output of the first `feature_layers` encoder layers (transformers'
  // hidden_states[vision_feature_layer]; 0 is the pre-layernormed embeddings).
  int32_t feature_layers = 0;
  bool drop_cls = true;  // vision_feature_select_strategy "default": the class token is dropped
  ActFn projector_act = ActFn::kGelu;
  bool projector_bias = true;
  int32_t image_token_id = -1;  // the prompt token each image position holds

  int32_t head_dim() const { return hidden_size / num_heads; }
  int32_t patches_per_side() const { return image_size / patch_size; }
  int32_t num_patches() const { return patches_per_side() * patches_per_side(); }
  int32_t num_positions() const { return num_patches() + 1; }  // with the class token
  // Embeddings each image puts into the prompt (576 for LLaVA-1.5).
  int32_t image_tokens() const { return num_patches() + (drop_cls ? 0 : 1); }
  int32_t patch_dim() const { return num_channels * patch_size * patch_size; }
};

}  // namespace ite
