// RoPE (neox / rotate_half layout, per-token positions, any precomputed inverse frequencies such
// as Llama-3 scaled ones) fused with the write of the new tokens' K and V into the paged cache.
#pragma once

#include <cstdint>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

struct RopeKvWriteArgs {
  // Fused QKV projection output [num_tokens, (num_heads + 2 * num_kv_heads) * head_dim]:
  // per token q heads, then k heads, then v heads. Q is rotated in place; K is rotated and
  // written to the cache (not back to qkv); V is copied to the cache.
  void* qkv = nullptr;
  const int32_t* positions = nullptr;  // [num_tokens] device: rotary position of each token
  // [num_tokens] device: cache slot = block_id * block_size + position % block_size;
  // a negative slot skips the cache write (padding tokens).
  const int32_t* slots = nullptr;
  const float* inv_freq = nullptr;  // [head_dim / 2] device (cpu::RopeInvFreq computes it)
  int32_t num_tokens = 0;
  int32_t num_heads = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;  // multiple of 16
  PagedKvCache cache;    // dtype, num_kv_heads and head_dim must match
};

Status RopeKvWrite(const RopeKvWriteArgs& args, cudaStream_t stream);

}  // namespace ite::kernels
