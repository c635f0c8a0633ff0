// The batcher driven step by step against a WorkerEngine over the fake model, with random
// arrivals, priorities and cancellations under a pool small enough to force preemption. After
// every step the block accounting is recounted from every holder (sequences and prefix cache),
// and every finished request must equal the model run alone.
#include "scheduler/batcher.h"

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <random>

#include "worker/service/fake_backend.h"
#include "worker/service/worker_engine.h"

namespace ite {
namespace {

using Tokens = std::vector<int32_t>;
constexpr int32_t kVocab = 500;

struct Outcome {
  Tokens prompt;
  Tokens tokens;
  FinishReason finish = FinishReason::kNone;
  Usage usage;
};

class Driver {
 public:
  Driver(BatcherOptions options, int32_t block_size, int32_t num_blocks)
      : engine_(
            std::make_unique<FakeBackend>(FakeModelConfig(kVocab, 4096), block_size, num_blocks),
            "fake"),
        batcher_(options, engine_.Info()) {}

  void Submit(const std::string& id, Tokens prompt, int32_t max_tokens, int32_t priority,
              bool use_cache) {
    auto seq = std::make_unique<Sequence>();
    seq->seq_id = next_seq_++;
    seq->arrival = seq->seq_id;
    seq->request.request_id = id;
    seq->request.prompt_tokens = prompt;
    seq->request.max_tokens = max_tokens;
    seq->request.priority = priority;
    seq->request.use_prefix_cache = use_cache;
    seq->request.sampling.temperature = 0.0f;
    seq->request.ignore_eos = true;
    seq->tokens = prompt;
    seq->num_prompt = static_cast<int32_t>(prompt.size());
    Outcome* out = &outcomes_[id];
    out->prompt = prompt;
    seq->on_event = std::make_shared<EventCallback>([out](const GenerationEvent& e) {
      out->tokens.insert(out->tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.finish != FinishReason::kNone) {
        out->finish = e.finish;
        out->usage = e.usage;
      }
    });
    ids_[id] = seq->seq_id;
    batcher_.Enqueue(std::move(seq));
  }

  void Cancel(const std::string& id) {
    Deliver();
    if (batcher_.Cancel(ids_.at(id), &events_)) Deliver();
  }

  // Sends what the batcher will send (up to its in-flight limit), then runs the oldest step.
  // Returns false when there was nothing to run.
  bool Step() {
    StepRequest r;
    while (batcher_.CanSendStep() && batcher_.BuildStep(next_step_++, &r)) {
      inflight_.push_back(std::move(r));
      r = StepRequest();
    }
    EXPECT_TRUE(batcher_.CheckConsistency().ok()) << batcher_.CheckConsistency().ToString();
    if (inflight_.empty()) return false;
    StatusOr<StepResult> result = engine_.Step(inflight_.front());
    inflight_.pop_front();
    EXPECT_TRUE(result.ok()) << result.status().ToString();
    if (!result.ok()) return false;
    Status s = batcher_.OnStepResult(*result, &events_);
    EXPECT_TRUE(s.ok()) << s.ToString();
    Deliver();
    Status c = batcher_.CheckConsistency();
    EXPECT_TRUE(c.ok()) << c.ToString();
    return c.ok();
  }

  void Deliver() {
    for (const OutEvent& e : events_) (*e.callback)(e.event);
    events_.clear();
  }

  Batcher& batcher() { return batcher_; }
  std::map<std::string, Outcome>& outcomes() { return outcomes_; }

 private:
  WorkerEngine engine_;
  Batcher batcher_;
  std::deque<StepRequest> inflight_;
  std::vector<OutEvent> events_;
  std::map<std::string, Outcome> outcomes_;
  std::map<std::string, int64_t> ids_;
  int64_t next_seq_ = 1;
  int64_t next_step_ = 1;
};

TEST(BatcherTest, RandomWorkloadUnderPressureStaysConsistentAndExact) {
  for (uint32_t seed : {1u, 2u, 3u, 4u, 5u, 6u}) {
    BatcherOptions o;
    o.max_batch_tokens = 24;
    o.max_running = 6;
    Driver d(o, /*block_size=*/4, /*num_blocks=*/40);
    std::mt19937 rng(seed);
    std::vector<Tokens> heads;
    for (int i = 0; i < 3; ++i) {
      Tokens h(4 + rng() % 12);
      for (int32_t& t : h) t = rng() % kVocab;
      heads.push_back(h);
    }
    std::vector<std::string> live;
    int submitted = 0;
    for (int op = 0; op < 1500; ++op) {
      int kind = rng() % 10;
      if (kind < 2 && submitted < 150) {
        Tokens p = heads[rng() % heads.size()];
        int extra = rng() % 10;
        for (int i = 0; i < extra; ++i) p.push_back(rng() % kVocab);
        if (p.empty()) p.push_back(1);
        std::string id = "r" + std::to_string(submitted++);
        d.Submit(id, p, 1 + rng() % 40, rng() % 3, rng() % 4 != 0);
        live.push_back(id);
      } else if (kind < 3 && !live.empty()) {
        size_t i = rng() % live.size();
        d.Cancel(live[i]);
        live.erase(live.begin() + i);
      } else {
        d.Step();
      }
      if (HasFatalFailure()) return;
    }
    while (d.Step()) {
    }
    int exact = 0;
    for (auto& [id, out] : d.outcomes()) {
      ASSERT_NE(out.finish, FinishReason::kNone) << id << " never finished (seed " << seed << ")";
      Tokens ref = FakeModelGenerate(out.prompt, static_cast<int32_t>(out.tokens.size()), kVocab);
      EXPECT_EQ(out.tokens, ref) << id << " seed " << seed;
      EXPECT_EQ(out.usage.completion_tokens, static_cast<int32_t>(out.tokens.size()));
      if (out.finish == FinishReason::kLength) ++exact;
    }
    EXPECT_GT(exact, 50);
    EXPECT_GT(d.batcher().preemptions(), 0) << "seed " << seed;
    WorkerStats s;
    d.batcher().FillStats(&s);
    EXPECT_EQ(s.running + s.waiting, 0);
    EXPECT_EQ(s.free_blocks + s.cached_blocks, 40) << "blocks leaked, seed " << seed;
    EXPECT_GT(s.cached_blocks, 0);
  }
}

}  // namespace
}  // namespace ite
