#include "worker/engine/generator.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/random_model.h"

namespace ite {
namespace {

std::unique_ptr<Backend> MakeBackend(int32_t num_blocks = 64) {
  KvCacheOptions kv;
  kv.block_size = 4;
  kv.num_blocks = num_blocks;
  auto b = CreateCpuBackend(RandomModel(TinyRandomConfig(false), DType::kF32, 7), kv, 2);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return std::move(b).value();
}

SamplingParams Greedy() {
  SamplingParams p;
  p.temperature = 0;
  return p;
}

// Greedy continuation computed the slow way: the whole sequence re-run from position 0 for
// every new token, taking the argmax of the last row.
std::vector<int32_t> SlowGreedy(Backend* b, std::vector<int32_t> seq, int n) {
  std::vector<int32_t> out;
  std::vector<int32_t> table(16);
  for (int i = 0; i < 16; ++i) table[i] = 48 + i;
  for (int step = 0; step < n; ++step) {
    ForwardBatch batch;
    batch.chunks.push_back(LogitsChunk(seq, 0, table, LogitsMode::kLast));
    std::vector<float> logits;
    EXPECT_TRUE(ForwardLogits(*b, batch, &logits).ok());
    int32_t t =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    seq.push_back(t);
  }
  return out;
}

TEST(GeneratorTest, GreedyMatchesRecomputingTheWholeSequence) {
  auto b = MakeBackend();
  Generator gen(b.get());
  std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35, 89};
  GenerateOptions opt;
  opt.max_new_tokens = 12;
  opt.prefill_chunk = 3;  // three prefill chunks
  auto r = gen.Generate(prompt, Greedy(), opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_EQ(r->tokens, SlowGreedy(b.get(), prompt, 12));
}

TEST(GeneratorTest, BatchMatchesSeparateRuns) {
  auto b = MakeBackend();
  Generator gen(b.get());
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3}, {50, 60, 70, 80, 90, 11}, {42}};
  GenerateOptions opt;
  opt.max_new_tokens = 9;
  auto batch = gen.GenerateBatch(prompts, Greedy(), opt);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto one = gen.Generate(prompts[i], Greedy(), opt);
    ASSERT_TRUE(one.ok());
    EXPECT_EQ((*batch)[i].tokens, one->tokens) << "prompt " << i;
  }
}

TEST(GeneratorTest, StopsOnStopTokenAndReportsEachToken) {
  auto b = MakeBackend();
  Generator gen(b.get());
  std::vector<int32_t> prompt = {5, 6, 7};
  GenerateOptions opt;
  opt.max_new_tokens = 10;
  auto free_run = gen.Generate(prompt, Greedy(), opt);
  ASSERT_TRUE(free_run.ok());
  // Make the 4th generated token a stop token.
  opt.stop_ids = {free_run->tokens[3]};
  std::vector<int32_t> streamed;
  auto r = gen.Generate(prompt, Greedy(), opt, [&](int seq, const SampleResult& s) {
    EXPECT_EQ(seq, 0);
    streamed.push_back(s.token);
    return true;
  });
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->finish_reason, "stop");
  size_t first = std::find(free_run->tokens.begin(), free_run->tokens.end(), opt.stop_ids[0]) -
                 free_run->tokens.begin();
  EXPECT_EQ(r->tokens,
            std::vector<int32_t>(free_run->tokens.begin(), free_run->tokens.begin() + first + 1));
  EXPECT_EQ(streamed, r->tokens);

  // A callback returning false cancels after that token.
  int calls = 0;
  auto c = gen.Generate(prompt, Greedy(), GenerateOptions{},
                        [&](int, const SampleResult&) { return ++calls < 2; });
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->finish_reason, "cancelled");
  EXPECT_EQ(c->tokens.size(), 2u);
}

TEST(GeneratorTest, StopsAtTheContextLength) {
  auto b = MakeBackend();
  Generator gen(b.get());
  std::vector<int32_t> prompt(60, 9);  // context is 64
  GenerateOptions opt;
  opt.max_new_tokens = 100;
  auto r = gen.Generate(prompt, Greedy(), opt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->finish_reason, "length");
  EXPECT_EQ(r->tokens.size(), 5u);  // 64 positions fed, the 65th token is not
}

TEST(GeneratorTest, SeededSamplingRepeats) {
  auto b = MakeBackend();
  Generator gen(b.get());
  SamplingParams p;
  p.temperature = 1.5f;
  p.seed = 99;
  p.has_seed = true;
  GenerateOptions opt;
  opt.max_new_tokens = 20;
  std::vector<int32_t> prompt = {1, 2};
  auto a = gen.Generate(prompt, p, opt);
  auto c = gen.Generate(prompt, p, opt);
  ASSERT_TRUE(a.ok() && c.ok());
  EXPECT_EQ(a->tokens, c->tokens);
}

TEST(GeneratorTest, BadRequestsAreErrors) {
  auto b = MakeBackend(/*num_blocks=*/4);
  Generator gen(b.get());
  GenerateOptions opt;
  EXPECT_EQ(gen.Generate({}, Greedy(), opt).status().code(), StatusCode::kInvalidArgument);
  std::vector<int32_t> long_prompt(65, 1);
  EXPECT_EQ(gen.Generate(long_prompt, Greedy(), opt).status().code(), StatusCode::kOutOfRange);
  std::vector<int32_t> prompt = {1, 2, 3};
  opt.max_new_tokens = 40;  // 42 positions > 4 blocks of 4
  EXPECT_EQ(gen.Generate(prompt, Greedy(), opt).status().code(), StatusCode::kResourceExhausted);
  std::vector<int32_t> bad_token = {1, 500};
  opt.max_new_tokens = 2;
  EXPECT_EQ(gen.Generate(bad_token, Greedy(), opt).status().code(), StatusCode::kInvalidArgument);
  SamplingParams bad = Greedy();
  bad.top_p = 0;
  EXPECT_EQ(gen.Generate(prompt, bad, opt).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace ite
