// Scheduler start-up with workers that are not there yet: it starts with those that answer,
// takes in the others when they do (and uses them), keeps out one that serves another model,
// and refuses to start when none answers.
#include <gtest/gtest.h>

#include "scheduler/scheduler.h"
#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

struct Pool {
  explicit Pool(std::vector<FakeWorkerOptions> options) {
    for (const FakeWorkerOptions& w : options) {
      auto c = std::make_unique<FakeWorkerClient>(w);
      fakes.push_back(c.get());
      clients.push_back(std::move(c));
    }
  }
  std::vector<FakeWorkerClient*> fakes;
  std::vector<std::unique_ptr<WorkerClient>> clients;
};

SchedulerOptions FastProbe() {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  return o;
}

TEST(SchedulerJoinTest, StartsWithTheWorkersThatAnswerAndTakesInTheRestAsTheyDo) {
  Pool pool({FakeWorkerOptions{}, FakeWorkerOptions{}, FakeWorkerOptions{}});
  pool.fakes[1]->Fail(Unavailable("still loading"));
  pool.fakes[2]->Fail(Unavailable("not scheduled yet"));
  Scheduler s(FastProbe(), nullptr, std::move(pool.clients));
  Status started = s.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  SchedulerStats st = s.Stats();
  ASSERT_EQ(st.workers.size(), 3u);
  EXPECT_TRUE(st.workers[0].up);
  EXPECT_FALSE(st.workers[1].up);
  EXPECT_FALSE(st.workers[2].up);
  // A worker found up at start is cleared too: it may hold an earlier scheduler's sequences.
  EXPECT_EQ(pool.fakes[0]->counters().clears, 1);

  // Requests run on the one worker that is up meanwhile.
  Tokens prompt{5, 6, 7};
  Collector early;
  ASSERT_TRUE(s.Submit(Greedy("early", prompt, 6), early.Callback()).ok());
  ASSERT_TRUE(early.Wait());
  EXPECT_EQ(early.finish(), FinishReason::kLength);
  EXPECT_EQ(early.tokens(), FakeModelGenerate(prompt, 6, kVocab));
  EXPECT_EQ(pool.fakes[1]->counters().steps, 0);

  // Worker 1 answers now: the probe clears it and it is taken in with a pool of its own.
  pool.fakes[1]->Heal();
  ASSERT_TRUE(WaitFor([&] { return s.Stats().workers[1].up; }));
  EXPECT_GE(pool.fakes[1]->counters().clears, 1);
  EXPECT_FALSE(s.Stats().workers[2].up);
  EXPECT_EQ(s.Stats().workers[1].free_blocks, s.Stats().workers[1].num_blocks);

  // Unrelated requests now spread over both workers that are up. Worker 0 is held meanwhile:
  // a fake worker answers at once, so otherwise it could finish each request before the next
  // is routed and, never the busier one, take them all.
  pool.fakes[0]->Pause();
  std::mt19937 rng(3);
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<Tokens> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back(RandomTokens(&rng, 24));
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(s.Submit(Greedy("r" + std::to_string(i), prompts[i], 8), cs[i]->Callback()).ok());
  }
  pool.fakes[0]->Resume();
  for (int i = 0; i < 16; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->finish(), FinishReason::kLength);
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 8, kVocab));
  }
  EXPECT_GT(pool.fakes[1]->counters().steps, 0);
  EXPECT_EQ(pool.fakes[2]->counters().steps, 0);

  pool.fakes[2]->Heal();
  ASSERT_TRUE(WaitFor([&] { return s.Stats().workers[2].up; }));
  s.Shutdown(/*drain=*/true);
}

TEST(SchedulerJoinTest, AWorkerServingAnotherModelIsKeptOut) {
  FakeWorkerOptions other;
  other.vocab = 2000;
  Pool pool({FakeWorkerOptions{}, other});
  pool.fakes[1]->Fail(Unavailable("still loading"));
  Scheduler s(FastProbe(), nullptr, std::move(pool.clients));
  ASSERT_TRUE(s.Start().ok());
  pool.fakes[1]->Heal();
  // Many probe intervals: it answers every probe and is refused every time.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_FALSE(s.Stats().workers[1].up);
  EXPECT_TRUE(s.Stats().workers[0].up);
  Tokens prompt{1, 2, 3};
  Collector c;
  ASSERT_TRUE(s.Submit(Greedy("x", prompt, 4), c.Callback()).ok());
  ASSERT_TRUE(c.Wait());
  EXPECT_EQ(c.tokens(), FakeModelGenerate(prompt, 4, kVocab));
  EXPECT_EQ(pool.fakes[1]->counters().steps, 0);
}

TEST(SchedulerJoinTest, ThoseThatAnswerMustAgreeOnTheModel) {
  FakeWorkerOptions other;
  other.block_size = 8;
  Pool pool({FakeWorkerOptions{}, other});
  Scheduler s(FastProbe(), nullptr, std::move(pool.clients));
  Status st = s.Start();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("different model"), std::string::npos) << st.message();
}

TEST(SchedulerJoinTest, StartFailsWhenNoWorkerAnswers) {
  Pool pool({FakeWorkerOptions{}, FakeWorkerOptions{}});
  pool.fakes[0]->Fail(Unavailable("connection refused"));
  pool.fakes[1]->Fail(Unavailable("connection refused"));
  Scheduler s(FastProbe(), nullptr, std::move(pool.clients));
  Status st = s.Start();
  EXPECT_EQ(st.code(), StatusCode::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("connection refused"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace ite
