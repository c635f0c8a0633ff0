#include "worker/model/tensor_parallel.h"

namespace ite {

StatusOr<ShardPlan> PlanShard(const ModelConfig& c, int32_t rank, int32_t size) {
  if (size < 1 || rank < 0 || rank >= size)
    return InvalidArgument("tensor parallelism: rank {} of {} ranks", rank, size);
  ShardPlan p;
  if (size == 1) {  // the whole model, whatever its shape (the loader validates that)
    p.num_heads = c.num_heads;
    p.num_kv_heads = c.num_kv_heads;
    p.intermediate = c.intermediate_size;
    p.vocab_rows = c.vocab_size;
    return p;
  }
  if (c.vision)
    return Unimplemented("tensor parallelism: models with a vision tower (LLaVA) run on one rank");
  if (c.num_heads % size != 0)
    return InvalidArgument("tensor parallel size {} does not divide the {} attention heads of {}",
                           size, c.num_heads, c.name);
  if (c.num_kv_heads % size != 0 && size % c.num_kv_heads != 0)
    return InvalidArgument(
        "tensor parallel size {} and the {} KV heads of {}: one must divide the other", size,
        c.num_kv_heads, c.name);
  if (c.intermediate_size % size != 0)
    return InvalidArgument("tensor parallel size {} does not divide the intermediate size {} of {}",
                           size, c.intermediate_size, c.name);
  if (c.vocab_size < size)
    return InvalidArgument("tensor parallel size {} exceeds the vocabulary ({})", size,
                           c.vocab_size);
  p.rank = rank;
  p.size = size;
  p.num_heads = c.num_heads / size;
  p.q_head_begin = rank * p.num_heads;
  if (c.num_kv_heads >= size) {
    p.num_kv_heads = c.num_kv_heads / size;
    p.kv_head_begin = rank * p.num_kv_heads;
  } else {  // size / kv ranks share each KV head; their query heads are its GQA group
    p.num_kv_heads = 1;
    p.kv_head_begin = rank / (size / c.num_kv_heads);
  }
  p.intermediate = c.intermediate_size / size;
  p.inter_begin = rank * p.intermediate;
  // An uneven vocabulary splits as evenly as it can (rows differ by at most one).
  const int64_t v = c.vocab_size;
  p.vocab_begin = static_cast<int32_t>(rank * v / size);
  p.vocab_rows = static_cast<int32_t>((rank + 1) * v / size) - p.vocab_begin;
  return p;
}

ModelConfig ShardConfig(const ModelConfig& config, const ShardPlan& plan) {
  ModelConfig c = config;
  c.num_heads = plan.num_heads;
  c.num_kv_heads = plan.num_kv_heads;
  c.intermediate_size = plan.intermediate;
  c.shard.rank = plan.rank;
  c.shard.size = plan.size;
  c.shard.lm_head_begin = plan.vocab_begin;
  c.shard.lm_head_rows = plan.size > 1 ? plan.vocab_rows : 0;
  return c;
}

}  // namespace ite
