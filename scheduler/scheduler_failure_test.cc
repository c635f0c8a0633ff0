// Scheduler with failing workers: a worker that dies fails its running requests fast and is
// taken back when it returns; its queued requests move to a healthy worker or wait for it; a
// worker answering nonsense or restarted between requests (its state lost) is handled likewise.
#include <gtest/gtest.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "scheduler/scheduler.h"
#include "scheduler/scheduler_test_util.h"
#include "worker/model/describe_model.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

TEST(SchedulerTest, WorkerFailureFailsItsRequestsFastAndTheWorkerComesBack) {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  o.recover_grace_ms = 0;  // new requests fail at once while no worker is up
  Harness h(o);
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("r" + std::to_string(i), {1, 2, 3}, 3000), cs[i]->Callback())
            .ok());
  }
  ASSERT_TRUE(WaitFor([&] { return cs[3]->events() > 2; }));
  auto t0 = std::chrono::steady_clock::now();
  h.fakes[0]->Fail(Unavailable("injected crash"));
  for (auto& c : cs) {
    ASSERT_TRUE(c->Wait(milliseconds(2000)));
    EXPECT_EQ(c->finish(), FinishReason::kError);
    EXPECT_EQ(c->error().code(), StatusCode::kUnavailable);
    EXPECT_NE(c->error().message().find("injected crash"), std::string::npos);
  }
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(took, milliseconds(1000));
  EXPECT_FALSE(h.scheduler->Stats().workers[0].up);
  Status s = h.scheduler->Submit(Greedy("late", {1}, 2), [](const GenerationEvent&) {});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);

  // The worker recovers: the prober finds it, clears it and the scheduler serves on it again.
  h.fakes[0]->Heal();
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->Stats().workers[0].up; }));
  EXPECT_GE(h.fakes[0]->counters().clears, 1);
  SchedulerStats st = h.scheduler->Stats();
  EXPECT_EQ(st.workers[0].free_blocks, st.workers[0].num_blocks);  // a fresh pool and cache
  Tokens prompt{4, 5, 6};
  auto c = h.Run(Greedy("after", prompt, 5));
  EXPECT_EQ(c->tokens(), FakeModelGenerate(prompt, 5, kVocab));
}

TEST(SchedulerTest, TwoWorkersRouteByCachedPrefixAndSurviveOneFailing) {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  Harness h(o, {FakeWorkerOptions{}, FakeWorkerOptions{}});
  std::mt19937 rng(9);
  Tokens head = RandomTokens(&rng, 32);
  auto first = h.Run(Greedy("first", head, 4));
  SchedulerStats s0 = h.scheduler->Stats();
  int home = s0.workers[0].cached_blocks > 0 ? 0 : 1;
  EXPECT_GT(s0.workers[home].cached_blocks, 0);
  EXPECT_EQ(s0.workers[1 - home].cached_blocks, 0);
  // Requests sharing the head follow the cache to the same worker.
  for (int i = 0; i < 3; ++i) {
    Tokens p = head;
    p.push_back(700 + i);
    int64_t steps_before = h.fakes[1 - home]->counters().steps;
    auto c = h.Run(Greedy("follow" + std::to_string(i), p, 4));
    EXPECT_EQ(c->tokens(), FakeModelGenerate(p, 4, kVocab));
    EXPECT_EQ(c->usage().cached_tokens, 32);
    EXPECT_EQ(h.fakes[1 - home]->counters().steps, steps_before);
  }
  // Unrelated requests spread over both workers.
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<Tokens> prompts;
  for (int i = 0; i < 8; ++i) {
    prompts.push_back(RandomTokens(&rng, 6));
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("u" + std::to_string(i), prompts[i], 50), cs[i]->Callback())
            .ok());
  }
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 50, kVocab));
  }
  EXPECT_GT(h.fakes[1 - home]->counters().steps, 0);

  // One worker fails; the other keeps serving, new requests avoid the failed one.
  h.fakes[home]->Fail(Unavailable("gone"));
  Collector doomed;
  Tokens p = head;
  p.push_back(1);
  // Route to `home` (cached head), which fails on its next step.
  Status st = h.scheduler->Submit(Greedy("doomed", p, 100), doomed.Callback());
  ASSERT_TRUE(st.ok());
  ASSERT_TRUE(doomed.Wait(milliseconds(3000)));
  ASSERT_TRUE(WaitFor([&] { return !h.scheduler->Stats().workers[home].up; }));
  for (int i = 0; i < 4; ++i) {
    auto c = h.Run(Greedy("alive" + std::to_string(i), prompts[i], 8));
    EXPECT_EQ(c->finish(), FinishReason::kLength);
    EXPECT_EQ(c->tokens(), FakeModelGenerate(prompts[i], 8, kVocab));
  }
  (void)first;
}

TEST(SchedulerTest, RequestsOfAFailedWorkerWithNothingStreamedMoveToAHealthyOne) {
  SchedulerOptions o;
  o.max_running = 1;  // one request runs per worker, the others wait in its queue
  o.probe_interval_ms = 1000000;
  Harness h(o, {FakeWorkerOptions{}, FakeWorkerOptions{}});
  h.fakes[0]->Pause();
  h.fakes[1]->Pause();
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<Tokens> prompts;
  for (int i = 0; i < 6; ++i) {
    prompts.push_back({100 + i, 7, 8});
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("r" + std::to_string(i), prompts[i], 6), cs[i]->Callback())
            .ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    SchedulerStats s = h.scheduler->Stats();
    return s.running == 2 && s.waiting == 4;
  }));
  int waiting_on_0 = h.scheduler->Stats().workers[0].waiting;
  ASSERT_GT(waiting_on_0, 0);
  h.fakes[0]->Fail(Unavailable("worker 0 lost"));
  h.fakes[0]->Resume();
  h.fakes[1]->Resume();
  int failed = 0;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    if (cs[i]->finish() == FinishReason::kError) {
      ++failed;
      EXPECT_EQ(cs[i]->error().code(), StatusCode::kUnavailable);
    } else {
      EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 6, kVocab));
    }
  }
  // Nothing had streamed yet (both workers paused before their first result), so none fails:
  // the request admitted to worker 0 moved to worker 1 with its queue.
  EXPECT_EQ(failed, 0);
}

// A worker that answers with results the scheduler did not ask for. Like a real worker it
// answers its steps in the order they were sent, from one thread of its own.
class GarbledWorker : public WorkerClient {
 public:
  GarbledWorker() : thread_([this] { Run(); }) {}
  ~GarbledWorker() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  StatusOr<WorkerInfo> Info() override {
    WorkerInfo info;
    info.model = DescribeModel(FakeModelConfig(kVocab, 512));
    info.block_size = 4;
    info.num_blocks = 64;
    return info;
  }
  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override {
    StepResult r;
    r.step_id = request.step_id;
    for (const StepSequence& s : request.seqs) {
      StepOutput out;
      out.seq_id = s.seq_id + 1000;  // not a sequence of this step
      out.sample.token = 1;
      r.outputs.push_back(out);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      answers_.emplace_back(std::move(r), std::move(done));
    }
    cv_.notify_all();
  }
  Status Health() override { return Status::Ok(); }
  Status Clear() override { return Status::Ok(); }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !answers_.empty(); });
      if (stop_) return;
      auto [result, done] = std::move(answers_.front());
      answers_.pop_front();
      lock.unlock();
      done(std::move(result));
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::deque<std::pair<StepResult, std::function<void(StatusOr<StepResult>)>>> answers_;
  std::thread thread_;
};

TEST(SchedulerTest, AWorkerAnsweringNonsenseIsTreatedAsFailed) {
  std::vector<std::unique_ptr<WorkerClient>> workers;
  workers.push_back(std::make_unique<GarbledWorker>());
  SchedulerOptions o;
  o.probe_interval_ms = 1000000;
  Scheduler s(o, nullptr, std::move(workers));
  ASSERT_TRUE(s.Start().ok());
  Collector c;
  ASSERT_TRUE(s.Submit(Greedy("x", {1, 2, 3}, 5), c.Callback()).ok());
  ASSERT_TRUE(c.Wait(milliseconds(2000)));
  EXPECT_EQ(c.finish(), FinishReason::kError);
  EXPECT_EQ(c.error().code(), StatusCode::kUnavailable);
  EXPECT_NE(c.error().message().find("expected"), std::string::npos) << c.error().message();
  EXPECT_TRUE(c.tokens().empty());
  // Its Info and Clear still answer, so the probe may take it back at once; either way a later
  // request fails too rather than streaming the nonsense tokens.
  Collector again;
  Status submitted = s.Submit(Greedy("y", {1, 2, 3}, 5), again.Callback());
  if (submitted.ok()) {
    ASSERT_TRUE(again.Wait(milliseconds(2000)));
    EXPECT_EQ(again.finish(), FinishReason::kError);
    EXPECT_EQ(again.error().code(), StatusCode::kUnavailable);
    EXPECT_TRUE(again.tokens().empty());
  } else {
    EXPECT_EQ(submitted.code(), StatusCode::kUnavailable) << submitted.ToString();
  }
}

// A worker restarted between requests (its sequences and KV gone) is cleared and started afresh
// before it runs the next request, which then succeeds instead of failing UNAVAILABLE.
TEST(SchedulerTest, AWorkerThatLostItsStateWhileIdleIsClearedBeforeTheNextRequest) {
  Harness h({});
  Tokens prompt{5, 17, 256, 3, 999, 42, 7};
  auto first = h.Run(Greedy("a", prompt, 8));
  EXPECT_EQ(first->tokens(), FakeModelGenerate(prompt, 8, kVocab));
  const int64_t clears = h.fakes[0]->counters().clears;
  h.fakes[0]->LoseState();
  auto second = h.Run(Greedy("b", prompt, 8));  // the same prompt: its cached prefix is gone too
  EXPECT_EQ(second->finish(), FinishReason::kLength) << second->error().ToString();
  EXPECT_EQ(second->tokens(), FakeModelGenerate(prompt, 8, kVocab));
  EXPECT_EQ(second->usage().cached_tokens, 0);
  EXPECT_GT(h.fakes[0]->counters().clears, clears);
  EXPECT_TRUE(h.scheduler->Stats().workers[0].up);
}

// If it does not come back within recover_grace_ms, its queued requests fail UNAVAILABLE.
TEST(SchedulerTest, AWorkerThatLostItsStateAndStaysDownFailsItsQueueAfterTheGrace) {
  SchedulerOptions o;
  o.probe_interval_ms = 20;
  o.recover_grace_ms = 200;
  Harness h(o);
  h.fakes[0]->LoseState();
  h.fakes[0]->Fail(Unavailable("connection refused"));
  auto start = std::chrono::steady_clock::now();
  auto c = h.Run(Greedy("a", {1, 2, 3}, 4));
  EXPECT_EQ(c->finish(), FinishReason::kError);
  EXPECT_EQ(c->error().code(), StatusCode::kUnavailable);
  EXPECT_NE(c->error().message().find("did not come back"), std::string::npos)
      << c->error().message();
  EXPECT_TRUE(c->tokens().empty());
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(150));
  // Healed, it is taken back and serves again.
  h.fakes[0]->Heal();
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->Stats().workers[0].up; }));
  auto again = h.Run(Greedy("b", {1, 2, 3}, 4));
  EXPECT_EQ(again->tokens(), FakeModelGenerate(Tokens{1, 2, 3}, 4, kVocab));
}

// With the grace (the default), a request arriving while the only worker is down waits for it
// and runs once it is back.
TEST(SchedulerTest, ARequestWhileTheOnlyWorkerIsDownWaitsForItToComeBack) {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  o.recover_grace_ms = 5000;
  Harness h(o);
  Collector running;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("long", {1, 2, 3}, 3000), running.Callback()).ok());
  ASSERT_TRUE(WaitFor([&] { return running.events() > 2; }));
  h.fakes[0]->Fail(Unavailable("injected crash"));
  ASSERT_TRUE(running.Wait(milliseconds(2000)));
  EXPECT_EQ(running.finish(), FinishReason::kError);  // it had streamed tokens: it fails
  ASSERT_TRUE(WaitFor([&] { return !h.scheduler->Stats().workers[0].up; }));
  Tokens prompt{4, 5, 6};
  Collector late;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("late", prompt, 5), late.Callback()).ok());
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(late.done());
  h.fakes[0]->Heal();
  ASSERT_TRUE(late.Wait(milliseconds(3000)));
  EXPECT_EQ(late.finish(), FinishReason::kLength) << late.error().ToString();
  EXPECT_EQ(late.tokens(), FakeModelGenerate(prompt, 5, kVocab));
}

}  // namespace
}  // namespace ite

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

// A worker that stops answering while idle sends no step that could fail: only the probe can
// find it. It is marked down after down_after_ms of silence (not before), and taken back once it
// answers again; with down_after_ms = 0 it is never marked down by silence alone.
TEST(SchedulerTest, IdleWorkerThatStopsAnsweringIsMarkedDownAndTakenBack) {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  o.down_after_ms = 300;
  Harness h(o);
  ASSERT_TRUE(h.scheduler->AnyWorkerUp());
  h.fakes[0]->Fail(Unavailable("stopped"));
  ASSERT_TRUE(WaitFor([&] { return !h.scheduler->AnyWorkerUp(); }, milliseconds(3000)));
  // Silence counts from the last probe that was answered, which on a loaded machine can be
  // well before Fail(); the scheduler saw that answer no earlier than the fake gave it.
  const auto silent = std::chrono::steady_clock::now() - h.fakes[0]->last_healthy();
  EXPECT_GE(silent, milliseconds(290));
  EXPECT_FALSE(h.scheduler->Stats().workers[0].up);
  h.fakes[0]->Heal();
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->AnyWorkerUp(); }, milliseconds(3000)));
  Tokens prompt{4, 5, 6};
  auto c = h.Run(Greedy("after", prompt, 5));
  EXPECT_EQ(c->tokens(), FakeModelGenerate(prompt, 5, kVocab));

  SchedulerOptions never = o;
  never.down_after_ms = 0;
  Harness quiet(never);
  quiet.fakes[0]->Fail(Unavailable("stopped"));
  std::this_thread::sleep_for(milliseconds(600));
  EXPECT_TRUE(quiet.scheduler->AnyWorkerUp());
  quiet.fakes[0]->Heal();
}

}  // namespace
}  // namespace ite
