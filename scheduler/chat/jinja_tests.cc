// Tests (`x is defined`, `x is divisibleby 3`, ...), with jinja2's (3.1) semantics.
#include <algorithm>

#include "scheduler/chat/jinja_builtins.h"

namespace ite::jinja {

StatusOr<bool> ApplyTest(std::string_view name, const Value& v, const CallArgs& args) {
  auto arg0 = [&]() -> StatusOr<Value> {
    if (args.args.empty()) return InvalidArgument("test '{}' needs an argument", name);
    return args.args[0];
  };
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == K::kBool;
  if (name == "true") return v.kind() == K::kBool && v.as_bool();
  if (name == "false") return v.kind() == K::kBool && !v.as_bool();
  if (name == "integer") return v.kind() == K::kInt;
  if (name == "float") return v.kind() == K::kFloat;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable") {
    return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  }
  if (name == "sequence") {
    return v.is_undefined() || v.is_string() || v.is_list() || v.is_dict();
  }
  if (name == "callable") return v.kind() == K::kFunction;
  if (name == "escaped") return false;
  if (name == "lower" || name == "upper") {
    std::string s = PyStr(v);
    return s == (name == "lower" ? PyLower(s) : PyUpper(s));
  }
  if (name == "odd" || name == "even" || name == "divisibleby") {
    ITE_ASSIGN_OR_RETURN(int64_t i, ToInt(v, "value"));
    if (name == "divisibleby") {
      ITE_ASSIGN_OR_RETURN(Value d, arg0());
      ITE_ASSIGN_OR_RETURN(int64_t n, ToInt(d, "divisor"));
      if (n == 0) return InvalidArgument("integer division or modulo by zero");
      return i % n == 0;
    }
    return (((i % 2) + 2) % 2 == 1) == (name == "odd");
  }
  if (name == "eq" || name == "equalto" || name == "==") {
    ITE_ASSIGN_OR_RETURN(Value other, arg0());
    return PyEquals(v, other);
  }
  if (name == "ne" || name == "!=") {
    ITE_ASSIGN_OR_RETURN(Value other, arg0());
    return !PyEquals(v, other);
  }
  if (name == "sameas") {
    ITE_ASSIGN_OR_RETURN(Value other, arg0());
    // `is` identity: singletons compare equal; other values only by shared identity, which
    // templates only use with none/true/false.
    if (v.is_none() || other.is_none() || v.kind() == K::kBool || other.kind() == K::kBool) {
      return v.kind() == other.kind() && PyEquals(v, other);
    }
    return false;
  }
  if (name == "lt" || name == "le" || name == "gt" || name == "ge" || name == "<" || name == "<=" ||
      name == ">" || name == ">=" || name == "lessthan" || name == "greaterthan") {
    ITE_ASSIGN_OR_RETURN(Value other, arg0());
    ITE_ASSIGN_OR_RETURN(int c, PyCompare(v, other, name));
    if (name == "lt" || name == "<" || name == "lessthan") return c < 0;
    if (name == "le" || name == "<=") return c <= 0;
    if (name == "gt" || name == ">" || name == "greaterthan") return c > 0;
    return c >= 0;
  }
  if (name == "in") {
    ITE_ASSIGN_OR_RETURN(Value seq, arg0());
    if (seq.is_string()) {
      if (!v.is_string()) return InvalidArgument("'in <string>' requires string as left operand");
      return seq.as_string().find(v.as_string()) != std::string::npos;
    }
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(seq));
    return std::any_of(items.begin(), items.end(), [&](const Value& x) { return PyEquals(x, v); });
  }
  if (name == "filter" || name == "test") {
    return v.is_string() &&
           (name == "filter" ? IsKnownFilter(v.as_string()) : IsKnownTest(v.as_string()));
  }
  return InvalidArgument("No test named '{}'.", name);
}

}  // namespace ite::jinja
