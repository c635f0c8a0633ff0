// The tiny random LLaVA on the CPU backend against transformers (goldens made by
// tests/golden/make_llava.py): our decoding + preprocessing of the image, the vision tower's
// features, the projector's output, the logits of a prompt with 576 image positions (text rows
// and the first and last image rows), and 12 greedy tokens. fp32 throughout; only summation
// order differs, so the tolerance is 1e-4 of the largest reference value.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/image/image_decoder.h"
#include "common/image/image_processor.h"
#include "tests/golden/golden_data.h"
#include "tests/test_files.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/cpu_model_ops.h"
#include "worker/engine/generator.h"
#include "worker/model/model_loader.h"
#include "worker/model/vision_model.h"

namespace ite {
namespace {

using testing::ReadBytes;
using testing::SourceDir;

using json = nlohmann::json;

std::vector<float> ReadF32(const std::string& name, size_t n) {
  std::string bytes = ReadBytes(SourceDir() + "/tests/data/golden/" + name);
  EXPECT_EQ(bytes.size(), n * sizeof(float)) << name;
  std::vector<float> out(n);
  std::memcpy(out.data(), bytes.data(), std::min(bytes.size(), n * sizeof(float)));
  return out;
}

size_t Numel(const json& shape) {
  size_t n = 1;
  for (const json& d : shape) n *= d.get<size_t>();
  return n;
}

// max |a - b| <= 1e-4 * max |b|, reported.
void ExpectClose(std::span<const float> a, std::span<const float> b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  float worst = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  EXPECT_LE(worst, 1e-4f * scale) << what;
  std::printf("%s: max |diff| %.3g of max |value| %.3g\n", what, worst, scale);
}

class LlavaGoldenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ifstream in(SourceDir() + "/tests/data/golden/tiny-llava.json");
    ASSERT_TRUE(in.good());
    golden_ = json::parse(in);
    const std::string dir = SourceDir() + "/" + golden_["model"].get<std::string>();
    auto model = LoadModel(dir, {});
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = std::move(model).value();
    auto processor = LoadImageProcessorConfig(dir);
    ASSERT_TRUE(processor.ok()) << processor.status().ToString();
    processor_ = *processor;
  }

  std::vector<float> Pixels(const json& c) {
    auto image = DecodeImage(ReadBytes(SourceDir() + "/" + c["image"].get<std::string>()), "", {});
    EXPECT_TRUE(image.ok()) << image.status().ToString();
    if (!image.ok()) return {};
    auto px = PreprocessImage(*image, processor_);
    EXPECT_TRUE(px.ok()) << px.status().ToString();
    return px.ok() ? *px : std::vector<float>();
  }

  json golden_;
  LoadedModel model_;
  ImageProcessorConfig processor_;
};

TEST_F(LlavaGoldenTest, PixelValuesMatchTheProcessor) {
  for (const json& c : golden_["cases"]) {
    const std::vector<float> px = Pixels(c);
    const json& g = c["pixel_values"];
    ASSERT_EQ(px.size(), Numel(g["shape"]));
    const size_t stride = g["sample_stride"].get<size_t>();
    for (size_t i = 0; i < g["samples"].size(); ++i)
      ASSERT_NEAR(px[i * stride], g["samples"][i].get<double>(), 1e-5) << "sample " << i;
    double sum = 0;
    for (float v : px) sum += v;
    EXPECT_NEAR(sum, g["sum"].get<double>(), 1e-6 * g["sum_abs"].get<double>());
  }
}

TEST_F(LlavaGoldenTest, VisionFeaturesAndProjectorMatch) {
  const json& c = golden_["cases"][0];
  ASSERT_TRUE(c.contains("vision_features"));
  CpuModelOps ops(model_.config, 2);
  auto vision = CreateVisionModel(model_.config, model_.weights.vision, &ops);
  ASSERT_TRUE(vision.ok()) << vision.status().ToString();
  const std::vector<float> px = Pixels(c);
  auto features = (*vision)->Features(&ops, px);
  ASSERT_TRUE(features.ok()) << features.status().ToString();
  const size_t nf = Numel(c["vision_features_shape"]);
  ASSERT_EQ(static_cast<size_t>(features->rows) * features->cols, nf);
  const auto* f = static_cast<const float*>(features->data);
  ExpectClose({f, nf}, ReadF32(c["vision_features"].get<std::string>(), nf), "vision features");

  const size_t np = Numel(c["projector_shape"]);
  std::vector<float> out(np);
  const int32_t rows = c["projector_shape"][0].get<int32_t>();
  ASSERT_TRUE(
      (*vision)->Encode(&ops, px, {out.data(), rows, static_cast<int32_t>(np / rows)}).ok());
  ExpectClose(out, ReadF32(c["projector"].get<std::string>(), np), "projector");
}

TEST_F(LlavaGoldenTest, LogitsAndGreedyMatchTransformers) {
  KvCacheOptions kv;
  kv.block_size = 16;
  kv.num_blocks = 64;
  const int32_t image_token = golden_["image_token_id"].get<int32_t>();
  std::vector<std::vector<int32_t>> greedy;
  for (const json& c : golden_["cases"]) {
    SCOPED_TRACE(c["image"].get<std::string>());
    auto model = LoadModel(SourceDir() + "/" + golden_["model"].get<std::string>(), {});
    ASSERT_TRUE(model.ok());
    auto backend = CreateCpuBackend(std::move(model).value(), kv, 2);
    ASSERT_TRUE(backend.ok()) << backend.status().ToString();
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const int32_t position =
        static_cast<int32_t>(std::find(ids.begin(), ids.end(), image_token) - ids.begin());
    const int32_t vocab = (*backend)->config().vocab_size;
    const auto rows = c["logit_rows"].get<std::vector<int32_t>>();
    const std::vector<float> want = ReadF32(c["logits"].get<std::string>(), rows.size() * vocab);
    // One prefill, and chunks of 100 that split the image's positions across steps.
    for (int32_t chunk : {static_cast<int32_t>(ids.size()), 100}) {
      const std::vector<float> all =
          golden::PromptLogits(**backend, ids, {{position, Pixels(c)}}, chunk);
      ASSERT_EQ(all.size(), ids.size() * vocab);
      std::vector<float> got;
      for (int32_t r : rows) {
        std::span<const float> row(all.data() + static_cast<size_t>(r) * vocab, vocab);
        std::span<const float> ref(want.data() + got.size(), vocab);
        ASSERT_EQ(std::max_element(row.begin(), row.end()) - row.begin(),
                  std::max_element(ref.begin(), ref.end()) - ref.begin())
            << "argmax at row " << r << ", chunk " << chunk;
        got.insert(got.end(), row.begin(), row.end());
      }
      ExpectClose(got, want, chunk == 100 ? "logits (chunks of 100)" : "logits");
    }
    Generator gen(backend->get());
    GenerateOptions opt;
    opt.max_new_tokens = 12;
    opt.prefill_chunk = 256;
    opt.images = {{{position, Pixels(c)}}};
    SamplingParams greedy_params;
    greedy_params.temperature = 0.0f;
    auto result = gen.Generate(ids, greedy_params, opt);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->tokens, c["greedy"].get<std::vector<int32_t>>());
    greedy.push_back(result->tokens);
  }
  ASSERT_EQ(greedy.size(), 2u);
  EXPECT_NE(greedy[0], greedy[1]) << "different images must steer the text differently";
}

TEST_F(LlavaGoldenTest, BadImagesAreRefused) {
  KvCacheOptions kv;
  kv.num_blocks = 64;
  auto backend = CreateCpuBackend(std::move(model_), kv, 1);
  ASSERT_TRUE(backend.ok());
  const auto ids = golden_["cases"][0]["ids"].get<std::vector<int32_t>>();
  ASSERT_TRUE((*backend)->AddSequence(0, SamplingParams{}, ids, 0).ok());
  std::vector<float> px(3 * 336 * 336, 0.0f);
  // Wrong pixel count; positions not on image tokens; past the prompt.
  EXPECT_FALSE((*backend)->SetSequenceImages(0, {{6, std::vector<float>(10)}}, ids).ok());
  EXPECT_FALSE((*backend)->SetSequenceImages(0, {{0, px}}, ids).ok());
  EXPECT_FALSE(
      (*backend)->SetSequenceImages(0, {{static_cast<int32_t>(ids.size()) - 5, px}}, ids).ok());
}

}  // namespace
}  // namespace ite
