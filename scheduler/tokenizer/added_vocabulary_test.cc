#include "scheduler/tokenizer/added_vocabulary.h"

#include <gtest/gtest.h>

namespace ite {
namespace {

AddedTokenSpec Token(int32_t id, std::string content) {
  AddedTokenSpec t;
  t.id = id;
  t.content = std::move(content);
  t.special = true;
  return t;
}

std::vector<std::string> Render(std::string_view text, const AddedVocabulary& v) {
  std::vector<std::string> out;
  for (const auto& s : v.Split(text, false)) {
    const std::string piece(text.substr(s.begin, s.end - s.begin));
    out.push_back(s.id >= 0 ? "[" + std::to_string(s.id) + ":" + piece + "]" : piece);
  }
  return out;
}

TEST(AddedVocabularyTest, LeftmostLongestMatch) {
  AddedVocabulary v({Token(1, "<s>"), Token(2, "<s>x"), Token(3, "s>")});
  EXPECT_EQ(Render("a<s>xb<s>", v), (std::vector<std::string>{"a", "[2:<s>x]", "b", "[1:<s>]"}));
  EXPECT_EQ(Render("s><s", v), (std::vector<std::string>{"[3:s>]", "<s"}));
  EXPECT_EQ(Render("", v), (std::vector<std::string>{}));
}

TEST(AddedVocabularyTest, StripFlagsSwallowWhitespace) {
  AddedTokenSpec t = Token(5, "<m>");
  t.lstrip = true;
  t.rstrip = true;
  AddedVocabulary v({t});
  EXPECT_EQ(Render("a  <m>\t b", v), (std::vector<std::string>{"a", "[5:  <m>\t ]", "b"}));
}

TEST(AddedVocabularyTest, SingleWordOnlyOutsideWords) {
  AddedTokenSpec t = Token(7, "cat");
  t.single_word = true;
  AddedVocabulary v({t});
  EXPECT_EQ(Render("a cat sat", v), (std::vector<std::string>{"a ", "[7:cat]", " sat"}));
  EXPECT_EQ(Render("concat cats", v), (std::vector<std::string>{"concat cats"}));
}

TEST(AddedVocabularyTest, NormalizedTokensAreSeparate) {
  AddedTokenSpec t = Token(9, "xy");
  t.normalized = true;
  AddedVocabulary v({t, Token(8, "<s>")});
  EXPECT_TRUE(v.has_normalized_tokens());
  EXPECT_EQ(v.Split("xy<s>", false).size(), 2u);  // raw pass sees only <s>
  ASSERT_EQ(v.Split("axy", true).size(), 2u);
  EXPECT_EQ(v.Split("axy", true)[1].id, 9);
}

}  // namespace
}  // namespace ite
