// Images into a LLaVA prompt: each image of a request is decoded (within byte and pixel limits)
// and preprocessed as the model folder's image processor says, and each image token of the
// tokenized prompt becomes the model's image positions (576 for LLaVA-1.5), holding cache keys
// made from the image's bytes (see PromptImage). Errors are InvalidArgument naming the image.
//
// Thread safety: const methods only.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/image/image_decoder.h"
#include "common/image/image_processor.h"
#include "common/protocol/model_info.h"
#include "common/status.h"
#include "scheduler/prompt_image.h"

namespace ite {

struct ImageIntakeOptions {
  ImageLimits limits;      // per image
  int32_t max_images = 8;  // per request
};

class ImageIntake {
 public:
  // `model_dir`: the model folder (its processor_config.json or preprocessor_config.json);
  // `info`: what the workers report (image token, positions per image, pixel size).
  static StatusOr<ImageIntake> Create(const std::string& model_dir, const ModelInfo& info,
                                      const ImageIntakeOptions& options);

  struct Prepared {
    std::shared_ptr<const std::vector<float>> pixels;
    uint64_t hash = 0;  // of the encoded bytes
  };
  // Decodes and preprocesses one image; `what` names it in errors ("images[0]").
  StatusOr<Prepared> Prepare(std::string_view bytes, std::string_view mime_type,
                             const std::string& what) const;
  // Expands each image token of `tokens` to the image's positions and keys, in order; there
  // must be as many image tokens as images.
  StatusOr<std::vector<PromptImage>> Expand(std::vector<int32_t>* tokens,
                                            const std::vector<Prepared>& images) const;

  int32_t image_token_id() const { return info_.image_token_id; }
  int32_t max_images() const { return options_.max_images; }

 private:
  ImageIntake(ImageProcessorConfig processor, ModelInfo info, ImageIntakeOptions options)
      : processor_(processor), info_(std::move(info)), options_(options) {}

  ImageProcessorConfig processor_;
  ModelInfo info_;
  ImageIntakeOptions options_;
};

// A 64-bit hash of an image's bytes (FNV-1a), and the cache key of its position `i`.
uint64_t ImageHash(std::string_view bytes);
int32_t ImageKey(uint64_t hash, int32_t i);

}  // namespace ite
