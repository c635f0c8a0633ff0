// The CPU backend against Hugging Face transformers (goldens made by make_goldens.py):
//  - tiny random-weight Llama (untied), Llama (tied, llama3 RoPE scaling) and Qwen2 (QKV bias,
//    BF16 file) models: logits at every position, in one prefill, in two chunks, and with all
//    sequences batched in one Forward;
//  - SmolLM2-135M-Instruct (GGUF Q4_1 dequantized to fp32): 32 greedy tokens for 5 prompts.
//
// Tolerance for logits: |ours - reference| <= 1e-4 * max|reference logit| (fp32 throughout;
// only summation order differs), and the same argmax at every position.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/golden/golden_data.h"
#include "tests/test_files.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/engine/generator.h"
#include "worker/model/model_loader.h"

namespace ite {
namespace {

using testing::SourceDir;

using golden::Golden;

Golden ReadGolden(const std::string& name) { return golden::Read(SourceDir(), name); }

std::unique_ptr<Backend> Load(const std::string& path, DType dtype = DType::kF32) {
  LoadOptions opt;
  opt.dtype = dtype;
  auto model = LoadModel(path, opt);
  EXPECT_TRUE(model.ok()) << model.status().ToString();
  if (!model.ok()) return nullptr;
  KvCacheOptions kv;
  kv.block_size = 8;
  kv.num_blocks = 192;
  auto backend = CreateCpuBackend(std::move(model).value(), kv, 2);
  EXPECT_TRUE(backend.ok()) << backend.status().ToString();
  return backend.ok() ? std::move(backend).value() : nullptr;
}

// Checks rows [0, n) of `ours` against golden rows starting at `row0`.
void ExpectLogits(const Golden& g, size_t row0, std::span<const float> ours, const char* how) {
  const size_t vocab = g.meta["vocab_size"].get<size_t>();
  const float tol = 1e-4f * g.meta["max_abs_logit"].get<float>();
  ASSERT_EQ(ours.size() % vocab, 0u);
  float worst = 0.0f;
  for (size_t r = 0; r < ours.size() / vocab; ++r) {
    std::span<const float> a = ours.subspan(r * vocab, vocab);
    std::span<const float> b(g.logits.data() + (row0 + r) * vocab, vocab);
    ASSERT_EQ(std::max_element(a.begin(), a.end()) - a.begin(),
              std::max_element(b.begin(), b.end()) - b.begin())
        << how << ": argmax differs at golden row " << row0 + r;
    for (size_t i = 0; i < vocab; ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
  }
  EXPECT_LE(worst, tol) << how;
  std::printf("%s: max |diff| %.3g (tolerance %.3g)\n", how, worst, tol);
  ::testing::Test::RecordProperty(std::string(how) + "_max_abs_diff", std::to_string(worst));
}

class TinyGoldenTest : public ::testing::TestWithParam<const char*> {};

TEST_P(TinyGoldenTest, LogitsMatchTransformers) {
  const std::string name = GetParam();
  Golden g = ReadGolden(name);
  auto backend = Load(SourceDir() + "/" + g.meta["model"].get<std::string>());
  ASSERT_NE(backend, nullptr);
  const size_t vocab = g.meta["vocab_size"].get<size_t>();
  ASSERT_EQ(backend->config().vocab_size, static_cast<int32_t>(vocab));
  auto sequences = g.meta["sequences"].get<std::vector<std::vector<int32_t>>>();

  // Distinct blocks of 8 tokens per sequence; the chunked runs use blocks from 128 on.
  std::vector<std::vector<int32_t>> tables;
  int32_t next = 0;
  for (const auto& seq : sequences) {
    std::vector<int32_t> t;
    for (size_t b = 0; b < (seq.size() + 7) / 8; ++b) t.push_back(next++);
    tables.push_back(t);
  }
  std::vector<float> logits;
  size_t row0 = 0;
  for (size_t s = 0; s < sequences.size(); ++s) {
    const std::vector<int32_t>& seq = sequences[s];
    ForwardBatch one;
    one.chunks.push_back(LogitsChunk(seq, 0, tables[s], LogitsMode::kAll));
    ASSERT_TRUE(ForwardLogits(*backend, one, &logits).ok());
    ExpectLogits(g, row0, logits, "one_prefill");

    // Prefix first (no logits), then the rest over the cached prefix, in fresh blocks.
    size_t cut = seq.size() / 2;
    std::vector<int32_t> table;
    for (size_t b = 0; b < (seq.size() + 7) / 8; ++b) table.push_back(128 + b);
    ForwardBatch a, b;
    a.chunks.push_back(
        LogitsChunk(std::span<const int32_t>(seq).first(cut), 0, table, LogitsMode::kNone));
    b.chunks.push_back(LogitsChunk(std::span<const int32_t>(seq).subspan(cut),
                                   static_cast<int32_t>(cut), table, LogitsMode::kAll));
    ASSERT_TRUE(ForwardLogits(*backend, a, &logits).ok());
    ASSERT_TRUE(ForwardLogits(*backend, b, &logits).ok());
    ExpectLogits(g, row0 + cut, logits, "chunked");
    row0 += seq.size();
  }

  ForwardBatch all;
  for (size_t s = 0; s < sequences.size(); ++s)
    all.chunks.push_back(LogitsChunk(sequences[s], 0, tables[s], LogitsMode::kAll));
  ASSERT_TRUE(ForwardLogits(*backend, all, &logits).ok());
  ExpectLogits(g, 0, logits, "batched");
}

INSTANTIATE_TEST_SUITE_P(Models, TinyGoldenTest,
                         ::testing::Values("tiny-llama", "tiny-llama-tied-llama3", "tiny-qwen2",
                                           "tiny-llama-hd64", "tiny-llama-tied-llama3-hd64",
                                           "tiny-qwen2-hd64"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// tiny-qwen2's file holds BF16 weights: loading them as BF16 runs the BF16 matmul path on the
// very values the golden used.
TEST(TinyGoldenBf16Test, Bf16WeightsMatchTransformers) {
  Golden g = ReadGolden("tiny-qwen2");
  auto backend = Load(SourceDir() + "/" + g.meta["model"].get<std::string>(), DType::kBF16);
  ASSERT_NE(backend, nullptr);
  auto sequences = g.meta["sequences"].get<std::vector<std::vector<int32_t>>>();
  std::vector<int32_t> table = {0, 1, 2, 3, 4};
  ForwardBatch one;
  one.chunks.push_back(LogitsChunk(sequences[0], 0, table, LogitsMode::kAll));
  std::vector<float> logits;
  ASSERT_TRUE(ForwardLogits(*backend, one, &logits).ok());
  ExpectLogits(g, 0, logits, "bf16");
}

TEST(SmolLM2GoldenTest, GreedyTokensMatchTransformers) {
  // ctest passes only the first variable of ITE_TEST_ENV to gtest_discover_tests' tests, so
  // fall back to the default model path under the source tree.
  const char* env = std::getenv("ITE_MODEL_GGUF");
  std::string gguf = env ? env : SourceDir() + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(gguf))
    GTEST_SKIP() << "ITE_MODEL_GGUF not set or missing (scripts/fetch_model.sh fetches it)";
  std::ifstream f(SourceDir() + "/tests/data/golden/smollm2_greedy.json");
  ASSERT_TRUE(f.good());
  nlohmann::json golden = nlohmann::json::parse(f);
  LoadOptions lo;
  auto model = LoadModel(gguf, lo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  KvCacheOptions kv;
  kv.block_size = 16;
  kv.num_blocks = 64;
  auto backend = CreateCpuBackend(std::move(model).value(), kv, 2);
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  Generator gen(backend->get());
  SamplingParams greedy;
  greedy.temperature = 0;
  GenerateOptions opt;
  opt.max_new_tokens = 32;
  opt.stop_ids = golden["eos_token_ids"].get<std::vector<int32_t>>();
  opt.prefill_chunk = 16;  // exercise chunked prefill on the real model too
  for (const auto& c : golden["cases"]) {
    auto ids = c["ids"].get<std::vector<int32_t>>();
    auto want = c["generated"].get<std::vector<int32_t>>();
    auto r = gen.Generate(ids, greedy, opt);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->tokens, want) << c["kind"] << " prompt: " << c["prompt"];
  }
}

}  // namespace
}  // namespace ite
