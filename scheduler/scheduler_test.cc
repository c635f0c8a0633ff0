// Scheduler over fake workers: the fake model reads its context back through the block tables
// it is given, so every output compared with FakeModelGenerate (the request run alone, without
// paging) also checks block tables, prefix sharing, copy-on-write and preemption. Worker failure
// and recovery: scheduler_failure_test.cc.
#include "scheduler/scheduler.h"

#include <gtest/gtest.h>

#include <random>

#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

TEST(SchedulerTest, SingleRequestMatchesTheModel) {
  Harness h({});
  Tokens prompt{5, 17, 256, 3, 999, 42, 7, 7, 7, 1};
  auto c = h.Run(Greedy("a", prompt, 20));
  EXPECT_EQ(c->tokens(), FakeModelGenerate(prompt, 20, kVocab));
  EXPECT_EQ(c->finish(), FinishReason::kLength);
  EXPECT_EQ(c->usage().prompt_tokens, 10);
  EXPECT_EQ(c->usage().cached_tokens, 0);
  EXPECT_EQ(c->usage().completion_tokens, 20);
  EXPECT_EQ(c->events(), 20);  // one per token, the last one final
  SchedulerStats s = h.scheduler->Stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.finished_requests, 1);
  EXPECT_EQ(s.workers[0].free_blocks + s.workers[0].cached_blocks, s.workers[0].num_blocks);
}

TEST(SchedulerTest, ConcurrentRequestsMatchRunningAlone) {
  SchedulerOptions o;
  o.max_batch_tokens = 64;
  Harness h(o);
  std::mt19937 rng(7);
  std::vector<Tokens> prompts;
  std::vector<int32_t> lengths;
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 40; ++i) {
    prompts.push_back(RandomTokens(&rng, 1 + rng() % 60));
    lengths.push_back(1 + rng() % 30);
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler
            ->Submit(Greedy("r" + std::to_string(i), prompts[i], lengths[i]), cs[i]->Callback())
            .ok());
  }
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], lengths[i], kVocab)) << i;
    EXPECT_EQ(cs[i]->usage().completion_tokens, lengths[i]);
  }
  FakeWorkerCounters k = h.fakes[0]->counters();
  EXPECT_LE(k.max_step_tokens, 64);
  EXPECT_LE(k.max_inflight, 2);
  EXPECT_GT(k.decodes_without_tokens, 0);  // decodes carry no token: the worker feeds its own
}

TEST(SchedulerTest, ABudgetSmallerThanMaxRunningCapsTheRunningSet) {
  SchedulerOptions o;
  o.max_batch_tokens = 4;  // fewer tokens per step than max_running (256)
  Harness h(o);
  h.fakes[0]->Pause();
  std::vector<std::unique_ptr<Collector>> cs;
  std::vector<Tokens> prompts;
  for (int i = 0; i < 10; ++i) {
    prompts.push_back({i + 1, 2});
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("r" + std::to_string(i), prompts[i], 30), cs[i]->Callback())
            .ok());
  }
  ASSERT_TRUE(
      WaitFor([&] { return h.scheduler->Stats().waiting + h.scheduler->Stats().running == 10; }));
  EXPECT_LE(h.scheduler->Stats().running, 4);
  h.fakes[0]->Resume();
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 30, kVocab));
  }
  EXPECT_LE(h.fakes[0]->counters().max_step_tokens, 4);
}

TEST(SchedulerTest, PipelinesTwoStepsAheadOfResults) {
  Harness h({});
  h.fakes[0]->Pause();
  Collector c;
  Tokens prompt{1, 2, 3};
  ASSERT_TRUE(h.scheduler->Submit(Greedy("a", prompt, 5), c.Callback()).ok());
  // The prefill and then a decode are sent before the worker has answered anything.
  ASSERT_TRUE(WaitFor([&] { return h.fakes[0]->counters().steps == 2; }));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(h.fakes[0]->counters().steps, 2);  // never a third while two are outstanding
  EXPECT_EQ(h.fakes[0]->counters().decodes_without_tokens, 1);
  h.fakes[0]->Resume();
  ASSERT_TRUE(c.Wait());
  EXPECT_EQ(c.tokens(), FakeModelGenerate(prompt, 5, kVocab));
  EXPECT_EQ(h.fakes[0]->counters().max_inflight, 2);
}

TEST(SchedulerTest, ChunkedPrefillWithinTheTokenBudget) {
  SchedulerOptions o;
  o.max_batch_tokens = 16;
  Harness h(o);
  std::mt19937 rng(3);
  Tokens long_prompt = RandomTokens(&rng, 100);
  Tokens short_prompt = RandomTokens(&rng, 5);
  Collector a, b;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("long", long_prompt, 8), a.Callback()).ok());
  ASSERT_TRUE(h.scheduler->Submit(Greedy("short", short_prompt, 30), b.Callback()).ok());
  ASSERT_TRUE(a.Wait());
  ASSERT_TRUE(b.Wait());
  EXPECT_EQ(a.tokens(), FakeModelGenerate(long_prompt, 8, kVocab));
  EXPECT_EQ(b.tokens(), FakeModelGenerate(short_prompt, 30, kVocab));
  FakeWorkerCounters k = h.fakes[0]->counters();
  EXPECT_LE(k.max_step_tokens, 16);
  EXPECT_GE(k.steps, 100 / 16);
}

void RunUnderTinyPool(bool prefix_cache) {
  SchedulerOptions o;
  o.enable_prefix_cache = prefix_cache;
  FakeWorkerOptions w;
  w.block_size = 4;
  w.num_blocks = 24;  // 96 tokens; each request needs up to 60
  Harness h(o, {w});
  std::mt19937 rng(11);
  std::vector<Tokens> prompts;
  std::vector<std::unique_ptr<Collector>> cs;
  Tokens shared = RandomTokens(&rng, 8);
  for (int i = 0; i < 10; ++i) {
    Tokens p = shared;  // a shared head, so preempted work is partly found in the cache
    Tokens tail = RandomTokens(&rng, 12);
    p.insert(p.end(), tail.begin(), tail.end());
    prompts.push_back(p);
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler->Submit(Greedy("r" + std::to_string(i), p, 40), cs[i]->Callback()).ok());
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->finish(), FinishReason::kLength);
    EXPECT_EQ(cs[i]->tokens(), FakeModelGenerate(prompts[i], 40, kVocab)) << "request " << i;
  }
  SchedulerStats s = h.scheduler->Stats();
  EXPECT_GT(s.preemptions, 0) << "the pool was meant to be too small";
  EXPECT_EQ(s.workers[0].free_blocks + s.workers[0].cached_blocks, 24);
  if (!prefix_cache) {
    EXPECT_EQ(s.workers[0].cached_blocks, 0);
  }
}

TEST(SchedulerTest, PreemptionUnderATinyPoolKeepsOutputsExact) { RunUnderTinyPool(true); }
TEST(SchedulerTest, PreemptionWithoutPrefixCache) { RunUnderTinyPool(false); }

// Seeded sampling with penalties is exact across preemption: a preempted sequence rejoins with
// its generated tokens counted for the penalties and its RNG resumed past their draws, so every
// request gives what it gives alone on a roomy pool.
TEST(SchedulerTest, SeededSamplingSurvivesPreemption) {
  auto request = [](int i, const Tokens& prompt) {
    GenerationRequest r = Greedy("s" + std::to_string(i), prompt, 40);
    r.sampling.temperature = 2.0f;  // the fake model's logits: one 10, the rest 0
    r.sampling.seed = 1000 + i;
    r.sampling.has_seed = true;
    r.sampling.presence_penalty = 0.5f;
    r.sampling.frequency_penalty = 0.25f;
    return r;
  };
  std::mt19937 rng(21);
  std::vector<Tokens> prompts;
  for (int i = 0; i < 10; ++i) prompts.push_back(RandomTokens(&rng, 20));
  std::vector<Tokens> alone;
  {
    Harness roomy({});
    for (int i = 0; i < 10; ++i) alone.push_back(roomy.Run(request(i, prompts[i]))->tokens());
  }
  SchedulerOptions o;
  o.enable_prefix_cache = false;
  FakeWorkerOptions w;
  w.block_size = 4;
  w.num_blocks = 24;  // 96 tokens for 10 requests of up to 60
  Harness tiny(o, {w});
  std::vector<std::unique_ptr<Collector>> cs;
  for (int i = 0; i < 10; ++i) {
    cs.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(tiny.scheduler->Submit(request(i, prompts[i]), cs[i]->Callback()).ok());
  }
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(cs[i]->Wait());
    EXPECT_EQ(cs[i]->tokens(), alone[i]) << "request " << i;
  }
  EXPECT_GT(tiny.scheduler->Stats().preemptions, 0) << "the pool was meant to be too small";
}

TEST(SchedulerTest, PrefixCacheOnAndOffGiveIdenticalOutputs) {
  std::mt19937 rng(5);
  Tokens system = RandomTokens(&rng, 40);
  std::vector<Tokens> prompts;
  for (int i = 0; i < 4; ++i) {
    Tokens p = system;
    Tokens q = RandomTokens(&rng, 3 + i);
    p.insert(p.end(), q.begin(), q.end());
    prompts.push_back(p);
  }
  std::vector<Tokens> outputs[2];
  for (bool cache : {false, true}) {
    SchedulerOptions o;
    o.enable_prefix_cache = cache;
    Harness h(o);
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto c = h.Run(Greedy("p" + std::to_string(i), prompts[i], 12));
      outputs[cache].push_back(c->tokens());
      EXPECT_EQ(c->tokens(), FakeModelGenerate(prompts[i], 12, kVocab));
      if (i > 0 && cache) {
        EXPECT_EQ(c->usage().cached_tokens, 40) << "the shared 40-token head (10 blocks)";
      } else {
        EXPECT_EQ(c->usage().cached_tokens, 0);
      }
    }
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

TEST(SchedulerTest, PartiallyMatchedBlockIsCopiedOnWrite) {
  Harness h({});  // block size 4
  Tokens a{10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
  auto ca = h.Run(Greedy("a", a, 6));
  EXPECT_EQ(ca->tokens(), FakeModelGenerate(a, 6, kVocab));
  // b shares 9 tokens with a: two full cached blocks plus 1 token of a's third block.
  Tokens b{10, 11, 12, 13, 14, 15, 16, 17, 18, 500, 501};
  auto cb = h.Run(Greedy("b", b, 6));
  EXPECT_EQ(cb->tokens(), FakeModelGenerate(b, 6, kVocab));
  EXPECT_EQ(cb->usage().cached_tokens, 9);
  EXPECT_EQ(h.fakes[0]->counters().block_copies, 1);
  // The same prompt again: everything but the last token comes from the cache.
  auto cc = h.Run(Greedy("a2", a, 6));
  EXPECT_EQ(cc->tokens(), ca->tokens());
  EXPECT_EQ(cc->usage().cached_tokens, 9);
}

TEST(SchedulerTest, CancellationFreesBlocksAtOnce) {
  Harness h({});
  Tokens prompt{1, 2, 3, 4, 5, 6, 7, 8, 9};
  Collector c;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("long", prompt, 3000), c.Callback()).ok());
  ASSERT_TRUE(WaitFor([&] { return c.events() >= 3; }));
  // Mid-run the sequence's blocks, its cached prompt blocks too, count as used: the three counts
  // partition the pool (a cached block a sequence holds is not also counted as cached).
  const WorkerStats mid = h.scheduler->Stats().workers[0];
  EXPECT_GT(mid.used_blocks, 0);
  EXPECT_EQ(mid.free_blocks + mid.used_blocks + mid.cached_blocks, mid.num_blocks);
  h.scheduler->Cancel("long");
  ASSERT_TRUE(c.Wait());
  EXPECT_EQ(c.finish(), FinishReason::kCancelled);
  // Stats are published before the final event is delivered.
  SchedulerStats s = h.scheduler->Stats();
  EXPECT_EQ(s.running, 0);
  EXPECT_EQ(s.workers[0].used_blocks, 0) << "only the cache holds any";
  EXPECT_EQ(s.workers[0].free_blocks + s.workers[0].cached_blocks, s.workers[0].num_blocks);
  EXPECT_LT(c.usage().completion_tokens, 3000);
  EXPECT_EQ(c.tokens(), FakeModelGenerate(prompt, c.usage().completion_tokens, kVocab));
  h.scheduler->Cancel("long");     // already gone: no-op
  h.scheduler->Cancel("unknown");  // never existed: no-op
  // The id can be reused once the request has ended.
  auto again = h.Run(Greedy("long", prompt, 4));
  EXPECT_EQ(again->tokens(), FakeModelGenerate(prompt, 4, kVocab));
}

TEST(SchedulerTest, HigherPriorityFirstThenArrivalOrder) {
  SchedulerOptions o;
  o.max_running = 1;
  Harness h(o);
  std::mutex mu;
  std::vector<std::string> order;
  auto track = [&](const std::string& id, Collector* c) {
    auto inner = c->Callback();
    return [&, id, inner](const GenerationEvent& e) {
      if (e.finish != FinishReason::kNone) {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(id);
      }
      inner(e);
    };
  };
  h.fakes[0]->Pause();
  Collector ca, cb, cc, cd, ce;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("A", {1}, 3), track("A", &ca)).ok());
  ASSERT_TRUE(WaitFor([&] { return h.fakes[0]->counters().steps >= 1; }));  // A is running
  auto req = [&](std::string id, int32_t prio) {
    GenerationRequest r = Greedy(id, {2, 3}, 3);
    r.priority = prio;
    return r;
  };
  ASSERT_TRUE(h.scheduler->Submit(req("B", 0), track("B", &cb)).ok());
  ASSERT_TRUE(h.scheduler->Submit(req("C", 5), track("C", &cc)).ok());
  ASSERT_TRUE(h.scheduler->Submit(req("D", 5), track("D", &cd)).ok());
  ASSERT_TRUE(h.scheduler->Submit(req("E", 0), track("E", &ce)).ok());
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->Stats().waiting == 4; }));
  h.fakes[0]->Resume();
  for (Collector* c : {&ca, &cb, &cc, &cd, &ce}) ASSERT_TRUE(c->Wait());
  EXPECT_EQ(order, (std::vector<std::string>{"A", "C", "D", "B", "E"}));
}

// Steps carry only the block-table entries the worker lacks: a 10-token prompt generating 100
// tokens writes 109 positions, 28 blocks of 4, and each block id travels once (whole tables
// would send about 1,400 ids over the ~100 steps), with the output still the model's.
TEST(SchedulerTest, StepsSendEachBlockIdOnce) {
  Harness h({});
  Tokens prompt{5, 17, 256, 3, 999, 42, 7, 7, 7, 1};
  auto c = h.Run(Greedy("a", prompt, 100));
  EXPECT_EQ(c->tokens(), FakeModelGenerate(prompt, 100, kVocab));
  EXPECT_EQ(h.fakes[0]->counters().block_ids_sent, 28);
}

TEST(SchedulerTest, EosStopTokenIdsAndLength) {
  Tokens prompt{9, 8, 7, 6};
  Tokens ref = FakeModelGenerate(prompt, 10, kVocab);
  // The model's 4th token is made its EOS (unless it appeared earlier).
  int32_t eos = ref[3];
  size_t first = std::find(ref.begin(), ref.end(), eos) - ref.begin();
  FakeWorkerOptions w;
  w.eos_token_ids = {eos};
  Harness h({}, {w});
  GenerationRequest r = Greedy("eos", prompt, 10);
  r.ignore_eos = false;
  auto c = h.Run(r);
  EXPECT_EQ(c->finish(), FinishReason::kStop);
  EXPECT_EQ(c->tokens(), Tokens(ref.begin(), ref.begin() + first + 1));  // EOS included
  EXPECT_EQ(c->usage().completion_tokens, static_cast<int32_t>(first + 1));

  auto ignored = h.Run(Greedy("ignore", prompt, 10));  // ignore_eos
  EXPECT_EQ(ignored->finish(), FinishReason::kLength);
  EXPECT_EQ(ignored->tokens(), ref);

  GenerationRequest s = Greedy("stopid", prompt, 10);
  s.stop_token_ids = {ref[1]};
  auto cs = h.Run(s);
  EXPECT_EQ(cs->finish(), FinishReason::kStop);
  size_t at = std::find(ref.begin(), ref.end(), ref[1]) - ref.begin();
  EXPECT_EQ(cs->tokens(), Tokens(ref.begin(), ref.begin() + at + 1));
}

TEST(SchedulerTest, InvalidRequestsAreRejectedWithAReason) {
  FakeWorkerOptions w;
  w.max_position = 64;
  w.num_blocks = 8;  // 32 tokens of KV
  Harness h({}, {w});
  auto expect = [&](GenerationRequest r, StatusCode code, const std::string& needle) {
    Status s = h.scheduler->Submit(std::move(r), [](const GenerationEvent&) {});
    EXPECT_EQ(s.code(), code) << s.ToString();
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  expect(Greedy("x", {}, 4), StatusCode::kInvalidArgument, "prompt_tokens is empty");
  expect(Greedy("x", {1}, 0), StatusCode::kInvalidArgument, "max_tokens");
  expect(Greedy("x", Tokens(60, 1), 5), StatusCode::kInvalidArgument, "context length 64");
  expect(Greedy("x", {1, kVocab}, 4), StatusCode::kInvalidArgument, "prompt_tokens[1]");
  expect(Greedy("x", Tokens(30, 1), 10), StatusCode::kResourceExhausted, "KV blocks");
  GenerationRequest bad = Greedy("x", {1}, 4);
  bad.sampling.temperature = -2.0f;
  expect(bad, StatusCode::kInvalidArgument, "temperature");
  GenerationRequest stop = Greedy("x", {1}, 4);
  stop.stop = {"\n"};
  expect(stop, StatusCode::kInvalidArgument, "tokenizer");
  stop.stop = {""};
  expect(stop, StatusCode::kInvalidArgument, "stop[0]");
  GenerationRequest ids = Greedy("x", {1}, 4);
  ids.stop_token_ids = {-1};
  expect(ids, StatusCode::kInvalidArgument, "stop_token_ids[0]");

  h.fakes[0]->Pause();
  Collector c;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("dup", {1, 2}, 4), c.Callback()).ok());
  expect(Greedy("dup", {1, 2}, 4), StatusCode::kInvalidArgument, "already in flight");
  h.fakes[0]->Resume();
  ASSERT_TRUE(c.Wait());
}

TEST(SchedulerTest, ShutdownDrainsOrCancels) {
  for (bool drain : {true, false}) {
    Harness h({});
    std::vector<std::unique_ptr<Collector>> cs;
    for (int i = 0; i < 6; ++i) {
      cs.push_back(std::make_unique<Collector>());
      ASSERT_TRUE(h.scheduler
                      ->Submit(Greedy("r" + std::to_string(i), {1, 2, i}, drain ? 20 : 3000),
                               cs[i]->Callback())
                      .ok());
    }
    h.scheduler->Shutdown(drain);
    for (auto& c : cs) {
      ASSERT_TRUE(c->done());  // every request got its final event before Shutdown returned
      EXPECT_EQ(c->finish(), drain ? FinishReason::kLength : FinishReason::kCancelled);
    }
    Status s = h.scheduler->Submit(Greedy("late", {1}, 2), [](const GenerationEvent&) {});
    EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  }
}

// A full queue answers ResourceExhausted at once, admits nothing, and takes requests again as
// soon as some finish.
TEST(SchedulerTest, FullQueueIsResourceExhausted) {
  SchedulerOptions o;
  o.max_running = 2;
  o.max_waiting = 3;
  Harness h(o);
  h.fakes[0]->Pause();
  std::vector<std::unique_ptr<Collector>> admitted;
  for (int i = 0; i < 5; ++i) {
    admitted.push_back(std::make_unique<Collector>());
    ASSERT_TRUE(
        h.scheduler
            ->Submit(Greedy("r" + std::to_string(i), {1, 2, 3}, 4), admitted.back()->Callback())
            .ok())
        << i;
  }
  Collector refused;
  Status s = h.scheduler->Submit(Greedy("over", {1, 2, 3}, 4), refused.Callback());
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_NE(s.message().find("queue is full"), std::string::npos) << s.message();
  EXPECT_EQ(refused.events(), 0);
  h.fakes[0]->Resume();
  for (auto& c : admitted) {
    ASSERT_TRUE(c->Wait());
    EXPECT_EQ(c->finish(), FinishReason::kLength);
  }
  Collector again;
  ASSERT_TRUE(h.scheduler->Submit(Greedy("over", {1, 2, 3}, 4), again.Callback()).ok());
  ASSERT_TRUE(again.Wait());
  EXPECT_EQ(again.tokens(), FakeModelGenerate(Tokens{1, 2, 3}, 4, kVocab));
}

}  // namespace
}  // namespace ite
