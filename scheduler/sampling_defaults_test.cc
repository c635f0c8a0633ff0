// The model's sampling defaults: read from generation_config.json as vLLM reads them, API
// defaults without the file, a malformed file refused naming the file and the key.
#include "scheduler/sampling_defaults.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace ite {
namespace {

namespace fs = std::filesystem;

fs::path FolderWith(const std::string& name, const std::string& generation_config) {
  fs::path dir = fs::temp_directory_path() / ("ite_sampling_defaults_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  if (!generation_config.empty())
    std::ofstream(dir / "generation_config.json") << generation_config;
  return dir;
}

TEST(SamplingDefaultsTest, ReadsTheSamplingKeysOfGenerationConfig) {
  // Llama-3.2-1B-Instruct's file, shortened.
  fs::path dir = FolderWith("llama", R"({"bos_token_id": 128000, "do_sample": true,
      "eos_token_id": [128001, 128008, 128009], "temperature": 0.6, "top_p": 0.9,
      "transformers_version": "4.45.0"})");
  StatusOr<SamplingParams> p = SamplingDefaultsForModel(dir.string());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FLOAT_EQ(p->temperature, 0.6f);
  EXPECT_FLOAT_EQ(p->top_p, 0.9f);
  EXPECT_EQ(p->top_k, 0);
  EXPECT_FLOAT_EQ(p->repetition_penalty, 1.0f);
  EXPECT_EQ(DescribeSamplingDefaults(*p), "temperature 0.6, top_p 0.9");

  fs::path qwen = FolderWith("qwen", R"({"top_k": 20, "min_p": 0.05,
      "repetition_penalty": 1.05, "temperature": 0.7})");
  p = SamplingDefaultsForModel(qwen.string());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->top_k, 20);
  EXPECT_FLOAT_EQ(p->min_p, 0.05f);
  EXPECT_FLOAT_EQ(p->repetition_penalty, 1.05f);
  fs::remove_all(dir);
  fs::remove_all(qwen);
}

TEST(SamplingDefaultsTest, WithoutTheFileTheApiDefaultsStay) {
  fs::path dir = FolderWith("none", "");
  for (const std::string& path : {dir.string(), (dir / "model.gguf").string()}) {
    StatusOr<SamplingParams> p = SamplingDefaultsForModel(path);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->temperature, 1.0f);
    EXPECT_EQ(p->top_p, 1.0f);
    EXPECT_EQ(DescribeSamplingDefaults(*p), "none");
  }
  fs::remove_all(dir);
}

TEST(SamplingDefaultsTest, AMalformedFileIsAnErrorNamingTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"temperature": "hot"})", "temperature"},
      {R"({"top_p": 1.5})", "top_p"},
      {R"({"top_k": -3})", "top_k"},
      {R"({"repetition_penalty": 0})", "repetition_penalty"},
      {R"([1, 2])", "JSON object"},
      {R"({"temperature": )", "not valid JSON"},
  };
  for (const auto& [text, key] : cases) {
    fs::path dir = FolderWith("bad", text);
    StatusOr<SamplingParams> p = SamplingDefaultsForModel(dir.string());
    ASSERT_FALSE(p.ok()) << text;
    EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(p.status().message().find(key), std::string::npos) << p.status().ToString();
    EXPECT_NE(p.status().message().find("generation_config.json"), std::string::npos);
    fs::remove_all(dir);
  }
}

}  // namespace
}  // namespace ite
