// How a Llama-family model splits across the `size` ranks of a tensor-parallel group,
// Megatron-style: Q|K|V and gate|up column-parallel (each rank its heads and MLP columns), O and
// down row-parallel (each rank's partial product, summed by an all-reduce), the LM head
// vocab-parallel (each rank a run of vocabulary rows; the ranks' logits are gathered before
// sampling). Embedding and norms are replicated.
//
// KV heads: with kv_heads >= size each rank holds kv_heads / size of them; with fewer KV heads
// than ranks each is replicated on size / kv_heads consecutive ranks (the ranks whose query
// heads read it).
#pragma once

#include <cstdint>

#include "common/status.h"
#include "worker/model/model_config.h"

namespace ite {

struct ShardPlan {
  int32_t rank = 0;
  int32_t size = 1;
  int32_t q_head_begin = 0, num_heads = 0;      // query heads [begin, begin + n)
  int32_t kv_head_begin = 0, num_kv_heads = 0;  // KV heads [begin, begin + n)
  int32_t inter_begin = 0, intermediate = 0;    // MLP columns [begin, begin + n)
  int32_t vocab_begin = 0, vocab_rows = 0;      // LM head rows [begin, begin + n)
};

// The share of rank `rank` of `size`. Fails, naming the numbers, when the model cannot split
// that way: heads or intermediate_size not divisible by size, KV heads neither a multiple nor a
// divisor of size, fewer vocabulary rows than ranks, a vision tower.
StatusOr<ShardPlan> PlanShard(const ModelConfig& config, int32_t rank, int32_t size);

// The config the rank's backend runs: its head counts and intermediate size, the shard recorded
// in config.shard. `config` is the whole model's.
ModelConfig ShardConfig(const ModelConfig& config, const ShardPlan& plan);

}  // namespace ite
