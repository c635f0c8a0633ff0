// The LLaVA vision tower and image prompts on the CUDA backend (GPU host; skipped elsewhere),
// with the tiny random LLaVA of tests/data in bf16:
//  - the vision tower's features and the projector's output through CudaModelOps against the
//    transformers fp32 goldens (bf16 tolerance);
//  - the logits of a prompt with an image (one prefill, and chunks that split the image) against
//    the CPU backend on the same bf16 weights, argmax equal where the CPU's top two are apart;
//  - greedy tokens with the image equal to the CPU backend's.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/image/image_decoder.h"
#include "common/image/image_processor.h"
#include "tests/golden/golden_data.h"
#include "tests/test_files.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda/cuda_model_ops.h"
#include "worker/backend/cuda/cuda_test_skip.h"
#include "worker/engine/generator.h"
#include "worker/model/vision_model.h"

namespace ite {
namespace {

using testing::ReadBytes;
using testing::SourceDir;

using json = nlohmann::json;

json Golden() {
  std::ifstream in(SourceDir() + "/tests/data/golden/tiny-llava.json");
  EXPECT_TRUE(in.good());
  return json::parse(in);
}

LoadedModel LoadBf16() {
  LoadOptions lo;
  lo.dtype = DType::kBF16;
  auto m = LoadModel(SourceDir() + "/tests/data/tiny-llava", lo);
  EXPECT_TRUE(m.ok()) << m.status().ToString();
  return std::move(m).value();
}

std::vector<float> Pixels(const json& c) {
  auto config = LoadImageProcessorConfig(SourceDir() + "/tests/data/tiny-llava");
  EXPECT_TRUE(config.ok());
  auto image = DecodeImage(ReadBytes(SourceDir() + "/" + c["image"].get<std::string>()), "", {});
  EXPECT_TRUE(image.ok());
  auto px = PreprocessImage(*image, *config);
  EXPECT_TRUE(px.ok());
  return px.ok() ? *px : std::vector<float>();
}

std::vector<float> ReadF32(const std::string& name) {
  const std::string b = ReadBytes(SourceDir() + "/tests/data/golden/" + name);
  std::vector<float> v(b.size() / 4);
  std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

// Device bf16 [rows, cols] to host fp32.
std::vector<float> Download(Activation a) {
  std::vector<uint16_t> bits(static_cast<size_t>(a.rows) * a.cols);
  EXPECT_EQ(cudaMemcpy(bits.data(), a.data, bits.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  std::vector<float> out(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    const uint32_t w = uint32_t{bits[i]} << 16;
    std::memcpy(&out[i], &w, 4);
  }
  return out;
}

// max |a - b| within `rel` of max |b|; returns the worst difference.
float ExpectClose(const std::vector<float>& a, const std::vector<float>& b, float rel,
                  const char* what) {
  EXPECT_EQ(a.size(), b.size()) << what;
  float worst = 0, scale = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  EXPECT_LE(worst, rel * scale) << what;
  std::printf("%s: max |diff| %.4g of max |value| %.4g\n", what, worst, scale);
  return worst;
}

TEST(CudaLlavaTest, VisionTowerMatchesGoldens) {
  ITE_SKIP_WITHOUT_CUDA();
  const json g = Golden();
  const json& c = g["cases"][0];
  LoadedModel model = LoadBf16();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  CudaOpsOptions o;
  o.max_rows = 1024;
  auto ops = CudaModelOps::Create(model.config, o, stream);
  ASSERT_TRUE(ops.ok()) << ops.status().ToString();
  auto vision = CreateVisionModel(model.config, model.weights.vision, ops->get());
  ASSERT_TRUE(vision.ok()) << vision.status().ToString();
  const std::vector<float> px = Pixels(c);
  auto features = (*vision)->Features(ops->get(), px);
  ASSERT_TRUE(features.ok()) << features.status().ToString();
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  // bf16 through 2 layers of 64 wide: a few percent of the largest value.
  ExpectClose(Download(*features), ReadF32(c["vision_features"].get<std::string>()), 0.05f,
              "vision features (bf16)");

  const int32_t rows = c["projector_shape"][0].get<int32_t>();
  const int32_t cols = c["projector_shape"][1].get<int32_t>();
  void* out = nullptr;
  ASSERT_EQ(cudaMalloc(&out, size_t{2} * rows * cols), cudaSuccess);
  ASSERT_TRUE((*vision)->Encode(ops->get(), px, {out, rows, cols}).ok());
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  ExpectClose(Download({out, rows, cols}), ReadF32(c["projector"].get<std::string>()), 0.05f,
              "projector (bf16)");
  cudaFree(out);
  ops->reset();
  cudaStreamDestroy(stream);
}

TEST(CudaLlavaTest, ImagePromptMatchesCpuBackend) {
  ITE_SKIP_WITHOUT_CUDA();
  const json g = Golden();
  CudaBackendOptions o;
  o.kv.block_size = 16;
  o.kv.num_blocks = 128;
  o.max_step_tokens = 1024;
  // Logits of every prompt row (593 with the image) in one step: the backend allows as many
  // logit rows as sequences, at least 256.
  o.max_seqs = 1024;
  auto cuda = CreateCudaBackend(LoadBf16(), o);
  ASSERT_TRUE(cuda.ok()) << cuda.status().ToString();
  KvCacheOptions kv;
  kv.block_size = 16;
  kv.num_blocks = 128;
  auto cpu = CreateCpuBackend(LoadBf16(), kv, 4);
  ASSERT_TRUE(cpu.ok());
  const int32_t image_token = g["image_token_id"].get<int32_t>();
  const int32_t vocab = (*cpu)->config().vocab_size;
  for (const json& c : g["cases"]) {
    SCOPED_TRACE(c["image"].get<std::string>());
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const int32_t position =
        static_cast<int32_t>(std::find(ids.begin(), ids.end(), image_token) - ids.begin());
    const std::vector<float> px = Pixels(c);
    const std::vector<float> want = golden::PromptLogits(**cpu, ids, {{position, px}}, 1024);
    for (int32_t chunk : {1024, 100}) {
      const std::vector<float> got = golden::PromptLogits(**cuda, ids, {{position, px}}, chunk);
      ASSERT_EQ(got.size(), want.size());
      float scale = 0;
      for (float v : want) scale = std::max(scale, std::fabs(v));
      const float tol = 0.08f * scale;
      ExpectClose(got, want, 0.08f, chunk == 100 ? "logits, chunks of 100" : "logits");
      for (size_t r = 0; r < ids.size(); ++r) {
        std::vector<float> row(want.begin() + r * vocab, want.begin() + (r + 1) * vocab);
        std::vector<float> sorted = row;
        std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(), std::greater<>());
        if (sorted[0] - sorted[1] <= 2 * tol) continue;  // a near tie either way
        const auto a = std::max_element(got.begin() + r * vocab, got.begin() + (r + 1) * vocab) -
                       (got.begin() + r * vocab);
        EXPECT_EQ(a, std::max_element(row.begin(), row.end()) - row.begin()) << "row " << r;
      }
    }
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    GenerateOptions opt;
    opt.max_new_tokens = 12;
    opt.images = {{{position, px}}};
    auto a = Generator(cuda->get()).Generate(ids, greedy, opt);
    auto b = Generator(cpu->get()).Generate(ids, greedy, opt);
    ASSERT_TRUE(a.ok() && b.ok());
    std::printf("greedy cuda:");
    for (int32_t t : a->tokens) std::printf(" %d", t);
    std::printf("\ngreedy cpu: ");
    for (int32_t t : b->tokens) std::printf(" %d", t);
    std::printf("\n");
    EXPECT_EQ(a->tokens, b->tokens);
  }
}

}  // namespace
}  // namespace ite
