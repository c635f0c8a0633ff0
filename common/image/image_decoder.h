// Decodes the images a request carries (PNG, JPEG, GIF: the first frame; still WebP where the
// build has libwebp) into 8-bit RGB, within limits on the encoded size and on the pixel count.
// The pixel count is read from the header before anything is decoded, so an image claiming huge
// dimensions is refused without allocating them. Everything that is not a whole, supported,
// in-limits image comes back as InvalidArgument saying why (unknown format, truncated or corrupt
// data, too large); never a crash. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ite {

// Interleaved 8-bit RGB, row-major: pixel (y, x) channel c at rgb[(y * width + x) * 3 + c].
struct RgbImage {
  int32_t width = 0;
  int32_t height = 0;
  std::vector<uint8_t> rgb;
};

struct ImageLimits {
  int64_t max_bytes = 20ll << 20;   // encoded size
  int64_t max_pixels = 40ll << 20;  // width * height
};

// The format the bytes start with: "image/png", "image/jpeg", "image/gif", "image/webp", or ""
// when none (webp is named even where the build cannot decode it, to say so).
std::string SniffImageType(std::string_view bytes);

// True for the MIME types DecodeImage accepts (lower case; image/jpg is taken for image/jpeg).
bool IsSupportedImageType(std::string_view mime_type);
// Those types, for messages: "image/png, image/jpeg, image/gif[, image/webp]".
const char* SupportedImageTypes();

// `mime_type`, when not empty, must name the format the bytes hold (image/jpg is taken for
// image/jpeg). Alpha is dropped and grey or palette images become RGB, as PIL's
// convert("RGB") does.
StatusOr<RgbImage> DecodeImage(std::string_view bytes, std::string_view mime_type,
                               const ImageLimits& limits);

}  // namespace ite
