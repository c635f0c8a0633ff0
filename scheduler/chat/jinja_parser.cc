#include "scheduler/chat/jinja_parser.h"

#include <charconv>
#include <initializer_list>

#include "scheduler/chat/jinja_builtins.h"

namespace ite::jinja {
namespace {

// Deeper nesting than this is rejected rather than risking the native stack.
constexpr int kMaxDepth = 200;

using Type = Token::Type;

class Parser {
 public:
  explicit Parser(std::vector<Token> tokens) : t_(std::move(tokens)) {}

  StatusOr<std::unique_ptr<Program>> Run() {
    auto program = std::make_unique<Program>();
    std::string end;
    ITE_ASSIGN_OR_RETURN(program->body, ParseBody({}, &end));
    return program;
  }

 private:
  // ---- token helpers ----
  const Token& Cur() const { return t_[i_]; }
  const Token& Look() const { return t_[i_ + 1 < t_.size() ? i_ + 1 : i_]; }
  void Next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool IsOp(std::string_view op) const {
    return Cur().type == Type::kOperator && Cur().value == op;
  }
  bool IsName(std::string_view name) const {
    return Cur().type == Type::kName && Cur().value == name;
  }
  bool SkipOp(std::string_view op) {
    if (!IsOp(op)) return false;
    Next();
    return true;
  }
  bool SkipName(std::string_view name) {
    if (!IsName(name)) return false;
    Next();
    return true;
  }
  std::string Describe(const Token& t) const {
    if (t.type == Type::kName || t.type == Type::kOperator) return "'" + t.value + "'";
    return TokenTypeName(t.type);
  }
  Status Fail(std::string_view what) const {
    return InvalidArgument("line {}: {} (got {})", Cur().line, what, Describe(Cur()));
  }
  Status ExpectOp(std::string_view op) {
    if (!SkipOp(op)) return Fail(fmt::format("expected '{}'", op));
    return Status::Ok();
  }
  StatusOr<std::string> ExpectName() {
    if (Cur().type != Type::kName) return Fail("expected a name");
    std::string name = Cur().value;
    Next();
    return name;
  }
  Status ExpectBlockEnd() {
    if (Cur().type != Type::kBlockEnd) return Fail("expected end of statement block '%}'");
    Next();
    return Status::Ok();
  }

  struct DepthGuard {
    explicit DepthGuard(int& d) : depth(d) { ++depth; }
    ~DepthGuard() { --depth; }
    int& depth;
  };
  Status CheckDepth() const {
    if (depth_ > kMaxDepth) {
      return InvalidArgument("line {}: template nested too deeply", Cur().line);
    }
    return Status::Ok();
  }

  ExprPtr MakeExpr(Expr::Kind kind, int line) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->line = line;
    return e;
  }

  // ---- statements ----

  // Parses until a `{% <tag>` with tag in `end_tags` (consumed, named in *found) or the end of
  // the template (only allowed when end_tags is empty).
  StatusOr<Body> ParseBody(std::initializer_list<std::string_view> end_tags, std::string* found) {
    DepthGuard guard(depth_);
    ITE_RETURN_IF_ERROR(CheckDepth());
    Body body;
    while (true) {
      const Token& tok = Cur();
      if (tok.type == Type::kEnd) {
        if (end_tags.size() == 0) return body;
        std::string expected;
        for (auto t : end_tags) expected += (expected.empty() ? "'" : " or '") + std::string(t) + "'";
        return InvalidArgument("line {}: unexpected end of template; expected {}", tok.line,
                               expected);
      }
      if (tok.type == Type::kText) {
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kText;
        s->line = tok.line;
        s->text = tok.value;
        body.push_back(std::move(s));
        Next();
        continue;
      }
      if (tok.type == Type::kVarBegin) {
        Next();
        auto s = std::make_unique<Stmt>();
        s->kind = Stmt::Kind::kOutput;
        s->line = tok.line;
        ITE_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, {}));
        if (Cur().type != Type::kVarEnd) return Fail("expected end of print statement '}}'");
        Next();
        body.push_back(std::move(s));
        continue;
      }
      if (tok.type != Type::kBlockBegin) return Fail("unexpected token");
      Next();
      if (Cur().type != Type::kName) return Fail("expected a tag name after '{%'");
      std::string tag = Cur().value;
      for (auto t : end_tags) {
        if (tag == t) {
          Next();
          *found = tag;
          return body;
        }
      }
      ITE_ASSIGN_OR_RETURN(StmtPtr stmt, ParseStatement());
      body.push_back(std::move(stmt));
    }
  }

  StatusOr<StmtPtr> ParseStatement() {
    std::string tag = Cur().value;
    int line = Cur().line;
    Next();
    auto s = std::make_unique<Stmt>();
    s->line = line;
    std::string found;
    if (tag == "if") {
      s->kind = Stmt::Kind::kIf;
      while (true) {
        ITE_ASSIGN_OR_RETURN(ExprPtr cond, ParseTuple(false, {}));
        s->conditions.push_back(std::move(cond));
        ITE_RETURN_IF_ERROR(ExpectBlockEnd());
        ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"elif", "else", "endif"}, &found));
        s->bodies.push_back(std::move(body));
        if (found == "elif") continue;
        if (found == "else") {
          ITE_RETURN_IF_ERROR(ExpectBlockEnd());
          ITE_ASSIGN_OR_RETURN(Body else_body, ParseBody({"endif"}, &found));
          s->bodies.push_back(std::move(else_body));
        }
        break;
      }
    } else if (tag == "for") {
      s->kind = Stmt::Kind::kFor;
      ITE_ASSIGN_OR_RETURN(s->targets, ParseTargets("in"));
      if (!SkipName("in")) return Fail("expected 'in' in for loop");
      ITE_ASSIGN_OR_RETURN(s->expr, ParseTuple(false, {"recursive"}));
      if (SkipName("if")) {
        ITE_ASSIGN_OR_RETURN(s->filter, ParseExpression(true));
      }
      if (IsName("recursive")) return Fail("recursive loops are not supported");
      ITE_RETURN_IF_ERROR(ExpectBlockEnd());
      ++loop_depth_;
      ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"else", "endfor"}, &found));
      --loop_depth_;
      s->bodies.push_back(std::move(body));
      Body else_body;
      if (found == "else") {
        ITE_RETURN_IF_ERROR(ExpectBlockEnd());
        ITE_ASSIGN_OR_RETURN(else_body, ParseBody({"endfor"}, &found));
      }
      s->bodies.push_back(std::move(else_body));
    } else if (tag == "set") {
      ITE_ASSIGN_OR_RETURN(std::string first, ExpectName());
      if (SkipOp(".")) {
        ITE_ASSIGN_OR_RETURN(s->attr, ExpectName());
        s->targets.push_back(first);
      } else {
        s->targets.push_back(first);
        while (SkipOp(",")) {
          if (IsOp("=")) break;
          ITE_ASSIGN_OR_RETURN(std::string next, ExpectName());
          s->targets.push_back(next);
        }
      }
      if (SkipOp("=")) {
        s->kind = Stmt::Kind::kSet;
        ITE_ASSIGN_OR_RETURN(s->expr, ParseTuple(true, {}));
      } else {
        if (s->targets.size() != 1 || !s->attr.empty()) return Fail("expected '=' in set");
        s->kind = Stmt::Kind::kSetBlock;
        ITE_RETURN_IF_ERROR(ExpectBlockEnd());
        ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"endset"}, &found));
        s->bodies.push_back(std::move(body));
      }
    } else if (tag == "macro") {
      s->kind = Stmt::Kind::kMacro;
      ITE_ASSIGN_OR_RETURN(s->name, ExpectName());
      ITE_RETURN_IF_ERROR(ExpectOp("("));
      while (!IsOp(")")) {
        if (!s->params.empty()) ITE_RETURN_IF_ERROR(ExpectOp(","));
        if (IsOp(")")) break;
        ITE_ASSIGN_OR_RETURN(std::string param, ExpectName());
        ExprPtr def;
        if (SkipOp("=")) {
          ITE_ASSIGN_OR_RETURN(def, ParseExpression(true));
        } else if (!s->defaults.empty() && s->defaults.back()) {
          return Fail("non-default macro argument follows a default argument");
        }
        s->params.push_back(param);
        s->defaults.push_back(std::move(def));
      }
      Next();
      ITE_RETURN_IF_ERROR(ExpectBlockEnd());
      int saved_loops = loop_depth_;
      loop_depth_ = 0;
      ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"endmacro"}, &found));
      loop_depth_ = saved_loops;
      s->bodies.push_back(std::move(body));
    } else if (tag == "break" || tag == "continue") {
      if (loop_depth_ == 0) {
        return InvalidArgument("line {}: '{}' outside of a loop", line, tag);
      }
      s->kind = tag == "break" ? Stmt::Kind::kBreak : Stmt::Kind::kContinue;
    } else if (tag == "generation") {
      // transformers' AssistantTracker tag: renders its body unchanged.
      s->kind = Stmt::Kind::kScope;
      ITE_RETURN_IF_ERROR(ExpectBlockEnd());
      ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"endgeneration"}, &found));
      s->bodies.push_back(std::move(body));
    } else if (tag == "filter") {
      s->kind = Stmt::Kind::kFilterBlock;
      ITE_ASSIGN_OR_RETURN(s->expr, ParseFilter(MakeExpr(Expr::Kind::kLiteral, line), true));
      ITE_RETURN_IF_ERROR(ExpectBlockEnd());
      ITE_ASSIGN_OR_RETURN(Body body, ParseBody({"endfilter"}, &found));
      s->bodies.push_back(std::move(body));
    } else {
      return InvalidArgument("line {}: unknown or unsupported tag '{}'", line, tag);
    }
    ITE_RETURN_IF_ERROR(ExpectBlockEnd());
    return s;
  }

  // for-loop targets: `a`, `a, b`, `(a, b)`.
  StatusOr<std::vector<std::string>> ParseTargets(std::string_view end_name) {
    std::vector<std::string> names;
    bool paren = SkipOp("(");
    while (true) {
      ITE_ASSIGN_OR_RETURN(std::string name, ExpectName());
      names.push_back(name);
      if (!SkipOp(",")) break;
      if (IsName(end_name) || IsOp(")")) break;
    }
    if (paren) ITE_RETURN_IF_ERROR(ExpectOp(")"));
    return names;
  }

  // ---- expressions (jinja2/parser.py) ----

  bool IsTupleEnd(std::initializer_list<std::string_view> extra_end) const {
    const Token& t = Cur();
    if (t.type == Type::kVarEnd || t.type == Type::kBlockEnd || t.type == Type::kEnd) return true;
    if (t.type == Type::kOperator && t.value == ")") return true;
    for (auto name : extra_end) {
      if (t.type == Type::kName && t.value == name) return true;
    }
    return false;
  }

  StatusOr<ExprPtr> ParseTuple(bool with_condexpr, std::initializer_list<std::string_view> extra_end,
                               bool explicit_parens = false) {
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

  StatusOr<ExprPtr> ParseExpression(bool with_condexpr) {
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

  StatusOr<ExprPtr> Binary(std::string op, ExprPtr left, ExprPtr right, int line) {
    auto e = MakeExpr(Expr::Kind::kBinary, line);
    e->name = std::move(op);
    e->children.push_back(std::move(left));
    e->children.push_back(std::move(right));
    return e;
  }

  StatusOr<ExprPtr> ParseOr() {
    ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseAnd());
    while (IsName("or")) {
      int line = Cur().line;
      Next();
      ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseAnd());
      ITE_ASSIGN_OR_RETURN(left, Binary("or", std::move(left), std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> ParseAnd() {
    ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseNot());
    while (IsName("and")) {
      int line = Cur().line;
      Next();
      ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseNot());
      ITE_ASSIGN_OR_RETURN(left, Binary("and", std::move(left), std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> ParseNot() {
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

  StatusOr<ExprPtr> ParseCompare() {
    int line = Cur().line;
    ITE_ASSIGN_OR_RETURN(ExprPtr first, ParseMath1());
    auto e = MakeExpr(Expr::Kind::kCompare, line);
    e->children.push_back(std::move(first));
    while (true) {
      std::string op;
      if (Cur().type == Type::kOperator &&
          (Cur().value == "==" || Cur().value == "!=" || Cur().value == "<" ||
           Cur().value == "<=" || Cur().value == ">" || Cur().value == ">=")) {
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

  StatusOr<ExprPtr> ParseMath1() {
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

  StatusOr<ExprPtr> ParseConcat() {
    ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseMath2());
    while (IsOp("~")) {
      int line = Cur().line;
      Next();
      ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseMath2());
      ITE_ASSIGN_OR_RETURN(left, Binary("~", std::move(left), std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> ParseMath2() {
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

  StatusOr<ExprPtr> ParsePow() {
    ITE_ASSIGN_OR_RETURN(ExprPtr left, ParseUnary(true));
    while (IsOp("**")) {
      int line = Cur().line;
      Next();
      ITE_ASSIGN_OR_RETURN(ExprPtr right, ParseUnary(true));
      ITE_ASSIGN_OR_RETURN(left, Binary("**", std::move(left), std::move(right), line));
    }
    return left;
  }

  StatusOr<ExprPtr> ParseUnary(bool with_filter) {
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

  StatusOr<ExprPtr> ParsePrimary() {
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

  StatusOr<ExprPtr> ParsePostfix(ExprPtr node) {
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

  StatusOr<ExprPtr> ParseFilterExpr(ExprPtr node) {
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

  StatusOr<ExprPtr> ParseSubscript(ExprPtr node) {
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

  StatusOr<ExprPtr> ParseSubscribed() {
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
  Status ParseCallArgs(Expr& e) {
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

  StatusOr<ExprPtr> ParseCall(ExprPtr node) {
    auto e = MakeExpr(Expr::Kind::kCall, Cur().line);
    e->children.push_back(std::move(node));
    ITE_RETURN_IF_ERROR(ParseCallArgs(*e));
    return e;
  }

  StatusOr<std::string> ParseDottedName() {
    ITE_ASSIGN_OR_RETURN(std::string name, ExpectName());
    while (SkipOp(".")) {
      ITE_ASSIGN_OR_RETURN(std::string part, ExpectName());
      name += "." + part;
    }
    return name;
  }

  StatusOr<ExprPtr> ParseFilter(ExprPtr node, bool start_inline) {
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

  StatusOr<ExprPtr> ParseTest(ExprPtr node) {
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

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

// jinja2 rejects unknown filter and test names when compiling, except in "soft" frames: inside
// an if statement (test and bodies) or a conditional expression, where it defers the error to
// when the filter runs. Loops, macros and set blocks start hard frames again.
Status CheckNames(const Expr* e, bool soft) {
  if (!e) return Status::Ok();
  if (e->kind == Expr::Kind::kCondition) soft = true;
  if (!soft && e->kind == Expr::Kind::kFilter && !IsKnownFilter(e->name)) {
    return InvalidArgument("line {}: No filter named '{}'.", e->line, e->name);
  }
  if (!soft && e->kind == Expr::Kind::kTest && !IsKnownTest(e->name)) {
    return InvalidArgument("line {}: No test named '{}'.", e->line, e->name);
  }
  for (const auto& c : e->children) ITE_RETURN_IF_ERROR(CheckNames(c.get(), soft));
  for (const auto& [k, v] : e->kwargs) ITE_RETURN_IF_ERROR(CheckNames(v.get(), soft));
  return Status::Ok();
}

Status CheckNames(const Body& body, bool soft) {
  for (const auto& s : body) {
    bool inner_soft = soft;
    switch (s->kind) {
      case Stmt::Kind::kIf:
        inner_soft = true;
        break;
      case Stmt::Kind::kFor:
        ITE_RETURN_IF_ERROR(CheckNames(s->expr.get(), soft));
        ITE_RETURN_IF_ERROR(CheckNames(s->filter.get(), false));
        inner_soft = false;
        break;
      case Stmt::Kind::kMacro:
      case Stmt::Kind::kSetBlock:
      case Stmt::Kind::kScope:
      case Stmt::Kind::kFilterBlock:
        inner_soft = false;
        break;
      default:
        break;
    }
    if (s->kind != Stmt::Kind::kFor) ITE_RETURN_IF_ERROR(CheckNames(s->expr.get(), soft));
    for (const auto& c : s->conditions) ITE_RETURN_IF_ERROR(CheckNames(c.get(), inner_soft));
    for (const auto& d : s->defaults) ITE_RETURN_IF_ERROR(CheckNames(d.get(), false));
    for (const auto& b : s->bodies) ITE_RETURN_IF_ERROR(CheckNames(b, inner_soft));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Program>> ParseTemplate(std::string_view source,
                                                 const LexOptions& options) {
  ITE_ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(source, options));
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<Program> program, Parser(std::move(tokens)).Run());
  ITE_RETURN_IF_ERROR(CheckNames(program->body, false));
  return program;
}

}  // namespace ite::jinja
