// What ite-scheduler reports on GET /metrics (Prometheus text): per-request outcomes, token
// counts and latencies (TTFT, inter-token, end-to-end), observed on every request's events
// whichever front end sent it; per-step batch size and worker step time; and, at scrape time,
// the scheduler's gauges (running / waiting, KV blocks per worker, prefix-cache hit rate,
// preemptions, workers up). Each finished request also gets one log record ("request": id,
// prompt / cached / completion tokens, TTFT, total time, finish reason).
//
// Threads: Observe's callbacks and OnStep run on the scheduler thread; Render on any thread.
// Made with std::make_shared: the callbacks keep it alive.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "common/prometheus.h"
#include "common/protocol/step.h"
#include "scheduler/scheduler.h"

namespace ite {

class ServingMetrics : public std::enable_shared_from_this<ServingMetrics> {
 public:
  ServingMetrics();

  // Wraps request `id`'s event callback so that its events are measured from now on.
  std::function<void(const GenerationEvent&)> Observe(
      std::string id, std::function<void(const GenerationEvent&)> callback);
  // One step came back from `worker`.
  void OnStep(int worker, const StepResult& result);

  std::string Render(const SchedulerStats& stats) const;

  int64_t generation_tokens() const { return generation_tokens_.load(); }

 private:
  struct RequestClock;  // one request's submission and last-token times
  void OnEvent(RequestClock& clock, const GenerationEvent& event);
  void Finished(const GenerationEvent& event);

  std::array<std::atomic<int64_t>, 5> requests_{};  // by FinishReason
  std::atomic<int64_t> prompt_tokens_{0};
  std::atomic<int64_t> generation_tokens_{0};
  std::atomic<int64_t> cached_tokens_{0};
  Histogram ttft_;
  Histogram itl_;
  Histogram e2e_;
  Histogram step_seconds_;
  Histogram batch_size_;
};

}  // namespace ite
