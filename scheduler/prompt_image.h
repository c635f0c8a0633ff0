// The images of a prompt as the scheduler carries them (no gRPC, no Abseil: ite-generate uses it
// too).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace ite {

// An image of a LLaVA prompt, decoded and preprocessed: its embeddings take prompt positions
// [position, position + the model's image tokens). Those positions of prompt_tokens hold cache
// keys derived from the image's bytes (negative, so never a real token): the prefix cache then
// shares the positions between requests with the same image and never between different ones.
// The worker sees the model's image token there instead.
struct PromptImage {
  int32_t position = 0;
  std::shared_ptr<const std::vector<float>> pixels;  // [3, size, size]
};

}  // namespace ite
