// Loading a LlavaForConditionalGeneration folder: the tiny random LLaVA of tests/data (made by
// tests/golden/make_llava.py with transformers' save_pretrained), and the same folder broken one
// way at a time, each failing with a Status that names the missing or bad part.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/model/model_loader.h"
#include "worker/model/safetensors_file.h"
#include "worker/model/test_model_writer.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using json = nlohmann::json;

fs::path TinyLlava() {
  const char* d = std::getenv("ITE_SOURCE_DIR");
  return fs::path(d != nullptr ? d : ".") / "tests/data/tiny-llava";
}

// A copy of the tiny LLaVA in a fresh directory, removed with the fixture.
class LlavaLoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("ite_llava_loader_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const auto& e : fs::directory_iterator(TinyLlava()))
      fs::copy(e.path(), dir_ / e.path().filename());
  }
  void TearDown() override { fs::remove_all(dir_); }

  json Config() {
    std::ifstream in(dir_ / "config.json");
    return json::parse(in);
  }
  void WriteConfig(const json& j) { std::ofstream(dir_ / "config.json") << j.dump(); }

  // Rewrites model.safetensors without `drop`.
  void DropTensor(const std::string& drop) {
    auto file = SafetensorsFile::Open((dir_ / "model.safetensors").string());
    ASSERT_TRUE(file.ok()) << file.status().ToString();
    std::map<std::string, testing::SafetensorsEntry> entries;
    for (const SafetensorsTensor& t : (*file)->tensors()) {
      if (t.name == drop) continue;
      entries[t.name] = {"F32", t.shape,
                         std::string(reinterpret_cast<const char*>(t.data), t.nbytes)};
    }
    ASSERT_EQ(entries.size() + 1, (*file)->tensors().size()) << drop << " not in the file";
    file->reset();
    std::ofstream(dir_ / "model.safetensors", std::ios::binary)
        << testing::BuildSafetensors(entries);
  }

  std::string LoadError() {
    auto m = LoadModel(dir_.string(), {});
    return m.ok() ? "loaded" : m.status().ToString();
  }

  fs::path dir_;
};

TEST_F(LlavaLoaderTest, LoadsTheTinyLlava) {
  auto m = LoadModel(dir_.string(), {});
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  const ModelConfig& c = m->config;
  ASSERT_TRUE(c.vision.has_value());
  EXPECT_EQ(c.arch, ModelArch::kLlama);
  EXPECT_EQ(c.hidden_size, 128);
  EXPECT_EQ(c.vocab_size, 402);
  const VisionConfig& v = *c.vision;
  EXPECT_EQ(v.hidden_size, 64);
  EXPECT_EQ(v.num_layers, 3);
  EXPECT_EQ(v.feature_layers, 2);  // vision_feature_layer -2 of 3 layers
  EXPECT_EQ(v.image_tokens(), 576);
  EXPECT_EQ(v.image_token_id, 401);
  EXPECT_EQ(v.act, ActFn::kQuickGelu);
  EXPECT_EQ(v.projector_act, ActFn::kGelu);
  const VisionWeights& w = m->weights.vision;
  ASSERT_EQ(w.layers.size(), 2u);
  EXPECT_EQ(w.patch_embedding.shape, (std::vector<int64_t>{64, 3 * 14 * 14}));
  EXPECT_EQ(w.position_table.shape, (std::vector<int64_t>{577, 64}));
  EXPECT_EQ(w.layers[1].wqkv.shape, (std::vector<int64_t>{192, 64}));
  EXPECT_EQ(w.proj_w1.shape, (std::vector<int64_t>{128, 64}));
  EXPECT_EQ(m->weights.layers.size(), 2u);

  // Values: row 0 of the position table is position 0 plus the class embedding; the fused QKV
  // holds K after Q.
  auto file = SafetensorsFile::Open((dir_ / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  auto find = [&](const std::string& name) -> const float* {
    for (const SafetensorsTensor& t : (*file)->tensors())
      if (t.name == name) return reinterpret_cast<const float*>(t.data);
    ADD_FAILURE() << name;
    return nullptr;
  };
  const float* pos = find("vision_tower.embeddings.position_embedding.weight");
  const float* cls = find("vision_tower.embeddings.class_embedding");
  const float* k1 = find("vision_tower.encoder.layers.1.self_attn.k_proj.weight");
  ASSERT_TRUE(pos && cls && k1);
  EXPECT_FLOAT_EQ(w.position_table.as<float>()[5], pos[5] + cls[5]);
  EXPECT_FLOAT_EQ(w.position_table.as<float>()[64 + 5], pos[64 + 5]);
  EXPECT_FLOAT_EQ(w.layers[1].wqkv.as<float>()[64 * 64 + 7], k1[7]);
}

TEST_F(LlavaLoaderTest, MissingVisionConfigIsNamed) {
  json j = Config();
  j.erase("vision_config");
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("vision_config"));
}

TEST_F(LlavaLoaderTest, MissingTextConfigIsNamed) {
  json j = Config();
  j.erase("text_config");
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("text_config"));
}

TEST_F(LlavaLoaderTest, UnsupportedChoicesAreNamed) {
  json j = Config();
  j["vision_feature_select_strategy"] = "mean";
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("vision_feature_select_strategy"));
  j = Config();
  j["vision_feature_select_strategy"] = "default";
  j["vision_feature_layer"] = json::array({-2, -1});
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("vision_feature_layer"));
  j["vision_feature_layer"] = -9;
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("vision_feature_layer -9"));
  j["vision_feature_layer"] = -2;
  j["vision_config"]["hidden_act"] = "relu";
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("hidden_act"));
  j["vision_config"]["hidden_act"] = "quick_gelu";
  j["image_token_index"] = 5000;
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("image_token_index 5000"));
  j["image_token_index"] = 401;
  j["vision_config"]["patch_size"] = 13;
  WriteConfig(j);
  EXPECT_THAT(LoadError(), HasSubstr("patch_size"));
}

TEST_F(LlavaLoaderTest, MissingTensorsAreNamed) {
  DropTensor("multi_modal_projector.linear_2.bias");
  EXPECT_THAT(LoadError(), HasSubstr("multi_modal_projector.linear_2.bias"));
}

TEST_F(LlavaLoaderTest, MissingLayerTensorIsNamed) {
  DropTensor("vision_tower.encoder.layers.1.self_attn.v_proj.weight");
  EXPECT_THAT(LoadError(), HasSubstr("vision_tower.encoder.layers.1.self_attn.v_proj.weight"));
}

TEST_F(LlavaLoaderTest, MissingLanguageModelIsNamed) {
  DropTensor("language_model.model.embed_tokens.weight");
  EXPECT_THAT(LoadError(), HasSubstr("language model is missing"));
}

TEST_F(LlavaLoaderTest, UnusedLastLayerMayBeAbsent) {
  // Feature layer -2: the last encoder layer is never run, so it is not loaded either.
  DropTensor("vision_tower.encoder.layers.2.mlp.fc2.weight");
  EXPECT_EQ(LoadError(), "loaded");
}

}  // namespace
}  // namespace ite
