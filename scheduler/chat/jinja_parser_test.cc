#include "scheduler/chat/jinja_parser.h"

#include <gtest/gtest.h>

namespace ite::jinja {
namespace {

// Compact rendering of an expression tree, to check grouping and precedence.
std::string Dump(const Expr* e) {
  if (!e) return "_";
  auto kids = [&](size_t from) {
    std::string s;
    for (size_t i = from; i < e->children.size(); ++i) s += " " + Dump(e->children[i].get());
    for (const auto& [k, v] : e->kwargs) s += " " + k + "=" + Dump(v.get());
    return s;
  };
  switch (e->kind) {
    case Expr::Kind::kLiteral:
      return PyRepr(e->literal);
    case Expr::Kind::kName:
      return e->name;
    case Expr::Kind::kList:
      return "(list" + kids(0) + ")";
    case Expr::Kind::kTuple:
      return "(tuple" + kids(0) + ")";
    case Expr::Kind::kDict:
      return "(dict" + kids(0) + ")";
    case Expr::Kind::kGetAttr:
      return "(. " + Dump(e->children[0].get()) + " " + e->name + ")";
    case Expr::Kind::kGetItem:
      return "([] " + kids(0).substr(1) + ")";
    case Expr::Kind::kSlice:
      return "(slice" + kids(0) + ")";
    case Expr::Kind::kCall:
      return "(call" + kids(0) + ")";
    case Expr::Kind::kFilter:
      return "(|" + e->name + kids(0) + ")";
    case Expr::Kind::kTest:
      return std::string("(is") + (e->negated ? "not " : " ") + e->name + kids(0) + ")";
    case Expr::Kind::kUnary:
      return "(" + e->name + kids(0) + ")";
    case Expr::Kind::kBinary:
      return "(" + e->name + kids(0) + ")";
    case Expr::Kind::kCompare: {
      std::string s = "(cmp " + Dump(e->children[0].get());
      for (size_t i = 0; i < e->ops.size(); ++i) {
        s += " " + e->ops[i] + " " + Dump(e->children[i + 1].get());
      }
      return s + ")";
    }
    case Expr::Kind::kCondition:
      return "(if" + kids(0) + ")";
  }
  return "?";
}

std::string ParseExpr(std::string_view expr) {
  auto program = ParseTemplate("{{ " + std::string(expr) + " }}");
  if (!program.ok()) return "ERROR: " + program.status().message();
  EXPECT_EQ((*program)->body.size(), 1u);
  return Dump((*program)->body[0]->expr.get());
}

TEST(JinjaParserTest, OperatorPrecedenceFollowsJinja2) {
  EXPECT_EQ(ParseExpr("a + b * c"), "(+ a (* b c))");
  EXPECT_EQ(ParseExpr("a ~ b + c"), "(+ (~ a b) c)");  // ~ binds tighter than +
  EXPECT_EQ(ParseExpr("-x | abs"), "(|abs (- x))");
  EXPECT_EQ(ParseExpr("a + b | trim"), "(+ a (|trim b))");
  EXPECT_EQ(ParseExpr("not a is defined"), "(not (is defined a))");
  EXPECT_EQ(ParseExpr("a or b and not c"), "(or a (and b (not c)))");
  EXPECT_EQ(ParseExpr("a < b <= c"), "(cmp a < b <= c)");
  EXPECT_EQ(ParseExpr("x not in y"), "(cmp x not in y)");
  EXPECT_EQ(ParseExpr("2 ** 3 ** 2"), "(** (** 2 3) 2)");
}

TEST(JinjaParserTest, PostfixFiltersTestsAndCalls) {
  EXPECT_EQ(ParseExpr("m.content.split('</think>')[-1].lstrip('\\n')"),
            "(call (. ([] (call (. (. m content) split) '</think>') (- 1)) lstrip) '\\n')");
  EXPECT_EQ(ParseExpr("t | tojson(indent=4)"), "(|tojson t indent=4)");
  EXPECT_EQ(ParseExpr("x is not none"), "(isnot none x)");
  EXPECT_EQ(ParseExpr("x is divisibleby 3"), "(is divisibleby x 3)");
  EXPECT_EQ(ParseExpr("x is equalto('a') and y"), "(and (is equalto x 'a') y)");
  EXPECT_EQ(ParseExpr("msgs[::-1]"), "(slice msgs _ _ (- 1))");
  EXPECT_EQ(ParseExpr("msgs[1:]"), "(slice msgs 1 _ _)");
}

TEST(JinjaParserTest, LiteralsAndConditionals) {
  EXPECT_EQ(ParseExpr("[1, 'a', none, true]"), "(list 1 'a' None True)");
  EXPECT_EQ(ParseExpr("{'k': v}"), "(dict 'k' v)");
  EXPECT_EQ(ParseExpr("(1,)"), "(tuple 1)");
  EXPECT_EQ(ParseExpr("'a' 'b'"), "'ab'");
  EXPECT_EQ(ParseExpr("a if c else b"), "(if c a b)");
  EXPECT_EQ(ParseExpr("a if c"), "(if c a _)");
}

TEST(JinjaParserTest, Statements) {
  auto program = ParseTemplate(
      "{% for m in msgs if m.role != 'x' %}{{ loop.index }}{% else %}none{% endfor %}"
      "{% set ns = namespace(a=1) %}{% set ns.a = 2 %}"
      "{% if a %}1{% elif b %}2{% else %}3{% endif %}"
      "{% macro f(x, y='d') %}{{ x }}{% endmacro %}"
      "{% set block %}text{% endset %}{% generation %}g{% endgeneration %}");
  ASSERT_TRUE(program.ok()) << program.status().ToString();
  const auto& body = (*program)->body;
  ASSERT_EQ(body.size(), 7u);
  EXPECT_EQ(body[0]->kind, Stmt::Kind::kFor);
  EXPECT_TRUE(body[0]->filter != nullptr);
  EXPECT_EQ(body[0]->bodies.size(), 2u);
  EXPECT_EQ(body[2]->kind, Stmt::Kind::kSet);
  EXPECT_EQ(body[2]->attr, "a");
  EXPECT_EQ(body[3]->kind, Stmt::Kind::kIf);
  EXPECT_EQ(body[3]->conditions.size(), 2u);
  EXPECT_EQ(body[3]->bodies.size(), 3u);
  EXPECT_EQ(body[4]->kind, Stmt::Kind::kMacro);
  EXPECT_EQ(body[4]->params.size(), 2u);
  EXPECT_EQ(body[5]->kind, Stmt::Kind::kSetBlock);
  EXPECT_EQ(body[6]->kind, Stmt::Kind::kScope);
}

TEST(JinjaParserTest, MalformedTemplatesGiveStatuses) {
  struct Case {
    const char* source;
    const char* message_part;
  };
  const Case cases[] = {
      {"{% if x %}never closed", "endif"},
      {"{% for x in y %}", "endfor"},
      {"{% endif %}", "endif"},
      {"{% include 'x' %}", "unknown or unsupported tag 'include'"},
      {"{{ }}", "expected an expression"},
      {"{{ a + }}", "unexpected"},
      {"{{ a b }}", "end of print statement"},
      {"{% set %}", "expected a name"},
      {"{% break %}", "outside of a loop"},
      {"{% for x in y recursive %}{% endfor %}", "recursive"},
      {"{{ f(a=1, 2) }}", "positional argument follows keyword"},
      {"{{ x is is y }}", "No test named 'is'"},
      {"line1\n{% if %}", "line 2"},
      {"{{ x|nosuchfilter }}", "No filter named 'nosuchfilter'"},
      {"{% for m in x %}{{ m is nosuchtest }}{% endfor %}", "No test named 'nosuchtest'"},
  };
  for (const auto& c : cases) {
    auto program = ParseTemplate(c.source);
    ASSERT_FALSE(program.ok()) << c.source;
    EXPECT_EQ(program.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(program.status().message().find(c.message_part), std::string::npos)
        << c.source << " -> " << program.status().message();
  }
}

TEST(JinjaParserTest, UnknownFiltersInsideIfFailOnlyWhenRun) {
  // As jinja2: an if statement or conditional expression defers the check to run time.
  EXPECT_TRUE(ParseTemplate("{% if false %}{{ x|nosuch }}{% endif %}").ok());
  EXPECT_TRUE(ParseTemplate("{{ x|nosuch if false else 1 }}").ok());
  EXPECT_FALSE(
      ParseTemplate("{% if a %}{% for x in y %}{{ x|nosuch }}{% endfor %}{% endif %}").ok());
}

TEST(JinjaParserTest, DeepNestingIsRejectedNotACrash) {
  std::string deep = "{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}";
  auto program = ParseTemplate(deep);
  ASSERT_FALSE(program.ok());
  EXPECT_NE(program.status().message().find("nested too deeply"), std::string::npos);
  std::string deep_ifs;
  for (int i = 0; i < 5000; ++i) deep_ifs += "{% if x %}";
  EXPECT_FALSE(ParseTemplate(deep_ifs).ok());
  std::string deep_not = "{{ " + std::string(0, ' ');
  for (int i = 0; i < 100000; ++i) deep_not += "not ";
  EXPECT_FALSE(ParseTemplate(deep_not + "x }}").ok());
}

}  // namespace
}  // namespace ite::jinja
