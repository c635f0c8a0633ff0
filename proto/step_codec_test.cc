// Round trips of every step struct through its protobuf message: a field the codec forgets shows
// up as a mismatch here rather than as a wrong token on the other side of the wire.
#include "proto/step_codec.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

TEST(StepCodecTest, StepRequestRoundTrip) {
  StepRequest r;
  r.step_id = 42;
  StepSequence& a = r.seqs.emplace_back();
  a.seq_id = 7;
  a.new_tokens = {1, 2, 3};
  a.start_pos = 16;
  a.block_table = {4, 9};
  a.sample = false;
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repetition_penalty = 1.1f;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.seed = 1234567890123ull;
  p.has_seed = true;
  p.top_logprobs = 3;
  p.logprobs = true;
  a.sampling = p;
  a.prompt_tokens = {5, 6};
  StepSequence& b = r.seqs.emplace_back();  // a decode step: no tokens, no sampling
  b.seq_id = -3;
  b.start_pos = 100;
  b.block_table = {1};
  b.block_table_offset = 5;
  r.release_seq_ids = {11, 12};
  r.copy_blocks = {{3, 8}, {2, 0}};

  ite::v1::StepRequest wire;
  EncodeStepRequest(r, &wire);
  ite::v1::StepRequest parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire.SerializeAsString()));
  StepRequest d = DecodeStepRequest(parsed);

  EXPECT_EQ(d.step_id, 42);
  ASSERT_EQ(d.seqs.size(), 2u);
  EXPECT_EQ(d.seqs[0].seq_id, 7);
  EXPECT_EQ(d.seqs[0].new_tokens, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(d.seqs[0].start_pos, 16);
  EXPECT_EQ(d.seqs[0].block_table, (std::vector<int32_t>{4, 9}));
  EXPECT_FALSE(d.seqs[0].sample);
  ASSERT_TRUE(d.seqs[0].sampling.has_value());
  const SamplingParams& q = *d.seqs[0].sampling;
  EXPECT_EQ(q.temperature, p.temperature);
  EXPECT_EQ(q.top_k, p.top_k);
  EXPECT_EQ(q.top_p, p.top_p);
  EXPECT_EQ(q.min_p, p.min_p);
  EXPECT_EQ(q.repetition_penalty, p.repetition_penalty);
  EXPECT_EQ(q.presence_penalty, p.presence_penalty);
  EXPECT_EQ(q.frequency_penalty, p.frequency_penalty);
  EXPECT_EQ(q.seed, p.seed);
  EXPECT_TRUE(q.has_seed);
  EXPECT_EQ(q.top_logprobs, 3);
  EXPECT_TRUE(q.logprobs);
  EXPECT_EQ(d.seqs[0].prompt_tokens, (std::vector<int32_t>{5, 6}));
  EXPECT_EQ(d.seqs[0].block_table_offset, 0);
  EXPECT_EQ(d.seqs[1].seq_id, -3);
  EXPECT_EQ(d.seqs[1].block_table, (std::vector<int32_t>{1}));
  EXPECT_EQ(d.seqs[1].block_table_offset, 5);
  EXPECT_TRUE(d.seqs[1].new_tokens.empty());
  EXPECT_TRUE(d.seqs[1].sample);
  EXPECT_FALSE(d.seqs[1].sampling.has_value());
  EXPECT_EQ(d.release_seq_ids, (std::vector<int64_t>{11, 12}));
  EXPECT_EQ(d.copy_blocks, (std::vector<std::pair<int32_t, int32_t>>{{3, 8}, {2, 0}}));
}

TEST(StepCodecTest, StepResultRoundTrip) {
  StepResult r;
  r.step_id = 9;
  r.forward_us = 1234;
  r.idle_us = 56;
  StepOutput& o = r.outputs.emplace_back();
  o.seq_id = 3;
  o.sample.token = 77;
  o.sample.logprob = -0.25f;
  o.sample.top = {{77, -0.25f}, {12, -2.5f}};
  ite::v1::StepResult wire;
  EncodeStepResult(r, &wire);
  StepResult d = DecodeStepResult(wire);
  EXPECT_EQ(d.step_id, 9);
  EXPECT_EQ(d.forward_us, 1234);
  EXPECT_EQ(d.idle_us, 56);
  ASSERT_EQ(d.outputs.size(), 1u);
  EXPECT_EQ(d.outputs[0].seq_id, 3);
  EXPECT_EQ(d.outputs[0].sample.token, 77);
  EXPECT_EQ(d.outputs[0].sample.logprob, -0.25f);
  ASSERT_EQ(d.outputs[0].sample.top.size(), 2u);
  EXPECT_EQ(d.outputs[0].sample.top[1].token, 12);
  EXPECT_EQ(d.outputs[0].sample.top[1].logprob, -2.5f);
}

TEST(StepCodecTest, WorkerInfoRoundTripAndValidation) {
  WorkerInfo info;
  info.model.arch = "qwen2";
  info.model.name = "tiny";
  info.model.vocab_size = 100;
  info.model.num_layers = 2;
  info.model.hidden_size = 64;
  info.model.max_position = 512;
  info.model.eos_token_ids = {2, 3};
  info.block_size = 16;
  info.num_blocks = 64;
  info.device = "cpu";
  info.model_fingerprint = std::string(64, 'e');
  ite::v1::WorkerInfo wire;
  EncodeWorkerInfo(info, &wire);
  // Only ModelInfo's fields travel; the rest of WorkerModelConfig stays zero.
  EXPECT_EQ(wire.config().head_dim(), 0);
  EXPECT_EQ(wire.config().rope_scaling_type(), "");
  StatusOr<WorkerInfo> d = DecodeWorkerInfo(wire);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->model.arch, "qwen2");
  EXPECT_EQ(d->model.name, "tiny");
  EXPECT_EQ(d->model.vocab_size, 100);
  EXPECT_EQ(d->model.num_layers, 2);
  EXPECT_EQ(d->model.hidden_size, 64);
  EXPECT_EQ(d->model.max_position, 512);
  EXPECT_EQ(d->model.eos_token_ids, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(d->num_blocks, 64);
  EXPECT_EQ(d->device, "cpu");
  EXPECT_EQ(d->model_fingerprint, std::string(64, 'e'));
  // An older worker sends no fingerprint: still a valid WorkerInfo, with none.
  ite::v1::WorkerInfo older = wire;
  older.clear_model_fingerprint();
  StatusOr<WorkerInfo> from_older = DecodeWorkerInfo(older);
  ASSERT_TRUE(from_older.ok()) << from_older.status().ToString();
  EXPECT_EQ(from_older->model_fingerprint, "");

  wire.mutable_config()->set_arch("gpt2");
  StatusOr<WorkerInfo> bad = DecodeWorkerInfo(wire);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("gpt2"), std::string::npos);
  wire.mutable_config()->set_arch("llama");
  wire.set_num_blocks(0);
  EXPECT_FALSE(DecodeWorkerInfo(wire).ok());
}

}  // namespace
}  // namespace ite
