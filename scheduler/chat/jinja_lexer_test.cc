#include "scheduler/chat/jinja_lexer.h"

#include <gtest/gtest.h>

namespace ite::jinja {
namespace {

// Text tokens only, joined: what the whitespace rules leave of the literal text.
std::string TextOf(std::string_view source) {
  auto tokens = Lex(source);
  EXPECT_TRUE(tokens.ok()) << tokens.status().ToString();
  std::string out;
  if (!tokens.ok()) return out;
  for (const auto& t : *tokens) {
    if (t.type == Token::Type::kText) out += "[" + t.value + "]";
  }
  return out;
}

TEST(JinjaLexerTest, TokenizesExpressionTag) {
  auto tokens = Lex("a{{ x.y[0] | trim ~ 'q\\n' }}b");
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  std::vector<std::pair<Token::Type, std::string>> want = {
      {Token::Type::kText, "a"},     {Token::Type::kVarBegin, "{{"}, {Token::Type::kName, "x"},
      {Token::Type::kOperator, "."}, {Token::Type::kName, "y"},      {Token::Type::kOperator, "["},
      {Token::Type::kInteger, "0"},  {Token::Type::kOperator, "]"},  {Token::Type::kOperator, "|"},
      {Token::Type::kName, "trim"},  {Token::Type::kOperator, "~"},  {Token::Type::kString, "q\n"},
      {Token::Type::kVarEnd, "}}"},  {Token::Type::kText, "b"},      {Token::Type::kEnd, ""}};
  ASSERT_EQ(tokens->size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*tokens)[i].type, want[i].first) << i;
    EXPECT_EQ((*tokens)[i].value, want[i].second) << i;
  }
}

TEST(JinjaLexerTest, NumbersAndOperators) {
  auto tokens = Lex("{{ 1_000 + 2.5e-3 // 3 ** 2 != 1.0 }}");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)[1].type, Token::Type::kInteger);
  EXPECT_EQ((*tokens)[1].value, "1000");
  EXPECT_EQ((*tokens)[3].type, Token::Type::kFloat);
  EXPECT_EQ((*tokens)[3].value, "2.5e-3");
  EXPECT_EQ((*tokens)[4].value, "//");
  EXPECT_EQ((*tokens)[6].value, "**");
  EXPECT_EQ((*tokens)[8].value, "!=");
}

TEST(JinjaLexerTest, TrimBlocksRemovesOneNewlineAfterBlockTags) {
  EXPECT_EQ(TextOf("{% if x %}\nA\n{% endif %}\n\nB"), "[A\n][\nB]");
  // Not after expressions.
  EXPECT_EQ(TextOf("{{ x }}\nA"), "[\nA]");
  // `+%}` keeps the newline.
  EXPECT_EQ(TextOf("{% if x +%}\nA{% endif %}"), "[\nA]");
}

TEST(JinjaLexerTest, LstripBlocksRemovesIndentBeforeBlockTagsOnly) {
  EXPECT_EQ(TextOf("  {% if x %}A\n    {% endif %}"), "[A\n]");
  EXPECT_EQ(TextOf("  {{ x }}"), "[  ]");
  // Text before the tag on the same line: no stripping.
  EXPECT_EQ(TextOf("a  {% if x %}{% endif %}"), "[a  ]");
  // `{%+` disables it.
  EXPECT_EQ(TextOf("  {%+ if x %}{% endif %}"), "[  ]");
  // Comments are stripped like blocks.
  EXPECT_EQ(TextOf("A\n   {# note #}\nB"), "[A\n][B]");
}

TEST(JinjaLexerTest, MinusStripsAllWhitespace) {
  EXPECT_EQ(TextOf("A \n\t {{- x -}} \n\n B"), "[A][B]");
  EXPECT_EQ(TextOf("A\n{%- if x -%}\n\n  B{% endif %}"), "[A][B]");
  // Unicode spaces count as whitespace, as Python's \s does.
  EXPECT_EQ(TextOf("A\u3000{{- x }}"), "[A]");
}

TEST(JinjaLexerTest, NewlinesNormalizedAndTrailingNewlineDropped) {
  EXPECT_EQ(TextOf("A\r\nB\rC\n"), "[A\nB\nC]");
  EXPECT_EQ(TextOf("A\n\n"), "[A\n]");
}

TEST(JinjaLexerTest, RawBlockKeepsTagsAsText) {
  EXPECT_EQ(TextOf("{% raw %}{{ x }}{% endraw %}"), "[{{ x }}]");
}

TEST(JinjaLexerTest, StringEscapes) {
  auto tokens = Lex(R"({{ "a\tb\"c\u00e9\x41\\d\q" }})");
  ASSERT_TRUE(tokens.ok());
  EXPECT_EQ((*tokens)[1].value, "a\tb\"c\u00e9A\\d\\q");
}

TEST(JinjaLexerTest, BracesInsideExpressionsDoNotEndTheTag) {
  auto tokens = Lex("{{ {'a': {'b': 1}} }}");
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  EXPECT_EQ(tokens->back().type, Token::Type::kEnd);
  EXPECT_EQ((*tokens)[tokens->size() - 2].type, Token::Type::kVarEnd);
}

TEST(JinjaLexerTest, ErrorsAreStatusesWithLines) {
  auto unclosed_comment = Lex("a\n{# never closed");
  ASSERT_FALSE(unclosed_comment.ok());
  EXPECT_NE(unclosed_comment.status().message().find("line 2"), std::string::npos);
  EXPECT_NE(unclosed_comment.status().message().find("comment"), std::string::npos);

  auto unclosed_tag = Lex("{% if x ");
  ASSERT_FALSE(unclosed_tag.ok());
  EXPECT_NE(unclosed_tag.status().message().find("%}"), std::string::npos);

  EXPECT_FALSE(Lex("{{ x ) }}").ok());
  EXPECT_FALSE(Lex("{{ 'unterminated }}").ok());
  EXPECT_FALSE(Lex("{{ x $ y }}").ok());
  EXPECT_FALSE(Lex("{% raw %} no end").ok());
}

}  // namespace
}  // namespace ite::jinja
