// Token access shared by the statement parser (jinja_parser.cc) and the expression parser.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "scheduler/chat/jinja_ast.h"
#include "scheduler/chat/jinja_lexer.h"

namespace ite::jinja {

class TokenCursor {
 public:
  explicit TokenCursor(std::vector<Token> tokens) : t_(std::move(tokens)) {}

 protected:
  using Type = Token::Type;
  // Deeper nesting than this is rejected rather than risking the native stack.
  static constexpr int kMaxDepth = 200;

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

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
};

}  // namespace ite::jinja
