#include "worker/backend/step_plan.h"

#include <algorithm>

namespace ite {

Status PlanStep(const ForwardBatch& batch, const PlanLimits& limits, StepPlan* plan) {
  plan->chunks.clear();
  plan->tokens.clear();
  plan->positions.clear();
  plan->logit_rows.clear();
  plan->embeds.clear();
  plan->max_q_len = plan->max_kv_len = plan->max_blocks = 0;
  plan->decode_only = true;
  if (batch.chunks.empty()) return InvalidArgument("step: empty batch");
  for (size_t i = 0; i < batch.chunks.size(); ++i) {
    const SequenceChunk& ch = batch.chunks[i];
    PlannedChunk p;
    p.seq_id = ch.seq_id;
    p.row0 = plan->num_rows();
    p.len = ch.num_tokens();
    p.start_pos = ch.start_pos;
    p.block_table = ch.block_table;
    p.decode = ch.tokens.empty();
    p.sample = ch.sample;
    p.logits = ch.logits;
    if (ch.start_pos < 0) return InvalidArgument("step: chunk {} start_pos {}", i, ch.start_pos);
    if (p.decode && !ch.sample)
      return InvalidArgument("step: chunk {} (seq {}) is a decode that samples nothing", i,
                             ch.seq_id);
    const int64_t end = int64_t{ch.start_pos} + p.len;
    if (end > limits.max_position)
      return OutOfRange("step: chunk {} (seq {}) reaches position {} past the context of {}", i,
                        ch.seq_id, end, limits.max_position);
    const int64_t need = (end + limits.block_size - 1) / limits.block_size;
    if (static_cast<int64_t>(ch.block_table.size()) < need)
      return InvalidArgument("step: chunk {} (seq {}) covers {} positions with {} blocks of {}", i,
                             ch.seq_id, end, ch.block_table.size(), limits.block_size);
    for (int64_t b = 0; b < need; ++b) {
      const int32_t id = ch.block_table[b];
      if (id < 0 || id >= limits.num_blocks)
        return InvalidArgument("step: chunk {} (seq {}) block_table[{}] = {} outside [0, {})", i,
                               ch.seq_id, b, id, limits.num_blocks);
    }
    for (size_t t = 0; t < ch.tokens.size(); ++t) {
      if (ch.tokens[t] < 0 || ch.tokens[t] >= limits.vocab_size)
        return InvalidArgument("step: chunk {} (seq {}) token {} = {} outside the vocabulary of {}",
                               i, ch.seq_id, t, ch.tokens[t], limits.vocab_size);
    }
    if (p.decode) {
      plan->tokens.push_back(-1);
    } else {
      plan->tokens.insert(plan->tokens.end(), ch.tokens.begin(), ch.tokens.end());
    }
    for (int32_t t = 0; t < p.len; ++t) plan->positions.push_back(ch.start_pos + t);
    p.logit_row0 = static_cast<int32_t>(plan->logit_rows.size());
    if (ch.logits == LogitsMode::kAll) {
      p.logit_rows = p.len;
    } else if (ch.sample || ch.logits == LogitsMode::kLast) {
      p.logit_rows = 1;
    }
    for (int32_t r = p.len - p.logit_rows; r < p.len; ++r) plan->logit_rows.push_back(p.row0 + r);
    plan->max_q_len = std::max(plan->max_q_len, p.len);
    plan->max_kv_len = std::max(plan->max_kv_len, p.kv_len());
    plan->max_blocks = std::max(plan->max_blocks, static_cast<int32_t>(need));
    plan->decode_only = plan->decode_only && p.len == 1;
    plan->chunks.push_back(p);
  }
  return Status::Ok();
}

}  // namespace ite
