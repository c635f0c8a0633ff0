// scheduler_bench: the scheduler's own cost, with the model taken out.
//
// 1. CPU time of the scheduler loop thread per step at N running sequences in steady decode,
//    against a zero-latency worker (answers each step at once with a fixed next token), so the
//    number is what the control path adds to every step (design.md: "The control path must not
//    stall the GPU"). Target: < 100 us per step at 256 running sequences.
// 2. Resident memory with 1,000 requests queued and a prefix cache holding 100k tokens.
//    Target: < 200 MB.
// Prints one table and writes JSON (--json).
#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "scheduler/scheduler.h"

namespace ite {
namespace {

// Answers each step on its own thread as soon as it arrives: token = 7 for every sampling
// sequence. Pausable, so requests can be held in the queue.
class ZeroLatencyWorker : public WorkerClient {
 public:
  // step_us > 0 makes each step take that long (a sleep: a stand-in for the GPU's forward, which
  // leaves the CPU free), and the worker reports its idle time between steps as a real one does.
  ZeroLatencyWorker(int32_t num_blocks, int32_t max_position, int64_t step_us = 0)
      : step_us_(step_us) {
    info_.model.name = "zero-latency";
    info_.model.vocab_size = 32000;
    info_.model.max_position = max_position;
    info_.block_size = 16;
    info_.num_blocks = num_blocks;
    info_.device = "none";
    thread_ = std::thread([this] { Run(); });
  }
  ~ZeroLatencyWorker() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      paused_ = false;
    }
    cv_.notify_all();
    thread_.join();
  }
  StatusOr<WorkerInfo> Info() override { return info_; }
  Status Health() override { return Status::Ok(); }
  Status Clear() override { return Status::Ok(); }
  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.emplace_back(std::move(request), std::move(done));
    }
    cv_.notify_one();
  }
  void SetPaused(bool paused) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      paused_ = paused;
    }
    cv_.notify_all();
  }

 private:
  void Run() {
    while (true) {
      std::pair<StepRequest, std::function<void(StatusOr<StepResult>)>> next;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || (!paused_ && !queue_.empty()); });
        if (queue_.empty()) return;
        next = std::move(queue_.front());
        queue_.pop_front();
      }
      StepResult r;
      r.step_id = next.first.step_id;
      auto begin = std::chrono::steady_clock::now();
      if (has_stepped_) {
        r.idle_us =
            std::chrono::duration_cast<std::chrono::microseconds>(begin - last_end_).count();
      }
      if (step_us_ > 0) std::this_thread::sleep_for(std::chrono::microseconds(step_us_));
      for (const StepSequence& s : next.first.seqs) {
        if (!s.sample) continue;
        StepOutput out;
        out.seq_id = s.seq_id;
        out.sample.token = 7;
        r.outputs.push_back(std::move(out));
      }
      last_end_ = std::chrono::steady_clock::now();
      has_stepped_ = true;
      r.forward_us =
          std::chrono::duration_cast<std::chrono::microseconds>(last_end_ - begin).count();
      next.second(std::move(r));
    }
  }

  WorkerInfo info_;
  int64_t step_us_;
  std::chrono::steady_clock::time_point last_end_;
  bool has_stepped_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<StepRequest, std::function<void(StatusOr<StepResult>)>>> queue_;
  bool paused_ = false;
  bool stop_ = false;
  std::thread thread_;
};

int64_t RssKb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return -1;
}

GenerationRequest Request(const std::string& id, std::vector<int32_t> prompt, int32_t max_tokens) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  return r;
}

std::vector<int32_t> Prompt(uint32_t seed, int n) {
  std::vector<int32_t> p(n);
  uint32_t x = seed * 2654435761u + 1;
  for (int32_t& t : p) {
    x = x * 1664525u + 1013904223u;
    t = static_cast<int32_t>((x >> 8) % 32000);
  }
  return p;
}

struct StepCost {
  int running = 0;
  double us_per_step = 0;
  double steps_per_s = 0;
  double tokens_per_s = 0;
  int64_t steps = 0;
  double worker_idle_us_per_step = 0;
};

// Closed loop: `running` requests of prompt_len -> output_len tokens; each finished request is
// replaced at once (from its final event), so the running set stays full at realistic lengths.
StepCost MeasureSteps(int running, int prompt_len, int output_len, double seconds,
                      int64_t step_us = 0, int32_t depth = 2) {
  auto worker = std::make_unique<ZeroLatencyWorker>(
      /*num_blocks=*/running * ((prompt_len + output_len) / 16 + 2), /*max_position=*/8192,
      step_us);
  SchedulerOptions o;
  o.max_inflight_steps = depth;
  o.max_running = running;
  o.max_batch_tokens = 2048;
  std::vector<std::unique_ptr<WorkerClient>> workers;
  workers.push_back(std::move(worker));
  Scheduler s(o, nullptr, std::move(workers));
  if (!s.Start().ok()) std::abort();
  std::atomic<int64_t> tokens{0};
  std::atomic<int64_t> next{0};
  std::atomic<bool> stop{false};
  std::function<void()> submit = [&] {
    int64_t i = next++;
    Status st = s.Submit(
        Request("r" + std::to_string(i), Prompt(static_cast<uint32_t>(i), prompt_len), output_len),
        [&](const GenerationEvent& e) {
          tokens += static_cast<int64_t>(e.tokens.size());
          if (e.finish != FinishReason::kNone && !stop) submit();
        });
    if (!st.ok() && !stop) {
      std::fprintf(stderr, "submit: %s\n", st.ToString().c_str());
      std::abort();
    }
  };
  for (int i = 0; i < running; ++i) submit();
  // Warm up past the first wave of prefills, then measure a window.
  while (s.Stats().finished_requests < running) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  SchedulerStats a = s.Stats();
  int64_t tokens_a = tokens.load();
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(seconds * 1000)));
  SchedulerStats b = s.Stats();
  int64_t tokens_b = tokens.load();
  double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  s.Shutdown(false);
  StepCost c;
  c.running = running;
  c.steps = b.steps - a.steps;
  c.us_per_step = c.steps > 0 ? double(b.loop_cpu_us - a.loop_cpu_us) / c.steps : 0;
  c.steps_per_s = c.steps / wall;
  c.tokens_per_s = (tokens_b - tokens_a) / wall;
  int64_t idle = b.workers[0].worker_idle_us - a.workers[0].worker_idle_us;
  c.worker_idle_us_per_step = c.steps > 0 ? double(idle) / c.steps : 0;
  return c;
}

struct Memory {
  int64_t rss_before_kb = 0;
  int64_t rss_after_kb = 0;
  int64_t cached_tokens = 0;
  int32_t queued = 0;
};

Memory MeasureMemory(int queued, int prompt_len, int64_t cache_tokens) {
  Memory m;
  m.rss_before_kb = RssKb();
  auto worker = std::make_unique<ZeroLatencyWorker>(
      /*num_blocks=*/static_cast<int32_t>(cache_tokens / 16 + 4096), /*max_position=*/8192);
  ZeroLatencyWorker* raw = worker.get();
  SchedulerOptions o;
  std::vector<std::unique_ptr<WorkerClient>> workers;
  workers.push_back(std::move(worker));
  Scheduler s(o, nullptr, std::move(workers));
  if (!s.Start().ok()) std::abort();
  // Fill the prefix cache: distinct 1,009-token prompts (63 full blocks each), one token each.
  std::atomic<int> done{0};
  int fills = static_cast<int>(cache_tokens / 1000);
  for (int i = 0; i < fills; ++i) {
    if (!s.Submit(Request("fill" + std::to_string(i), Prompt(100000 + i, 1009), 1),
                  [&done](const GenerationEvent& e) {
                    if (e.finish != FinishReason::kNone) ++done;
                  })
             .ok()) {
      std::abort();
    }
  }
  while (done.load() < fills) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  // Queue requests behind a paused worker.
  raw->SetPaused(true);
  for (int i = 0; i < queued; ++i) {
    if (!s.Submit(Request("q" + std::to_string(i), Prompt(i, prompt_len), 256),
                  [](const GenerationEvent&) {})
             .ok()) {
      std::abort();
    }
  }
  while (s.Stats().running + s.Stats().waiting < queued) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  SchedulerStats st = s.Stats();
  m.cached_tokens = st.workers[0].cached_tokens;
  m.queued = st.running + st.waiting;
  m.rss_after_kb = RssKb();
  raw->SetPaused(false);
  s.Shutdown(false);
  return m;
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) {
  CLI::App app{"scheduler CPU cost per step and memory, against a zero-latency worker"};
  std::string json_path;
  double seconds = 2.0;
  std::vector<int> running = {64, 256};
  app.add_option("--json", json_path, "write results as JSON here");
  app.add_option("--seconds", seconds, "measurement window per point");
  app.add_option("--running", running, "running sequences per point");
  bool memory = true;
  app.add_option("--memory", memory, "also measure memory (true/false)");
  CLI11_PARSE(app, argc, argv);

  nlohmann::json out;
  std::printf("%-28s %12s %12s %14s\n", "workload", "cpu us/step", "steps/s", "tokens/s");
  for (int n : running) {
    ite::StepCost c = ite::MeasureSteps(n, /*prompt_len=*/128, /*output_len=*/512, seconds);
    std::printf("128->512, %4d running      %12.1f %12.0f %14.0f\n", n, c.us_per_step,
                c.steps_per_s, c.tokens_per_s);
    out["steps"].push_back({{"running", n},
                            {"cpu_us_per_step", c.us_per_step},
                            {"steps_per_s", c.steps_per_s},
                            {"tokens_per_s", c.tokens_per_s},
                            {"steps", c.steps}});
  }
  // Worker idle time between steps when a step takes 2 ms (a stand-in for a GPU forward):
  // without pipelining the worker waits for the scheduler's turnaround after every step.
  std::printf("\n%-34s %16s %12s\n", "2 ms steps, 256 running", "worker idle/step", "steps/s");
  for (int depth : {1, 2}) {
    ite::StepCost c = ite::MeasureSteps(256, 128, 512, seconds, /*step_us=*/2000, depth);
    std::printf("%-34s %13.1f us %12.0f\n",
                depth == 1 ? "1 step in flight (no pipelining)" : "2 steps in flight",
                c.worker_idle_us_per_step, c.steps_per_s);
    out["idle"].push_back({{"running", 256},
                           {"step_us", 2000},
                           {"inflight_steps", depth},
                           {"worker_idle_us_per_step", c.worker_idle_us_per_step},
                           {"steps_per_s", c.steps_per_s}});
  }
  if (!memory) return 0;
  ite::Memory m = ite::MeasureMemory(/*queued=*/1000, /*prompt_len=*/512, /*cache=*/100000);
  std::printf(
      "memory: %d requests queued (512-token prompts), %lld tokens cached: RSS %.1f MB "
      "(%.1f MB before the scheduler)\n",
      m.queued, static_cast<long long>(m.cached_tokens), m.rss_after_kb / 1024.0,
      m.rss_before_kb / 1024.0);
  out["memory"] = {{"queued", m.queued},
                   {"cached_tokens", m.cached_tokens},
                   {"rss_mb", m.rss_after_kb / 1024.0},
                   {"rss_before_mb", m.rss_before_kb / 1024.0}};
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  return 0;
}
