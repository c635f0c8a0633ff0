#include "worker/service/worker_metrics.h"

#include <fmt/format.h>

namespace ite {

WorkerMetrics::WorkerMetrics()
    : step_seconds_(
          {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}),
      batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256, 512}) {}

void WorkerMetrics::OnSubmitted(const StepRequest& request, Rows rows) {
  releases_ += static_cast<int64_t>(request.release_seq_ids.size());
  block_copies_ += static_cast<int64_t>(request.copy_blocks.size());
  prefill_tokens_ += rows.prefill;
  decode_tokens_ += rows.decode;
  for (const StepSequence& s : request.seqs) {
    if (s.sampling.has_value()) {
      // A sequence that had generated tokens before joining was preempted and is recomputed.
      ++(s.generated_tokens > 0 ? rejoins_ : joins_);
    }
  }
}

void WorkerMetrics::OnCollected(const StepResult& result, int32_t sequences) {
  ++steps_;
  sampled_tokens_ += static_cast<int64_t>(result.outputs.size());
  idle_us_ += result.idle_us;
  step_seconds_.Observe(static_cast<double>(result.forward_us) * 1e-6);
  batch_size_.Observe(sequences);
}

std::string WorkerMetrics::Render(const WorkerMetricsSnapshot& snap) const {
  PrometheusWriter w;
  auto counter = [&w](const char* name, const char* help, const std::atomic<int64_t>& v) {
    w.Family(name, "counter", help);
    w.Sample(name, "", static_cast<double>(v.load()));
  };
  counter("ite_worker_steps_total", "Forward steps run.", steps_);
  counter("ite_worker_rejected_steps_total", "Steps refused as invalid (nothing ran).", rejected_);
  w.Family("ite_worker_step_seconds", "histogram",
           "Time per forward step, from submission to its sampled tokens.");
  step_seconds_.Write(w, "ite_worker_step_seconds");
  w.Family("ite_worker_batch_size", "histogram", "Sequences per forward step.");
  batch_size_.Write(w, "ite_worker_batch_size");
  w.Family("ite_worker_tokens_total", "counter",
           "Token rows computed: prompt (and recompute) chunks, and decodes.");
  w.Sample("ite_worker_tokens_total", "phase=\"prefill\"",
           static_cast<double>(prefill_tokens_.load()));
  w.Sample("ite_worker_tokens_total", "phase=\"decode\"",
           static_cast<double>(decode_tokens_.load()));
  counter("ite_worker_sampled_tokens_total", "Tokens sampled.", sampled_tokens_);
  w.Family("ite_worker_idle_seconds_total", "counter",
           "Device idle time between consecutive steps.");
  w.Sample("ite_worker_idle_seconds_total", "", static_cast<double>(idle_us_.load()) * 1e-6);
  counter("ite_worker_sequence_joins_total", "Sequences that joined with a new prompt.", joins_);
  counter("ite_worker_preemption_rejoins_total",
          "Sequences that rejoined after a preemption (their context recomputed).", rejoins_);
  counter("ite_worker_sequence_releases_total",
          "Sequences released (finished, cancelled or "
          "preempted).",
          releases_);
  counter("ite_worker_block_copies_total", "KV blocks copied (copy-on-write).", block_copies_);
  counter("ite_worker_clears_total", "Times the scheduler dropped every sequence (reconnects).",
          clears_);

  w.Family("ite_worker_sequences", "gauge", "Sequences the worker holds state for.");
  w.Sample("ite_worker_sequences", "", static_cast<double>(snap.sequences));
  w.Family("ite_worker_pending_steps", "gauge", "Steps submitted and not collected yet.");
  w.Sample("ite_worker_pending_steps", "", snap.pending_steps);
  w.Family("ite_worker_kv_blocks_total", "gauge", "KV blocks in the pool.");
  w.Sample("ite_worker_kv_blocks_total", "", snap.kv_blocks_total);
  w.Family("ite_worker_kv_blocks_used", "gauge",
           "KV blocks named by the live sequences' block tables (shared ones once).");
  w.Sample("ite_worker_kv_blocks_used", "", snap.kv_blocks_used);
  w.Family("ite_worker_kv_blocks_free", "gauge",
           "KV blocks no live sequence names (the scheduler's prefix cache may hold some).");
  w.Sample("ite_worker_kv_blocks_free", "", snap.kv_blocks_total - snap.kv_blocks_used);
  return w.text();
}

}  // namespace ite
