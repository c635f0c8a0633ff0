// Worker discovery under a scheduler: a name whose addresses change (a resolver seam stands in
// for DNS) while requests run. Workers that join are taken in and used, workers that leave
// fail their running requests UNAVAILABLE, no request hangs, and a failed lookup changes
// nothing. Also the --workers syntax and the system resolver on a name every host has.
#include "scheduler/worker_discovery.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "scheduler/scheduler.h"
#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

TEST(WorkerTargetTest, StaticListsAndDnsNames) {
  StatusOr<WorkerTarget> list = ParseWorkerTarget("a:1,b:2,");
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->addresses, (std::vector<std::string>{"a:1", "b:2"}));
  EXPECT_TRUE(list->dns_host.empty());
  StatusOr<WorkerTarget> dns = ParseWorkerTarget("dns:///ite-worker.ns.svc:50052");
  ASSERT_TRUE(dns.ok());
  EXPECT_EQ(dns->dns_host, "ite-worker.ns.svc");
  EXPECT_EQ(dns->dns_port, 50052);
  EXPECT_TRUE(dns->addresses.empty());
  for (const char* bad : {"", ",", "dns:///host", "dns:///:80", "dns:///h:0", "dns:///h:99999",
                          "dns:///h:8x", "dns:///a:1,b:2"}) {
    EXPECT_EQ(ParseWorkerTarget(bad).status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(WorkerTargetTest, TheSystemResolverFindsLocalhost) {
  StatusOr<std::vector<std::string>> hosts = SystemHostResolver()("localhost");
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  std::set<std::string> got(hosts->begin(), hosts->end());
  EXPECT_TRUE(got.count("127.0.0.1") || got.count("[::1]")) << hosts->size();
  EXPECT_EQ(SystemHostResolver()("no-such-host.invalid").status().code(), StatusCode::kNotFound);
}

// A name's addresses as the test sets them, and one fake worker per address that the factory
// was asked for (the slot owns it; it is gone once its address leaves).
class World {
 public:
  void Set(std::vector<std::string> hosts, Status status = Status::Ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    hosts_ = std::move(hosts);
    status_ = status;
  }
  HostResolver Resolver() {
    return [this](const std::string& host) -> StatusOr<std::vector<std::string>> {
      EXPECT_EQ(host, "ite-worker");
      std::lock_guard<std::mutex> lock(mu_);
      if (!status_.ok()) return status_;
      return hosts_;
    };
  }
  SwitchableWorkerClient::Factory Factory() {
    return [this](const std::string& address) -> std::unique_ptr<WorkerClient> {
      std::lock_guard<std::mutex> lock(mu_);
      ++created_[address];
      return std::make_unique<FakeWorkerClient>(FakeWorkerOptions{});
    };
  }
  int created(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    return created_[address];
  }

 private:
  std::mutex mu_;
  std::vector<std::string> hosts_;
  Status status_;
  std::map<std::string, int> created_;
};

int UpWorkers(Scheduler& s) {
  int up = 0;
  for (const WorkerStats& w : s.Stats().workers) up += w.up ? 1 : 0;
  return up;
}

TEST(WorkerDiscoveryTest, WorkersJoinAndLeaveWhileRequestsRun) {
  World world;
  world.Set({"10.0.0.1"});
  WorkerDiscoveryOptions o;
  o.target = *ParseWorkerTarget("dns:///ite-worker:50052");
  o.max_workers = 3;
  o.resolve_interval_ms = 1000000;  // the test resolves when it wants
  o.resolver = world.Resolver();
  o.factory = world.Factory();
  WorkerDiscovery discovery(o);
  SchedulerOptions so;
  so.probe_interval_ms = 10;
  so.recover_grace_ms = 200;
  Scheduler s(so, nullptr, discovery.Start());
  ASSERT_TRUE(s.Start().ok());
  EXPECT_EQ(UpWorkers(s), 1);
  EXPECT_EQ(world.created("10.0.0.1:50052"), 1);
  EXPECT_EQ(discovery.SlotNames()[2], "dns:///ite-worker:50052 #2");

  // Long requests run while the name gains two workers and then loses the first one.
  std::mt19937 rng(5);
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<Tokens> prompts;
  auto submit = [&](int max_tokens) {
    prompts.push_back(RandomTokens(&rng, 16));
    cs.push_back(std::make_unique<Collector>());
    Status st = s.Submit(Greedy("r" + std::to_string(cs.size()), prompts.back(), max_tokens),
                         cs.back()->Callback());
    ASSERT_TRUE(st.ok()) << st.ToString();
  };
  for (int i = 0; i < 4; ++i) submit(3000);
  ASSERT_TRUE(WaitFor([&] { return cs[3]->events() > 2; }));

  world.Set({"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  discovery.ResolveNow();
  ASSERT_TRUE(WaitFor([&] { return UpWorkers(s) == 3; })) << "the new workers were not taken in";
  // Routed to the least loaded: exactly fills the two new workers up to the first one's load.
  for (int i = 0; i < 8; ++i) submit(3000);
  ASSERT_TRUE(WaitFor([&] { return cs.back()->events() > 2; }));
  const SchedulerStats before = s.Stats();
  EXPECT_GT(before.workers[1].running, 0);
  EXPECT_GT(before.workers[2].running, 0);

  world.Set({"10.0.0.2", "10.0.0.3"});
  discovery.ResolveNow();
  // The first worker's requests fail UNAVAILABLE (at once, or once the grace for it to come
  // back has passed); the others go on.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(cs[i]->Wait(milliseconds(5000))) << "request " << i << " hangs";
    EXPECT_EQ(cs[i]->finish(), FinishReason::kError);
    EXPECT_EQ(cs[i]->error().code(), StatusCode::kUnavailable) << cs[i]->error().ToString();
  }
  EXPECT_FALSE(s.Stats().workers[0].up);
  // Those on the workers that stayed never fail: each finishes (the fake model is fast) or is
  // still running and is cancelled now.
  for (size_t i = 4; i < cs.size(); ++i) s.Cancel("r" + std::to_string(i + 1));
  for (size_t i = 4; i < cs.size(); ++i) {
    ASSERT_TRUE(cs[i]->Wait(milliseconds(5000))) << "request " << i << " hangs";
    if (cs[i]->finish() == FinishReason::kLength) {
      EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 3000, kVocab)) << i;
    } else {
      EXPECT_EQ(cs[i]->finish(), FinishReason::kCancelled) << cs[i]->error().ToString();
    }
  }

  // A failed lookup changes nothing; then the first address comes back: a fresh worker there
  // (the factory's second client for it), cleared and taken in with an empty pool.
  world.Set({}, Unavailable("DNS server timed out"));
  discovery.ResolveNow();
  EXPECT_EQ(UpWorkers(s), 2);
  world.Set({"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  discovery.ResolveNow();
  ASSERT_TRUE(WaitFor([&] { return UpWorkers(s) == 3; }));
  EXPECT_EQ(world.created("10.0.0.1:50052"), 2);
  for (const WorkerStats& w : s.Stats().workers) EXPECT_EQ(w.running, 0);
  Tokens prompt{7, 8, 9};
  Collector after;
  ASSERT_TRUE(s.Submit(Greedy("after", prompt, 5), after.Callback()).ok());
  ASSERT_TRUE(after.Wait());
  EXPECT_EQ(after.tokens(), FakeModelGenerate(prompt, 5, kVocab));

  // An answer with no address empties every slot: the next request fails UNAVAILABLE (after
  // the grace for a worker to come back) instead of hanging.
  world.Set({});
  discovery.ResolveNow();
  Collector none;
  Status st = s.Submit(Greedy("none", prompt, 5), none.Callback());
  if (st.ok()) {
    ASSERT_TRUE(none.Wait(milliseconds(5000))) << "a request with no worker hangs";
    EXPECT_EQ(none.finish(), FinishReason::kError);
    EXPECT_EQ(none.error().code(), StatusCode::kUnavailable) << none.error().ToString();
  } else {
    EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  }
  EXPECT_TRUE(WaitFor([&] { return UpWorkers(s) == 0; }));
  discovery.Stop();
}

TEST(WorkerDiscoveryTest, MoreAddressesThanSlotsLeavesTheRestOut) {
  World world;
  world.Set({"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  WorkerDiscoveryOptions o;
  o.target = *ParseWorkerTarget("dns:///ite-worker:1");
  o.max_workers = 2;
  o.resolve_interval_ms = 1000000;
  o.resolver = world.Resolver();
  o.factory = world.Factory();
  WorkerDiscovery discovery(o);
  std::vector<std::unique_ptr<WorkerClient>> clients = discovery.Start();
  ASSERT_EQ(clients.size(), 2u);
  EXPECT_EQ(world.created("10.0.0.1:1") + world.created("10.0.0.2:1") + world.created("10.0.0.3:1"),
            2);
  discovery.Stop();
}

}  // namespace
}  // namespace ite
