// Runs the fuzz entry points over the committed seed corpus
// (tests/data/fuzz/{gguf,safetensors,hf_config}) and over every truncation and a few byte flips of
// each seed, in the normal build, so the fuzzers' code paths stay exercised by ctest.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "worker/model/config_parser.h"
#include "worker/model/fuzz/fuzz_entry.h"
#include "worker/model/model_loader.h"

namespace ite::fuzz {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Corpus(const std::string& kind) {
  const char* src = std::getenv("ITE_SOURCE_DIR");
  fs::path dir = fs::path(src != nullptr ? src : ".") / "tests/data/fuzz" / kind;
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::ifstream in(e.path(), std::ios::binary);
    out.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  return out;
}

void RunAll(const std::vector<std::string>& corpus, int (*entry)(const uint8_t*, size_t)) {
  for (const std::string& seed : corpus) {
    // Exact-size copies so an overread is an overread under sanitizers.
    for (size_t n = 0; n <= seed.size(); n += (seed.size() < 2048 ? 1 : 13)) {
      std::vector<uint8_t> buf(seed.begin(), seed.begin() + static_cast<std::ptrdiff_t>(n));
      entry(buf.data(), buf.size());
    }
    std::vector<uint8_t> buf(seed.begin(), seed.end());
    for (size_t i = 0; i < buf.size(); i += std::max<size_t>(3, buf.size() / 1500)) {
      const uint8_t old = buf[i];
      for (uint8_t v : {uint8_t{0}, uint8_t{0xff}, uint8_t(old ^ 0x80)}) {
        buf[i] = v;
        entry(buf.data(), buf.size());
      }
      buf[i] = old;
    }
  }
}

TEST(FuzzCorpusTest, Gguf) {
  auto corpus = Corpus("gguf");
  ASSERT_GE(corpus.size(), 3u);
  RunAll(corpus, FuzzGguf);
}

TEST(FuzzCorpusTest, Safetensors) {
  auto corpus = Corpus("safetensors");
  ASSERT_GE(corpus.size(), 3u);
  RunAll(corpus, FuzzSafetensors);
}

TEST(FuzzCorpusTest, HfConfig) {
  auto corpus = Corpus("hf_config");
  ASSERT_GE(corpus.size(), 3u);
  for (const std::string& seed : corpus) {  // every seed is a valid config, so fuzzing starts deep
    auto c = ConfigFromHfJson(nlohmann::json::parse(seed), nullptr, "seed");
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }
  RunAll(corpus, FuzzHfConfig);
}

TEST(FuzzCorpusTest, Image) {
  auto corpus = Corpus("image");
  ASSERT_GE(corpus.size(), 5u);
  RunAll(corpus, FuzzImage);
}

// The model seeds (written by gguf-py) must load, or the fuzzer would never reach the builder.
TEST(FuzzCorpusTest, ModelSeedsLoad) {
  const char* src = std::getenv("ITE_SOURCE_DIR");
  const fs::path dir = fs::path(src != nullptr ? src : ".") / "tests/data/fuzz/gguf";
  for (const char* name : {"llama_f32.gguf", "llama_q8_0.gguf", "qwen2_q4_1.gguf"}) {
    auto m = LoadModel((dir / name).string(), {});
    ASSERT_TRUE(m.ok()) << name << ": " << m.status().ToString();
    EXPECT_EQ(m->config.num_layers, 1) << name;
  }
}

}  // namespace
}  // namespace ite::fuzz
