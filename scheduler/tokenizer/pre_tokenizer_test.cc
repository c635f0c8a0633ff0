#include "scheduler/tokenizer/pre_tokenizer.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

std::vector<std::string> SplitWith(std::string_view text, SplitBehavior b, bool invert = false) {
  auto re = Regex::Compile("-", "test");
  EXPECT_TRUE(re.ok());
  std::vector<std::string> out;
  for (std::string_view v : SplitByMatches(text, **re, b, invert)) out.emplace_back(v);
  return out;
}

// The examples of HF's SplitDelimiterBehavior documentation.
TEST(PreTokenizerTest, SplitBehaviors) {
  using V = std::vector<std::string>;
  const std::string_view t = "the-final--countdown";
  EXPECT_EQ(SplitWith(t, SplitBehavior::kRemoved), (V{"the", "final", "countdown"}));
  EXPECT_EQ(SplitWith(t, SplitBehavior::kIsolated),
            (V{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(SplitWith(t, SplitBehavior::kMergedWithPrevious),
            (V{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(SplitWith(t, SplitBehavior::kMergedWithNext), (V{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(SplitWith(t, SplitBehavior::kContiguous), (V{"the", "-", "final", "--", "countdown"}));
}

TEST(PreTokenizerTest, Llama3RegexWithUnicodeClasses) {
  PreTokenizerStep split;
  split.kind = PreTokenizerStep::Kind::kSplit;
  split.pattern = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
                  R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
  auto pt = PreTokenizer::Create({split}, "test");
  ASSERT_TRUE(pt.ok()) << pt.status().ToString();
  std::vector<std::string> words;
  (*pt)->Split("I'LL pay 12345 for caf\xC3\xA9  now\n\n ok", true, words);
  EXPECT_EQ(words, (std::vector<std::string>{"I", "'LL", " pay", " ", "123", "45", " for",
                                             " caf\xC3\xA9", " ", " now", "\n\n", " ok"}));
}

TEST(PreTokenizerTest, ByteLevelMapsBytesAfterGpt2Split) {
  PreTokenizerStep bl;
  bl.kind = PreTokenizerStep::Kind::kByteLevel;
  bl.add_prefix_space = true;
  auto pt = PreTokenizer::Create({bl}, "test");
  ASSERT_TRUE(pt.ok());
  std::vector<std::string> words;
  (*pt)->Split("hi  you", true, words);
  // Prefix space added, "  you" splits as " " + " you"; spaces become U+0120.
  EXPECT_EQ(words, (std::vector<std::string>{"\xC4\xA0hi", "\xC4\xA0", "\xC4\xA0you"}));
}

TEST(PreTokenizerTest, MetaspaceFirstSchemeOnlyAtInputStart) {
  PreTokenizerStep ms;
  ms.kind = PreTokenizerStep::Kind::kMetaspace;
  ms.prepend_scheme = PrependScheme::kFirst;
  auto pt = PreTokenizer::Create({ms}, "test");
  ASSERT_TRUE(pt.ok());
  std::vector<std::string> words;
  (*pt)->Split("a b", true, words);
  EXPECT_EQ(words, (std::vector<std::string>{"\u2581a", "\u2581b"}));
  words.clear();
  (*pt)->Split("a b", false, words);
  EXPECT_EQ(words, (std::vector<std::string>{"a", "\u2581b"}));
}

TEST(PreTokenizerTest, BadRegexNamesTheSource) {
  PreTokenizerStep split;
  split.pattern = "(\\p{L";
  auto pt = PreTokenizer::Create({split}, "dir/tokenizer.json");
  ASSERT_FALSE(pt.ok());
  EXPECT_NE(pt.status().message().find("dir/tokenizer.json"), std::string::npos);
}

}  // namespace
}  // namespace ite
