#include "scheduler/chat/jinja_expr_parser.h"

#include <charconv>

namespace ite::jinja {

bool ExprParser::IsTupleEnd(std::initializer_list<std::string_view> extra_end) const {
  const Token& t = Cur();
  if (t.type == Type::kVarEnd || t.type == Type::kBlockEnd || t.type == Type::kEnd) return true;
  if (t.type == Type::kOperator && t.value == ")") return true;
  for (auto name : extra_end) {
    if (t.type == Type::kName && t.value == name) return true;
  }
  return false;
}

StatusOr<ExprPtr> ExprParser::ParseTuple(bool with_condexpr,
                                         std::initializer_list<std::string_view> extra_end,
                                         bool explicit_parens) {
  int line = Cur().line;
  std::vector<ExprPtr> items;
  bool is_tuple = false;
  while (true) {
    if (!items.empty()) ITE_RETURN_IF_ERROR(ExpectOp(","));
    if (IsTupleEnd(extra_end)) break;
    ITE_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(with_condexpr));
    items.push_back(std::move(item));
    if (IsOp(",")) {
      is_tuple = true;
    } else {
      break;
    }
  }
  if (!is_tuple) {
    if (!items.empty()) return std::move(items[0]);
    if (!explicit_parens) return Fail("expected an expression");
  }
  auto e = MakeExpr(Expr::Kind::kTuple, line);
  e->children = std::move(items);
  return e;
}

StatusOr<ExprPtr> ExprParser::ParseExpression(bool with_condexpr) {
  DepthGuard guard(depth_);
  ITE_RETURN_IF_ERROR(CheckDepth());
  if (!with_condexpr) return ParseOr();
  ITE_ASSIGN_OR_RETURN(ExprPtr expr, ParseOr());
  while (IsName("if")) {
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
    ExprPtr otherwise;
    if (SkipName("else")) {
      ITE_ASSIGN_OR_RETURN(otherwise, ParseExpression(true));
    }
    auto e = MakeExpr(Expr::Kind::kCondition, line);
    e->children.push_back(std::move(cond));
    e->children.push_back(std::move(expr));
    e->children.push_back(std::move(otherwise));
    expr = std::move(e);
  }
  return expr;
}

StatusOr<ExprPtr> ExprParser::Binary(std::string op, ExprPtr left, ExprPtr right, int line) {
  auto e = MakeExpr(Expr::Kind::kBinary, line);
  e->name = std::move(op);
  e->children.push_back(std::move(left));
  e->children.push_back(std::move(right));
  return e;
}

StatusOr<ExprPtr> ExprParser::ParseOr() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
  while (IsName("or")) {
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
    ITE_ASSIGN_OR_RETURN(left, Binary("or", std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParseAnd() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
  while (IsName("and")) {
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
    ITE_ASSIGN_OR_RETURN(left, Binary("and", std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParseNot() {
  if (IsName("not")) {
    DepthGuard guard(depth_);
    ITE_RETURN_IF_ERROR(CheckDepth());
    auto e = MakeExpr(Expr::Kind::kUnary, Cur().line);
    Next();
    e->name = "not";
    ITE_ASSIGN_OR_RETURN(ExprPtr operand, ParseNot());
    e->children.push_back(std::move(operand));
    return e;
  }
  return ParseCompare();
}

StatusOr<ExprPtr> ExprParser::ParseCompare() {
  int line = Cur().line;
  ITE_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
  auto e = MakeExpr(Expr::Kind::kCompare, line);
  e->children.push_back(std::move(first));
  while (true) {
    std::string op;
    if (Cur().type == Type::kOperator &&
        (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" || Cur().value == "<=" ||
         Cur().value == ">" || Cur().value == ">=")) {
      op = Cur().value;
      Next();
    } else if (IsName("in")) {
      op = "in";
      Next();
    } else if (IsName("not") && Look().type == Type::kName && Look().value == "in") {
      op = "not in";
      Next();
      Next();
    } else {
      break;
    }
    ITE_ASSIGN_OR_RETURN(ExprPtr operand, ParseMath1());
    e->ops.push_back(op);
    e->children.push_back(std::move(operand));
  }
  if (e->ops.empty()) return std::move(e->children[0]);
  return e;
}

StatusOr<ExprPtr> ExprParser::ParseMath1() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseConcat());
  while (IsOp("+") || IsOp("-")) {
    std::string op = Cur().value;
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseConcat());
    ITE_ASSIGN_OR_RETURN(left, Binary(op, std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParseConcat() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
  while (IsOp("~")) {
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
    ITE_ASSIGN_OR_RETURN(left, Binary("~", std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParseMath2() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParsePow());
  while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
    std::string op = Cur().value;
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParsePow());
    ITE_ASSIGN_OR_RETURN(left, Binary(op, std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParsePow() {
  ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
  while (IsOp("**")) {
    int line = Cur().line;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
    ITE_ASSIGN_OR_RETURN(left, Binary("**", std::move(left), std::move(right), line));
  }
  return left;
}

StatusOr<ExprPtr> ExprParser::ParseUnary(bool with_filter) {
  DepthGuard guard(depth_);
  ITE_RETURN_IF_ERROR(CheckDepth());
  ExprPtr node;
  if (IsOp("-") || IsOp("+")) {
    node = MakeExpr(Expr::Kind::kUnary, Cur().line);
    node->name = Cur().value;
    Next();
    ITE_ASSIGN_OR_RETURN(ExprPtr operand, ParseUnary(false));
    node->children.push_back(std::move(operand));
  } else {
    ITE_ASSIGN_OR_RETURN(node, ParsePrimary());
  }
  ITE_ASSIGN_OR_RETURN(node, ParsePostfix(std::move(node)));
  if (with_filter) {
    ITE_ASSIGN_OR_RETURN(node, ParseFilterExpr(std::move(node)));
  }
  return node;
}

StatusOr<ExprPtr> ExprParser::ParsePrimary() {
  DepthGuard guard(depth_);
  ITE_RETURN_IF_ERROR(CheckDepth());
  const Token& t = Cur();
  int line = t.line;
  if (t.type == Type::kName) {
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    if (t.value == "true" || t.value == "True") {
      e->literal = Value(true);
    } else if (t.value == "false" || t.value == "False") {
      e->literal = Value(false);
    } else if (t.value == "none" || t.value == "None") {
      e->literal = Value::None();
    } else {
      e->kind = Expr::Kind::kName;
      e->name = t.value;
    }
    Next();
    return e;
  }
  if (t.type == Type::kString) {
    std::string s;
    while (Cur().type == Type::kString) {  // adjacent literals concatenate
      s += Cur().value;
      Next();
    }
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    e->literal = Value(std::move(s));
    return e;
  }
  if (t.type == Type::kInteger) {
    int64_t v = 0;
    auto res = std::from_chars(t.value.data(), t.value.data() + t.value.size(), v);
    if (res.ec != std::errc()) return Fail("integer literal out of range");
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    e->literal = Value(v);
    Next();
    return e;
  }
  if (t.type == Type::kFloat) {
    double v = 0;
    auto res = std::from_chars(t.value.data(), t.value.data() + t.value.size(), v);
    if (res.ec != std::errc() && res.ec != std::errc::result_out_of_range) {
      return Fail("bad float literal");
    }
    auto e = MakeExpr(Expr::Kind::kLiteral, line);
    e->literal = Value(v);
    Next();
    return e;
  }
  if (SkipOp("(")) {
    ITE_ASSIGN_OR_RETURN(ExprPtr inner, ParseTuple(true, {}, true));
    ITE_RETURN_IF_ERROR(ExpectOp(")"));
    return inner;
  }
  if (SkipOp("[")) {
    auto e = MakeExpr(Expr::Kind::kList, line);
    while (!IsOp("]")) {
      if (!e->children.empty()) ITE_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("]")) break;
      ITE_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression(true));
      e->children.push_back(std::move(item));
    }
    Next();
    return e;
  }
  if (SkipOp("{")) {
    auto e = MakeExpr(Expr::Kind::kDict, line);
    while (!IsOp("}")) {
      if (!e->children.empty()) ITE_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp("}")) break;
      ITE_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression(true));
      ITE_RETURN_IF_ERROR(ExpectOp(":"));
      ITE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      e->children.push_back(std::move(key));
      e->children.push_back(std::move(value));
    }
    Next();
    return e;
  }
  return Fail("unexpected token in expression");
}

StatusOr<ExprPtr> ExprParser::ParsePostfix(ExprPtr node) {
  while (true) {
    if (IsOp(".") || IsOp("[")) {
      ITE_ASSIGN_OR_RETURN(node, ParseSubscript(std::move(node)));
    } else if (IsOp("(")) {
      ITE_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

StatusOr<ExprPtr> ExprParser::ParseFilterExpr(ExprPtr node) {
  while (true) {
    if (IsOp("|")) {
      ITE_ASSIGN_OR_RETURN(node, ParseFilter(std::move(node), false));
    } else if (IsName("is")) {
      ITE_ASSIGN_OR_RETURN(node, ParseTest(std::move(node)));
    } else if (IsOp("(")) {
      ITE_ASSIGN_OR_RETURN(node, ParseCall(std::move(node)));
    } else {
      return node;
    }
  }
}

StatusOr<ExprPtr> ExprParser::ParseSubscript(ExprPtr node) {
  int line = Cur().line;
  if (SkipOp(".")) {
    const Token& t = Cur();
    if (t.type == Type::kName) {
      auto e = MakeExpr(Expr::Kind::kGetAttr, line);
      e->name = t.value;
      e->children.push_back(std::move(node));
      Next();
      return e;
    }
    if (t.type == Type::kInteger) {
      auto e = MakeExpr(Expr::Kind::kGetItem, line);
      e->children.push_back(std::move(node));
      auto index = MakeExpr(Expr::Kind::kLiteral, line);
      int64_t v = 0;
      std::from_chars(t.value.data(), t.value.data() + t.value.size(), v);
      index->literal = Value(v);
      e->children.push_back(std::move(index));
      Next();
      return e;
    }
    return Fail("expected a name or number after '.'");
  }
  Next();  // '['
  std::vector<ExprPtr> args;
  while (!IsOp("]")) {
    if (!args.empty()) ITE_RETURN_IF_ERROR(ExpectOp(","));
    ITE_ASSIGN_OR_RETURN(ExprPtr arg, ParseSubscribed());
    args.push_back(std::move(arg));
  }
  Next();
  if (args.empty()) return Fail("empty subscript");
  ExprPtr index;
  if (args.size() == 1) {
    index = std::move(args[0]);
  } else {
    index = MakeExpr(Expr::Kind::kTuple, line);
    index->children = std::move(args);
  }
  if (index->kind == Expr::Kind::kSlice) {
    // A slice node arrives with an empty first child: the sliced object goes there.
    index->children[0] = std::move(node);
    return index;
  }
  auto e = MakeExpr(Expr::Kind::kGetItem, line);
  e->children.push_back(std::move(node));
  e->children.push_back(std::move(index));
  return e;
}

StatusOr<ExprPtr> ExprParser::ParseSubscribed() {
  int line = Cur().line;
  std::vector<ExprPtr> parts;
  if (SkipOp(":")) {
    parts.push_back(nullptr);
  } else {
    ITE_ASSIGN_OR_RETURN(ExprPtr first, ParseExpression(true));
    if (!SkipOp(":")) return first;
    parts.push_back(std::move(first));
  }
  if (IsOp(":")) {
    parts.push_back(nullptr);
  } else if (!IsOp("]") && !IsOp(",")) {
    ITE_ASSIGN_OR_RETURN(ExprPtr stop, ParseExpression(true));
    parts.push_back(std::move(stop));
  } else {
    parts.push_back(nullptr);
  }
  if (SkipOp(":")) {
    if (!IsOp("]") && !IsOp(",")) {
      ITE_ASSIGN_OR_RETURN(ExprPtr step, ParseExpression(true));
      parts.push_back(std::move(step));
    } else {
      parts.push_back(nullptr);
    }
  } else {
    parts.push_back(nullptr);
  }
  auto e = MakeExpr(Expr::Kind::kSlice, line);
  e->children.push_back(nullptr);
  for (auto& p : parts) e->children.push_back(std::move(p));
  return e;
}

// Parses `(args)` into e->children (after any existing ones) and e->kwargs.
Status ExprParser::ParseCallArgs(Expr& e) {
  ITE_RETURN_IF_ERROR(ExpectOp("("));
  bool any = false;
  while (!IsOp(")")) {
    if (any) {
      ITE_RETURN_IF_ERROR(ExpectOp(","));
      if (IsOp(")")) break;
    }
    any = true;
    if (IsOp("*") || IsOp("**")) return Fail("*args and **kwargs in calls are not supported");
    if (Cur().type == Type::kName && Look().type == Type::kOperator && Look().value == "=") {
      std::string key = Cur().value;
      Next();
      Next();
      ITE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      e.kwargs.emplace_back(std::move(key), std::move(value));
    } else {
      if (!e.kwargs.empty()) return Fail("positional argument follows keyword argument");
      ITE_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression(true));
      e.children.push_back(std::move(value));
    }
  }
  Next();
  return Status::Ok();
}

StatusOr<ExprPtr> ExprParser::ParseCall(ExprPtr node) {
  auto e = MakeExpr(Expr::Kind::kCall, Cur().line);
  e->children.push_back(std::move(node));
  ITE_RETURN_IF_ERROR(ParseCallArgs(*e));
  return e;
}

StatusOr<std::string> ExprParser::ParseDottedName() {
  ITE_ASSIGN_OR_RETURN(std::string name, ExpectName());
  while (SkipOp(".")) {
    ITE_ASSIGN_OR_RETURN(std::string part, ExpectName());
    name += "." + part;
  }
  return name;
}

StatusOr<ExprPtr> ExprParser::ParseFilter(ExprPtr node, bool start_inline) {
  while (IsOp("|") || start_inline) {
    if (!start_inline) Next();
    start_inline = false;
    auto e = MakeExpr(Expr::Kind::kFilter, Cur().line);
    ITE_ASSIGN_OR_RETURN(e->name, ParseDottedName());
    e->children.push_back(std::move(node));
    if (IsOp("(")) ITE_RETURN_IF_ERROR(ParseCallArgs(*e));
    node = std::move(e);
  }
  return node;
}

StatusOr<ExprPtr> ExprParser::ParseTest(ExprPtr node) {
  auto e = MakeExpr(Expr::Kind::kTest, Cur().line);
  Next();  // 'is'
  e->negated = SkipName("not");
  ITE_ASSIGN_OR_RETURN(e->name, ParseDottedName());
  e->children.push_back(std::move(node));
  const Token& t = Cur();
  if (IsOp("(")) {
    ITE_RETURN_IF_ERROR(ParseCallArgs(*e));
  } else if ((t.type == Type::kName || t.type == Type::kString || t.type == Type::kInteger ||
              t.type == Type::kFloat || IsOp("[") || IsOp("{")) &&
             !IsName("else") && !IsName("or") && !IsName("and")) {
    if (IsName("is")) return Fail("you cannot chain multiple tests with 'is'");
    ITE_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
    ITE_ASSIGN_OR_RETURN(arg, ParsePostfix(std::move(arg)));
    e->children.push_back(std::move(arg));
  }
  return e;
}

}  // namespace ite::jinja
