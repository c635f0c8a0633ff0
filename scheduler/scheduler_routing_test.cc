// Cache-aware routing under load: the worker holding a request's prefix gets it while its load
// (running + waiting) is within route_load_slack of the least loaded worker's; past that the least
// loaded worker does, so a burst of requests sharing one prefix is spread over the workers
// instead of queueing behind the one that cached it first.
#include <gtest/gtest.h>

#include <algorithm>

#include "scheduler/scheduler.h"
#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

// The rule as a simple model: which worker the next request goes to, given each worker's load
// and whether it holds the prefix.
int ModelRoute(const std::vector<int>& load, const std::vector<bool>& cached, int slack) {
  const int min_load = *std::min_element(load.begin(), load.end());
  int best = -1;
  bool best_cached = false;
  for (size_t i = 0; i < load.size(); ++i) {
    const bool c = cached[i] && load[i] <= min_load + slack;
    if (best < 0 || (c && !best_cached) || (c == best_cached && load[i] < load[best])) {
      best = static_cast<int>(i);
      best_cached = c;
    }
  }
  return best;
}

// All `requests` share one long prefix, cached on worker 0 only. Both workers are paused, so
// every request stays in flight and the loads are exact; after each submission they must match
// the model, and every request gets the right tokens. Returns the two workers' loads.
std::vector<int> RunBurst(const SchedulerOptions& o, int requests) {
  const int slack = o.route_load_slack;
  Harness h(o, {{}, {}});
  Tokens prefix;
  for (int i = 0; i < 64; ++i) prefix.push_back(100 + i);
  Tokens first = prefix;
  first.push_back(7);
  auto warm = h.Run(Greedy("warm", first, 2));  // caches the prefix on worker 0 (least loaded)
  EXPECT_EQ(warm->finish(), FinishReason::kLength);
  EXPECT_GT(h.scheduler->Stats().workers[0].cached_tokens, 0);
  EXPECT_EQ(h.scheduler->Stats().workers[1].cached_tokens, 0);

  for (FakeWorkerClient* f : h.fakes) f->Pause();
  const int kRequests = requests;
  std::vector<int> load = {0, 0};
  std::vector<bool> cached = {true, false};
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < kRequests; ++i) {
    Tokens prompt = prefix;
    prompt.push_back(200 + i);
    cs.push_back(std::make_unique<Collector>());
    EXPECT_TRUE(
        h.scheduler->Submit(Greedy("r" + std::to_string(i), prompt, 4), cs.back()->Callback())
            .ok());
    const int want = ModelRoute(load, cached, slack);
    ++load[want];
    // Blocks are published to the cache at prefill, which is held: a worker without the prefix
    // does not gain it during the burst.
    EXPECT_TRUE(WaitFor([&] {
      SchedulerStats s = h.scheduler->Stats();
      return s.workers[0].running + s.workers[0].waiting == load[0] &&
             s.workers[1].running + s.workers[1].waiting == load[1];
    }))
        << "request " << i << ": expected loads " << load[0] << "/" << load[1];
  }
  for (FakeWorkerClient* f : h.fakes) f->Resume();
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_TRUE(cs[i]->Wait());
    Tokens prompt = prefix;
    prompt.push_back(200 + i);
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompt, 4, kVocab)) << i;
  }
  SchedulerStats s = h.scheduler->Stats();
  for (const WorkerStats& w : s.workers) EXPECT_EQ(w.free_blocks + w.cached_blocks, w.num_blocks);
  return load;
}

class SkewedLoadTest : public ::testing::TestWithParam<int> {};

TEST_P(SkewedLoadTest, SamePrefixBurstIsSharedByTwoWorkers) {
  SchedulerOptions o;
  o.route_load_slack = GetParam();
  std::vector<int> load = RunBurst(o, 24);
  EXPECT_GT(load[1], 0) << "the idle worker got nothing";
  EXPECT_LE(load[0] - load[1], o.route_load_slack + 1);
}

INSTANTIATE_TEST_SUITE_P(Slack, SkewedLoadTest, ::testing::Values(0, 4, 16));

// With the default slack, ten requests behind one cached prefix do not all queue on one worker
// while the other sits idle.
TEST(RoutingTest, DefaultSlackSharesABurstOfTen) {
  std::vector<int> load = RunBurst(SchedulerOptions(), 10);
  EXPECT_GE(load[1], 3) << "worker 0: " << load[0] << ", worker 1: " << load[1];
}

// Within the slack the cached prefix wins, even over an idle worker.
TEST(RoutingTest, CachedPrefixWinsWithinTheSlack) {
  SchedulerOptions o;
  o.route_load_slack = 4;
  Harness h(o, {{}, {}});
  Tokens prefix(40, 9);
  prefix.push_back(1);
  h.Run(Greedy("warm", prefix, 2));
  for (FakeWorkerClient* f : h.fakes) f->Pause();
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 4; ++i) {
    Tokens prompt = prefix;
    prompt.push_back(50 + i);
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("c" + std::to_string(i), prompt, 2), cs.back()->Callback())
            .ok());
  }
  ASSERT_TRUE(WaitFor([&] {
    SchedulerStats s = h.scheduler->Stats();
    return s.workers[0].running + s.workers[0].waiting == 4;
  }));
  EXPECT_EQ(h.scheduler->Stats().workers[1].running + h.scheduler->Stats().workers[1].waiting, 0);
  for (FakeWorkerClient* f : h.fakes) f->Resume();
  for (auto& c : cs) ASSERT_TRUE(c->Wait());
}

}  // namespace
}  // namespace ite
