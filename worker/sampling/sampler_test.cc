#include "worker/sampling/sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>

namespace ite {
namespace {

SamplingParams Seeded(uint64_t seed) {
  SamplingParams p;
  p.seed = seed;
  p.has_seed = true;
  return p;
}

// Logits whose softmax is exactly `probs` (up to rounding).
std::vector<float> LogitsOf(std::vector<double> probs) {
  std::vector<float> out;
  for (double p : probs) out.push_back(static_cast<float>(std::log(p)));
  return out;
}

std::map<int32_t, double> Frequencies(SequenceSampler& s, std::span<const float> logits,
                                      int draws) {
  std::map<int32_t, double> f;
  for (int i = 0; i < draws; ++i) f[s.Sample(logits).token] += 1.0 / draws;
  return f;
}

TEST(SamplingParamsTest, ValidateNamesTheField) {
  EXPECT_TRUE(SamplingParams{}.Validate().ok());
  auto bad = [](auto mutate, const char* field) {
    SamplingParams p;
    mutate(p);
    Status s = p.Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << field;
    EXPECT_NE(s.message().find(field), std::string::npos) << s.message();
  };
  bad([](SamplingParams& p) { p.temperature = -1; }, "temperature");
  bad([](SamplingParams& p) { p.temperature = NAN; }, "temperature");
  bad([](SamplingParams& p) { p.top_k = -2; }, "top_k");
  bad([](SamplingParams& p) { p.top_p = 0; }, "top_p");
  bad([](SamplingParams& p) { p.top_p = 1.5f; }, "top_p");
  bad([](SamplingParams& p) { p.min_p = -0.1f; }, "min_p");
  bad([](SamplingParams& p) { p.repetition_penalty = 0; }, "repetition_penalty");
  bad([](SamplingParams& p) { p.presence_penalty = 3; }, "presence_penalty");
  bad([](SamplingParams& p) { p.frequency_penalty = -2.5f; }, "frequency_penalty");
  bad([](SamplingParams& p) { p.top_logprobs = 21; }, "top_logprobs");
}

TEST(SequenceSamplerTest, GreedyTakesArgmaxLowestIdOnTies) {
  SamplingParams p;
  p.temperature = 0;
  SequenceSampler s(p, {});
  std::vector<float> logits = {0.5f, 2.0f, -1.0f, 2.0f};
  EXPECT_EQ(s.Sample(logits).token, 1);
  EXPECT_EQ(s.Sample(logits).token, 1);
}

TEST(SequenceSamplerTest, FrequenciesFollowTheDistribution) {
  const std::vector<double> probs = {0.1, 0.2, 0.3, 0.4};
  auto logits = LogitsOf(probs);
  SequenceSampler s(Seeded(1), {});
  auto f = Frequencies(s, logits, 40000);
  // 40000 draws: standard error <= 0.0025, so 0.012 is ~5 sigma.
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(f[i], probs[i], 0.012) << i;

  // Temperature 2 flattens: p_i proportional to sqrt(probs_i).
  SamplingParams hot = Seeded(2);
  hot.temperature = 2.0f;
  SequenceSampler sh(hot, {});
  auto fh = Frequencies(sh, logits, 40000);
  double z = 0;
  for (double p : probs) z += std::sqrt(p);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(fh[i], std::sqrt(probs[i]) / z, 0.012) << i;
}

TEST(SequenceSamplerTest, TopKNeverLeavesTheKBest) {
  std::mt19937 rng(3);
  std::normal_distribution<float> dist(0, 2);
  std::vector<float> logits(500);
  for (float& v : logits) v = dist(rng);
  std::vector<float> sorted = logits;
  std::sort(sorted.rbegin(), sorted.rend());
  SamplingParams p = Seeded(4);
  p.top_k = 5;
  p.temperature = 5.0f;  // flat, so the cut is what keeps the draws in
  SequenceSampler s(p, {});
  std::map<int32_t, int> seen;
  for (int i = 0; i < 5000; ++i) {
    int32_t t = s.Sample(logits).token;
    ASSERT_GE(logits[t], sorted[4]);
    ++seen[t];
  }
  EXPECT_EQ(seen.size(), 5u);

  // Among the kept, proportions stay those of the distribution: top-2 of {.1,.2,.3,.4}.
  SamplingParams p2 = Seeded(5);
  p2.top_k = 2;
  SequenceSampler s2(p2, {});
  auto f = Frequencies(s2, LogitsOf({0.1, 0.2, 0.3, 0.4}), 40000);
  EXPECT_EQ(f.count(0) + f.count(1), 0u);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.012);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.012);
}

TEST(SequenceSamplerTest, TopPKeepsTheSmallestSetReachingP) {
  auto logits = LogitsOf({0.1, 0.2, 0.3, 0.4});
  // Sorted: .4, .3, .2, .1. top_p .5: .4 alone is short of .5, so .3 joins; .2 does not.
  SamplingParams p = Seeded(6);
  p.top_p = 0.5f;
  SequenceSampler s(p, {});
  auto f = Frequencies(s, logits, 40000);
  EXPECT_EQ(f.count(0) + f.count(1), 0u);
  EXPECT_NEAR(f[3], 4.0 / 7, 0.012);
  // top_p .4 exactly reached by the first token alone (up to rounding, so use .39).
  SamplingParams q = Seeded(7);
  q.top_p = 0.39f;
  SequenceSampler sq(q, {});
  for (int i = 0; i < 200; ++i) ASSERT_EQ(sq.Sample(logits).token, 3);
}

TEST(SequenceSamplerTest, TopPOnALargeVocabularyMatchesABruteForceNucleus) {
  // 20000 tokens with a long tail: the nucleus of .95 spans hundreds of tokens, more than the
  // sampler's first 64-token guess, so its growing prefix is exercised.
  std::mt19937 rng(12);
  std::normal_distribution<float> dist(0, 1.5f);
  std::vector<float> logits(20000);
  for (float& v : logits) v = dist(rng);
  std::vector<int32_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  double z = 0;
  for (float v : logits) z += std::exp(static_cast<double>(v));
  std::set<int32_t> nucleus;
  double before = 0;
  for (int32_t t : order) {
    if (before >= 0.95 * z) break;
    nucleus.insert(t);
    before += std::exp(static_cast<double>(logits[t]));
  }
  ASSERT_GT(nucleus.size(), 64u);
  SamplingParams p = Seeded(13);
  p.top_p = 0.95f;
  SequenceSampler s(p, {});
  std::set<int32_t> drawn;
  for (int i = 0; i < 3000; ++i) {
    int32_t t = s.Sample(logits).token;
    ASSERT_TRUE(nucleus.count(t)) << t;
    drawn.insert(t);
  }
  EXPECT_GT(drawn.size(), 64u);  // draws reach past the first guess
}

TEST(SequenceSamplerTest, MinPDropsTokensBelowAFractionOfTheBest) {
  auto logits = LogitsOf({0.1, 0.2, 0.3, 0.4});
  SamplingParams p = Seeded(8);
  p.min_p = 0.6f;  // threshold .24: keeps .3 and .4
  SequenceSampler s(p, {});
  auto f = Frequencies(s, logits, 40000);
  EXPECT_EQ(f.count(0) + f.count(1), 0u);
  EXPECT_NEAR(f[2], 3.0 / 7, 0.012);
  p.min_p = 0.8f;  // threshold .32: only .4
  SequenceSampler s2(p, {});
  for (int i = 0; i < 200; ++i) ASSERT_EQ(s2.Sample(logits).token, 3);
}

TEST(SequenceSamplerTest, SameSeedSameTokensOtherSeedOtherTokens) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0, 1);
  std::vector<std::vector<float>> steps(100, std::vector<float>(300));
  for (auto& l : steps)
    for (float& v : l) v = dist(rng);
  auto run = [&](SamplingParams p) {
    SequenceSampler s(p, {});
    std::vector<int32_t> out;
    for (auto& l : steps) out.push_back(s.Sample(l).token);
    return out;
  };
  SamplingParams a = Seeded(123);
  a.top_p = 0.9f;
  a.top_k = 50;
  EXPECT_EQ(run(a), run(a));
  SamplingParams b = a;
  b.seed = 124;
  EXPECT_NE(run(a), run(b));
  SamplingParams unseeded = a;
  unseeded.has_seed = false;
  EXPECT_NE(run(unseeded), run(unseeded));  // 100 draws over ~50 tokens: equal by chance ~never
}

// A sampler rebuilt mid-sequence from the context and the count of generated tokens (a rejoin
// after preemption) continues exactly like the one that never stopped.
TEST(SequenceSamplerTest, ResumedSamplerContinuesTheSameTokens) {
  std::mt19937 rng(10);
  std::normal_distribution<float> dist(0, 2);
  std::vector<std::vector<float>> steps(60, std::vector<float>(200));
  for (auto& l : steps)
    for (float& v : l) v = dist(rng);
  SamplingParams p = Seeded(77);
  p.top_k = 40;
  p.presence_penalty = 1.0f;
  p.frequency_penalty = 0.5f;
  p.repetition_penalty = 1.3f;
  const std::vector<int32_t> prompt = {3, 14, 15, 92};
  SequenceSampler whole(p, prompt);
  std::vector<int32_t> out;
  for (auto& l : steps) out.push_back(whole.Sample(l).token);
  for (int32_t k : {1, 17, 45}) {
    std::vector<int32_t> context = prompt;
    context.insert(context.end(), out.begin(), out.begin() + k);
    SequenceSampler resumed(p, context, k);
    for (int32_t i = k; i < 60; ++i) {
      ASSERT_EQ(resumed.Sample(steps[i]).token, out[i]) << "resumed at " << k << ", token " << i;
    }
  }
}

TEST(SequenceSamplerTest, RepetitionPenaltyCoversPromptAndGenerated) {
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 2.0f;
  p.logprobs = true;
  p.top_logprobs = 4;
  std::vector<int32_t> prompt = {0, 1};
  SequenceSampler s(p, prompt);
  // Processed: token0 4 -> 2, token1 -2 -> -4, token2 3 stays, token3 1 stays.
  std::vector<float> logits = {4.0f, -2.0f, 3.0f, 1.0f};
  SampleResult r = s.Sample(logits);
  EXPECT_EQ(r.token, 2);
  std::vector<double> processed = {2, -4, 3, 1};
  double z = 0;
  for (double v : processed) z += std::exp(v);
  EXPECT_NEAR(r.logprob, 3 - std::log(z), 1e-5);
  ASSERT_EQ(r.top.size(), 4u);
  EXPECT_EQ(r.top[0].token, 2);
  EXPECT_EQ(r.top[1].token, 0);
  EXPECT_EQ(r.top[2].token, 3);
  EXPECT_EQ(r.top[3].token, 1);
  EXPECT_NEAR(r.top[3].logprob, -4 - std::log(z), 1e-5);
  // Token 2 was generated, so now it is penalised too: 1.5 < 2.
  EXPECT_EQ(s.Sample(logits).token, 0);
}

TEST(SequenceSamplerTest, PresenceAndFrequencyCountOnlyGeneratedTokens) {
  SamplingParams p;
  p.temperature = 0;
  p.presence_penalty = 0.5f;
  p.frequency_penalty = 0.25f;
  p.logprobs = true;
  p.top_logprobs = 3;
  std::vector<int32_t> prompt = {2, 2, 2};  // the prompt does not count
  SequenceSampler s(p, prompt);
  s.Accept(1);
  s.Accept(1);
  s.Accept(0);
  // token0: 3 - .5 - .25 = 2.25; token1: 3 - .5 - .5 = 2; token2: 2.5 untouched.
  std::vector<float> logits = {3.0f, 3.0f, 2.5f};
  SampleResult r = s.Sample(logits);
  EXPECT_EQ(r.token, 2);
  double z = std::exp(2.25) + std::exp(2.0) + std::exp(2.5);
  EXPECT_NEAR(r.top[1].logprob, 2.25 - std::log(z), 1e-5);
  EXPECT_EQ(r.top[1].token, 0);
  EXPECT_EQ(r.top[2].token, 1);
}

TEST(SequenceSamplerTest, LogprobsUseTemperatureButNotTruncation) {
  SamplingParams p = Seeded(10);
  p.temperature = 0.5f;
  p.top_k = 1;
  p.logprobs = true;
  p.top_logprobs = 2;
  SequenceSampler s(p, {});
  std::vector<float> logits = {1.0f, 0.0f};
  SampleResult r = s.Sample(logits);
  EXPECT_EQ(r.token, 0);
  double z = std::exp(2.0) + std::exp(0.0);
  EXPECT_NEAR(r.logprob, 2.0 - std::log(z), 1e-5);
  EXPECT_NEAR(r.top[1].logprob, 0.0 - std::log(z), 1e-5);  // outside top-k, still finite
}

TEST(SequenceSamplerTest, NanAndInfiniteLogitsDoNotCrash) {
  SequenceSampler s(Seeded(11), {});
  std::vector<float> logits = {NAN, -INFINITY, 1.0f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits).token, 2);
  std::vector<float> all_neg = {-INFINITY, -INFINITY};
  int32_t t = s.Sample(all_neg).token;
  EXPECT_TRUE(t == 0 || t == 1);
}

// Values that pass validation but would overflow the arithmetic: a temperature of 1e-40 makes
// 1 / temperature inf, a repetition penalty of 1e-38 makes a seen token's logit inf. Either must
// sample like greedy (the same token and logprobs) and never return NaN.
TEST(SequenceSamplerTest, TinyTemperatureSamplesLikeGreedy) {
  const std::vector<float> logits = {0.5f, 2.0f, -1.0f, 0.0f, 1.5f};
  SamplingParams greedy;
  greedy.temperature = 0;
  greedy.logprobs = true;
  greedy.top_logprobs = 3;
  for (float t : {1e-40f, 1e-30f, 1e-6f}) {
    SamplingParams p = Seeded(7);
    p.temperature = t;
    p.logprobs = true;
    p.top_logprobs = 3;
    SequenceSampler tiny(p, {});
    SequenceSampler ref(greedy, {});
    for (int i = 0; i < 20; ++i) {
      SampleResult a = tiny.Sample(logits);
      SampleResult b = ref.Sample(logits);
      ASSERT_EQ(a.token, 1) << "T=" << t;
      EXPECT_EQ(a.token, b.token);
      EXPECT_FALSE(std::isnan(a.logprob)) << "T=" << t;
      EXPECT_FLOAT_EQ(a.logprob, b.logprob) << "T=" << t;
      ASSERT_EQ(a.top.size(), 3u);
      for (size_t k = 0; k < a.top.size(); ++k) {
        EXPECT_EQ(a.top[k].token, b.top[k].token);
        EXPECT_TRUE(std::isfinite(a.top[k].logprob)) << "T=" << t << " k=" << k;
      }
    }
  }
}

TEST(SequenceSamplerTest, ScalingThatWouldOverflowIsGreedy) {
  // Finite logits whose division by a small (but not greedy) temperature leaves the float range.
  const std::vector<float> logits = {1e36f, -3e37f, 2e37f, 0.0f};
  SamplingParams p = Seeded(3);
  p.temperature = 1e-4f;
  p.logprobs = true;
  SequenceSampler s(p, {});
  for (int i = 0; i < 10; ++i) {
    SampleResult r = s.Sample(logits);
    EXPECT_EQ(r.token, 2);
    EXPECT_FALSE(std::isnan(r.logprob));
    EXPECT_LE(r.logprob, 0.0f);
  }
}

TEST(SequenceSamplerTest, TinyRepetitionPenaltyStaysFinite) {
  const std::vector<float> logits = {3.0f, 5.0f, 4.0f, -2.0f};
  for (float temperature : {0.0f, 0.7f, 1.0f}) {
    SamplingParams p = Seeded(11);
    p.temperature = temperature;
    p.repetition_penalty = 1e-38f;
    p.logprobs = true;
    p.top_logprobs = 2;
    // Token 2 was seen: its positive logit divided by 1e-38 is past the float range.
    const std::vector<int32_t> prompt = {2};
    SequenceSampler s(p, prompt);
    SampleResult r = s.Sample(logits);
    EXPECT_EQ(r.token, 2) << "T=" << temperature;
    EXPECT_FALSE(std::isnan(r.logprob)) << "T=" << temperature;
    EXPECT_LE(r.logprob, 0.0f);
    ASSERT_EQ(r.top.size(), 2u);
    EXPECT_EQ(r.top[0].token, 2);
    for (const TokenLogprob& t : r.top) EXPECT_FALSE(std::isnan(t.logprob));
  }
}

}  // namespace
}  // namespace ite
