// Error paths of tokenizer.json loading: every failure is a Status naming the file (and field).
#include "scheduler/tokenizer/tokenizer_json.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "scheduler/tokenizer/bpe_tokenizer.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {
namespace {

std::string WriteTemp(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / "ite_tokenizer_json_test";
  std::filesystem::create_directories(dir);
  const auto path = dir / name;
  std::ofstream(path, std::ios::binary) << content;
  return path.string();
}

const char* kModel =
    R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";

struct BadCase {
  const char* name;
  std::string json;
  const char* expect_in_message;  // besides the file name
};

TEST(TokenizerJsonTest, MalformedFilesGiveStatusNamingTheFile) {
  const BadCase cases[] = {
      {"not_json.json", "{\"model\": ", "not valid JSON"},
      {"array.json", "[1, 2]", "expected a JSON object"},
      {"no_model.json", "{}", "model"},
      {"bad_vocab.json", R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})", "not an integer"},
      {"bad_merge_format.json",
       R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]}})", "merges[0]"},
      {"merge_not_in_vocab.json",
       R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [["a", "q"]]}})",
       "not in the vocab"},
      {"unigram.json", R"({"model": {"type": "Unigram", "vocab": []}})", "Unigram"},
      {"bad_regex.json",
       std::string("{") + kModel +
           R"(, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(["},)"
           R"( "behavior": "Isolated"}})",
       "bad regex"},
      {"bad_behavior.json",
       std::string("{") + kModel +
           R"(, "pre_tokenizer": {"type": "Split", "pattern": {"String": " "},)"
           R"( "behavior": "Sideways"}})",
       "pre_tokenizer.behavior"},
      {"unknown_normalizer.json",
       std::string("{") + kModel + R"(, "normalizer": {"type": "BertNormalizer"}})",
       "BertNormalizer"},
      {"bad_added.json",
       std::string("{") + kModel + R"(, "added_tokens": [{"id": -4, "content": "<x>"}]})",
       "added_tokens[0]"},
      {"bad_template.json",
       std::string("{") + kModel +
           R"(, "post_processor": {"type": "TemplateProcessing",)"
           R"( "single": [{"SpecialToken": {"id": "<s>"}}], "special_tokens": {}}})",
       "<s>"},
      {"huge_id.json", R"({"model": {"type": "BPE", "vocab": {"a": 2147483647}}})", "out of range"},
  };
  for (const BadCase& c : cases) {
    const std::string path = WriteTemp(c.name, c.json);
    auto tok = Tokenizer::FromFile(path);
    ASSERT_FALSE(tok.ok()) << c.name;
    EXPECT_NE(tok.status().message().find(path), std::string::npos)
        << c.name << ": " << tok.status().ToString();
    EXPECT_NE(tok.status().message().find(c.expect_in_message), std::string::npos)
        << c.name << ": " << tok.status().ToString();
  }
}

TEST(TokenizerJsonTest, MissingFileAndUnknownFormat) {
  auto tok = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  ASSERT_FALSE(tok.ok());
  EXPECT_EQ(tok.status().code(), StatusCode::kNotFound);
  const std::string path = WriteTemp("weird.bin", "hello");
  tok = Tokenizer::FromFile(path);
  ASSERT_FALSE(tok.ok());
  EXPECT_NE(tok.status().message().find(path), std::string::npos);
}

TEST(TokenizerJsonTest, MinimalFileWorksBothMergeFormats) {
  for (const char* merges : {R"(["a b"])", R"([["a", "b"]])"}) {
    const std::string json =
        std::string(R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": )") +
        merges + "}}";
    auto spec = ParseTokenizerJson(json, "mini.json");
    ASSERT_TRUE(spec.ok()) << spec.status().ToString();
    auto tok = BpeTokenizer::Create(std::move(spec).value());
    ASSERT_TRUE(tok.ok()) << tok.status().ToString();
    // No pre-tokenizer: the whole text is one word; no decoder: tokens joined by spaces.
    EXPECT_EQ((*tok)->Encode("abab", false), (std::vector<int32_t>{2, 2}));
    const std::vector<int32_t> ids = {2, 0};
    EXPECT_EQ((*tok)->Decode(ids, false), "ab a");
  }
}

}  // namespace
}  // namespace ite

namespace ite {
namespace {

// A HF folder: tokenizer_config.json names BOS/EOS and add_bos_token; generation_config.json adds
// a list of EOS ids.
TEST(TokenizerJsonTest, HfFolderConfigs) {
  const auto dir = std::filesystem::temp_directory_path() / "ite_tokenizer_folder_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << R"({
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]},
    "added_tokens": [
      {"id": 3, "content": "<bos>", "special": true, "normalized": false},
      {"id": 4, "content": "<eos>", "special": true, "normalized": false},
      {"id": 5, "content": "<eot>", "special": true, "normalized": false}]})";
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": {"content": "<bos>"}, "eos_token": "<eos>", "add_bos_token": true,
            "add_eos_token": true})";
  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [4, 5]})";

  auto folder = Tokenizer::FromFile(dir.string());
  ASSERT_TRUE(folder.ok()) << folder.status().ToString();
  EXPECT_EQ((*folder)->bos_id(), 3);
  EXPECT_EQ((*folder)->eos_ids(), (std::vector<int32_t>{4, 5}));
  EXPECT_EQ((*folder)->Encode("ab", true), (std::vector<int32_t>{3, 2, 4}));
  EXPECT_EQ((*folder)->Encode("<eot>ab", false), (std::vector<int32_t>{5, 2}));

  // The file alone keeps its own post-processor (none) but still learns BOS/EOS from the configs.
  auto file = Tokenizer::FromFile((dir / "tokenizer.json").string());
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->Encode("ab", true), (std::vector<int32_t>{2}));
  EXPECT_EQ((*file)->bos_id(), 3);

  std::ofstream(dir / "generation_config.json") << R"({"eos_token_id": [4, 99]})";
  auto bad = Tokenizer::FromFile(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("generation_config.json"), std::string::npos);
  std::ofstream(dir / "generation_config.json") << "{}";
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<nope>"})";
  bad = Tokenizer::FromFile(dir.string());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("tokenizer_config.json"), std::string::npos);
}

}  // namespace
}  // namespace ite
