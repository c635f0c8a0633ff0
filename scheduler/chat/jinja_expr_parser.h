// Expression parser of our Jinja2 subset: jinja2's grammar and operator precedence
// (jinja2/parser.py), so expressions group exactly as they do in Python. The statement parser
// (jinja_parser.cc) builds on it.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/chat/jinja_token_cursor.h"

namespace ite::jinja {

class ExprParser : public TokenCursor {
 public:
  using TokenCursor::TokenCursor;

  // A tuple or single expression, ending at '}}', '%}', ')' or a name in `extra_end`.
  // with_condexpr=false parses `a if b` as two expressions (for-loop iterables, if tests).
  StatusOr<ExprPtr> ParseTuple(bool with_condexpr,
                               std::initializer_list<std::string_view> extra_end,
                               bool explicit_parens = false);
  StatusOr<ExprPtr> ParseExpression(bool with_condexpr);
  StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline);

 protected:
  ExprPtr MakeExpr(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

 private:
  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end) const;
  StatusOr<ExprPtr> Binary(std::string op, ExprPtr left, ExprPtr right, int line);
  StatusOr<ExprPtr> ParseOr();
  StatusOr<ExprPtr> ParseAnd();
  StatusOr<ExprPtr> ParseNot();
  StatusOr<ExprPtr> ParseCompare();
  StatusOr<ExprPtr> ParseMath1();
  StatusOr<ExprPtr> ParseConcat();
  StatusOr<ExprPtr> ParseMath2();
  StatusOr<ExprPtr> ParsePow();
  StatusOr<ExprPtr> ParseUnary(bool with_filter);
  StatusOr<ExprPtr> ParsePrimary();
  StatusOr<ExprPtr> ParsePostfix(ExprPtr node);
  StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node);
  StatusOr<ExprPtr> ParseSubscript(ExprPtr node);
  StatusOr<ExprPtr> ParseSubscribed();
  Status ParseCallArgs(Expr& e);
  StatusOr<ExprPtr> ParseCall(ExprPtr node);
  StatusOr<std::string> ParseDottedName();
  StatusOr<ExprPtr> ParseTest(ExprPtr node);
};

}  // namespace ite::jinja
