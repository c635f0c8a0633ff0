// RequestIntake and GenerationSession over the fake model: chunks carry exactly the tokens the
// model generates, stop strings are held back and never leak, n continuations share the prompt's
// KV blocks through the prefix cache, and cancelling (or dropping) a session frees its request.
#include "scheduler/request_intake.h"

#include <gtest/gtest.h>

#include "scheduler/piece_tokenizer_testing.h"
#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: test helpers

std::vector<std::string> AnglePieces() {
  std::vector<std::string> pieces;
  for (int i = 0; i < kVocab; ++i) pieces.push_back(fmt::format("<{}>", i));
  return pieces;
}

struct IntakeHarness {
  explicit IntakeHarness(SchedulerOptions options = {}, int workers = 1) {
    tokenizer = std::make_shared<PieceTokenizer>(AnglePieces());
    std::vector<std::unique_ptr<WorkerClient>> clients;
    for (int i = 0; i < workers; ++i) {
      auto fake = std::make_unique<FakeWorkerClient>(FakeWorkerOptions{});
      if (i == 0) worker = fake.get();
      clients.push_back(std::move(fake));
    }
    scheduler = std::make_unique<Scheduler>(options, tokenizer, std::move(clients));
    Status s = scheduler->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    RequestBuilderOptions o;
    o.model_name = "fake";
    o.max_context = 4096;
    o.vocab_size = kVocab;
    intake = std::make_unique<RequestIntake>(
        scheduler.get(), tokenizer, std::make_unique<RequestBuilder>(o, tokenizer, std::nullopt));
  }

  std::shared_ptr<const Tokenizer> tokenizer;
  FakeWorkerClient* worker = nullptr;  // the first
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<RequestIntake> intake;
};

GenerateInput Ids(Tokens prompt, int32_t max_tokens) {
  GenerateInput in;
  in.prompt.token_ids = std::move(prompt);
  in.max_tokens = max_tokens;
  in.sampling.temperature = 0.0f;
  in.ignore_eos = true;
  return in;
}

struct Drained {
  std::vector<GenerationChunk> chunks;
  std::string text;
  Tokens tokens;
};

Drained Drain(GenerationSession& session) {
  Drained d;
  while (true) {
    std::optional<GenerationChunk> c = session.Next(milliseconds(20000));
    EXPECT_TRUE(c.has_value()) << "no chunk within 20 s";
    if (!c.has_value()) return d;
    d.text += c->text;
    d.tokens.insert(d.tokens.end(), c->token_ids.begin(), c->token_ids.end());
    d.chunks.push_back(*c);
    if (c->finish != FinishReason::kNone) return d;
  }
}

std::string Pieces(const Tokens& ids) {
  std::string s;
  for (int32_t id : ids) s += fmt::format("<{}>", id);
  return s;
}

TEST(RequestIntakeTest, ChunksCarryTheModelsTokensAndText) {
  IntakeHarness h;
  const Tokens prompt = {1, 2, 3, 4, 5};
  auto sessions = h.intake->Submit(Ids(prompt, 6));
  ASSERT_TRUE(sessions.ok()) << sessions.status().ToString();
  ASSERT_EQ(sessions->size(), 1u);
  Drained d = Drain(*sessions->front());
  const Tokens expected = FakeModelGenerate(prompt, 6, kVocab);
  EXPECT_EQ(d.tokens, expected);
  EXPECT_EQ(d.text, Pieces(expected));
  EXPECT_EQ(d.chunks.back().finish, FinishReason::kLength);
  EXPECT_EQ(d.chunks.back().usage.completion_tokens, 6);
  EXPECT_EQ(d.chunks.back().usage.prompt_tokens, 5);
  EXPECT_EQ(h.intake->generated_tokens(), 6);
}

TEST(RequestIntakeTest, StopStringIsHeldBackAndNeverStreamed) {
  IntakeHarness h;
  const Tokens prompt = {7, 8, 9};
  const Tokens expected = FakeModelGenerate(prompt, 8, kVocab);
  // The stop string is the text of tokens 3 and 4: after token 3 its text could still become
  // the stop string, so no chunk may carry it.
  GenerateInput in = Ids(prompt, 8);
  in.stop = {Pieces({expected[3], expected[4]})};
  auto sessions = h.intake->Submit(in);
  ASSERT_TRUE(sessions.ok()) << sessions.status().ToString();
  Drained d = Drain(*sessions->front());
  EXPECT_EQ(d.text, Pieces({expected[0], expected[1], expected[2]}));
  EXPECT_EQ(d.chunks.back().finish, FinishReason::kStop);
  for (const GenerationChunk& c : d.chunks) {
    EXPECT_EQ(c.text.find(Pieces({expected[3]})), std::string::npos) << "leaked: " << c.text;
  }
  EXPECT_EQ(d.tokens, Tokens(expected.begin(), expected.begin() + 5));

  in.include_stop_str_in_output = true;
  sessions = h.intake->Submit(in);
  ASSERT_TRUE(sessions.ok());
  EXPECT_EQ(Drain(*sessions->front()).text,
            Pieces({expected[0], expected[1], expected[2], expected[3], expected[4]}));
}

TEST(RequestIntakeTest, MinTokensDefersStops) {
  IntakeHarness h;
  const Tokens prompt = {11, 12};
  const Tokens expected = FakeModelGenerate(prompt, 6, kVocab);
  GenerateInput in = Ids(prompt, 6);
  in.stop_token_ids = {expected[1]};
  in.min_tokens = 3;
  auto sessions = h.intake->Submit(in);
  ASSERT_TRUE(sessions.ok());
  Drained d = Drain(*sessions->front());
  // expected[1] comes before min_tokens: generation goes on to max_tokens unless it recurs.
  const auto later = std::find(expected.begin() + 3, expected.end(), expected[1]);
  const size_t want =
      later == expected.end() ? 6 : static_cast<size_t>(later - expected.begin()) + 1;
  EXPECT_EQ(d.tokens.size(), want);
}

TEST(RequestIntakeTest, LogprobsCarryTokenTexts) {
  IntakeHarness h;
  GenerateInput in = Ids({3, 4}, 3);
  in.top_logprobs = 2;
  auto sessions = h.intake->Submit(in);
  ASSERT_TRUE(sessions.ok());
  Drained d = Drain(*sessions->front());
  size_t positions = 0;
  for (const GenerationChunk& c : d.chunks) {
    ASSERT_EQ(c.logprobs.size(), c.token_ids.size());
    for (size_t i = 0; i < c.logprobs.size(); ++i) {
      EXPECT_EQ(c.logprobs[i].sampled.token, c.token_ids[i]);
      EXPECT_EQ(c.logprobs[i].sampled.text, Pieces({c.token_ids[i]}));
      EXPECT_EQ(c.logprobs[i].top.size(), 2u);
      ++positions;
    }
  }
  EXPECT_EQ(positions, 3u);
}

TEST(RequestIntakeTest, ForksReuseThePromptsBlocks) {
  IntakeHarness h;
  std::mt19937 rng(5);
  const Tokens prompt = RandomTokens(&rng, 41);  // 10 full blocks of 4 and one partial
  auto sessions = h.intake->Submit(Ids(prompt, 5), 3);
  ASSERT_TRUE(sessions.ok()) << sessions.status().ToString();
  ASSERT_EQ(sessions->size(), 3u);
  const Tokens expected = FakeModelGenerate(prompt, 5, kVocab);
  for (size_t i = 0; i < sessions->size(); ++i) {
    GenerationSession& s = *(*sessions)[i];
    EXPECT_EQ(s.request_id(), fmt::format("req-0-{}", i));
    Drained d = Drain(s);
    EXPECT_EQ(d.tokens, expected) << "choice " << i;  // greedy: the same continuation
    const Usage& u = d.chunks.back().usage;
    if (i == 0) {
      EXPECT_EQ(u.cached_tokens, 0);
    } else {
      EXPECT_EQ(u.cached_tokens, 40) << "choice " << i << " prefilled its prompt again";
    }
  }
}

// The prompt ends inside a block, which the prefix cache does not hold: the other choices share
// it with the first (copied on write) and compute only the last prompt token, with the prefix
// cache on or off.
class ForkTest : public ::testing::TestWithParam<bool> {};

TEST_P(ForkTest, ForksShareThePartialLastBlock) {
  SchedulerOptions o;
  o.enable_prefix_cache = GetParam();
  IntakeHarness h(o);
  std::mt19937 rng(7);
  const Tokens prompt = RandomTokens(&rng, 43);  // 10 full blocks of 4 and 3 tokens
  auto sessions = h.intake->Submit(Ids(prompt, 6), 4);
  ASSERT_TRUE(sessions.ok()) << sessions.status().ToString();
  const Tokens expected = FakeModelGenerate(prompt, 6, kVocab);
  for (size_t i = 0; i < sessions->size(); ++i) {
    Drained d = Drain(*(*sessions)[i]);
    EXPECT_EQ(d.tokens, expected) << "choice " << i;
    EXPECT_EQ(d.chunks.back().usage.cached_tokens, i == 0 ? 0 : 42) << "choice " << i;
  }
  SchedulerStats s = h.scheduler->Stats();
  EXPECT_EQ(s.workers[0].free_blocks + s.workers[0].cached_blocks, s.workers[0].num_blocks);
}

INSTANTIATE_TEST_SUITE_P(PrefixCache, ForkTest, ::testing::Bool());

// The first choice's worker is busier than the idle one once it runs, and with no load slack
// at all a plain request would go to the idle worker and prefill there; the other choices still
// follow the prompt's blocks.
TEST(RequestIntakeTest, ForksFollowThePromptsBlocksToABusierWorker) {
  SchedulerOptions o;
  o.route_load_slack = 0;
  IntakeHarness h(o, 2);
  std::mt19937 rng(6);
  const Tokens prompt = RandomTokens(&rng, 41);
  auto sessions = h.intake->Submit(Ids(prompt, 5), 3);
  ASSERT_TRUE(sessions.ok()) << sessions.status().ToString();
  for (size_t i = 1; i < sessions->size(); ++i) {
    EXPECT_EQ(Drain(*(*sessions)[i]).chunks.back().usage.cached_tokens, 40) << "choice " << i;
  }
  Drain(*(*sessions)[0]);
  SchedulerStats s = h.scheduler->Stats();
  EXPECT_EQ(s.workers[1].cached_tokens, 0) << "a choice ran on the other worker";
}

TEST(RequestIntakeTest, CancellingAForkBeforeItStartsEndsIt) {
  IntakeHarness h;
  h.worker->Pause();
  auto sessions = h.intake->Submit(Ids({1, 2, 3}, 4), 2);
  ASSERT_TRUE(sessions.ok());
  (*sessions)[1]->Cancel();
  h.worker->Resume();
  EXPECT_EQ(Drain(*(*sessions)[0]).chunks.back().finish, FinishReason::kLength);
  EXPECT_EQ(Drain(*(*sessions)[1]).chunks.back().finish, FinishReason::kCancelled);
}

TEST(RequestIntakeTest, DroppingASessionCancelsItsRequest) {
  IntakeHarness h;
  h.worker->Pause();
  {
    auto sessions = h.intake->Submit(Ids({1, 2, 3}, 100));
    ASSERT_TRUE(sessions.ok());
    EXPECT_TRUE(WaitFor([&] { return h.scheduler->Stats().running == 1; }));
  }
  h.worker->Resume();
  EXPECT_TRUE(WaitFor([&] {
    SchedulerStats s = h.scheduler->Stats();
    return s.running == 0 && s.waiting == 0 && s.finished_requests == 1;
  }));
}

TEST(RequestIntakeTest, RejectsWithTheBuildersMessagesAndWhenStopped) {
  IntakeHarness h;
  GenerateInput in = Ids({1}, 0);
  auto bad = h.intake->Submit(in);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "max_tokens = 0: must be >= 1");
  EXPECT_FALSE(h.intake->Submit(Ids({1}, 2), 0).ok());
  auto detok = h.intake->Detokenize({1, kVocab}, false);
  ASSERT_FALSE(detok.ok());
  EXPECT_NE(detok.status().message().find("tokens[1]"), std::string::npos);
  EXPECT_EQ(h.intake->Detokenize({1, 2}, false).value(), "<1><2>");
  h.intake->StopAccepting();
  auto stopped = h.intake->Submit(Ids({1}, 2));
  ASSERT_FALSE(stopped.ok());
  EXPECT_EQ(stopped.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace ite
