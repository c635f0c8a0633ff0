#include "scheduler/chat/jinja_parser.h"

#include <charconv>
#include <initializer_list>

#include "scheduler/chat/jinja_builtins.h"
#include "scheduler/chat/jinja_expr_parser.h"

namespace ite::jinja {
namespace {

class Parser : public ExprParser {
 public:
  explicit Parser(std::vector<Token> tokens) : ExprParser(std::move(tokens)) {}

  StatusOr<std::unique_ptr<Program>> Run() {
    auto program = std::make_unique<Program>();
    std::string end;
    ITE_ASSIGN_OR_RETURN(program->body, ParseBody({}, &end));
    return program;
  }

 private:
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
        for (auto t : end_tags)
          expected += (expected.empty() ? "'" : " or '") + std::string(t) + "'";
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
