#include "scheduler/image_intake.h"

namespace ite {

uint64_t ImageHash(std::string_view bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

int32_t ImageKey(uint64_t hash, int32_t i) {
  // splitmix64 of (hash, position): each position draws 31 fresh bits, so two different images
  // agree on their first two positions only with probability 2^-62.
  uint64_t z = hash + 0x9e3779b97f4a7c15ull * (static_cast<uint64_t>(i) + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return -1 - static_cast<int32_t>(z & 0x7fffffff);
}

StatusOr<ImageIntake> ImageIntake::Create(const std::string& model_dir, const ModelInfo& info,
                                          const ImageIntakeOptions& options) {
  if (info.image_tokens <= 0 || info.image_token_id < 0)
    return FailedPrecondition("the model has no vision tower");
  ITE_ASSIGN_OR_RETURN(ImageProcessorConfig processor, LoadImageProcessorConfig(model_dir));
  if (processor.out_height() != info.image_size || processor.out_width() != info.image_size)
    return InvalidArgument(
        "{}: the image processor makes {}x{} pixel values, the vision tower takes {}x{}", model_dir,
        processor.out_height(), processor.out_width(), info.image_size, info.image_size);
  return ImageIntake(processor, info, options);
}

StatusOr<ImageIntake::Prepared> ImageIntake::Prepare(std::string_view bytes,
                                                     std::string_view mime_type,
                                                     const std::string& what) const {
  StatusOr<RgbImage> image = DecodeImage(bytes, mime_type, options_.limits);
  if (!image.ok()) return InvalidArgument("{}: {}", what, image.status().message());
  StatusOr<std::vector<float>> pixels = PreprocessImage(*image, processor_);
  if (!pixels.ok()) return InvalidArgument("{}: {}", what, pixels.status().message());
  Prepared p;
  p.pixels = std::make_shared<const std::vector<float>>(std::move(pixels).value());
  p.hash = ImageHash(bytes);
  return p;
}

StatusOr<std::vector<PromptImage>> ImageIntake::Expand(std::vector<int32_t>* tokens,
                                                       const std::vector<Prepared>& images) const {
  size_t marks = 0;
  for (int32_t t : *tokens) marks += t == info_.image_token_id;
  if (marks != images.size())
    return InvalidArgument("prompt: {} image placeholders for {} images", marks, images.size());
  if (images.empty()) return std::vector<PromptImage>();
  std::vector<int32_t> out;
  out.reserve(tokens->size() + images.size() * info_.image_tokens);
  std::vector<PromptImage> placed;
  for (int32_t t : *tokens) {
    if (t != info_.image_token_id) {
      out.push_back(t);
      continue;
    }
    const Prepared& im = images[placed.size()];
    placed.push_back({static_cast<int32_t>(out.size()), im.pixels});
    for (int32_t i = 0; i < info_.image_tokens; ++i) out.push_back(ImageKey(im.hash, i));
  }
  *tokens = std::move(out);
  return placed;
}

}  // namespace ite
