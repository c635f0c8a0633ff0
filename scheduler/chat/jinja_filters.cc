// Filters, with jinja2's (3.1) semantics and transformers' tojson (tests: jinja_tests.cc).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "scheduler/chat/jinja_builtins.h"

namespace ite::jinja {
namespace {

Status NeedDefined(const Value& v) {
  if (v.is_undefined()) return InvalidArgument("{}", v.undefined_hint());
  return Status::Ok();
}

// jinja2's make_attrgetter: "a.b.0" looks up each part with getitem.
StatusOr<Value> LookupAttribute(const Value& item, const Value& attribute) {
  if (!attribute.is_string()) return GetItem(item, attribute);
  Value cur = item;
  std::string_view path = attribute.as_string();
  while (true) {
    size_t dot = path.find('.');
    std::string part(path.substr(0, dot));
    Value key = !part.empty() && std::all_of(part.begin(), part.end(), ::isdigit)
                    ? Value(static_cast<int64_t>(std::stoll(part)))
                    : Value(part);
    if (cur.is_undefined()) return NeedDefined(cur);
    ITE_ASSIGN_OR_RETURN(cur, GetItem(cur, key));
    if (dot == std::string_view::npos) return cur;
    path.remove_prefix(dot + 1);
  }
}

// Case folding for sort/unique/min/max when case_sensitive is false.
Value SortKey(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(PyLower(v.as_string()));
  return v;
}

StatusOr<bool> SelectOne(const Value& item, const CallArgs& args, size_t first_test_arg) {
  if (args.args.size() <= first_test_arg) return Truthy(item);
  const Value& test = args.args[first_test_arg];
  if (!test.is_string()) return InvalidArgument("test name must be a string");
  CallArgs rest;
  rest.args.assign(args.args.begin() + static_cast<ptrdiff_t>(first_test_arg) + 1, args.args.end());
  rest.kwargs = args.kwargs;
  return ApplyTest(test.as_string(), item, rest);
}

StatusOr<Value> SelectOrReject(const Value& input, const CallArgs& args, bool by_attr,
                               bool select) {
  ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
  if (by_attr && args.args.empty()) return InvalidArgument("missing parameter for attribute name");
  Value::List out;
  for (const auto& item : items) {
    Value subject = item;
    if (by_attr) {
      ITE_ASSIGN_OR_RETURN(subject, LookupAttribute(item, args.args[0]));
    }
    ITE_ASSIGN_OR_RETURN(bool keep, SelectOne(subject, args, by_attr ? 1 : 0));
    if (keep == select) out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> MapFilter(const Value& input, const CallArgs& args) {
  ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
  Value::List out;
  const Value* attribute = nullptr;
  const Value* def = nullptr;
  for (const auto& [k, v] : args.kwargs) {
    if (k == "attribute") attribute = &v;
    if (k == "default") def = &v;
  }
  if (attribute) {
    for (const auto& item : items) {
      ITE_ASSIGN_OR_RETURN(Value v, LookupAttribute(item, *attribute));
      out.push_back(v.is_undefined() && def ? *def : v);
    }
    return Value::MakeList(std::move(out));
  }
  if (args.args.empty() || !args.args[0].is_string()) {
    return InvalidArgument("map requires a filter name or attribute=");
  }
  CallArgs rest;
  rest.args.assign(args.args.begin() + 1, args.args.end());
  rest.kwargs = args.kwargs;
  for (const auto& item : items) {
    ITE_ASSIGN_OR_RETURN(Value v, ApplyFilter(args.args[0].as_string(), item, rest));
    out.push_back(v);
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> ToJsonFilter(const Value& input, const CallArgs& args) {
  // transformers: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
  ArgReader a(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  ITE_RETURN_IF_ERROR(a.Check());
  JsonDumpOptions o;
  if (a.Get(0)) o.ensure_ascii = Truthy(*a.Get(0));
  if (a.Get(3)) o.sort_keys = Truthy(*a.Get(3));
  if (const Value* indent = a.Get(1); indent && !indent->is_none()) {
    o.has_indent = true;
    if (indent->is_string()) {
      o.indent = indent->as_string();
    } else {
      ITE_ASSIGN_OR_RETURN(int64_t n, ToInt(*indent, "tojson indent"));
      o.indent = std::string(static_cast<size_t>(std::clamp<int64_t>(n, 0, 1024)), ' ');
    }
  }
  o.item_separator = o.has_indent ? "," : ", ";
  o.key_separator = ": ";
  if (const Value* sep = a.Get(2); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->as_list().size() != 2 || !sep->as_list()[0].is_string() ||
        !sep->as_list()[1].is_string()) {
      return InvalidArgument("tojson separators must be a pair of strings");
    }
    o.item_separator = sep->as_list()[0].as_string();
    o.key_separator = sep->as_list()[1].as_string();
  }
  ITE_ASSIGN_OR_RETURN(std::string s, PyJsonDumps(input, o));
  return Value(std::move(s));
}

StatusOr<Value> IntFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "int", {"default", "base"});
  ITE_RETURN_IF_ERROR(a.Check());
  ITE_RETURN_IF_ERROR(NeedDefined(input));
  Value def = a.Get(0) ? *a.Get(0) : Value(int64_t{0});
  int64_t base = 10;
  if (a.Get(1)) {
    ITE_ASSIGN_OR_RETURN(base, ToInt(*a.Get(1), "base"));
  }
  if (input.kind() == Value::Kind::kInt || input.kind() == Value::Kind::kBool) {
    return Value(input.as_int());
  }
  if (input.kind() == Value::Kind::kFloat) {
    double d = input.as_double();
    if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return def;
    return Value(static_cast<int64_t>(d));
  }
  if (input.is_string()) {
    std::string s = PyStrip(input.as_string(), nullptr, true, true);
    std::string digits;
    for (char c : s) {
      if (c != '_') digits.push_back(c);
    }
    if (!digits.empty() && base >= 2 && base <= 36) {
      char* end = nullptr;
      errno = 0;
      long long v = std::strtoll(digits.c_str(), &end, static_cast<int>(base));
      if (errno == 0 && end && *end == '\0') return Value(static_cast<int64_t>(v));
      // jinja2 falls back to int(float(s)).
      double d = std::strtod(digits.c_str(), &end);
      if (end && *end == '\0' && std::isfinite(d)) return Value(static_cast<int64_t>(d));
    }
  }
  return def;
}

StatusOr<Value> FloatFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "float", {"default"});
  ITE_RETURN_IF_ERROR(a.Check());
  ITE_RETURN_IF_ERROR(NeedDefined(input));
  Value def = a.Get(0) ? *a.Get(0) : Value(0.0);
  if (input.is_number()) return Value(input.as_double());
  if (input.is_string()) {
    std::string s = PyStrip(input.as_string(), nullptr, true, true);
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0') return Value(d);
  }
  return def;
}

StatusOr<Value> RoundFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "round", {"precision", "method"});
  ITE_RETURN_IF_ERROR(a.Check());
  ITE_RETURN_IF_ERROR(NeedDefined(input));
  int64_t precision = 0;
  if (a.Get(0)) {
    ITE_ASSIGN_OR_RETURN(precision, ToInt(*a.Get(0), "precision"));
  }
  std::string method = a.Get(1) && a.Get(1)->is_string() ? a.Get(1)->as_string() : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    return InvalidArgument("method must be common, ceil or floor");
  }
  if (!input.is_number()) return InvalidArgument("round: '{}' is not a number", TypeName(input));
  if (method == "common" && input.kind() != Value::Kind::kFloat) return Value(input.as_int());
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = input.as_double() * scale;
  if (method == "common" && precision >= 0 && precision <= 300 && std::isfinite(x)) {
    // Python's round() rounds the exact binary value half-to-even in decimal (2.675 -> 2.67);
    // printf's %.Nf does the same correctly rounded conversion.
    std::vector<char> text(400);
    std::snprintf(text.data(), text.size(), "%.*f", static_cast<int>(precision), input.as_double());
    return Value(std::strtod(text.data(), nullptr));
  }
  double r = method == "ceil"    ? std::ceil(x)
             : method == "floor" ? std::floor(x)
                                 : std::nearbyint(x);
  return Value(r / scale);
}

StatusOr<Value> IndentFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "indent", {"width", "first", "blank"});
  ITE_RETURN_IF_ERROR(a.Check());
  std::string indention = "    ";
  if (const Value* w = a.Get(0)) {
    if (w->is_string()) {
      indention = w->as_string();
    } else {
      ITE_ASSIGN_OR_RETURN(int64_t n, ToInt(*w, "width"));
      indention = std::string(static_cast<size_t>(std::clamp<int64_t>(n, 0, 1024)), ' ');
    }
  }
  bool first = a.Get(1) && Truthy(*a.Get(1));
  bool blank = a.Get(2) && Truthy(*a.Get(2));
  std::vector<std::string> lines = PySplitLines(PyStr(input) + "\n");
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n" + (lines[i].empty() ? "" : indention) + lines[i];
    }
  }
  if (first) rv = indention + rv;
  return Value(rv);
}

StatusOr<Value> SortFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "sort", {"reverse", "case_sensitive", "attribute"});
  ITE_RETURN_IF_ERROR(a.Check());
  bool reverse = a.Get(0) && Truthy(*a.Get(0));
  bool case_sensitive = a.Get(1) && Truthy(*a.Get(1));
  ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
  std::vector<std::pair<Value, Value>> keyed;
  for (const auto& item : items) {
    Value key = item;
    if (a.Get(2)) {
      ITE_ASSIGN_OR_RETURN(key, LookupAttribute(item, *a.Get(2)));
    }
    keyed.emplace_back(SortKey(key, case_sensitive), item);
  }
  Status error;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    auto c = reverse ? PyCompare(y.first, x.first, "<") : PyCompare(x.first, y.first, "<");
    if (!c.ok()) {
      if (error.ok()) error = c.status();
      return false;
    }
    return *c < 0;
  });
  ITE_RETURN_IF_ERROR(error);
  Value::List out;
  for (auto& [k, v] : keyed) out.push_back(v);
  return Value::MakeList(std::move(out));
}

StatusOr<Value> MinMax(const Value& input, const CallArgs& args, bool want_max) {
  ArgReader a(args, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  ITE_RETURN_IF_ERROR(a.Check());
  bool case_sensitive = a.Get(0) && Truthy(*a.Get(0));
  ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
  if (items.empty()) return Value::Undefined("No aggregated item, sequence was empty.");
  const Value* best = nullptr;
  Value best_key;
  for (const auto& item : items) {
    Value key = item;
    if (a.Get(1)) {
      ITE_ASSIGN_OR_RETURN(key, LookupAttribute(item, *a.Get(1)));
    }
    key = SortKey(key, case_sensitive);
    if (best) {
      ITE_ASSIGN_OR_RETURN(int c, PyCompare(key, best_key, want_max ? ">" : "<"));
      if (want_max ? c <= 0 : c >= 0) continue;
    }
    best = &item;
    best_key = key;
  }
  return *best;
}

StatusOr<Value> UniqueFilter(const Value& input, const CallArgs& args) {
  ArgReader a(args, "unique", {"case_sensitive", "attribute"});
  ITE_RETURN_IF_ERROR(a.Check());
  bool case_sensitive = a.Get(0) && Truthy(*a.Get(0));
  ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
  Value::List out, seen;
  for (const auto& item : items) {
    Value key = item;
    if (a.Get(1)) {
      ITE_ASSIGN_OR_RETURN(key, LookupAttribute(item, *a.Get(1)));
    }
    key = SortKey(key, case_sensitive);
    if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return PyEquals(s, key); })) {
      continue;
    }
    seen.push_back(key);
    out.push_back(item);
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> Length(const Value& input) {
  switch (input.kind()) {
    case Value::Kind::kUndefined:
      return Value(int64_t{0});
    case Value::Kind::kString:
      return Value(static_cast<int64_t>(CodePointCount(input.as_string())));
    case Value::Kind::kList:
      return Value(static_cast<int64_t>(input.as_list().size()));
    case Value::Kind::kDict:
      return Value(static_cast<int64_t>(input.as_dict().size()));
    default:
      return InvalidArgument("object of type '{}' has no len()", TypeName(input));
  }
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

// jinja2's `title` filter: upper-cases the first letter after "-", whitespace, or brackets.
std::string TitleFilter(const std::string& s) {
  std::u32string cps = DecodeUtf8(s);
  std::string out;
  bool word_start = true;
  for (char32_t cp : cps) {
    bool sep = cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || IsPySpace(cp);
    std::string c;
    AppendUtf8(c, cp);
    out += sep ? c : (word_start ? PyUpper(c) : PyLower(c));
    word_start = sep;
  }
  return out;
}

constexpr std::string_view kKnownFilters[] = {
    "abs",    "attr",       "batch",       "capitalize", "center",   "count",
    "d",      "default",    "dictsort",    "e",          "escape",   "filesizeformat",
    "first",  "float",      "forceescape", "format",     "groupby",  "indent",
    "int",    "items",      "join",        "last",       "length",   "list",
    "lower",  "map",        "max",         "min",        "pprint",   "random",
    "reject", "rejectattr", "replace",     "reverse",    "round",    "safe",
    "select", "selectattr", "slice",       "sort",       "string",   "striptags",
    "sum",    "title",      "tojson",      "trim",       "truncate", "unique",
    "upper",  "urlencode",  "urlize",      "wordcount",  "wordwrap", "xmlattr"};
constexpr std::string_view kKnownTests[] = {
    "!=",       "<",        "<=",          "==",       ">",           ">=",       "boolean",
    "callable", "defined",  "divisibleby", "eq",       "equalto",     "escaped",  "even",
    "false",    "filter",   "float",       "ge",       "greaterthan", "gt",       "in",
    "integer",  "iterable", "le",          "lessthan", "lower",       "lt",       "mapping",
    "ne",       "none",     "number",      "odd",      "sameas",      "sequence", "string",
    "test",     "true",     "undefined",   "upper"};

}  // namespace

bool IsKnownFilter(std::string_view name) {
  return std::find(std::begin(kKnownFilters), std::end(kKnownFilters), name) !=
         std::end(kKnownFilters);
}

bool IsKnownTest(std::string_view name) {
  return std::find(std::begin(kKnownTests), std::end(kKnownTests), name) != std::end(kKnownTests);
}

StatusOr<Value> ApplyFilter(std::string_view name, const Value& input, const CallArgs& args) {
  auto no_args = [&]() -> Status {
    if (!args.args.empty() || !args.kwargs.empty()) {
      return InvalidArgument("filter '{}' takes no arguments", name);
    }
    return Status::Ok();
  };
  if (name == "tojson") return ToJsonFilter(input, args);
  if (name == "trim") {
    ArgReader a(args, "trim", {"chars"});
    ITE_RETURN_IF_ERROR(a.Check());
    const Value* chars = a.Get(0);
    std::string chars_s = chars && !chars->is_none() ? PyStr(*chars) : "";
    return Value(
        PyStrip(PyStr(input), chars && !chars->is_none() ? &chars_s : nullptr, true, true));
  }
  if (name == "length" || name == "count") {
    ITE_RETURN_IF_ERROR(no_args());
    return Length(input);
  }
  if (name == "upper" || name == "lower" || name == "capitalize" || name == "title" ||
      name == "string" || name == "safe" || name == "escape" || name == "e" ||
      name == "forceescape") {
    ITE_RETURN_IF_ERROR(no_args());
    if (name == "safe") return input;
    std::string s = PyStr(input);
    if (name == "upper") return Value(PyUpper(s));
    if (name == "lower") return Value(PyLower(s));
    if (name == "capitalize") return CallStrMethod(s, "capitalize", {});
    if (name == "title") return Value(TitleFilter(s));
    if (name == "string") return Value(s);
    return Value(HtmlEscape(s));
  }
  if (name == "replace") {
    ArgReader a(args, "replace", {"old", "new", "count"});
    ITE_RETURN_IF_ERROR(a.Check());
    return CallStrMethod(PyStr(input), "replace", args);
  }
  if (name == "default" || name == "d") {
    ArgReader a(args, "default", {"default_value", "boolean"});
    ITE_RETURN_IF_ERROR(a.Check());
    bool boolean = a.Get(1) && Truthy(*a.Get(1));
    if (input.is_undefined() || (boolean && !Truthy(input))) {
      return a.Get(0) ? *a.Get(0) : Value(std::string());
    }
    return input;
  }
  if (name == "first" || name == "last") {
    ITE_RETURN_IF_ERROR(no_args());
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
    if (items.empty())
      return Value::Undefined(fmt::format("No {} item, sequence was empty.", name));
    return name == "first" ? items.front() : items.back();
  }
  if (name == "join") {
    ArgReader a(args, "join", {"d", "attribute"});
    ITE_RETURN_IF_ERROR(a.Check());
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
    std::string sep = a.Get(0) ? PyStr(*a.Get(0)) : "";
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      Value item = items[i];
      if (a.Get(1)) {
        ITE_ASSIGN_OR_RETURN(item, LookupAttribute(item, *a.Get(1)));
      }
      if (i) out += sep;
      out += PyStr(item);
    }
    return Value(out);
  }
  if (name == "list") {
    ITE_RETURN_IF_ERROR(no_args());
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
    return Value::MakeList(std::move(items));
  }
  if (name == "items") {
    ITE_RETURN_IF_ERROR(no_args());
    if (input.is_undefined()) return Value::MakeList({});
    if (!input.is_dict()) return InvalidArgument("Can only get item pairs from a mapping.");
    return GetAttr(input, "items").Call({});
  }
  if (name == "dictsort") {
    ArgReader a(args, "dictsort", {"case_sensitive", "by", "reverse"});
    ITE_RETURN_IF_ERROR(a.Check());
    if (!input.is_dict())
      return InvalidArgument("dictsort: '{}' is not a mapping", TypeName(input));
    bool by_value = a.Get(1) && a.Get(1)->is_string() && a.Get(1)->as_string() == "value";
    CallArgs sort_args;
    sort_args.kwargs.emplace_back("reverse", a.Get(2) ? *a.Get(2) : Value(false));
    sort_args.kwargs.emplace_back("case_sensitive", a.Get(0) ? *a.Get(0) : Value(false));
    sort_args.kwargs.emplace_back("attribute", Value(int64_t{by_value ? 1 : 0}));
    ITE_ASSIGN_OR_RETURN(Value pairs, GetAttr(input, "items").Call({}));
    return SortFilter(pairs, sort_args);
  }
  if (name == "select") return SelectOrReject(input, args, false, true);
  if (name == "reject") return SelectOrReject(input, args, false, false);
  if (name == "selectattr") return SelectOrReject(input, args, true, true);
  if (name == "rejectattr") return SelectOrReject(input, args, true, false);
  if (name == "map") return MapFilter(input, args);
  if (name == "int") return IntFilter(input, args);
  if (name == "float") return FloatFilter(input, args);
  if (name == "round") return RoundFilter(input, args);
  if (name == "indent") return IndentFilter(input, args);
  if (name == "sort") return SortFilter(input, args);
  if (name == "unique") return UniqueFilter(input, args);
  if (name == "min" || name == "max") return MinMax(input, args, name == "max");
  if (name == "abs") {
    ITE_RETURN_IF_ERROR(no_args());
    ITE_RETURN_IF_ERROR(NeedDefined(input));
    if (input.kind() == Value::Kind::kFloat) return Value(std::fabs(input.as_double()));
    if (input.is_number()) return Value(input.as_int() < 0 ? -input.as_int() : input.as_int());
    return InvalidArgument("bad operand type for abs(): '{}'", TypeName(input));
  }
  if (name == "reverse") {
    ITE_RETURN_IF_ERROR(no_args());
    if (input.is_string()) {
      Value step(int64_t{-1});
      return GetSlice(input, nullptr, nullptr, &step);
    }
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
    std::reverse(items.begin(), items.end());
    return Value::MakeList(std::move(items));
  }
  if (name == "sum") {
    ArgReader a(args, "sum", {"attribute", "start"});
    ITE_RETURN_IF_ERROR(a.Check());
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(input));
    Value total = a.Get(1) ? *a.Get(1) : Value(int64_t{0});
    for (const auto& item : items) {
      Value v = item;
      if (a.Get(0)) {
        ITE_ASSIGN_OR_RETURN(v, LookupAttribute(item, *a.Get(0)));
      }
      if (!v.is_number() || !total.is_number()) {
        return InvalidArgument("sum: unsupported operand types '{}' and '{}'", TypeName(total),
                               TypeName(v));
      }
      if (v.kind() == Value::Kind::kFloat || total.kind() == Value::Kind::kFloat) {
        total = Value(total.as_double() + v.as_double());
      } else {
        total = Value(total.as_int() + v.as_int());
      }
    }
    return total;
  }
  if (name == "attr") {
    ArgReader a(args, "attr", {"name"});
    ITE_RETURN_IF_ERROR(a.Check());
    if (!a.Get(0) || !a.Get(0)->is_string()) return InvalidArgument("attr name must be a string");
    ITE_RETURN_IF_ERROR(NeedDefined(input));
    // getattr only: dict keys are not attributes in Python.
    if (input.is_dict()) {
      Value v = GetAttr(input, a.Get(0)->as_string());
      if (v.kind() == Value::Kind::kFunction) return v;
      return Value::Undefined(
          fmt::format("'dict object' has no attribute '{}'", a.Get(0)->as_string()));
    }
    return GetAttr(input, a.Get(0)->as_string());
  }
  if (name == "wordcount") {
    ITE_RETURN_IF_ERROR(no_args());
    int64_t words = 0;
    bool in_word = false;
    for (char32_t cp : DecodeUtf8(PyStr(input))) {
      bool w = cp == '_' || (cp < 0x80 ? std::isalnum(static_cast<int>(cp)) != 0 : !IsPySpace(cp));
      if (w && !in_word) ++words;
      in_word = w;
    }
    return Value(words);
  }
  if (IsKnownFilter(name)) return InvalidArgument("filter '{}' is not supported", name);
  return InvalidArgument("No filter named '{}'.", name);
}

}  // namespace ite::jinja
