// The value model of our Jinja2 subset: Python's object semantics, as far as chat templates see
// them (None, bool, int, float, str, list/tuple, dict, jinja2's Undefined, Namespace, callables).
//
// Why not evaluate over nlohmann::json directly: templates need Undefined (printing as "", falsy,
// erroring on attribute access), namespaces that `set ns.x = ...` mutates, bound methods such as
// `message.content.startswith`, and tuples; JSON inputs are converted once at the start of a
// render. Strings, lists and dicts are shared immutable buffers, so passing values around is
// cheap (the sandbox transformers uses is immutable too: templates cannot mutate lists/dicts).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ite::jinja {

class Value;

// Arguments of a call: positional then keyword, in source order.
struct CallArgs {
  std::vector<Value> args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

using Function = std::function<StatusOr<Value>(const CallArgs&)>;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,  // list or tuple (tuple only changes how it prints)
    kDict,
    kNamespace,  // jinja2 namespace(): attributes assignable with `set ns.x = ...`
    kFunction,
  };
  using List = std::vector<Value>;
  // Insertion-ordered like a Python dict; keys are strings (all a chat template can build).
  using Dict = std::vector<std::pair<std::string, Value>>;

  Value() = default;  // undefined without a name
  Value(bool b) : kind_(Kind::kBool), int_(b ? 1 : 0) {}
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}
  Value(int i) : kind_(Kind::kInt), int_(i) {}
  Value(double d) : kind_(Kind::kFloat), float_(d) {}
  Value(std::string s);
  Value(const char* s) : Value(std::string(s)) {}

  static Value Undefined(std::string hint);  // hint: the message used when it is misused
  static Value None();
  static Value MakeList(List items, bool tuple = false);
  static Value MakeDict(Dict items);
  static Value MakeNamespace(Dict items);
  static Value MakeFunction(std::string name, Function fn);
  template <typename BasicJson>
  static Value FromJson(const BasicJson& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_number() const {
    return kind_ == Kind::kInt || kind_ == Kind::kFloat || kind_ == Kind::kBool;
  }
  bool is_tuple() const;

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }  // kInt or kBool
  double as_double() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const;  // kString
  const List& as_list() const;           // kList
  const Dict& as_dict() const;           // kDict or kNamespace
  Dict& namespace_attrs() const;         // kNamespace: mutable attributes
  const std::string& function_name() const;
  StatusOr<Value> Call(const CallArgs& args) const;  // kFunction
  // The message jinja2 raises when an undefined value is used ("'x' is undefined").
  const std::string& undefined_hint() const;

  // Key lookup in a dict or namespace; nullptr if absent or not a mapping.
  const Value* FindKey(std::string_view key) const;

 private:
  struct ListData {
    List items;
    bool tuple = false;
  };
  struct FunctionData {
    std::string name;
    Function fn;
  };

  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::shared_ptr<const std::string> str_;  // string, or the undefined hint
  std::shared_ptr<const ListData> list_;
  std::shared_ptr<Dict> dict_;  // const except for namespaces
  std::shared_ptr<const FunctionData> fn_;
};

template <typename BasicJson>
Value Value::FromJson(const BasicJson& j) {
  switch (j.type()) {
    case BasicJson::value_t::null:
    case BasicJson::value_t::discarded:
      return None();
    case BasicJson::value_t::boolean:
      return Value(j.template get<bool>());
    case BasicJson::value_t::number_integer:
      return Value(j.template get<int64_t>());
    case BasicJson::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<int64_t>(u));
      return Value(static_cast<double>(u));
    }
    case BasicJson::value_t::number_float:
      return Value(j.template get<double>());
    case BasicJson::value_t::string:
      return Value(j.template get<std::string>());
    case BasicJson::value_t::array: {
      List items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(FromJson(e));
      return MakeList(std::move(items));
    }
    case BasicJson::value_t::object: {
      Dict items;
      items.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(it.key(), FromJson(*it));
      return MakeDict(std::move(items));
    }
    case BasicJson::value_t::binary:
      break;
  }
  return None();
}

// ---- Python semantics ----

// Python's truth value (empty containers, 0, "", None and Undefined are false).
bool Truthy(const Value& v);
// Python's type name, for error messages ('str', 'int', 'NoneType', ...).
std::string TypeName(const Value& v);
// str(v); Undefined prints as "".
std::string PyStr(const Value& v);
// repr(v), as it appears inside a printed list or dict.
std::string PyRepr(const Value& v);
// Python's float repr: shortest round-trip digits, "1e-05", "1e+16", "2.0".
std::string PyFloatRepr(double d);
// a == b with Python's rules (1 == 1.0 == True; Undefined == Undefined).
bool PyEquals(const Value& a, const Value& b);
// Ordering for < <= > >= (numbers, strings, lists); TypeError as a Status otherwise.
StatusOr<int> PyCompare(const Value& a, const Value& b, std::string_view op);

// json.dumps as transformers' `tojson` filter calls it.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool sort_keys = false;
  bool has_indent = false;
  std::string indent;          // the per-level indent string when has_indent
  std::string item_separator;  // defaults: ", " (or "," with an indent)
  std::string key_separator;   // ": "
};
StatusOr<std::string> PyJsonDumps(const Value& v, const JsonDumpOptions& options);

// ---- UTF-8 code points, as Python's str indexes them ----
std::u32string DecodeUtf8(std::string_view s);  // invalid bytes become U+FFFD
std::string EncodeUtf8(std::u32string_view s);
void AppendUtf8(std::string& out, char32_t cp);
size_t CodePointCount(std::string_view s);
// str.isspace() for one code point (also what \s matches in Python's re).
bool IsPySpace(char32_t cp);
// str.strip/lstrip/rstrip; chars == nullptr strips whitespace.
std::string PyStrip(std::string_view s, const std::string* chars, bool left, bool right);

}  // namespace ite::jinja
