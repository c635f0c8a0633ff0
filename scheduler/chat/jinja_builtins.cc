// Attribute/item lookup, dict/list methods, and global functions (str methods are in
// jinja_str_methods.cc).
#include "scheduler/chat/jinja_builtins.h"

#include <utf8proc.h>

#include <algorithm>
#include <ctime>

namespace ite::jinja {

const Value* ArgReader::Get(size_t i) const {
  if (i < args_.args.size()) return &args_.args[i];
  if (i < names_.size()) {
    for (const auto& [k, v] : args_.kwargs) {
      if (k == names_[i]) return &v;
    }
  }
  return nullptr;
}

Status ArgReader::Check() const {
  if (args_.args.size() > names_.size()) {
    return InvalidArgument("{}() takes at most {} arguments ({} given)", fn_, names_.size(),
                           args_.args.size());
  }
  for (const auto& [k, v] : args_.kwargs) {
    auto it = std::find(names_.begin(), names_.end(), k);
    if (it == names_.end()) {
      return InvalidArgument("{}() got an unexpected keyword argument '{}'", fn_, k);
    }
    if (static_cast<size_t>(it - names_.begin()) < args_.args.size()) {
      return InvalidArgument("{}() got multiple values for argument '{}'", fn_, k);
    }
  }
  return Status::Ok();
}

StatusOr<int64_t> ToInt(const Value& v, std::string_view what) {
  if (v.kind() == Value::Kind::kInt || v.kind() == Value::Kind::kBool) return v.as_int();
  if (v.is_undefined()) return InvalidArgument("{}", v.undefined_hint());
  return InvalidArgument("{} must be an integer, not '{}'", what, TypeName(v));
}

StatusOr<Value::List> Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return Value::List{};
    case Value::Kind::kList:
      return v.as_list();
    case Value::Kind::kDict: {
      Value::List keys;
      for (const auto& [k, item] : v.as_dict()) keys.emplace_back(k);
      return keys;
    }
    case Value::Kind::kString: {
      Value::List chars;
      for (char32_t cp : DecodeUtf8(v.as_string())) {
        std::string c;
        AppendUtf8(c, cp);
        chars.emplace_back(std::move(c));
      }
      return chars;
    }
    default:
      return InvalidArgument("'{}' object is not iterable", TypeName(v));
  }
}

namespace {

constexpr std::string_view kStrMethods[] = {
    "strip",   "lstrip",  "rstrip",  "split",        "rsplit",       "startswith", "endswith",
    "upper",   "lower",   "title",   "capitalize",   "isdigit",      "isalpha",    "isalnum",
    "isspace", "isupper", "islower", "splitlines",   "replace",      "find",       "rfind",
    "index",   "rindex",  "count",   "removeprefix", "removesuffix", "join"};

bool IsStrMethod(std::string_view name) {
  return std::find(std::begin(kStrMethods), std::end(kStrMethods), name) != std::end(kStrMethods);
}

StatusOr<Value> CallDictMethod(const Value& d, std::string_view name, const CallArgs& args) {
  if (name == "get") {
    ArgReader a(args, name, {"key", "default"});
    ITE_RETURN_IF_ERROR(a.Check());
    if (!a.Get(0)) return InvalidArgument("get expected at least 1 argument");
    const Value* found = a.Get(0)->is_string() ? d.FindKey(a.Get(0)->as_string()) : nullptr;
    if (found) return *found;
    return a.Get(1) ? *a.Get(1) : Value::None();
  }
  ArgReader a(args, name, {});
  ITE_RETURN_IF_ERROR(a.Check());
  if (name == "copy") return Value::MakeDict(d.as_dict());
  Value::List out;
  for (const auto& [k, v] : d.as_dict()) {
    if (name == "keys") {
      out.emplace_back(k);
    } else if (name == "values") {
      out.push_back(v);
    } else {
      out.push_back(Value::MakeList({Value(k), v}, /*tuple=*/true));
    }
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value> CallListMethod(const Value& l, std::string_view name, const CallArgs& args) {
  ArgReader a(args, name, {"value"});
  ITE_RETURN_IF_ERROR(a.Check());
  if (!a.Get(0)) return InvalidArgument("{}() takes exactly one argument", name);
  const auto& items = l.as_list();
  int64_t n = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!PyEquals(items[i], *a.Get(0))) continue;
    if (name == "index") return Value(static_cast<int64_t>(i));
    ++n;
  }
  if (name == "index") return InvalidArgument("{} is not in list", PyRepr(*a.Get(0)));
  return Value(n);
}

Value NoAttribute(const Value& obj, std::string_view name) {
  return Value::Undefined(fmt::format("'{} object' has no attribute '{}'", TypeName(obj), name));
}

}  // namespace

Value GetAttr(const Value& obj, std::string_view name) {
  std::string method(name);
  switch (obj.kind()) {
    case Value::Kind::kString:
      if (IsStrMethod(name)) {
        return Value::MakeFunction("str." + method, [obj, method](const CallArgs& args) {
          return CallStrMethod(obj.as_string(), method, args);
        });
      }
      break;
    case Value::Kind::kDict:
      if (name == "items" || name == "keys" || name == "values" || name == "get" ||
          name == "copy") {
        return Value::MakeFunction("dict." + method, [obj, method](const CallArgs& args) {
          return CallDictMethod(obj, method, args);
        });
      }
      if (const Value* v = obj.FindKey(name)) return *v;
      break;
    case Value::Kind::kList:
      if (name == "index" || name == "count") {
        return Value::MakeFunction("list." + method, [obj, method](const CallArgs& args) {
          return CallListMethod(obj, method, args);
        });
      }
      break;
    case Value::Kind::kNamespace:
      if (const Value* v = obj.FindKey(name)) return *v;
      break;
    default:
      break;
  }
  return NoAttribute(obj, name);
}

StatusOr<Value> GetItem(const Value& obj, const Value& key) {
  bool int_key = key.kind() == Value::Kind::kInt || key.kind() == Value::Kind::kBool;
  if (obj.is_list() && int_key) {
    const auto& items = obj.as_list();
    int64_t i = key.as_int();
    if (i < 0) i += static_cast<int64_t>(items.size());
    if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
    return Value::Undefined(
        fmt::format("{} object has no element {}", TypeName(obj), key.as_int()));
  }
  if (obj.is_string() && int_key) {
    std::u32string cps = DecodeUtf8(obj.as_string());
    int64_t i = key.as_int();
    if (i < 0) i += static_cast<int64_t>(cps.size());
    if (i >= 0 && i < static_cast<int64_t>(cps.size())) {
      std::string c;
      AppendUtf8(c, cps[static_cast<size_t>(i)]);
      return Value(c);
    }
    return Value::Undefined(fmt::format("str object has no element {}", key.as_int()));
  }
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.FindKey(key.as_string())) return *v;
  }
  if (key.is_string()) return GetAttr(obj, key.as_string());
  return Value::Undefined(fmt::format("'{} object' has no element {}", TypeName(obj), PyRepr(key)));
}

StatusOr<Value> GetSlice(const Value& obj, const Value* start_v, const Value* stop_v,
                         const Value* step_v) {
  auto bound = [](const Value* v, std::string_view what) -> StatusOr<std::optional<int64_t>> {
    if (!v || v->is_none()) return std::optional<int64_t>();
    ITE_ASSIGN_OR_RETURN(int64_t i, ToInt(*v, what));
    return std::optional<int64_t>(i);
  };
  ITE_ASSIGN_OR_RETURN(auto start, bound(start_v, "slice start"));
  ITE_ASSIGN_OR_RETURN(auto stop, bound(stop_v, "slice stop"));
  ITE_ASSIGN_OR_RETURN(auto step_opt, bound(step_v, "slice step"));
  int64_t step = step_opt.value_or(1);
  if (step == 0) return InvalidArgument("slice step cannot be zero");

  std::u32string cps;
  int64_t n;
  if (obj.is_string()) {
    cps = DecodeUtf8(obj.as_string());
    n = static_cast<int64_t>(cps.size());
  } else if (obj.is_list()) {
    n = static_cast<int64_t>(obj.as_list().size());
  } else {
    return InvalidArgument("'{}' object is not subscriptable", TypeName(obj));
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](std::optional<int64_t> v, int64_t def_pos, int64_t def_neg) {
    if (!v) return step > 0 ? def_pos : def_neg;
    int64_t i = *v;
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  int64_t b = adjust(start, 0, n - 1);
  int64_t e = adjust(stop, n, -1);
  std::vector<int64_t> idx;
  if (step > 0) {
    for (int64_t i = b; i < e; i += step) idx.push_back(i);
  } else {
    for (int64_t i = b; i > e; i += step) idx.push_back(i);
  }
  if (obj.is_string()) {
    std::u32string out;
    for (int64_t i : idx) out.push_back(cps[static_cast<size_t>(i)]);
    return Value(EncodeUtf8(out));
  }
  Value::List out;
  for (int64_t i : idx) out.push_back(obj.as_list()[static_cast<size_t>(i)]);
  return Value::MakeList(std::move(out), obj.is_tuple());
}

namespace {

// jinja2's sandbox caps range() at this many items.
constexpr int64_t kMaxRange = 100000;

StatusOr<Value> Range(const CallArgs& args) {
  if (!args.kwargs.empty()) return InvalidArgument("range() takes no keyword arguments");
  if (args.args.empty() || args.args.size() > 3) {
    return InvalidArgument("range expected 1 to 3 arguments, got {}", args.args.size());
  }
  std::vector<int64_t> v;
  for (const auto& a : args.args) {
    ITE_ASSIGN_OR_RETURN(int64_t i, ToInt(a, "range() argument"));
    v.push_back(i);
  }
  int64_t start = v.size() == 1 ? 0 : v[0];
  int64_t stop = v.size() == 1 ? v[0] : v[1];
  int64_t step = v.size() == 3 ? v[2] : 1;
  if (step == 0) return InvalidArgument("range() arg 3 must not be zero");
  Value::List out;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    if (static_cast<int64_t>(out.size()) >= kMaxRange) {
      return InvalidArgument("range too big, max range is {}", kMaxRange);
    }
    out.emplace_back(i);
  }
  return Value::MakeList(std::move(out));
}

StatusOr<Value::Dict> DictFromArgs(const CallArgs& args, std::string_view fn) {
  Value::Dict d;
  auto put = [&d](const std::string& k, const Value& v) {
    for (auto& [key, value] : d) {
      if (key == k) {
        value = v;
        return;
      }
    }
    d.emplace_back(k, v);
  };
  if (args.args.size() > 1) return InvalidArgument("{} expected at most 1 argument", fn);
  if (args.args.size() == 1) {
    const Value& src = args.args[0];
    if (src.is_dict() || src.kind() == Value::Kind::kNamespace) {
      for (const auto& [k, v] : src.as_dict()) put(k, v);
    } else if (src.is_list()) {
      for (const auto& pair : src.as_list()) {
        if (!pair.is_list() || pair.as_list().size() != 2 || !pair.as_list()[0].is_string()) {
          return InvalidArgument("{}: each element must be a (str, value) pair", fn);
        }
        put(pair.as_list()[0].as_string(), pair.as_list()[1]);
      }
    } else {
      return InvalidArgument("{}: cannot convert '{}' to a dict", fn, TypeName(src));
    }
  }
  for (const auto& [k, v] : args.kwargs) put(k, v);
  return d;
}

}  // namespace

Value::Dict GlobalFunctions() {
  Value::Dict g;
  g.emplace_back("range", Value::MakeFunction("range", Range));
  g.emplace_back("dict", Value::MakeFunction("dict", [](const CallArgs& args) -> StatusOr<Value> {
                   ITE_ASSIGN_OR_RETURN(Value::Dict d, DictFromArgs(args, "dict"));
                   return Value::MakeDict(std::move(d));
                 }));
  g.emplace_back("namespace",
                 Value::MakeFunction("namespace", [](const CallArgs& args) -> StatusOr<Value> {
                   ITE_ASSIGN_OR_RETURN(Value::Dict d, DictFromArgs(args, "namespace"));
                   for (const auto& [k, v] : d) {
                     // transformers' TemplateNamespace rejects these (sandbox escape guard).
                     if (!k.empty() && k[0] == '_') {
                       return InvalidArgument(
                           "Chat templates cannot store underscore-prefixed attributes on a "
                           "namespace, but got '{}'",
                           k);
                     }
                   }
                   return Value::MakeNamespace(std::move(d));
                 }));
  g.emplace_back(
      "raise_exception",
      Value::MakeFunction("raise_exception", [](const CallArgs& args) -> StatusOr<Value> {
        ArgReader a(args, "raise_exception", {"message"});
        ITE_RETURN_IF_ERROR(a.Check());
        return InvalidArgument("{}", a.Get(0) ? PyStr(*a.Get(0)) : std::string());
      }));
  g.emplace_back("strftime_now",
                 Value::MakeFunction("strftime_now", [](const CallArgs& args) -> StatusOr<Value> {
                   ArgReader a(args, "strftime_now", {"format"});
                   ITE_RETURN_IF_ERROR(a.Check());
                   if (!a.Get(0) || !a.Get(0)->is_string()) {
                     return InvalidArgument("strftime_now() argument must be str");
                   }
                   std::time_t now = std::time(nullptr);
                   std::tm local{};
                   localtime_r(&now, &local);
                   const std::string& f = a.Get(0)->as_string();
                   if (f.empty()) return Value(std::string());
                   std::string buf(256 + f.size() * 8, '\0');
                   size_t n = std::strftime(buf.data(), buf.size(), f.c_str(), &local);
                   if (n == 0)
                     return InvalidArgument("strftime_now: format '{}' gave no output", f);
                   buf.resize(n);
                   return Value(buf);
                 }));
  return g;
}

}  // namespace ite::jinja
