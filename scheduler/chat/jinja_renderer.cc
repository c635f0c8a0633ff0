#include "scheduler/chat/jinja_renderer.h"

#include <cmath>

#include "scheduler/chat/jinja_builtins.h"

namespace ite::jinja {
namespace {

struct Scope {
  const Scope* parent = nullptr;
  Value::Dict vars;

  const Value* Find(std::string_view name) const {
    for (const Scope* s = this; s; s = s->parent) {
      for (const auto& [k, v] : s->vars) {
        if (k == name) return &v;
      }
    }
    return nullptr;
  }
  void Set(const std::string& name, Value v) {
    for (auto& [k, old] : vars) {
      if (k == name) {
        old = std::move(v);
        return;
      }
    }
    vars.emplace_back(name, std::move(v));
  }
};

Status UndefinedError(const Value& v) { return InvalidArgument("{}", v.undefined_hint()); }

Status UnsupportedOperands(std::string_view op, const Value& a, const Value& b) {
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  return InvalidArgument("unsupported operand type(s) for {}: '{}' and '{}'", op, TypeName(a),
                         TypeName(b));
}

bool IsIntLike(const Value& v) {
  return v.kind() == Value::Kind::kInt || v.kind() == Value::Kind::kBool;
}

StatusOr<Value> Repeat(const Value& seq, int64_t n) {
  constexpr int64_t kMaxRepeatBytes = 16 << 20;
  if (n <= 0) return seq.is_string() ? Value(std::string()) : Value::MakeList({}, seq.is_tuple());
  if (seq.is_string()) {
    if (static_cast<int64_t>(seq.as_string().size()) * n > kMaxRepeatBytes) {
      return InvalidArgument("string repetition too large");
    }
    std::string out;
    for (int64_t i = 0; i < n; ++i) out += seq.as_string();
    return Value(out);
  }
  if (static_cast<int64_t>(seq.as_list().size()) * n > kMaxRepeatBytes / 16) {
    return InvalidArgument("list repetition too large");
  }
  Value::List out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), seq.as_list().begin(), seq.as_list().end());
  return Value::MakeList(std::move(out), seq.is_tuple());
}

// Python's binary arithmetic operators on our values.
StatusOr<Value> Arithmetic(const std::string& op, const Value& a, const Value& b) {
  if (op == "~") return Value(PyStr(a) + PyStr(b));
  bool nums = a.is_number() && b.is_number();
  bool ints = IsIntLike(a) && IsIntLike(b);
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      Value::List out = a.as_list();
      out.insert(out.end(), b.as_list().begin(), b.as_list().end());
      return Value::MakeList(std::move(out), a.is_tuple());
    }
    if (ints) {
      int64_t r;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &r))
        return InvalidArgument("integer overflow");
      return Value(r);
    }
    if (nums) return Value(a.as_double() + b.as_double());
    if (a.is_string() && !b.is_undefined() && !a.is_undefined()) {
      return InvalidArgument("can only concatenate str (not \"{}\") to str", TypeName(b));
    }
    return UnsupportedOperands(op, a, b);
  }
  if (op == "*") {
    if ((a.is_string() || a.is_list()) && IsIntLike(b)) return Repeat(a, b.as_int());
    if ((b.is_string() || b.is_list()) && IsIntLike(a)) return Repeat(b, a.as_int());
  }
  if (!nums) return UnsupportedOperands(op, a, b);
  if (op == "-" || op == "*") {
    if (ints) {
      int64_t r;
      bool overflow = op == "-" ? __builtin_sub_overflow(a.as_int(), b.as_int(), &r)
                                : __builtin_mul_overflow(a.as_int(), b.as_int(), &r);
      if (overflow) return InvalidArgument("integer overflow");
      return Value(r);
    }
    return Value(op == "-" ? a.as_double() - b.as_double() : a.as_double() * b.as_double());
  }
  if (op == "/") {
    if (b.as_double() == 0) return InvalidArgument("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == "//" || op == "%") {
    if (b.as_double() == 0) return InvalidArgument("integer division or modulo by zero");
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (x == INT64_MIN && y == -1) return InvalidArgument("integer overflow");
      int64_t q = x / y, r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      return Value(op == "//" ? q : r);
    }
    double x = a.as_double(), y = b.as_double();
    if (op == "//") return Value(std::floor(x / y));
    double r = std::fmod(x, y);
    if (r != 0 && ((r < 0) != (y < 0))) r += y;
    return Value(r);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t r = 1, base = a.as_int();
      for (int64_t e = b.as_int(); e > 0; --e) {
        if (__builtin_mul_overflow(r, base, &r)) return InvalidArgument("integer overflow");
        if (r == 0 || r == 1) break;
      }
      return Value(r);
    }
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  return InvalidArgument("unknown operator '{}'", op);
}

StatusOr<bool> Contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kUndefined:
      return false;
    case Value::Kind::kString:
      if (!item.is_string()) {
        if (item.is_undefined()) return UndefinedError(item);
        return InvalidArgument("'in <string>' requires string as left operand, not {}",
                               TypeName(item));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& x : container.as_list()) {
        if (PyEquals(x, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      return item.is_string() && container.FindKey(item.as_string()) != nullptr;
    default:
      return InvalidArgument("argument of type '{}' is not iterable", TypeName(container));
  }
}

class Renderer {
 public:
  Renderer(const RenderLimits& limits) : limits_(limits) {}

  StatusOr<std::string> Run(const Program& program, const Value::Dict& variables) {
    root_.vars = GlobalFunctions();
    for (const auto& [k, v] : variables) root_.Set(k, v);
    std::string out;
    ITE_RETURN_IF_ERROR(RenderBody(program.body, &root_, &out));
    return out;
  }

 private:
  enum class Control { kNone, kBreak, kContinue };

  Status Step() {
    if (++steps_ > limits_.max_steps) {
      return ResourceExhausted("template ran more than {} steps", limits_.max_steps);
    }
    return Status::Ok();
  }

  Status RenderBody(const Body& body, Scope* scope, std::string* out) {
    for (const auto& stmt : body) {
      ITE_RETURN_IF_ERROR(Exec(*stmt, scope, out));
      if (out->size() > limits_.max_output_bytes) {
        return ResourceExhausted("template output exceeds {} bytes", limits_.max_output_bytes);
      }
      if (control_ != Control::kNone) return Status::Ok();
    }
    return Status::Ok();
  }

  Status Exec(const Stmt& s, Scope* scope, std::string* out) {
    ITE_RETURN_IF_ERROR(Step());
    switch (s.kind) {
      case Stmt::Kind::kText:
        *out += s.text;
        return Status::Ok();
      case Stmt::Kind::kOutput: {
        ITE_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, scope));
        *out += PyStr(v);
        return Status::Ok();
      }
      case Stmt::Kind::kIf:
        for (size_t i = 0; i < s.conditions.size(); ++i) {
          ITE_ASSIGN_OR_RETURN(Value c, Eval(*s.conditions[i], scope));
          if (Truthy(c)) return RenderBody(s.bodies[i], scope, out);
        }
        if (s.bodies.size() > s.conditions.size()) return RenderBody(s.bodies.back(), scope, out);
        return Status::Ok();
      case Stmt::Kind::kFor:
        return ExecFor(s, scope, out);
      case Stmt::Kind::kSet: {
        ITE_ASSIGN_OR_RETURN(Value v, Eval(*s.expr, scope));
        return Assign(s, scope, std::move(v));
      }
      case Stmt::Kind::kSetBlock: {
        std::string text;
        ITE_RETURN_IF_ERROR(RenderBody(s.bodies[0], scope, &text));
        scope->Set(s.targets[0], Value(std::move(text)));
        return Status::Ok();
      }
      case Stmt::Kind::kMacro: {
        // A macro defined inside loops sees the loop variables as they are now (jinja2 closes
        // over them); top-level variables are looked up when it runs.
        Value::Dict closure;
        for (const Scope* sc = scope; sc && sc != &root_; sc = sc->parent) {
          for (const auto& [k, v] : sc->vars) {
            bool shadowed = false;
            for (const auto& [ck, cv] : closure) shadowed = shadowed || ck == k;
            if (!shadowed) closure.emplace_back(k, v);
          }
        }
        const Stmt* macro = &s;
        scope->Set(s.name, Value::MakeFunction(s.name, [this, macro, closure = std::move(closure)](
                                                           const CallArgs& args) {
                     return CallMacro(*macro, closure, args);
                   }));
        return Status::Ok();
      }
      case Stmt::Kind::kBreak:
        control_ = Control::kBreak;
        return Status::Ok();
      case Stmt::Kind::kContinue:
        control_ = Control::kContinue;
        return Status::Ok();
      case Stmt::Kind::kScope: {
        Scope inner{scope, {}};
        return RenderBody(s.bodies[0], &inner, out);
      }
      case Stmt::Kind::kFilterBlock: {
        std::string text;
        ITE_RETURN_IF_ERROR(RenderBody(s.bodies[0], scope, &text));
        ITE_ASSIGN_OR_RETURN(Value v, ApplyFilterChain(*s.expr, Value(std::move(text)), scope));
        *out += PyStr(v);
        return Status::Ok();
      }
    }
    return Internal("unknown statement kind");
  }

  Status Bind(const std::vector<std::string>& targets, const Value& v, Scope* scope, int line) {
    if (targets.size() == 1) {
      scope->Set(targets[0], v);
      return Status::Ok();
    }
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(v));
    if (items.size() != targets.size()) {
      return InvalidArgument("line {}: cannot unpack {} values into {} names", line, items.size(),
                             targets.size());
    }
    for (size_t i = 0; i < items.size(); ++i) scope->Set(targets[i], items[i]);
    return Status::Ok();
  }

  Status Assign(const Stmt& s, Scope* scope, Value v) {
    if (s.attr.empty()) return Bind(s.targets, v, scope, s.line);
    const Value* ns = scope->Find(s.targets[0]);
    if (!ns || ns->kind() != Value::Kind::kNamespace) {
      return InvalidArgument("line {}: cannot assign attribute on non-namespace object", s.line);
    }
    if (s.attr[0] == '_') {
      return InvalidArgument(
          "Chat templates cannot store underscore-prefixed attributes on a "
          "namespace, but got '{}'",
          s.attr);
    }
    for (auto& [k, old] : ns->namespace_attrs()) {
      if (k == s.attr) {
        old = std::move(v);
        return Status::Ok();
      }
    }
    ns->namespace_attrs().emplace_back(s.attr, std::move(v));
    return Status::Ok();
  }

  Status ExecFor(const Stmt& s, Scope* scope, std::string* out) {
    ITE_ASSIGN_OR_RETURN(Value seq, Eval(*s.expr, scope));
    ITE_ASSIGN_OR_RETURN(Value::List all, Iterate(seq));
    Value::List items;
    if (s.filter) {
      for (const auto& item : all) {
        ITE_RETURN_IF_ERROR(Step());
        Scope probe{scope, {}};
        ITE_RETURN_IF_ERROR(Bind(s.targets, item, &probe, s.line));
        ITE_ASSIGN_OR_RETURN(Value keep, Eval(*s.filter, &probe));
        if (Truthy(keep)) items.push_back(item);
      }
    } else {
      items = std::move(all);
    }
    const int64_t n = static_cast<int64_t>(items.size());
    for (int64_t i = 0; i < n; ++i) {
      ITE_RETURN_IF_ERROR(Step());
      Scope iteration{scope, {}};
      ITE_RETURN_IF_ERROR(Bind(s.targets, items[static_cast<size_t>(i)], &iteration, s.line));
      Value::Dict loop{{"index", Value(i + 1)},      {"index0", Value(i)},
                       {"revindex", Value(n - i)},   {"revindex0", Value(n - i - 1)},
                       {"first", Value(i == 0)},     {"last", Value(i == n - 1)},
                       {"length", Value(n)},         {"depth", Value(int64_t{1})},
                       {"depth0", Value(int64_t{0})}};
      if (i > 0) loop.emplace_back("previtem", items[static_cast<size_t>(i - 1)]);
      if (i + 1 < n) loop.emplace_back("nextitem", items[static_cast<size_t>(i + 1)]);
      loop.emplace_back(
          "cycle", Value::MakeFunction("loop.cycle", [i](const CallArgs& args) -> StatusOr<Value> {
            if (args.args.empty()) return InvalidArgument("no items for cycling given");
            return args.args[static_cast<size_t>(i) % args.args.size()];
          }));
      iteration.Set("loop", Value::MakeNamespace(std::move(loop)));
      ITE_RETURN_IF_ERROR(RenderBody(s.bodies[0], &iteration, out));
      if (control_ == Control::kBreak) {
        control_ = Control::kNone;
        break;
      }
      control_ = Control::kNone;
    }
    if (n == 0) return RenderBody(s.bodies[1], scope, out);
    return Status::Ok();
  }

  StatusOr<Value> CallMacro(const Stmt& macro, const Value::Dict& closure, const CallArgs& args) {
    if (call_depth_ >= limits_.max_call_depth) {
      return ResourceExhausted("macro calls nested deeper than {}", limits_.max_call_depth);
    }
    if (args.args.size() > macro.params.size()) {
      return InvalidArgument("macro '{}' takes not more than {} argument(s)", macro.name,
                             macro.params.size());
    }
    for (const auto& [k, v] : args.kwargs) {
      if (std::find(macro.params.begin(), macro.params.end(), k) == macro.params.end()) {
        return InvalidArgument("macro '{}' takes no keyword argument '{}'", macro.name, k);
      }
    }
    Scope captured{&root_, closure};
    Scope scope{&captured, {}};
    for (size_t i = 0; i < macro.params.size(); ++i) {
      const std::string& p = macro.params[i];
      const Value* given = i < args.args.size() ? &args.args[i] : nullptr;
      for (const auto& [k, v] : args.kwargs) {
        if (k == p) given = &v;
      }
      if (given) {
        scope.Set(p, *given);
      } else if (macro.defaults[i]) {
        ITE_ASSIGN_OR_RETURN(Value d, Eval(*macro.defaults[i], &scope));
        scope.Set(p, d);
      } else {
        scope.Set(p, Value::Undefined(fmt::format("parameter '{}' was not provided", p)));
      }
    }
    ++call_depth_;
    std::string out;
    Status st = RenderBody(macro.bodies[0], &scope, &out);
    --call_depth_;
    ITE_RETURN_IF_ERROR(st);
    return Value(std::move(out));
  }

  StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first, Scope* scope) {
    CallArgs args;
    for (size_t i = first; i < e.children.size(); ++i) {
      ITE_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i], scope));
      args.args.push_back(std::move(v));
    }
    for (const auto& [k, ex] : e.kwargs) {
      ITE_ASSIGN_OR_RETURN(Value v, Eval(*ex, scope));
      args.kwargs.emplace_back(k, std::move(v));
    }
    return args;
  }

  // `{% filter a | b(x) %}`: the innermost filter's operand is the rendered body.
  StatusOr<Value> ApplyFilterChain(const Expr& e, Value input, Scope* scope) {
    if (e.kind != Expr::Kind::kFilter) return input;
    ITE_ASSIGN_OR_RETURN(Value inner, ApplyFilterChain(*e.children[0], std::move(input), scope));
    ITE_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, scope));
    return ApplyFilter(e.name, inner, args);
  }

  StatusOr<Value> Eval(const Expr& e, Scope* scope) {
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName: {
        if (const Value* v = scope->Find(e.name)) return *v;
        return Value::Undefined(fmt::format("'{}' is undefined", e.name));
      }
      case Expr::Kind::kList:
      case Expr::Kind::kTuple: {
        Value::List items;
        for (const auto& c : e.children) {
          ITE_ASSIGN_OR_RETURN(Value v, Eval(*c, scope));
          items.push_back(std::move(v));
        }
        return Value::MakeList(std::move(items), e.kind == Expr::Kind::kTuple);
      }
      case Expr::Kind::kDict: {
        Value::Dict d;
        for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
          ITE_ASSIGN_OR_RETURN(Value k, Eval(*e.children[i], scope));
          ITE_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1], scope));
          if (!k.is_string()) {
            return InvalidArgument("line {}: dict keys must be strings, got '{}'", e.line,
                                   TypeName(k));
          }
          bool replaced = false;
          for (auto& [key, old] : d) {
            if (key == k.as_string()) {
              old = v;
              replaced = true;
            }
          }
          if (!replaced) d.emplace_back(k.as_string(), std::move(v));
        }
        return Value::MakeDict(std::move(d));
      }
      case Expr::Kind::kGetAttr: {
        ITE_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0], scope));
        if (obj.is_undefined()) return UndefinedError(obj);
        return GetAttr(obj, e.name);
      }
      case Expr::Kind::kGetItem: {
        ITE_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0], scope));
        ITE_ASSIGN_OR_RETURN(Value key, Eval(*e.children[1], scope));
        if (obj.is_undefined()) return UndefinedError(obj);
        return GetItem(obj, key);
      }
      case Expr::Kind::kSlice: {
        if (!e.children[0]) return InvalidArgument("line {}: unsupported slice", e.line);
        ITE_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0], scope));
        Value bounds[3];
        for (int i = 0; i < 3; ++i) {
          if (e.children[1 + i]) {
            ITE_ASSIGN_OR_RETURN(bounds[i], Eval(*e.children[1 + i], scope));
          }
        }
        if (obj.is_undefined()) return UndefinedError(obj);
        return GetSlice(obj, e.children[1] ? &bounds[0] : nullptr,
                        e.children[2] ? &bounds[1] : nullptr, e.children[3] ? &bounds[2] : nullptr);
      }
      case Expr::Kind::kCall: {
        ITE_ASSIGN_OR_RETURN(Value fn, Eval(*e.children[0], scope));
        ITE_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, scope));
        if (fn.is_undefined()) return UndefinedError(fn);
        if (fn.kind() != Value::Kind::kFunction) {
          return InvalidArgument("line {}: '{}' object is not callable", e.line, TypeName(fn));
        }
        return fn.Call(args);
      }
      case Expr::Kind::kFilter: {
        ITE_ASSIGN_OR_RETURN(Value input, Eval(*e.children[0], scope));
        ITE_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, scope));
        return ApplyFilter(e.name, input, args);
      }
      case Expr::Kind::kTest: {
        ITE_ASSIGN_OR_RETURN(Value input, Eval(*e.children[0], scope));
        ITE_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1, scope));
        ITE_ASSIGN_OR_RETURN(bool r, ApplyTest(e.name, input, args));
        return Value(r != e.negated);
      }
      case Expr::Kind::kUnary: {
        ITE_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0], scope));
        if (e.name == "not") return Value(!Truthy(v));
        if (!v.is_number()) {
          if (v.is_undefined()) return UndefinedError(v);
          return InvalidArgument("line {}: bad operand type for unary {}: '{}'", e.line, e.name,
                                 TypeName(v));
        }
        if (e.name == "+") return v.kind() == Value::Kind::kFloat ? v : Value(v.as_int());
        if (v.kind() == Value::Kind::kFloat) return Value(-v.as_double());
        if (v.as_int() == INT64_MIN) return InvalidArgument("integer overflow");
        return Value(-v.as_int());
      }
      case Expr::Kind::kBinary: {
        ITE_ASSIGN_OR_RETURN(Value a, Eval(*e.children[0], scope));
        if (e.name == "and") return Truthy(a) ? Eval(*e.children[1], scope) : a;
        if (e.name == "or") return Truthy(a) ? a : Eval(*e.children[1], scope);
        ITE_ASSIGN_OR_RETURN(Value b, Eval(*e.children[1], scope));
        return Arithmetic(e.name, a, b);
      }
      case Expr::Kind::kCompare: {
        ITE_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0], scope));
        for (size_t i = 0; i < e.ops.size(); ++i) {
          ITE_ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1], scope));
          const std::string& op = e.ops[i];
          bool r;
          if (op == "==") {
            r = PyEquals(left, right);
          } else if (op == "!=") {
            r = !PyEquals(left, right);
          } else if (op == "in" || op == "not in") {
            ITE_ASSIGN_OR_RETURN(bool c, Contains(right, left));
            r = (op == "in") == c;
          } else {
            ITE_ASSIGN_OR_RETURN(int c, PyCompare(left, right, op));
            r = op == "<" ? c < 0 : op == "<=" ? c <= 0 : op == ">" ? c > 0 : c >= 0;
          }
          if (!r) return Value(false);
          left = std::move(right);
        }
        return Value(true);
      }
      case Expr::Kind::kCondition: {
        ITE_ASSIGN_OR_RETURN(Value c, Eval(*e.children[0], scope));
        if (Truthy(c)) return Eval(*e.children[1], scope);
        if (e.children[2]) return Eval(*e.children[2], scope);
        return Value::Undefined(
            "the inline if-expression evaluated to false and no else section was defined.");
      }
    }
    return Internal("unknown expression kind");
  }

  RenderLimits limits_;
  Scope root_;
  Control control_ = Control::kNone;
  int64_t steps_ = 0;
  int call_depth_ = 0;
};

}  // namespace

StatusOr<std::string> Render(const Program& program, const Value::Dict& variables,
                             const RenderLimits& limits) {
  Renderer renderer(limits);
  return renderer.Run(program, variables);
}

}  // namespace ite::jinja
