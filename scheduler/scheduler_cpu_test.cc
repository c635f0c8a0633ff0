// The scheduler over the real CPU backend (in-process workers): batching, chunking, preemption
// and the prefix cache must not change a single greedy token compared with each prompt run
// alone. Models: the tiny random Llama in tests/data/tiny-llama (always), and the real
// SmolLM2-135M GGUF ($ITE_MODEL_GGUF, skipped when absent) with its own tokenizer.
#include <gtest/gtest.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>

#include "scheduler/scheduler.h"
#include "scheduler/tokenizer/tokenizer.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/model/model_loader.h"
#include "worker/service/in_process_worker_client.h"

namespace ite {
namespace {

using Tokens = std::vector<int32_t>;

struct Result {
  Tokens tokens;
  std::string text;
  FinishReason finish = FinishReason::kNone;
  Usage usage;
  Status error;
};

class Waiter {
 public:
  std::function<void(const GenerationEvent&)> Callback(Result* out) {
    return [this, out](const GenerationEvent& e) {
      std::lock_guard<std::mutex> lock(mu_);
      out->tokens.insert(out->tokens.end(), e.tokens.begin(), e.tokens.end());
      out->text += e.text;
      if (e.finish != FinishReason::kNone) {
        out->finish = e.finish;
        out->usage = e.usage;
        out->error = e.error;
        ++done_;
        cv_.notify_all();
      }
    };
  }
  bool WaitFor(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(300), [&] { return done_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
};

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

std::unique_ptr<Scheduler> MakeScheduler(const std::string& model_path, SchedulerOptions options,
                                         int32_t num_blocks,
                                         std::shared_ptr<const Tokenizer> tokenizer = nullptr) {
  StatusOr<LoadedModel> model = LoadModel(model_path, LoadOptions());
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  KvCacheOptions kv;
  kv.block_size = 16;
  kv.num_blocks = num_blocks;
  StatusOr<std::unique_ptr<Backend>> backend = CreateCpuBackend(std::move(*model), kv, 2);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  if (!backend.ok()) return nullptr;
  std::vector<std::unique_ptr<WorkerClient>> workers;
  workers.push_back(
      MakeInProcessWorkerClient(std::make_unique<WorkerEngine>(std::move(*backend), "cpu")));
  auto s = std::make_unique<Scheduler>(options, std::move(tokenizer), std::move(workers));
  Status st = s->Start();
  EXPECT_TRUE(st.ok()) << st.ToString();
  return st.ok() ? std::move(s) : nullptr;
}

GenerationRequest Greedy(const std::string& id, Tokens prompt, int32_t max_tokens) {
  GenerationRequest r;
  r.request_id = id;
  r.prompt_tokens = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  r.ignore_eos = true;
  return r;
}

// Each prompt alone, one request at a time, prefix cache off.
std::vector<Result> RunAlone(Scheduler* s, const std::vector<Tokens>& prompts, int32_t max_tokens) {
  std::vector<Result> out(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Waiter w;
    GenerationRequest r = Greedy("alone" + std::to_string(i), prompts[i], max_tokens);
    r.use_prefix_cache = false;
    EXPECT_TRUE(s->Submit(r, w.Callback(&out[i])).ok());
    EXPECT_TRUE(w.WaitFor(1));
  }
  return out;
}

std::vector<Result> RunTogether(Scheduler* s, const std::vector<Tokens>& prompts,
                                int32_t max_tokens) {
  std::vector<Result> out(prompts.size());
  Waiter w;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_TRUE(s->Submit(Greedy("together" + std::to_string(i), prompts[i], max_tokens),
                          w.Callback(&out[i]))
                    .ok());
  }
  EXPECT_TRUE(w.WaitFor(static_cast<int>(prompts.size())));
  return out;
}

TEST(SchedulerCpuTest, TinyLlama32ConcurrentGreedyEqualAlone) {
  std::string path = Env("ITE_SOURCE_DIR") + "/tests/data/tiny-llama";
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  SchedulerOptions o;
  o.max_batch_tokens = 96;  // several prefill chunks per long prompt, mixed with decodes
  auto s = MakeScheduler(path, o, /*num_blocks=*/40);  // 640 tokens: preemption happens
  ASSERT_NE(s, nullptr);
  const int32_t vocab = s->model_info().vocab_size;
  std::mt19937 rng(42);
  Tokens system(40);
  for (int32_t& t : system) t = 3 + rng() % (vocab - 3);
  std::vector<Tokens> prompts;
  for (int i = 0; i < 32; ++i) {
    Tokens p = i % 2 == 0 ? system : Tokens();  // half share a 40-token head
    int extra = 3 + rng() % 50;
    for (int k = 0; k < extra; ++k) p.push_back(3 + rng() % (vocab - 3));
    prompts.push_back(p);
  }
  std::vector<Result> alone = RunAlone(s.get(), prompts, 16);
  std::vector<Result> together = RunTogether(s.get(), prompts, 16);
  int cached = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(together[i].finish, FinishReason::kLength);
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << "prompt " << i;
    EXPECT_EQ(alone[i].tokens.size(), 16u);
    if (together[i].usage.cached_tokens > 0) ++cached;
  }
  EXPECT_GT(cached, 0) << "the shared head should have come from the prefix cache";
  SchedulerStats st = s->Stats();
  EXPECT_GT(st.preemptions, 0) << "40 blocks for 32 requests was meant to force preemption";
  EXPECT_EQ(st.workers[0].free_blocks + st.workers[0].cached_blocks, 40);
}

TEST(SchedulerCpuTest, TinyLlamaRepeatedPromptServedFromCache) {
  std::string path = Env("ITE_SOURCE_DIR") + "/tests/data/tiny-llama";
  auto s = MakeScheduler(path, SchedulerOptions(), 64);
  ASSERT_NE(s, nullptr);
  Tokens prompt;
  for (int i = 0; i < 70; ++i) prompt.push_back(5 + (i * 37) % 200);
  std::vector<Result> alone = RunAlone(s.get(), {prompt}, 12);
  for (int round = 0; round < 2; ++round) {
    std::vector<Result> again = RunTogether(s.get(), {prompt}, 12);
    EXPECT_EQ(again[0].tokens, alone[0].tokens);
    // Round 0: the first 64 tokens (4 full blocks) cached by the alone run? No: that run had the
    // cache off; round 0 fills it, round 1 hits it (all but the last prompt token).
    if (round == 0) {
      EXPECT_EQ(again[0].usage.cached_tokens, 0);
    } else {
      EXPECT_EQ(again[0].usage.cached_tokens, 69);
    }
  }
}

TEST(SchedulerCpuTest, SmolLM2ConcurrentEqualsAloneAndStopsOnText) {
  std::string path = Env("ITE_MODEL_GGUF");
  if (path.empty() || !std::filesystem::exists(path)) GTEST_SKIP() << "no ITE_MODEL_GGUF";
  StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromFile(path);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  std::shared_ptr<const Tokenizer> tokenizer = std::move(*tok);
  SchedulerOptions o;
  o.max_batch_tokens = 64;
  auto s = MakeScheduler(path, o, 128, tokenizer);
  ASSERT_NE(s, nullptr);
  const std::string head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n";
  std::vector<std::string> questions = {"What is the capital of France?", "Count from 1 to 5.",
                                        "Name a primary color.", "What is 2 + 2?"};
  std::vector<Tokens> prompts;
  for (const std::string& q : questions) {
    prompts.push_back(tokenizer->Encode(
        head + "<|im_start|>user\n" + q + "<|im_end|>\n<|im_start|>assistant\n", false));
  }
  std::vector<Result> alone = RunAlone(s.get(), prompts, 10);
  std::vector<Result> together = RunTogether(s.get(), prompts, 10);
  for (size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(together[i].tokens, alone[i].tokens) << questions[i];
    EXPECT_EQ(together[i].text, alone[i].text);
    EXPECT_EQ(together[i].text, tokenizer->Decode(together[i].tokens, true));
    EXPECT_FALSE(together[i].text.empty());
  }
  // Arriving together, none could reuse another's prompt (blocks are shared once computed);
  // asked again, the whole prompt but its last token comes from the cache.
  std::vector<Result> again = RunTogether(s.get(), {prompts[1]}, 10);
  EXPECT_EQ(again[0].tokens, alone[1].tokens);
  EXPECT_EQ(again[0].usage.cached_tokens, static_cast<int32_t>(prompts[1].size()) - 1);

  // A stop string taken from the middle of a known answer cuts the text right before it.
  const std::string& full = alone[0].text;
  ASSERT_GE(full.size(), 6u);
  std::string stop = full.substr(full.size() / 2, 3);
  GenerationRequest r = Greedy("stop", prompts[0], 10);
  r.stop = {stop};
  Result cut;
  Waiter w;
  ASSERT_TRUE(s->Submit(r, w.Callback(&cut)).ok());
  ASSERT_TRUE(w.WaitFor(1));
  EXPECT_EQ(cut.finish, FinishReason::kStop);
  EXPECT_EQ(cut.text, full.substr(0, full.find(stop)));
}

}  // namespace
}  // namespace ite
