#include "scheduler/serving_metrics.h"

#include <chrono>
#include <memory>

#include "common/logging.h"

namespace ite {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::vector<double> LatencyBuckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.25, 0.5,
          0.75,  1.0,    2.5,   5.0,  7.5,   10.0, 20.0,  40.0, 80.0, 160.0};
}

std::vector<double> BatchBuckets() { return {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}; }

}  // namespace

struct ServingMetrics::RequestClock {
  std::string id;
  Clock::time_point start = Clock::now();
  double ttft_s = -1;
  Clock::time_point last;
  bool first = true;
};

ServingMetrics::ServingMetrics()
    : ttft_(LatencyBuckets()),
      itl_(LatencyBuckets()),
      e2e_(LatencyBuckets()),
      step_seconds_(LatencyBuckets()),
      batch_size_(BatchBuckets()) {}

std::function<void(const GenerationEvent&)> ServingMetrics::Observe(
    std::string id, std::function<void(const GenerationEvent&)> callback) {
  auto clock = std::make_shared<RequestClock>();  // shared by the callback's copies
  clock->id = std::move(id);
  return
      [self = shared_from_this(), clock, callback = std::move(callback)](const GenerationEvent& e) {
        self->OnEvent(*clock, e);
        callback(e);
      };
}

void ServingMetrics::OnEvent(RequestClock& clock, const GenerationEvent& e) {
  const Clock::time_point now = Clock::now();
  if (!e.tokens.empty()) {
    if (clock.first) {
      clock.ttft_s = Seconds(now - clock.start);
      ttft_.Observe(clock.ttft_s);
      clock.first = false;
    } else {
      // Several tokens in one event arrived together: each waited a share of the gap.
      const double gap = Seconds(now - clock.last) / static_cast<double>(e.tokens.size());
      for (size_t i = 0; i < e.tokens.size(); ++i) itl_.Observe(gap);
    }
    clock.last = now;
  }
  if (e.finish != FinishReason::kNone) {
    const double total_s = Seconds(now - clock.start);
    e2e_.Observe(total_s);
    Finished(e);
    nlohmann::json fields = {{"id", clock.id},
                             {"prompt_tokens", e.usage.prompt_tokens},
                             {"cached_tokens", e.usage.cached_tokens},
                             {"completion_tokens", e.usage.completion_tokens},
                             {"ttft_ms", clock.ttft_s < 0 ? nlohmann::json(nullptr)
                                                          : nlohmann::json(clock.ttft_s * 1e3)},
                             {"total_ms", total_s * 1e3},
                             {"finish_reason", FinishReasonName(e.finish)}};
    if (e.finish == FinishReason::kError) fields["error"] = e.error.ToString();
    LogRecord("request", fields);
  }
}

void ServingMetrics::Finished(const GenerationEvent& e) {
  ++requests_[static_cast<size_t>(e.finish)];
  prompt_tokens_ += e.usage.prompt_tokens;
  cached_tokens_ += e.usage.cached_tokens;
  if (e.finish != FinishReason::kError) generation_tokens_ += e.usage.completion_tokens;
}

void ServingMetrics::OnStep(int, const StepResult& result) {
  step_seconds_.Observe(static_cast<double>(result.forward_us) * 1e-6);
  batch_size_.Observe(static_cast<double>(result.outputs.size()));
}

std::string ServingMetrics::Render(const SchedulerStats& stats) const {
  PrometheusWriter w;
  w.Family("ite_requests_total", "counter", "Finished requests by finish reason.");
  for (FinishReason r : {FinishReason::kStop, FinishReason::kLength, FinishReason::kCancelled,
                         FinishReason::kError}) {
    w.Sample("ite_requests_total", fmt::format("finish_reason=\"{}\"", FinishReasonName(r)),
             static_cast<double>(requests_[static_cast<size_t>(r)].load()));
  }
  w.Family("ite_prompt_tokens_total", "counter", "Prompt tokens of finished requests.");
  w.Sample("ite_prompt_tokens_total", "", static_cast<double>(prompt_tokens_.load()));
  w.Family("ite_generation_tokens_total", "counter",
           "Generated tokens of requests that finished without error.");
  w.Sample("ite_generation_tokens_total", "", static_cast<double>(generation_tokens_.load()));
  w.Family("ite_prefix_cache_hit_tokens_total", "counter",
           "Prompt tokens of finished requests served from the prefix cache.");
  w.Sample("ite_prefix_cache_hit_tokens_total", "", static_cast<double>(cached_tokens_.load()));
  w.Family("ite_prefix_cache_hit_rate", "gauge",
           "Share of prompt tokens served from the prefix cache (finished requests).");
  const int64_t prompt = prompt_tokens_.load();
  w.Sample("ite_prefix_cache_hit_rate", "",
           prompt > 0 ? static_cast<double>(cached_tokens_.load()) / prompt : 0.0);

  w.Family("ite_time_to_first_token_seconds", "histogram", "From submission to the first token.");
  ttft_.Write(w, "ite_time_to_first_token_seconds");
  w.Family("ite_inter_token_latency_seconds", "histogram", "Between consecutive tokens.");
  itl_.Write(w, "ite_inter_token_latency_seconds");
  w.Family("ite_e2e_request_latency_seconds", "histogram", "From submission to the last token.");
  e2e_.Write(w, "ite_e2e_request_latency_seconds");
  w.Family("ite_step_seconds", "histogram", "Worker time per step (forward and sampling).");
  step_seconds_.Write(w, "ite_step_seconds");
  w.Family("ite_batch_size", "histogram", "Sequences sampled per step.");
  batch_size_.Write(w, "ite_batch_size");

  w.Family("ite_requests_running", "gauge", "Sequences in the running batches.");
  w.Sample("ite_requests_running", "", stats.running);
  w.Family("ite_requests_waiting", "gauge", "Sequences queued.");
  w.Sample("ite_requests_waiting", "", stats.waiting);
  w.Family("ite_preemptions_total", "counter", "Sequences preempted (recomputed) for KV space.");
  w.Sample("ite_preemptions_total", "", static_cast<double>(stats.preemptions));
  w.Family("ite_steps_total", "counter", "Steps run on all workers.");
  w.Sample("ite_steps_total", "", static_cast<double>(stats.steps));
  w.Family("ite_worker_up", "gauge", "1 while the worker serves, 0 while it is down.");
  for (size_t i = 0; i < stats.workers.size(); ++i) {
    w.Sample("ite_worker_up", fmt::format("worker=\"{}\"", i), stats.workers[i].up ? 1 : 0);
  }
  w.Family("ite_kv_blocks_total", "gauge", "KV blocks in the worker's pool.");
  for (size_t i = 0; i < stats.workers.size(); ++i) {
    w.Sample("ite_kv_blocks_total", fmt::format("worker=\"{}\"", i), stats.workers[i].num_blocks);
  }
  w.Family("ite_kv_blocks_used", "gauge", "KV blocks held by running sequences (cached or not).");
  for (size_t i = 0; i < stats.workers.size(); ++i) {
    w.Sample("ite_kv_blocks_used", fmt::format("worker=\"{}\"", i), stats.workers[i].used_blocks);
  }
  w.Family("ite_kv_blocks_cached", "gauge", "KV blocks held only by the prefix cache (evictable).");
  for (size_t i = 0; i < stats.workers.size(); ++i) {
    w.Sample("ite_kv_blocks_cached", fmt::format("worker=\"{}\"", i),
             stats.workers[i].cached_blocks);
  }
  return w.text();
}

}  // namespace ite
