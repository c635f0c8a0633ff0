// The LLaVA / CLIP image processor of transformers (LlavaImageProcessor, torchvision backend),
// restated: optional pad to square with the mean colour, resize (bicubic with antialiasing, in
// the 8-bit integer arithmetic torch uses for uint8 images on the CPU, as PIL does), centre crop,
// rescale and normalise. Settings come from the model folder's processor_config.json
// ("image_processor", what transformers 5 writes) or preprocessor_config.json.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/image/image_decoder.h"
#include "common/status.h"

namespace ite {

struct ImageProcessorConfig {
  bool do_pad = false;  // pad to a square with the mean colour first
  bool do_resize = true;
  // Resize target: the shorter side to `shortest_edge` (aspect kept), or exactly height x width.
  int32_t shortest_edge = 0;
  int32_t resize_height = 0, resize_width = 0;
  bool do_center_crop = true;
  int32_t crop_height = 0, crop_width = 0;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<double, 3> mean{0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> std{0.26862954, 0.26130258, 0.27577711};

  // The [3, H, W] the processor produces for any input (crop size, or the fixed resize size).
  int32_t out_height() const { return do_center_crop ? crop_height : resize_height; }
  int32_t out_width() const { return do_center_crop ? crop_width : resize_width; }
};

// From a parsed processor_config.json (the "image_processor" object) or
// preprocessor_config.json; `path` names the file in errors. Only bicubic resampling (3) and
// fixed output sizes are supported; anything else is an error naming the key.
StatusOr<ImageProcessorConfig> ImageProcessorConfigFromJson(const nlohmann::json& j,
                                                            const std::string& path);

// Reads processor_config.json, or else preprocessor_config.json, from the model folder `dir`.
StatusOr<ImageProcessorConfig> LoadImageProcessorConfig(const std::string& dir);

// Pixel values [3, out_height, out_width], channel-major, float32 (transformers' pixel_values).
// An aspect ratio so extreme that the padded square or the resized image would pass
// kMaxWorkingPixels is an InvalidArgument (transformers would try to allocate it).
inline constexpr int64_t kMaxWorkingPixels = 64ll << 20;
StatusOr<std::vector<float>> PreprocessImage(const RgbImage& image,
                                             const ImageProcessorConfig& config);

}  // namespace ite
