#include "clients/client_bench.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "clients/bench_target.h"
#include "clients/client_common.h"
#include "clients/interrupt.h"

namespace ite::client {
namespace {

using Clock = std::chrono::steady_clock;

struct RequestResult {
  bool started = false;
  bool ok = false;
  grpc::Status status;
  double ttft_ms = 0;
  double e2e_ms = 0;
  std::vector<double> itl_ms;  // one per token after the first
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
};

struct Percentiles {
  double mean = 0, p50 = 0, p90 = 0, p99 = 0;
  size_t count = 0;
};

Percentiles Summarize(std::vector<double> v) {
  Percentiles p;
  p.count = v.size();
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  p.mean = sum / v.size();
  // Nearest-rank percentile.
  auto at = [&](double q) {
    size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
    return v[std::clamp<size_t>(rank, 1, v.size()) - 1];
  };
  p.p50 = at(0.50);
  p.p90 = at(0.90);
  p.p99 = at(0.99);
  return p;
}

nlohmann::json ToJson(const Percentiles& p) {
  return {{"mean", p.mean}, {"p50", p.p50}, {"p90", p.p90}, {"p99", p.p99}, {"count", p.count}};
}

class Bench {
 public:
  explicit Bench(const BenchOptions& o) : o_(o) {}

  int Run() {
    if (o_.api == "openai") {
      if (o_.url.empty()) {
        fmt::print(stderr, "ite-client bench: --api openai needs --url http://HOST:PORT\n");
        return kExitUsage;
      }
      target_ = MakeOpenAiBenchTarget(o_.url, o_.connect_timeout_ms);
    } else if (o_.api == "grpc") {
      target_ = MakeGrpcBenchTarget(o_.addr, o_.connect_timeout_ms);
    } else {
      fmt::print(stderr, "ite-client bench: --api {}: grpc or openai\n", o_.api);
      return kExitUsage;
    }
    if (grpc::Status s = target_->Prepare(&model_); !s.ok()) {
      return Fail("bench", s, target_->address());
    }
    if (int rc = PreparePrompts(); rc != kExitOk) return rc;

    WarnIfKvTooSmall();

    results_.resize(o_.requests);
    start_ = Clock::now();
    InstallInterruptHandler();
    {
      // Ctrl-C: start nothing more, cancel what runs, and still report what finished.
      OnInterrupt stop([this] { Interrupt(); });
      std::thread progress([this] { ShowProgress(); });
      if (o_.rate > 0) {
        RunOpenLoop();
      } else {
        RunClosedLoop(o_.concurrency > 0 ? o_.concurrency : o_.requests);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        finished_all_ = true;
      }
      progress_cv_.notify_all();
      progress.join();
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    return Report(seconds);
  }

 private:
  int PreparePrompts() {
    std::mt19937_64 rng(o_.seed);
    if (!o_.prompts_file.empty()) {
      std::ifstream in(o_.prompts_file);
      if (!in) {
        fmt::print(stderr, "ite-client bench: cannot read --prompts-file {}\n", o_.prompts_file);
        return kExitUsage;
      }
      for (std::string line; std::getline(in, line);) {
        if (!line.empty()) text_prompts_.push_back(line);
      }
      if (text_prompts_.empty()) {
        fmt::print(stderr, "ite-client bench: --prompts-file {} has no prompts\n", o_.prompts_file);
        return kExitUsage;
      }
      return kExitOk;
    }
    // Random token ids give exact prompt lengths; avoid the low ids where special tokens live.
    if (model_.vocab_size <= 1) {
      fmt::print(stderr,
                 "ite-client bench: {} does not say its vocabulary size (random prompt ids need "
                 "it); give --prompts-file\n",
                 target_->address());
      return kExitUsage;
    }
    int32_t lo = std::min(1000, model_.vocab_size / 2);
    std::uniform_int_distribution<int32_t> dist(lo, model_.vocab_size - 1);
    token_prompts_.resize(o_.requests);
    for (auto& p : token_prompts_) {
      p.resize(o_.input_len);
      for (auto& t : p) t = dist(rng);
    }
    return kExitOk;
  }

  void Interrupt() {
    std::lock_guard<std::mutex> lock(mu_);
    if (!interrupted_)
      fmt::print(stderr, "\nite-client bench: interrupted; reporting what finished\n");
    interrupted_ = true;
    for (CallCanceller* c : in_flight_) c->Cancel();
  }

  bool interrupted() {
    std::lock_guard<std::mutex> lock(mu_);
    return interrupted_;
  }

  // The pool holds total_blocks * block_size tokens per worker; requests beyond that wait in the
  // queue (or are preempted), which is legitimate but changes what the numbers mean.
  void WarnIfKvTooSmall() {
    const int64_t pool_tokens = model_.kv_pool_tokens;
    if (pool_tokens <= 0 || !text_prompts_.empty()) return;
    const int64_t per_request = int64_t{o_.input_len} + o_.output_len;
    const int64_t in_flight = o_.rate > 0          ? o_.requests
                              : o_.concurrency > 0 ? std::min(o_.concurrency, o_.requests)
                                                   : o_.requests;
    const int64_t fit = pool_tokens / per_request;
    if (fit < in_flight) {
      fmt::print(stderr,
                 "ite-client bench: note: the KV pools hold {} tokens, room for {} requests of {} "
                 "tokens at once; up to {} may be in flight, the rest wait or are preempted\n",
                 pool_tokens, fit, per_request, in_flight);
    }
  }

  // A status line on stderr: rewritten in place on a terminal, every 5 s otherwise (logs).
  void ShowProgress() {
    const bool tty = isatty(STDERR_FILENO);
    const auto period = tty ? std::chrono::milliseconds(500) : std::chrono::milliseconds(5000);
    std::unique_lock<std::mutex> lock(mu_);
    bool printed = false;
    while (!progress_cv_.wait_for(lock, period, [this] { return finished_all_; })) {
      const double s = std::chrono::duration<double>(Clock::now() - start_).count();
      fmt::print(
          stderr,
          "{}[bench] {:.0f} s: {}/{} requests done, {} in flight, {} tokens ({:.1f} tok/s){}",
          tty ? "\r" : "", s, done_, o_.requests, in_flight_.size(), tokens_seen_,
          tokens_seen_ / std::max(s, 1e-9), tty ? "   " : "\n");
      printed = true;
    }
    if (printed && tty) fmt::print(stderr, "\n");
  }

  void RunOne(int32_t i) {
    BenchCall call;
    call.request_id = fmt::format("bench-{}", i);
    if (!text_prompts_.empty()) {
      call.prompt_text = &text_prompts_[i % text_prompts_.size()];
    } else {
      call.prompt_ids = &token_prompts_[i];
    }
    call.max_tokens = o_.output_len;
    call.ignore_eos = o_.ignore_eos;
    call.temperature = o_.temperature;
    call.seed = o_.seed + i;

    RequestResult& r = results_[i];
    CallCanceller canceller;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (interrupted_) return;
      in_flight_.insert(&canceller);
      r.started = true;
    }
    auto start = Clock::now();
    auto last = start;
    bool first = true;
    auto ms = [](Clock::duration d) {
      return std::chrono::duration<double, std::milli>(d).count();
    };
    BenchCallResult out = target_->Run(
        call,
        [&](int n) {
          {
            std::lock_guard<std::mutex> lock(mu_);
            tokens_seen_ += n;
          }
          auto now = Clock::now();
          if (first) {
            r.ttft_ms = ms(now - start);
            first = false;
            // Further tokens of the first chunk arrived together: zero gaps.
            for (int k = 1; k < n; ++k) r.itl_ms.push_back(0.0);
          } else {
            // A chunk of n tokens after a gap: spread the gap over its tokens.
            for (int k = 0; k < n; ++k) r.itl_ms.push_back(ms(now - last) / n);
          }
          last = now;
        },
        &canceller);
    r.e2e_ms = ms(Clock::now() - start);
    r.status = out.status;
    r.prompt_tokens = out.prompt_tokens;
    r.completion_tokens = out.completion_tokens;
    r.ok = r.status.ok();
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(&canceller);
    ++done_;
    if (!r.ok && !interrupted_) {
      if (errors_printed_++ < 5) {
        fmt::print(stderr, "ite-client bench: request {} failed: {}\n", i,
                   DescribeStatus(r.status, target_->address()));
      }
    }
  }

  void RunClosedLoop(int32_t concurrency) {
    std::atomic<int32_t> next{0};
    std::vector<std::thread> threads;
    for (int32_t t = 0; t < std::min(concurrency, o_.requests); ++t) {
      threads.emplace_back([&] {
        for (int32_t i = next++; i < o_.requests; i = next++) RunOne(i);
      });
    }
    for (auto& t : threads) t.join();
  }

  void RunOpenLoop() {
    std::mt19937_64 rng(o_.seed ^ 0x9e3779b97f4a7c15ull);
    std::exponential_distribution<double> gap(o_.rate);
    std::vector<std::thread> threads;
    auto t = Clock::now();
    for (int32_t i = 0; i < o_.requests && !interrupted(); ++i) {
      // Sleep in slices so that Ctrl-C during a long gap is not kept waiting.
      while (Clock::now() < t && !interrupted()) {
        std::this_thread::sleep_until(std::min(t, Clock::now() + std::chrono::milliseconds(50)));
      }
      if (interrupted()) break;
      threads.emplace_back([this, i] { RunOne(i); });
      t += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(gap(rng)));
    }
    for (auto& th : threads) th.join();
  }

  int Report(double seconds) {
    std::vector<double> ttft, e2e, itl;
    int64_t out_tokens = 0, in_tokens = 0;
    int32_t ok = 0, cancelled = 0, not_started = 0;
    grpc::Status first_error;
    for (const auto& r : results_) {
      if (!r.started) {
        ++not_started;
        continue;
      }
      if (interrupted_ && r.status.error_code() == grpc::StatusCode::CANCELLED) {
        ++cancelled;
        continue;
      }
      if (!r.ok) {
        if (first_error.ok()) first_error = r.status;
        continue;
      }
      ++ok;
      ttft.push_back(r.ttft_ms);
      e2e.push_back(r.e2e_ms);
      itl.insert(itl.end(), r.itl_ms.begin(), r.itl_ms.end());
      out_tokens += r.completion_tokens;
      in_tokens += r.prompt_tokens;
    }
    Percentiles pt = Summarize(ttft), pi = Summarize(itl), pe = Summarize(e2e);
    std::string mode = o_.rate > 0 ? fmt::format("poisson rate {:.2f} req/s", o_.rate)
                                   : fmt::format("concurrency {}",
                                                 o_.concurrency > 0 ? o_.concurrency : o_.requests);
    const int32_t failed = o_.requests - ok - cancelled - not_started;
    if (interrupted_) {
      fmt::print(
          "INTERRUPTED: partial results; {} request(s) cancelled while running, {} not "
          "started\n",
          cancelled, not_started);
    }
    fmt::print("requests {} ok {} failed {} | {} | input {} output {} tokens/request\n",
               o_.requests, ok, failed, mode,
               o_.prompts_file.empty() ? fmt::format("{}", o_.input_len) : "file", o_.output_len);
    fmt::print("duration {:.2f} s | {:.3f} req/s | output {:.1f} tok/s | input {:.1f} tok/s\n",
               seconds, ok / seconds, out_tokens / seconds, in_tokens / seconds);
    fmt::print("{:<10} {:>10} {:>10} {:>10} {:>10}\n", "metric(ms)", "mean", "p50", "p90", "p99");
    for (auto [name, p] : {std::pair{"TTFT", pt}, {"ITL", pi}, {"E2E", pe}}) {
      fmt::print("{:<10} {:>10.2f} {:>10.2f} {:>10.2f} {:>10.2f}\n", name, p.mean, p.p50, p.p90,
                 p.p99);
    }
    if (!o_.json_path.empty()) {
      nlohmann::json j = {{"api", o_.api},
                          {"addr", target_->address()},
                          {"requests", o_.requests},
                          {"ok", ok},
                          {"failed", failed},
                          {"interrupted", interrupted_},
                          {"cancelled", cancelled},
                          {"not_started", not_started},
                          {"concurrency", o_.concurrency},
                          {"rate", o_.rate},
                          {"input_len", o_.prompts_file.empty() ? o_.input_len : -1},
                          {"output_len", o_.output_len},
                          {"duration_s", seconds},
                          {"req_per_s", ok / seconds},
                          {"output_tok_per_s", out_tokens / seconds},
                          {"input_tok_per_s", in_tokens / seconds},
                          {"ttft_ms", ToJson(pt)},
                          {"itl_ms", ToJson(pi)},
                          {"e2e_ms", ToJson(pe)}};
      std::ofstream out(o_.json_path);
      out << j.dump(2) << "\n";
      if (!out) {
        fmt::print(stderr, "ite-client bench: cannot write --json {}\n", o_.json_path);
        return kExitOther;
      }
    }
    if (interrupted_) return kExitInterrupted;
    if (ok == o_.requests) return kExitOk;
    return ExitCodeFor(first_error);
  }

  BenchOptions o_;
  std::unique_ptr<BenchTarget> target_;
  BenchModel model_;
  std::vector<std::string> text_prompts_;
  std::vector<std::vector<int32_t>> token_prompts_;
  std::vector<RequestResult> results_;
  Clock::time_point start_;

  std::mutex mu_;  // guards what follows
  int errors_printed_ = 0;
  bool interrupted_ = false;
  bool finished_all_ = false;
  std::condition_variable progress_cv_;
  std::set<CallCanceller*> in_flight_;
  int32_t done_ = 0;
  int64_t tokens_seen_ = 0;
};

}  // namespace

int RunBench(const BenchOptions& options) { return Bench(options).Run(); }

}  // namespace ite::client
