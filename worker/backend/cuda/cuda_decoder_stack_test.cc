// The fused decoder stack (kernels/decoder_stack.h: a one-token step's layers in one kernel)
// against the same backend running five kernels a layer, on a GPU host (skipped elsewhere):
//  - teacher-forced one-token steps after prompts of 1 to 2,100 tokens (one context split up to
//    the most, cache blocks crossed; the checked-in models stop at their 256 positions): logits
//    within bf16 noise, the same argmax where it is clear;
//  - the K and V those steps wrote, read back by a four-token chunk (the prefill kernel);
//  - greedy generation through graph replays: the same tokens up to near-ties;
// over the shapes the kernel distinguishes: head_dim 64 and 128, 1, 4, 7 and 16 query heads per
// kv head, a Q/K/V bias (Qwen2), and the checked-in tiny models.
#include <cuda_runtime.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>

#include "ite/kernels/decoder_stack.h"
#include "tests/test_files.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda/cuda_test_skip.h"
#include "worker/engine/generator.h"
#include "worker/model/test_model_writer.h"

namespace ite {
namespace {

using testing::SourceDir;

struct Shape {
  const char* name;
  ModelArch arch;
  int32_t hidden, inter, heads, kv_heads, layers;
};

// A random model of `s` written as a Hugging Face folder; returns its path.
std::string WriteModel(const Shape& s) {
  ModelConfig c;
  c.arch = s.arch;
  c.name = s.name;
  c.vocab_size = 256;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.inter;
  c.num_layers = s.layers;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.head_dim = s.hidden / s.heads;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = 500000.0f;
  c.max_position = 4096;
  c.qkv_bias = s.arch == ModelArch::kQwen2;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("ite_stack_" + std::string(s.name) + "_" + std::to_string(getpid())))
                              .string();
  testing::WriteHfFolder(testing::MakeTinyModel(c, 3), dir, "BF16", false);
  return dir;
}

std::unique_ptr<Backend> Cuda(const std::string& dir, bool fused) {
  // The kernel runs only where asked for (decoder_stack.h); the option then picks the path.
  setenv("ITE_DECODER_STACK", "1", 1);
  LoadOptions lo;
  lo.dtype = DType::kBF16;
  auto m = LoadModel(dir, lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  if (!m.ok()) return nullptr;
  CudaBackendOptions o;
  o.kv.block_size = 16;
  o.kv.num_blocks = 160;
  o.max_step_tokens = 1024;
  o.max_seqs = 8;
  o.fused_decoder_stack = fused;
  auto b = CreateCudaBackend(std::move(m).value(), o);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? std::move(b).value() : nullptr;
}

// Both paths are bf16 with the same rounding points; only their sums' order differs.
void ExpectClose(const std::vector<float>& ours, const std::vector<float>& ref, size_t vocab,
                 const std::string& what, float* worst_ratio, float* worst_diff) {
  ASSERT_EQ(ours.size(), ref.size()) << what;
  for (size_t r = 0; r < ref.size() / vocab; ++r) {
    const float* a = ours.data() + r * vocab;
    const float* b = ref.data() + r * vocab;
    float top = 0.0f, diff = 0.0f;
    for (size_t i = 0; i < vocab; ++i) {
      top = std::max(top, std::fabs(b[i]));
      diff = std::max(diff, std::fabs(a[i] - b[i]));
    }
    const float tol = 0.04f * top;
    EXPECT_LE(diff, tol) << what << ", row " << r;
    *worst_ratio = std::max(*worst_ratio, diff / tol);
    *worst_diff = std::max(*worst_diff, diff);
    const size_t am = std::max_element(a, a + vocab) - a, bm = std::max_element(b, b + vocab) - b;
    std::vector<float> sorted(b, b + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
    if (sorted[0] - sorted[1] > 2 * tol) {
      EXPECT_EQ(am, bm) << what << ", row " << r;
    }
  }
}

std::vector<int32_t> RandomTokens(size_t n, uint32_t seed, int32_t vocab) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& x : t) x = std::uniform_int_distribution<int32_t>(3, vocab - 1)(rng);
  return t;
}

// Prefill of tokens [0, len) in chunks the step size takes, then one-token steps and a
// four-token chunk, on `b`; returns every logits row those steps gave.
std::vector<float> TeacherForced(Backend& b, const std::vector<int32_t>& tokens, size_t len,
                                 const std::vector<int32_t>& table) {
  std::vector<float> all, logits;
  for (size_t p = 0; p < len; p += 1000) {
    ForwardBatch batch;
    const size_t n = std::min<size_t>(1000, len - p);
    batch.chunks.push_back(LogitsChunk(std::span<const int32_t>(tokens).subspan(p, n),
                                       static_cast<int32_t>(p), table, LogitsMode::kNone));
    EXPECT_TRUE(ForwardLogits(b, batch, &logits).ok());
  }
  for (size_t i = 0; i < 9; ++i) {
    const size_t n = i < 8 ? 1 : 4;  // eight decode steps, then a chunk over what they wrote
    ForwardBatch batch;
    batch.chunks.push_back(LogitsChunk(std::span<const int32_t>(tokens).subspan(len + i, n),
                                       static_cast<int32_t>(len + i), table, LogitsMode::kAll));
    EXPECT_TRUE(ForwardLogits(b, batch, &logits).ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

void CompareOnModel(const std::string& dir, const std::string& name) {
  SCOPED_TRACE(name);
  auto fused = Cuda(dir, true);
  auto layered = Cuda(dir, false);
  ASSERT_TRUE(fused && layered);
  const ModelConfig& c = fused->config();
  kernels::DecoderStackArgs shape;
  shape.num_layers = c.num_layers;
  shape.hidden = c.hidden_size;
  shape.intermediate = c.intermediate_size;
  shape.num_heads = c.num_heads;
  shape.num_kv_heads = c.num_kv_heads;
  shape.head_dim = c.head_dim;
  int major = 0;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  std::string why;
  const bool applies = kernels::DecoderStackApplies(shape, &why);
  // On Hopper these shapes must take the fused stack, or this test compares a path with itself.
  if (major >= 9) {
    EXPECT_TRUE(applies) << why;
  } else {
    std::printf("%s: the fused stack does not apply here (%s)\n", name.c_str(), why.c_str());
  }
  std::vector<int32_t> table(160);
  for (int32_t i = 0; i < 160; ++i) table[i] = 159 - i;  // blocks out of order
  float worst = 0.0f, worst_diff = 0.0f;
  for (size_t len : {1, 40, 300, 1000, 2100}) {
    if (len + 12 > static_cast<size_t>(c.max_position)) continue;
    const auto tokens = RandomTokens(len + 12, static_cast<uint32_t>(len), c.vocab_size);
    const auto ours = TeacherForced(*fused, tokens, len, table);
    const auto ref = TeacherForced(*layered, tokens, len, table);
    ExpectClose(ours, ref, c.vocab_size, name + " after " + std::to_string(len) + " tokens", &worst,
                &worst_diff);
  }
  std::printf("%s: teacher-forced logits, worst |diff| %.3f, at %.2f of the tolerance\n",
              name.c_str(), worst_diff, worst);
  // Greedy through graph replays (decode steps of batch 1), against the layered path whose top
  // two logprobs tell a near-tie from a mismatch: the two paths may part only where the layered
  // run's top two logits were closer than twice the largest difference the teacher-forced steps
  // showed between the paths (a logprob gap is the logit gap).
  const float near_tie = 2.0f * worst_diff;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  SamplingParams with_top = greedy;
  with_top.top_logprobs = 2;
  GenerateOptions o;
  o.max_new_tokens = 48;
  int equal = 0;
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    const size_t len = std::min<size_t>(5 + 97 * seed, c.max_position - o.max_new_tokens - 1);
    const auto prompt = RandomTokens(len, seed + 100, c.vocab_size);
    auto a = Generator(fused.get()).Generate(prompt, greedy, o);
    auto b = Generator(layered.get()).Generate(prompt, with_top, o);
    ASSERT_TRUE(a.ok() && b.ok());
    size_t i = 0;
    while (i < a->tokens.size() && i < b->tokens.size() && a->tokens[i] == b->tokens[i]) ++i;
    if (i == b->tokens.size()) {
      ++equal;
      continue;
    }
    const auto& top = b->samples[i].top;
    ASSERT_GE(top.size(), 2u);
    EXPECT_LT(top[0].logprob - top[1].logprob, near_tie)
        << "greedy parts at token " << i << " of prompt " << seed << " where the layered run's "
        << "top two were not close";
  }
  std::printf("%s: %d of 4 greedy continuations equal\n", name.c_str(), equal);
}

class FusedDecoderStackTest : public ::testing::TestWithParam<Shape> {};

TEST_P(FusedDecoderStackTest, FollowsTheLayerKernels) {
  ITE_SKIP_WITHOUT_CUDA();
  const std::string dir = WriteModel(GetParam());
  CompareOnModel(dir, GetParam().name);
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, FusedDecoderStackTest,
    ::testing::Values(Shape{"llama_hd128_group4", ModelArch::kLlama, 512, 768, 4, 1, 3},
                      Shape{"qwen2_hd64_group7_bias", ModelArch::kQwen2, 448, 640, 7, 1, 2},
                      Shape{"llama_hd64_group16", ModelArch::kLlama, 1024, 512, 16, 1, 2},
                      Shape{"llama_hd64_group1", ModelArch::kLlama, 256, 512, 4, 4, 2}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(FusedDecoderStackTest, TheCheckedInTinyModelsFollowTheLayerKernels) {
  ITE_SKIP_WITHOUT_CUDA();
  for (const char* name : {"tiny-llama-hd64", "tiny-qwen2-hd64"})
    CompareOnModel(SourceDir() + "/tests/data/" + name, name);
}

}  // namespace
}  // namespace ite
