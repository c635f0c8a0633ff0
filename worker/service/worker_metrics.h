// What an ite-worker reports on its own /metrics (Prometheus text), as the worker sees its
// steps: forward steps and their time, sequences per step, token rows computed (prefill and
// decode), tokens sampled, device idle time between steps, sequences joining, rejoining after a
// preemption (the scheduler recomputes them) and released, copy-on-write block copies, rejected
// steps, and at scrape time the KV pool: blocks that live sequences' tables name, and the rest.
// The scheduler owns cache policy, so blocks only its prefix cache holds count as free here and
// evictions are not seen at all; its own /metrics has that view.
//
// Threads: WorkerEngine calls the On* methods from its Submit / Collect threads; Render from
// any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "common/prometheus.h"
#include "common/protocol/step.h"

namespace ite {

// The engine's state at scrape time.
struct WorkerMetricsSnapshot {
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_used = 0;  // distinct blocks in the live sequences' tables
  int64_t sequences = 0;
  int32_t pending_steps = 0;  // submitted, not collected yet
};

class WorkerMetrics {
 public:
  WorkerMetrics();

  // Token rows of a step: prefill (prompt and recomputed tokens) and decode (sampled tokens).
  struct Rows {
    int64_t prefill = 0;
    int64_t decode = 0;
  };
  // A step the engine accepted: its token rows, joins, releases and copies.
  void OnSubmitted(const StepRequest& request, Rows rows);
  void OnRejected() { ++rejected_; }
  // A forward step came back (`sequences`: how many it ran).
  void OnCollected(const StepResult& result, int32_t sequences);
  void OnCleared() { ++clears_; }

  std::string Render(const WorkerMetricsSnapshot& snapshot) const;

 private:
  std::atomic<int64_t> steps_{0};
  std::atomic<int64_t> rejected_{0};
  std::atomic<int64_t> prefill_tokens_{0};
  std::atomic<int64_t> decode_tokens_{0};
  std::atomic<int64_t> sampled_tokens_{0};
  std::atomic<int64_t> joins_{0};
  std::atomic<int64_t> rejoins_{0};
  std::atomic<int64_t> releases_{0};
  std::atomic<int64_t> block_copies_{0};
  std::atomic<int64_t> clears_{0};
  std::atomic<int64_t> idle_us_{0};
  Histogram step_seconds_;
  Histogram batch_size_;
};

}  // namespace ite
