// A Backend runs the model on one device (CPU or one GPU) against its own paged KV pool and
// samples there: a step goes in, sampled token ids come out. Each sequence's sampling state
// (parameters, RNG position, penalty counts) and its last sampled token live in the backend, so
// a decode step needs no token from the caller, and on a GPU the logits never leave the device.
// KV layout, per layer, for K and for V: [num_blocks, block_size, num_kv_heads, head_dim].
//
// Steps are pipelined: Submit() may return before the device has run the step (the CUDA backend
// enqueues it behind the previous one, whose sampled tokens it reads on the device), and
// Collect() returns the oldest submitted step's output, in order. Thread safety: Submit and
// Collect may run at the same time on two threads (one each); everything else is called by one
// thread at a time, between Submit calls.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/protocol/step.h"
#include "common/status.h"
#include "worker/backend/forward_batch.h"
#include "worker/model/model_config.h"

namespace ite {

struct KvCacheOptions {
  int32_t block_size = 16;  // tokens per block
  int32_t num_blocks = 0;   // 0: derive from max_kv_bytes
  int64_t max_kv_bytes = 512ll << 20;
  // CPU: K/V stored in bf16 instead of fp32 (twice the blocks in max_kv_bytes). The CUDA pool
  // is always in the model's dtype.
  bool cpu_bf16 = false;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int32_t block_size() const = 0;
  virtual int32_t num_blocks() const = 0;
  // e.g. "cpu", "cuda:0 NVIDIA H200"
  virtual std::string device() const = 0;

  // (Re)creates a sequence's sampling state. `context`: the prompt, then the last `generated`
  // tokens it produced before a preemption (they count for penalties and the seeded draws
  // resume past them). params must have passed Validate().
  virtual Status AddSequence(int64_t seq_id, const SamplingParams& params,
                             std::span<const int32_t> context, int32_t generated) = 0;
  // The images of a sequence's prompt (after AddSequence; replaces earlier ones). `context` is
  // the prompt AddSequence got. A backend without a vision tower refuses any image.
  virtual Status SetSequenceImages(int64_t seq_id, std::vector<StepImage> images,
                                   std::span<const int32_t> context) {
    if (images.empty()) return Status::Ok();
    return InvalidArgument("seq {}: this backend takes no images", seq_id);
  }
  virtual void ReleaseSequence(int64_t seq_id) = 0;
  virtual void ClearSequences() = 0;

  // Copies whole KV blocks (all layers), src[i] -> dst[i]; for copy-on-write of shared blocks.
  // Ordered with the steps: it happens after every step submitted before it.
  virtual Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) = 0;

  // Validates and starts a step; `batch` need not outlive the call. Invalid block ids,
  // positions past the context, token ids past the vocabulary or a decode of a sequence with
  // no sampled token are an error, and leave nothing submitted.
  virtual Status Submit(const ForwardBatch& batch) = 0;
  // The output of the oldest submitted step that is not collected yet (waits for it).
  virtual StatusOr<ForwardOutput> Collect() = 0;

  // True once the device can run no more steps (a sticky CUDA error: the context is lost). The
  // process must then be restarted; the worker exits so that its supervisor does that.
  virtual bool failed() const { return false; }

  // Submit + Collect.
  StatusOr<ForwardOutput> Run(const ForwardBatch& batch) {
    ITE_RETURN_IF_ERROR(Submit(batch));
    return Collect();
  }
};

// Runs `batch` and keeps only the logits it returns.
inline Status ForwardLogits(Backend& backend, const ForwardBatch& batch,
                            std::vector<float>* logits) {
  ITE_ASSIGN_OR_RETURN(ForwardOutput out, backend.Run(batch));
  *logits = std::move(out.logits);
  return Status::Ok();
}

}  // namespace ite
