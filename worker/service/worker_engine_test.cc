#include "worker/service/worker_engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "worker/service/fake_backend.h"

namespace ite {
namespace {

constexpr int32_t kVocab = 50;
constexpr int32_t kBlockSize = 4;

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0.0f;
  return p;
}

class WorkerEngineTest : public ::testing::Test {
 protected:
  WorkerEngineTest() {
    auto backend = std::make_unique<FakeBackend>(FakeModelConfig(kVocab, 64), kBlockSize, 16);
    fake_ = backend.get();
    engine_ = std::make_unique<WorkerEngine>(std::move(backend), "fake");
  }
  StepSequence Join(int64_t id, std::vector<int32_t> prompt, std::vector<int32_t> blocks) {
    StepSequence s;
    s.seq_id = id;
    s.new_tokens = prompt;
    s.block_table = std::move(blocks);
    s.sampling = Greedy();
    s.prompt_tokens = prompt;
    return s;
  }
  StepSequence Decode(int64_t id, int32_t pos, std::vector<int32_t> blocks) {
    StepSequence s;
    s.seq_id = id;
    s.start_pos = pos;
    s.block_table = std::move(blocks);
    return s;
  }
  FakeBackend* fake_;
  std::unique_ptr<WorkerEngine> engine_;
};

TEST_F(WorkerEngineTest, DecodeFeedsTheLastSampledToken) {
  std::vector<int32_t> prompt{1, 2, 3, 4, 5};
  std::vector<int32_t> expected = FakeModelGenerate(prompt, 4, kVocab);
  StepRequest r;
  r.step_id = 1;
  r.seqs.push_back(Join(7, prompt, {3, 9}));
  auto res = engine_->Step(r);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  ASSERT_EQ(res->outputs.size(), 1u);
  EXPECT_EQ(res->outputs[0].seq_id, 7);
  EXPECT_EQ(res->outputs[0].sample.token, expected[0]);
  EXPECT_EQ(res->step_id, 1);
  for (int32_t i = 1; i < 4; ++i) {
    StepRequest d;
    d.step_id = 1 + i;
    d.seqs.push_back(Decode(7, 4 + i, {3, 9, 11}));
    auto out = engine_->Step(d);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->outputs[0].sample.token, expected[i]) << "token " << i;
    EXPECT_GE(out->idle_us, 0);
    EXPECT_GE(out->forward_us, 0);
  }
  EXPECT_EQ(engine_->num_sequences(), 1);
  StepRequest release;
  release.release_seq_ids = {7};
  ASSERT_TRUE(engine_->Step(release).ok());
  EXPECT_EQ(engine_->num_sequences(), 0);
}

// Steps send only the block-table entries the worker does not hold: the same tokens come out
// as with whole tables, a changed entry (copy-on-write) is resent from its index, and offsets
// past what the worker holds, or on a join, are rejected.
TEST_F(WorkerEngineTest, BlockTableDeltas) {
  std::vector<int32_t> prompt{1, 2, 3, 4, 5};
  std::vector<int32_t> expected = FakeModelGenerate(prompt, 8, kVocab);
  StepRequest r;
  r.seqs.push_back(Join(7, prompt, {3, 9}));
  auto res = engine_->Step(r);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(res->outputs[0].sample.token, expected[0]);
  // Positions 5..7 stay in block 9 (nothing sent); 8 needs a third block (one id sent).
  for (int32_t i = 1; i < 8; ++i) {
    StepRequest d;
    StepSequence s = Decode(7, 4 + i, {});
    s.block_table_offset = 2;
    if (4 + i >= 8) s.block_table = {11};
    if (4 + i > 8) {
      s.block_table_offset = 3;
      s.block_table.clear();
    }
    d.seqs.push_back(s);
    auto out = engine_->Step(d);
    ASSERT_TRUE(out.ok()) << "token " << i << ": " << out.status().ToString();
    EXPECT_EQ(out->outputs[0].sample.token, expected[i]) << "token " << i;
  }
  auto expect_invalid = [&](StepSequence s, const std::string& needle) {
    StepRequest bad;
    bad.seqs.push_back(std::move(s));
    auto out = engine_->Step(bad);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(needle), std::string::npos) << out.status().message();
  };
  StepSequence past = Decode(7, 12, {});
  past.block_table_offset = 4;  // the worker holds 3
  expect_invalid(past, "block_table_offset 4 but the worker holds 3");
  StepSequence short_table = Decode(7, 12, {});
  short_table.block_table_offset = 2;  // keeps 2 blocks: cannot hold 13 tokens
  expect_invalid(short_table, "2 blocks cannot hold 13 tokens");
  StepSequence join = Join(8, {1}, {4});
  join.block_table_offset = 1;
  expect_invalid(join, "block_table_offset 1 but the worker holds 0");
  // The rejected steps changed nothing: the next decode still continues the sequence. Entry 1
  // is replaced (as after a copy-on-write) by a block holding the same KV, copied first.
  StepRequest d;
  d.copy_blocks = {{9, 12}};
  StepSequence s = Decode(7, 12, {12, 11, 13});
  s.block_table_offset = 1;
  d.seqs.push_back(s);
  auto out = engine_->Step(d);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->outputs[0].sample.token, FakeModelGenerate(prompt, 9, kVocab)[8]);
}

TEST_F(WorkerEngineTest, ChunkedPrefillAndCopyOnWrite) {
  std::vector<int32_t> prompt{5, 6, 7, 8, 9, 10};
  std::vector<int32_t> expected = FakeModelGenerate(prompt, 1, kVocab);
  StepRequest a;
  StepSequence first = Join(1, {5, 6, 7, 8}, {0});
  first.sample = false;
  first.prompt_tokens = prompt;
  a.seqs.push_back(first);
  auto ra = engine_->Step(a);
  ASSERT_TRUE(ra.ok());
  EXPECT_TRUE(ra->outputs.empty());
  StepRequest b;
  StepSequence rest;
  rest.seq_id = 1;
  rest.new_tokens = {9, 10};
  rest.start_pos = 4;
  rest.block_table = {0, 1};
  b.seqs.push_back(rest);
  auto rb = engine_->Step(b);
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  EXPECT_EQ(rb->outputs[0].sample.token, expected[0]);

  // Sequence 2 shares block 0 and diverges in block 1 after 1 matching token: copy 1 -> 2.
  std::vector<int32_t> prompt2{5, 6, 7, 8, 9, 33};
  StepRequest c;
  StepSequence s2 = Join(2, {33}, {0, 2});
  s2.start_pos = 5;
  s2.prompt_tokens = prompt2;
  c.seqs.push_back(s2);
  c.copy_blocks = {{1, 2}};
  auto rc = engine_->Step(c);
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  EXPECT_EQ(rc->outputs[0].sample.token, FakeModelGenerate(prompt2, 1, kVocab)[0]);
  EXPECT_EQ(fake_->copies(), 1);
}

TEST_F(WorkerEngineTest, RejectsBadRequestsWithoutChangingState) {
  StepRequest ok;
  ok.seqs.push_back(Join(1, {1, 2}, {0}));
  ASSERT_TRUE(engine_->Step(ok).ok());

  auto expect_invalid = [&](StepRequest r, const std::string& needle) {
    auto res = engine_->Step(r);
    ASSERT_FALSE(res.ok()) << needle;
    EXPECT_EQ(res.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(res.status().message().find(needle), std::string::npos) << res.status().message();
  };
  StepRequest r;
  r.seqs.push_back(Decode(99, 0, {0}));
  expect_invalid(r, "unknown seq 99");
  r = {};
  r.seqs.push_back(Decode(1, 2, {0, 16}));
  expect_invalid(r, "block id 16");
  r = {};
  r.seqs.push_back(Decode(1, 5, {0, 1}));
  expect_invalid(r, "at position 5");
  r = {};
  r.seqs.push_back(Decode(1, 2, {}));
  expect_invalid(r, "0 blocks cannot hold 3 tokens");
  r = {};
  r.seqs.push_back(Join(3, {kVocab}, {1}));
  expect_invalid(r, "outside the vocabulary");
  r = {};
  r.copy_blocks = {{0, -1}};
  expect_invalid(r, "copy_blocks[0]");
  r = {};
  r.seqs.push_back(Join(4, {1}, {1}));
  r.seqs.push_back(Join(4, {1}, {2}));
  expect_invalid(r, "appears twice");
  r = {};
  StepSequence bad = Join(5, {1}, {1});
  bad.sampling->temperature = -1.0f;
  r.seqs.push_back(bad);
  expect_invalid(r, "temperature");
  r = {};
  StepSequence far = Join(6, {1}, std::vector<int32_t>(17, 0));
  far.start_pos = 64;
  r.seqs.push_back(far);
  expect_invalid(r, "past the context");

  // Sequence 1 is untouched by all of that: it still decodes from position 2.
  StepRequest d;
  d.seqs.push_back(Decode(1, 2, {0}));
  auto res = engine_->Step(d);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  std::vector<int32_t> expected = FakeModelGenerate(std::vector<int32_t>{1, 2}, 2, kVocab);
  EXPECT_EQ(res->outputs[0].sample.token, expected[1]);

  ASSERT_TRUE(engine_->Clear().ok());
  expect_invalid(d, "unknown seq 1");
}

TEST_F(WorkerEngineTest, MeasuresIdleTimeBetweenSteps) {
  StepRequest r;
  r.seqs.push_back(Join(1, {1, 2, 3}, {0}));
  auto first = engine_->Step(r);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->idle_us, 0);  // nothing before the first step
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  StepRequest d;
  d.seqs.push_back(Decode(1, 3, {0}));
  auto second = engine_->Step(d);
  ASSERT_TRUE(second.ok());
  EXPECT_GE(second->idle_us, 25000);
  EXPECT_GE(second->forward_us, 0);
}

TEST_F(WorkerEngineTest, InfoDescribesThePool) {
  WorkerInfo info = engine_->Info();
  EXPECT_EQ(info.block_size, kBlockSize);
  EXPECT_EQ(info.num_blocks, 16);
  EXPECT_EQ(info.model.vocab_size, kVocab);
  EXPECT_EQ(info.device, "fake");
}

// The Prometheus text as {"name{labels}": value}.
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

TEST_F(WorkerEngineTest, MetricsCountWhatTheStepsDid) {
  StepRequest r;
  r.step_id = 1;
  r.seqs.push_back(Join(7, {1, 2, 3, 4, 5}, {3, 9}));
  r.seqs.push_back(Join(8, {6, 7, 8}, {3}));  // block 3 shared: counted once
  ASSERT_TRUE(engine_->Step(r).ok());
  StepRequest d;
  d.step_id = 2;
  d.seqs.push_back(Decode(7, 5, {}));
  d.seqs.back().block_table_offset = 2;  // the tables the worker holds, unchanged
  d.seqs.push_back(Decode(8, 3, {}));
  d.seqs.back().block_table_offset = 1;
  d.seqs.back().new_tokens = {42};  // a sampled token the scheduler knew: still a decode row
  auto decoded = engine_->Step(d);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  StepRequest bad;
  bad.step_id = 3;
  bad.seqs.push_back(Decode(99, 0, {1}));
  ASSERT_FALSE(engine_->Step(bad).ok());

  auto m = ParseMetrics(engine_->RenderMetrics());
  EXPECT_EQ(m["ite_worker_steps_total"], 2);
  EXPECT_EQ(m["ite_worker_rejected_steps_total"], 1);
  EXPECT_EQ(m["ite_worker_tokens_total{phase=\"prefill\"}"], 8);
  EXPECT_EQ(m["ite_worker_tokens_total{phase=\"decode\"}"], 2);
  EXPECT_EQ(m["ite_worker_sampled_tokens_total"], 4);
  EXPECT_EQ(m["ite_worker_sequence_joins_total"], 2);
  EXPECT_EQ(m["ite_worker_batch_size_count"], 2);
  EXPECT_EQ(m["ite_worker_batch_size_sum"], 4);
  EXPECT_EQ(m["ite_worker_step_seconds_count"], 2);
  EXPECT_EQ(m["ite_worker_sequences"], 2);
  EXPECT_EQ(m["ite_worker_kv_blocks_total"], 16);
  EXPECT_EQ(m["ite_worker_kv_blocks_used"], 2);
  EXPECT_EQ(m["ite_worker_kv_blocks_free"], 14);

  // Seq 8 released; seq 7 preempted and rejoining with its 1 generated token recomputed.
  StepRequest again;
  again.step_id = 4;
  again.release_seq_ids = {7, 8};
  StepSequence rejoin = Join(7, {1, 2, 3, 4, 5, 6}, {5, 6});
  rejoin.generated_tokens = 1;
  again.seqs.push_back(rejoin);
  again.copy_blocks = {{9, 10}};
  ASSERT_TRUE(engine_->Step(again).ok());
  m = ParseMetrics(engine_->RenderMetrics());
  EXPECT_EQ(m["ite_worker_sequence_releases_total"], 2);
  EXPECT_EQ(m["ite_worker_preemption_rejoins_total"], 1);
  EXPECT_EQ(m["ite_worker_sequence_joins_total"], 2);
  EXPECT_EQ(m["ite_worker_block_copies_total"], 1);
  EXPECT_EQ(m["ite_worker_tokens_total{phase=\"prefill\"}"], 14);
  EXPECT_EQ(m["ite_worker_sequences"], 1);
  EXPECT_EQ(m["ite_worker_kv_blocks_used"], 2);
  ASSERT_TRUE(engine_->Clear().ok());
  m = ParseMetrics(engine_->RenderMetrics());
  EXPECT_EQ(m["ite_worker_clears_total"], 1);
  EXPECT_EQ(m["ite_worker_kv_blocks_used"], 0);
  EXPECT_EQ(m["ite_worker_sequences"], 0);
}

}  // namespace
}  // namespace ite
