// Test support shared by the scheduler tests: an event collector per request, a scheduler over
// fake workers, request builders and a polling wait.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "scheduler/fake_worker_client.h"
#include "scheduler/scheduler.h"
#include "worker/service/fake_backend.h"

namespace ite::scheduler_testing {

using std::chrono::milliseconds;
using Tokens = std::vector<int32_t>;
constexpr int32_t kVocab = 1000;

// Gathers one request's events.
class Collector {
 public:
  std::function<void(const GenerationEvent&)> Callback() {
    return [this](const GenerationEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      EXPECT_FALSE(done_) << "event after the final one";
      if (!e.samples.empty()) {
        EXPECT_EQ(e.tokens.size(), e.samples.size());
      }
      tokens_.insert(tokens_.end(), e.tokens.begin(), e.tokens.end());
      ++events_;
      if (e.finish != FinishReason::kNone) {
        done_ = true;
        finish_ = e.finish;
        usage_ = e.usage;
        error_ = e.error;
        cv_.notify_all();
      }
    };
  }
  bool Wait(milliseconds timeout = milliseconds(20000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  bool done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  int events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  Tokens tokens() {
    std::lock_guard<std::mutex> lock(mu_);
    return tokens_;
  }
  FinishReason finish() {
    std::lock_guard<std::mutex> lock(mu_);
    return finish_;
  }
  Usage usage() {
    std::lock_guard<std::mutex> lock(mu_);
    return usage_;
  }
  Status error() {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  Tokens tokens_;
  int events_ = 0;
  bool done_ = false;
  FinishReason finish_ = FinishReason::kNone;
  Usage usage_;
  Status error_;
};

inline GenerationRequest Greedy(std::string id, Tokens prompt, int32_t max_tokens) {
  GenerationRequest r;
  r.request_id = std::move(id);
  r.prompt_tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  return r;
}

inline Tokens RandomTokens(std::mt19937* rng, int n) {
  Tokens t(n);
  for (int32_t& x : t) x = static_cast<int32_t>((*rng)() % kVocab);
  return t;
}

struct Harness {
  explicit Harness(SchedulerOptions options, std::vector<FakeWorkerOptions> workers = {{}}) {
    std::vector<std::unique_ptr<WorkerClient>> clients;
    for (const FakeWorkerOptions& w : workers) {
      auto c = std::make_unique<FakeWorkerClient>(w);
      fakes.push_back(c.get());
      clients.push_back(std::move(c));
    }
    scheduler = std::make_unique<Scheduler>(options, nullptr, std::move(clients));
    Status s = scheduler->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // Submits and waits; returns the collector.
  std::unique_ptr<Collector> Run(GenerationRequest r) {
    auto c = std::make_unique<Collector>();
    Status s = scheduler->Submit(std::move(r), c->Callback());
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(c->Wait());
    return c;
  }
  std::vector<FakeWorkerClient*> fakes;
  std::unique_ptr<Scheduler> scheduler;
};

// Waits until `pred` holds (polling the scheduler's published stats).
template <typename Pred>
inline bool WaitFor(Pred pred, milliseconds timeout = milliseconds(10000)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return pred();
}

}  // namespace ite::scheduler_testing
