#include "worker/backend/host_sequences.h"

namespace ite {

void HostSequences::Add(int64_t seq_id, const SamplingParams& params,
                        std::span<const int32_t> context, int32_t generated) {
  Seq& s = seqs_[seq_id];
  s.sampler = std::make_unique<SequenceSampler>(params, context, generated);
  s.last_token = -1;
}

Status HostSequences::FeedDecodes(StepPlan* plan) const {
  for (const PlannedChunk& ch : plan->chunks) {
    if (!ch.sample && !ch.decode) continue;
    auto it = seqs_.find(ch.seq_id);
    if (it == seqs_.end())
      return InvalidArgument("step: seq {} samples but was never added", ch.seq_id);
    if (!ch.decode) continue;
    if (it->second.last_token < 0)
      return InvalidArgument("step: decode of seq {} which has no sampled token", ch.seq_id);
    plan->tokens[ch.row0] = it->second.last_token;
  }
  return Status::Ok();
}

void HostSequences::SampleChunks(const StepPlan& plan, const float* logits, int32_t vocab,
                                 ForwardOutput* out) {
  const size_t v = static_cast<size_t>(vocab);
  for (const PlannedChunk& ch : plan.chunks) {
    if (ch.logits != LogitsMode::kNone) {
      const int32_t first = ch.logits == LogitsMode::kAll ? 0 : ch.logit_rows - 1;
      const float* src = logits + (ch.logit_row0 + first) * v;
      out->logits.insert(out->logits.end(), src, logits + (ch.logit_row0 + ch.logit_rows) * v);
    }
    auto it = seqs_.find(ch.seq_id);
    if (!ch.sample) {
      if (it != seqs_.end()) it->second.last_token = -1;
      continue;
    }
    const float* row = logits + (ch.logit_row0 + ch.logit_rows - 1) * v;
    SampleResult r = it->second.sampler->Sample(std::span<const float>(row, v));
    it->second.last_token = r.token;
    out->samples.push_back(std::move(r));
  }
}

}  // namespace ite
