#include "scheduler/tokenizer/bpe_model.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

BpeModelSpec TinySpec() {
  BpeModelSpec s;
  const char* tokens[] = {"a",  "b",     "c",      "ab",     "bc",    "abc",
                          "aa", "<unk>", "<0x41>", "<0xC3>", "<0xA9>"};
  for (int i = 0; i < static_cast<int>(std::size(tokens)); ++i) s.vocab.emplace_back(tokens[i], i);
  return s;
}

std::vector<int32_t> Tok(const BpeModel& m, std::string_view w) {
  std::vector<int32_t> out;
  m.Tokenize(w, out);
  return out;
}

TEST(BpeModelTest, LowestRankMergesFirst) {
  BpeModelSpec s = TinySpec();
  s.merges = {{"b", "c"}, {"a", "b"}};  // "b c" outranks "a b"
  auto m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(Tok(**m, "abc"), (std::vector<int32_t>{0, 4}));  // a + bc

  s.merges = {{"a", "b"}, {"b", "c"}, {"ab", "c"}};
  m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "abc"), (std::vector<int32_t>{5}));     // (a b) c -> abc
  EXPECT_EQ(Tok(**m, "cab"), (std::vector<int32_t>{2, 3}));  // cached path gives the same
  EXPECT_EQ(Tok(**m, "cab"), (std::vector<int32_t>{2, 3}));
}

TEST(BpeModelTest, EqualRankMergesLeftmostFirst) {
  BpeModelSpec s = TinySpec();
  s.merges = {{"a", "a"}};
  auto m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "aaa"), (std::vector<int32_t>{6, 0}));
  EXPECT_EQ(Tok(**m, "aaaa"), (std::vector<int32_t>{6, 6}));
}

TEST(BpeModelTest, IgnoreMergesTakesWholeWordFromVocab) {
  BpeModelSpec s = TinySpec();
  s.merges = {{"b", "c"}};  // no way to build "abc" by merges
  auto m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "abc"), (std::vector<int32_t>{0, 4}));
  s.ignore_merges = true;
  m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "abc"), (std::vector<int32_t>{5}));
}

TEST(BpeModelTest, ByteFallbackAndUnknowns) {
  BpeModelSpec s = TinySpec();
  s.byte_fallback = true;
  s.unk_token = "<unk>";
  auto m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "A"), (std::vector<int32_t>{8}));                 // <0x41>
  EXPECT_EQ(Tok(**m, "a\xC3\xA9"), (std::vector<int32_t>{0, 9, 10}));  // é -> <0xC3><0xA9>
  EXPECT_EQ(Tok(**m, "zz"), (std::vector<int32_t>{7, 7}));             // no <0x7A>: unk each
  s.fuse_unk = true;
  m = BpeModel::Create(s, "test.json");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(Tok(**m, "zza"), (std::vector<int32_t>{7, 0}));  // fused unk
}

TEST(BpeModelTest, BadMergesNameTheSource) {
  BpeModelSpec s = TinySpec();
  s.merges = {{"a", "z"}};
  auto m = BpeModel::Create(s, "my/tokenizer.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("my/tokenizer.json"), std::string::npos);
  EXPECT_NE(m.status().message().find("merge 0"), std::string::npos);
  s.merges = {{"c", "c"}};  // "cc" not in the vocab
  m = BpeModel::Create(s, "my/tokenizer.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("'cc'"), std::string::npos);
  s.merges.clear();
  s.unk_token = "<nope>";
  m = BpeModel::Create(s, "my/tokenizer.json");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("unk_token"), std::string::npos);
}

}  // namespace
}  // namespace ite
