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
