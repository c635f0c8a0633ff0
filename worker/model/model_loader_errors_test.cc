// Every malformed model input must come back as a Status naming the file and the tensor or key,
// never a crash. Files are generated, then broken in one specific way each.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/gguf_reader.h"
#include "common/gguf_test_writer.h"
#include "worker/model/model_loader.h"
#include "worker/model/safetensors_file.h"
#include "worker/model/test_model_writer.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using testing::GgufTestWriter;
using ::testing::HasSubstr;
using testing::TinyModel;

// Directories made by TempDir, removed when the test program ends.
class TempDirCleanup : public ::testing::Environment {
 public:
  static std::vector<fs::path>& Dirs() {
    static std::vector<fs::path> dirs;
    return dirs;
  }
  void TearDown() override {
    std::error_code ec;
    for (const fs::path& d : Dirs()) fs::remove_all(d, ec);
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new TempDirCleanup);

fs::path TempDir(const std::string& name) {
  // Per process: ctest -j runs test cases (separate processes) concurrently.
  fs::path p =
      fs::temp_directory_path() / ("ite_loader_errors_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  TempDirCleanup::Dirs().push_back(p);
  return p;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteAll(const fs::path& p, const std::string& bytes) {
  GgufTestWriter::WriteFile(p.string(), bytes);
}

Status LoadStatus(const fs::path& p) { return LoadModel(p.string(), {}).status(); }

// --- GGUF -----------------------------------------------------------------------------------

// Writes the tiny llama model as GGUF after `edit` changed it.
fs::path GgufWith(const std::string& name, const std::function<void(TinyModel*)>& edit) {
  TinyModel m = testing::MakeTinyModel(ModelArch::kLlama, true);
  edit(&m);
  fs::path p = TempDir("gguf_" + name) / "m.gguf";
  WriteAll(p, testing::BuildGguf(m));
  return p;
}

TEST(GgufLoadErrorsTest, MissingTensorIsNamed) {
  fs::path p = GgufWith(
      "missing", [](TinyModel* m) { m->tensors.erase("model.layers.1.mlp.up_proj.weight"); });
  Status s = LoadStatus(p);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(s.message(), AllOf(HasSubstr(p.string()), HasSubstr("blk.1.ffn_up.weight")));
}

TEST(GgufLoadErrorsTest, WrongShapeIsNamed) {
  fs::path p = GgufWith("shape", [](TinyModel* m) {
    auto& t = m->tensors["model.layers.0.self_attn.o_proj.weight"];
    t.shape = {32, 128};  // same element count, wrong layout
  });
  Status s = LoadStatus(p);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("blk.0.attn_output.weight"), HasSubstr("[32, 128]"),
                                 HasSubstr("[64, 64]")));
}

TEST(GgufLoadErrorsTest, VocabularyMismatchIsAShapeError) {
  fs::path p = GgufWith("vocab", [](TinyModel* m) {
    auto& t = m->tensors["model.embed_tokens.weight"];
    t.shape = {65, 64};
    t.values.resize(65 * 64, 0.0f);
  });
  EXPECT_THAT(LoadStatus(p).message(), HasSubstr("token_embd.weight"));
}

GgufTestWriter MinimalHeader(const std::string& arch, uint32_t hidden = 64) {
  GgufTestWriter w;
  w.AddString("general.architecture", arch);
  w.AddU32(arch + ".block_count", 1);
  w.AddU32(arch + ".embedding_length", hidden);
  w.AddU32(arch + ".feed_forward_length", 96);
  w.AddU32(arch + ".attention.head_count", 4);
  w.AddU32(arch + ".context_length", 128);
  w.AddU32(arch + ".vocab_size", 64);
  return w;
}

TEST(GgufLoadErrorsTest, UnsupportedArchitectureAndMetadata) {
  fs::path dir = TempDir("gguf_meta");
  WriteAll(dir / "gpt2.gguf", MinimalHeader("gpt2").Build());
  Status s = LoadStatus(dir / "gpt2.gguf");
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), HasSubstr("'gpt2'"));

  GgufTestWriter no_arch;
  no_arch.AddU32("llama.block_count", 1);
  WriteAll(dir / "noarch.gguf", no_arch.Build());
  EXPECT_THAT(LoadStatus(dir / "noarch.gguf").message(), HasSubstr("general.architecture"));

  GgufTestWriter bad;
  bad.AddString("general.architecture", "llama");
  bad.AddU32("llama.embedding_length", 64);
  WriteAll(dir / "nolayers.gguf", bad.Build());
  EXPECT_THAT(LoadStatus(dir / "nolayers.gguf").message(), HasSubstr("llama."));

  GgufTestWriter heads = MinimalHeader("llama");
  heads.AddU32("llama.attention.head_count_kv", 3);  // 4 heads are not a multiple of 3
  WriteAll(dir / "heads.gguf", heads.Build());
  EXPECT_THAT(LoadStatus(dir / "heads.gguf").message(), HasSubstr("kv heads"));

  GgufTestWriter str = MinimalHeader("llama");
  str.AddString("llama.rope.freq_base", "10000");
  WriteAll(dir / "str.gguf", str.Build());
  EXPECT_THAT(LoadStatus(dir / "str.gguf").message(), HasSubstr("llama.rope.freq_base"));

  GgufTestWriter scaling = MinimalHeader("llama");
  scaling.AddString("llama.rope.scaling.type", "yarn");
  WriteAll(dir / "yarn.gguf", scaling.Build());
  EXPECT_THAT(LoadStatus(dir / "yarn.gguf").message(), HasSubstr("yarn"));
}

TEST(GgufLoadErrorsTest, UnconvertibleTensorTypeIsNamed) {
  GgufTestWriter w = MinimalHeader("llama", 256);
  // A Q2_K embedding: a valid GGUF, but not a type the loader converts.
  w.AddTensor("token_embd.weight", static_cast<uint32_t>(GgmlType::Q2_K), {256, 64},
              std::string(84 * 64, '\0'));
  fs::path p = TempDir("gguf_q2k") / "m.gguf";
  WriteAll(p, w.Build());
  Status s = LoadStatus(p);
  EXPECT_EQ(s.code(), StatusCode::kUnimplemented);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("token_embd.weight"), HasSubstr("Q2_K")));
}

TEST(GgufLoadErrorsTest, TruncatedFilesFailCleanly) {
  TinyModel m = testing::MakeTinyModel(ModelArch::kLlama, true);
  const std::string bytes = testing::BuildGguf(m);
  fs::path p = TempDir("gguf_trunc") / "m.gguf";
  int checked = 0;
  for (size_t n = 0; n < bytes.size(); n += (n < 4096 ? 7 : 1531)) {
    WriteAll(p, bytes.substr(0, n));
    Status s = LoadStatus(p);
    ASSERT_FALSE(s.ok()) << "prefix of " << n << " bytes loaded";
    EXPECT_THAT(s.message(), HasSubstr(p.string()));
    ++checked;
  }
  EXPECT_GT(checked, 600);
}

TEST(LoadErrorsTest, MissingPathAndNonModelFile) {
  EXPECT_EQ(LoadStatus("/nonexistent/model.gguf").code(), StatusCode::kNotFound);
  fs::path p = TempDir("notgguf") / "x.bin";
  WriteAll(p, "hello, this is not a model");
  EXPECT_THAT(LoadStatus(p).message(), HasSubstr("not a GGUF file"));
  fs::path empty = TempDir("empty_dir");
  EXPECT_THAT(LoadStatus(empty).message(), HasSubstr("config.json"));
}

// --- Hugging Face folders --------------------------------------------------------------------

fs::path HfFolder(const std::string& name, bool sharded = false) {
  TinyModel m = testing::MakeTinyModel(ModelArch::kLlama, true);
  fs::path dir = TempDir("hf_" + name);
  testing::WriteHfFolder(m, dir.string(), "BF16", sharded);
  return dir;
}

void EditConfig(const fs::path& dir, const std::function<void(nlohmann::json*)>& edit) {
  nlohmann::json cfg = nlohmann::json::parse(ReadAll(dir / "config.json"));
  edit(&cfg);
  std::ofstream(dir / "config.json") << cfg.dump();
}

TEST(HfLoadErrorsTest, BadConfigs) {
  fs::path dir = HfFolder("cfg");
  ASSERT_TRUE(LoadModel(dir.string(), {}).ok());
  std::ofstream(dir / "config.json") << "{\"hidden_size\": 64,";
  EXPECT_THAT(LoadStatus(dir).message(), AllOf(HasSubstr("config.json"), HasSubstr("JSON")));

  struct Edit {
    std::function<void(nlohmann::json*)> edit;
    const char* needle;
  };
  const std::vector<Edit> edits = {
      {[](auto* c) { (*c)["architectures"] = {"GPT2LMHeadModel"}; }, "GPT2LMHeadModel"},
      {[](auto* c) { c->erase("hidden_size"); }, "hidden_size"},
      {[](auto* c) { (*c)["num_attention_heads"] = "four"; }, "num_attention_heads"},
      {[](auto* c) { (*c)["num_key_value_heads"] = 3; }, "kv heads"},
      {[](auto* c) { (*c)["intermediate_size"] = -5; }, "intermediate"},
      {[](auto* c) {
         (*c)["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
       },
       "yarn"},
      {[](auto* c) { (*c)["eos_token_id"] = "x"; }, "eos_token_id"},
      {[](auto* c) { (*c)["tie_word_embeddings"] = false; }, "lm_head.weight"},
      {[](auto* c) { (*c)["vocab_size"] = 65; }, "model.embed_tokens.weight"},
      {[](auto* c) { (*c)["num_hidden_layers"] = 3; }, "model.layers.2."},
  };
  for (const Edit& e : edits) {
    fs::path d = HfFolder("cfg_edit");
    EditConfig(d, e.edit);
    Status s = LoadStatus(d);
    EXPECT_FALSE(s.ok()) << e.needle;
    EXPECT_THAT(s.message(), HasSubstr(e.needle));
  }
}

TEST(HfLoadErrorsTest, MissingWeights) {
  fs::path dir = HfFolder("noweights");
  fs::remove(dir / "model.safetensors");
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("model.safetensors"));
}

TEST(HfLoadErrorsTest, ShardIndexProblems) {
  fs::path dir = HfFolder("shards", /*sharded=*/true);
  ASSERT_TRUE(LoadModel(dir.string(), {}).ok());
  fs::remove(dir / "model-00002-of-00002.safetensors");
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("model-00002-of-00002.safetensors"));

  dir = HfFolder("shards_bad", true);
  nlohmann::json index = nlohmann::json::parse(ReadAll(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.norm.weight"] = "../../etc/passwd";
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("not a plain file name"));

  dir = HfFolder("shards_wrong", true);
  index = nlohmann::json::parse(ReadAll(dir / "model.safetensors.index.json"));
  index["weight_map"]["model.extra.weight"] = "model-00001-of-00002.safetensors";
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("model.extra.weight"));

  dir = HfFolder("shards_json", true);
  std::ofstream(dir / "model.safetensors.index.json") << "[1, 2";
  EXPECT_THAT(LoadStatus(dir).message(), HasSubstr("index.json"));
}

// --- safetensors ------------------------------------------------------------------------------

StatusOr<std::unique_ptr<SafetensorsFile>> ParseSt(const std::string& bytes) {
  static std::vector<uint8_t> buf;
  buf.assign(bytes.begin(), bytes.end());
  return ParseSafetensorsBuffer(buf.data(), buf.size(), "t.safetensors");
}

std::string WithHeader(const std::string& header, const std::string& data) {
  uint64_t len = header.size();
  return std::string(reinterpret_cast<const char*>(&len), 8) + header + data;
}

TEST(SafetensorsTest, ParsesTensors) {
  std::string bytes = testing::BuildSafetensors(
      {{"a", {"F32", {2, 2}, std::string(16, '\1')}}, {"b", {"BF16", {3}, std::string(6, '\2')}}});
  auto f = ParseSt(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_EQ((*f)->tensors().size(), 2u);
  const SafetensorsTensor* b = (*f)->FindTensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type, GgmlType::BF16);
  EXPECT_EQ(b->shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(b->nbytes, 6u);
  EXPECT_EQ(b->data[0], 2);
  EXPECT_EQ((*f)->FindTensor("c"), nullptr);
}

TEST(SafetensorsTest, RejectsMalformedFiles) {
  const std::string data(64, '\0');
  struct Bad {
    std::string bytes;
    const char* needle;
  };
  const std::vector<Bad> cases = {
      {"short", "too short"},
      {std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + "{}", "header length"},
      {WithHeader("{\"a\": ", data), "JSON"},
      {WithHeader("[1, 2]", data), "object"},
      {WithHeader(R"({"a": 5})", data), "'a'"},
      {WithHeader(R"({"a": {"dtype": "I8", "shape": [4], "data_offsets": [0, 4]}})", data), "I8"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 640]}})", data),
       "data_offsets"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [8, 4]}})", data),
       "data_offsets"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 12]}})", data),
       "need 16"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}})", data),
       "shape"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296],
                            "data_offsets": [0, 16]}})",
                  data),
       "shape"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0]}})", data),
       "data_offsets"},
      {WithHeader(R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [-1, 15]}})", data),
       "data_offsets"},
  };
  for (const Bad& b : cases) {
    auto f = ParseSt(b.bytes);
    ASSERT_FALSE(f.ok()) << b.needle;
    EXPECT_THAT(f.status().message(), AllOf(HasSubstr("t.safetensors"), HasSubstr(b.needle)));
  }
}

TEST(SafetensorsTest, TruncationAtEveryOffsetIsAnError) {
  std::string bytes = testing::BuildSafetensors(
      {{"a", {"F32", {2, 2}, std::string(16, '\1')}}, {"b", {"F16", {3}, std::string(6, '\2')}}});
  for (size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(ParseSt(bytes.substr(0, n)).ok()) << n;
  }
}

TEST(HfLoadErrorsTest, TruncatedShardFailsWithItsName) {
  fs::path dir = HfFolder("trunc");
  const std::string bytes = ReadAll(dir / "model.safetensors");
  for (size_t n = 0; n < bytes.size(); n += 997) {
    WriteAll(dir / "model.safetensors", bytes.substr(0, n));
    Status s = LoadStatus(dir);
    ASSERT_FALSE(s.ok()) << n;
    EXPECT_THAT(s.message(), HasSubstr("model.safetensors"));
  }
}

}  // namespace
}  // namespace ite
