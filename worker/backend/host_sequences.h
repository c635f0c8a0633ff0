// The sequence state of a backend that samples on the host (the CPU backend, the fake one): a
// SequenceSampler (RNG, penalty counts) and the last sampled token per sequence.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>

#include "worker/backend/forward_batch.h"
#include "worker/backend/step_plan.h"

namespace ite {

// Idle time between the steps of a backend that runs each step inside Submit.
class HostStepTimer {
 public:
  // Microseconds since the previous step ended (0 before the first).
  int64_t Begin() {
    const auto now = std::chrono::steady_clock::now();
    return has_run_ ? std::chrono::duration_cast<std::chrono::microseconds>(now - end_).count() : 0;
  }
  void End() {
    end_ = std::chrono::steady_clock::now();
    has_run_ = true;
  }

 private:
  std::chrono::steady_clock::time_point end_{};
  bool has_run_ = false;
};

class HostSequences {
 public:
  void Add(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
           int32_t generated);
  void Release(int64_t seq_id) { seqs_.erase(seq_id); }
  void Clear() { seqs_.clear(); }

  // Checks that every sampling chunk names a known sequence and every decode one that has a
  // sampled token, then writes those tokens into plan->tokens.
  Status FeedDecodes(StepPlan* plan) const;

  // From logits [plan.logit_rows, vocab]: samples each sampling chunk from its last row, copies
  // the rows its LogitsMode asks for, and forgets the last token of a chunk that samples nothing
  // (a decode must then bring its token).
  void SampleChunks(const StepPlan& plan, const float* logits, int32_t vocab, ForwardOutput* out);

 private:
  struct Seq {
    std::unique_ptr<SequenceSampler> sampler;
    int32_t last_token = -1;
  };
  std::unordered_map<int64_t, Seq> seqs_;
};

}  // namespace ite
