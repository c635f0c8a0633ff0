// The images of each sequence's prompt on a backend (LLaVA): their pixel values until the vision
// tower has run on them, then their features, kept until the sequence is released. Shared by
// the CPU and CUDA backends; where the features live (host or device memory) is the backend's
// business, through the encode callback.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/protocol/step.h"
#include "common/status.h"
#include "worker/backend/step_plan.h"
#include "worker/model/vision_config.h"

namespace ite {

class SequenceImages {
 public:
  // Runs the vision tower on pixels [3, S, S] into fresh memory holding [image_tokens, hidden]
  // in the ops' activation dtype; `row_bytes` apart.
  using Encoder = std::function<StatusOr<std::shared_ptr<void>>(std::span<const float> pixels)>;

  // `vision`: null for a text-only model (any image is then an error).
  SequenceImages(const VisionConfig* vision, size_t row_bytes)
      : vision_(vision), row_bytes_(row_bytes) {}

  // Replaces the sequence's images. Each must have the tower's pixel count and sit inside the
  // prompt `context` on positions holding the image token, in order, without overlap.
  Status Set(int64_t seq_id, std::vector<StepImage> images, std::span<const int32_t> context);
  void Release(int64_t seq_id) { seqs_.erase(seq_id); }
  void Clear() { seqs_.clear(); }

  // For every prefill chunk of `plan` that reaches image positions: encodes the images not
  // encoded yet and adds the EmbedRuns that put their features on those rows.
  Status Prepare(StepPlan* plan, const Encoder& encode);

 private:
  struct Image {
    int32_t position = 0;
    std::vector<float> pixels;       // freed once encoded
    std::shared_ptr<void> features;  // null until encoded
  };
  const VisionConfig* vision_;
  size_t row_bytes_;
  std::unordered_map<int64_t, std::vector<Image>> seqs_;
};

}  // namespace ite
