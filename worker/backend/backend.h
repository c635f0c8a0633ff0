// A Backend runs the model on one device (CPU or one GPU) against its own paged KV pool.
// KV layout, per layer, for K and for V: [num_blocks, block_size, num_kv_heads, head_dim].
// A backend is used from one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "worker/backend/forward_batch.h"
#include "worker/model/model_config.h"

namespace ite {

struct KvCacheOptions {
  int32_t block_size = 16;  // tokens per block
  int32_t num_blocks = 0;   // 0: derive from max_kv_bytes
  int64_t max_kv_bytes = 512ll << 20;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual const ModelConfig& config() const = 0;
  virtual int32_t block_size() const = 0;
  virtual int32_t num_blocks() const = 0;

  // Runs every chunk of `batch`, writing their K/V into the named blocks. `logits` is resized to
  // [rows, vocab] fp32, one row per requested logit in chunk order (kLast: 1, kAll: tokens).
  // Invalid block ids, positions past the context or token ids past the vocab are an error.
  virtual Status Forward(const ForwardBatch& batch, std::vector<float>* logits) = 0;

  // Copies whole KV blocks (all layers), src[i] -> dst[i]; for copy-on-write of shared blocks.
  virtual Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) = 0;
};

}  // namespace ite
