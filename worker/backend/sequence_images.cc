#include "worker/backend/sequence_images.h"

#include <algorithm>

namespace ite {

Status SequenceImages::Set(int64_t seq_id, std::vector<StepImage> images,
                           std::span<const int32_t> context) {
  seqs_.erase(seq_id);
  if (images.empty()) return Status::Ok();
  if (vision_ == nullptr)
    return InvalidArgument("seq {}: {} images for a model without a vision tower", seq_id,
                           images.size());
  const int64_t pixels = int64_t{3} * vision_->image_size * vision_->image_size;
  const int32_t n = vision_->image_tokens();
  int64_t next_free = 0;
  std::vector<Image> out;
  for (size_t i = 0; i < images.size(); ++i) {
    StepImage& im = images[i];
    if (static_cast<int64_t>(im.pixels.size()) != pixels)
      return InvalidArgument("seq {} image {}: {} pixel values, the vision tower takes 3x{}x{}",
                             seq_id, i, im.pixels.size(), vision_->image_size, vision_->image_size);
    const int64_t end = int64_t{im.position} + n;
    if (im.position < next_free || end > static_cast<int64_t>(context.size()))
      return InvalidArgument(
          "seq {} image {}: positions [{}, {}) overlap another image or leave "
          "the prompt of {}",
          seq_id, i, im.position, end, context.size());
    for (int64_t p = im.position; p < end; ++p) {
      if (context[p] != vision_->image_token_id)
        return InvalidArgument(
            "seq {} image {}: prompt position {} holds token {}, not the image "
            "token {}",
            seq_id, i, p, context[p], vision_->image_token_id);
    }
    next_free = end;
    out.push_back({im.position, std::move(im.pixels), nullptr});
  }
  seqs_[seq_id] = std::move(out);
  return Status::Ok();
}

Status SequenceImages::Prepare(StepPlan* plan, const Encoder& encode) {
  if (seqs_.empty()) return Status::Ok();
  const int32_t n = vision_->image_tokens();
  for (const PlannedChunk& ch : plan->chunks) {
    if (ch.decode) continue;
    auto it = seqs_.find(ch.seq_id);
    if (it == seqs_.end()) continue;
    for (Image& im : it->second) {
      const int32_t lo = std::max(im.position, ch.start_pos);
      const int32_t hi = std::min(im.position + n, ch.start_pos + ch.len);
      if (lo >= hi) continue;
      if (im.features == nullptr) {
        ITE_ASSIGN_OR_RETURN(im.features, encode(im.pixels));
        im.pixels = {};
      }
      for (int32_t r = lo; r < hi; ++r) {
        const int32_t token = plan->tokens[ch.row0 + r - ch.start_pos];
        if (token != vision_->image_token_id)
          return InvalidArgument("seq {}: position {} of an image holds token {}", ch.seq_id, r,
                                 token);
      }
      const auto* base = static_cast<const uint8_t*>(im.features.get());
      plan->embeds.push_back({ch.row0 + (lo - ch.start_pos), hi - lo,
                              base + static_cast<size_t>(lo - im.position) * row_bytes_});
    }
  }
  return Status::Ok();
}

}  // namespace ite
