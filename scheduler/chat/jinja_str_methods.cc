// Methods of str values (`content.startswith('x')`, `s.split()`, ...) with Python's semantics,
// indexing by code point as Python's str does.
#include <utf8proc.h>

#include <algorithm>

#include "scheduler/chat/jinja_builtins.h"

namespace ite::jinja {

std::string PyUpper(std::string_view s) {
  std::string out;
  for (char32_t cp : DecodeUtf8(s)) {
    AppendUtf8(out, static_cast<char32_t>(utf8proc_toupper(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

std::string PyLower(std::string_view s) {
  std::string out;
  for (char32_t cp : DecodeUtf8(s)) {
    AppendUtf8(out, static_cast<char32_t>(utf8proc_tolower(static_cast<utf8proc_int32_t>(cp))));
  }
  return out;
}

namespace {

bool IsCased(char32_t cp) {
  auto c = static_cast<utf8proc_int32_t>(cp);
  return utf8proc_toupper(c) != c || utf8proc_tolower(c) != c;
}

bool IsLineBreak(char32_t cp) {
  return cp == '\n' || cp == '\r' || cp == '\v' || cp == '\f' || cp == 0x1c || cp == 0x1d ||
         cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
}

}  // namespace

std::vector<std::string> PySplitLines(std::string_view s) {
  std::vector<std::string> lines;
  std::u32string cps = DecodeUtf8(s);
  size_t start = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!IsLineBreak(cps[i])) continue;
    lines.push_back(EncodeUtf8(std::u32string_view(cps).substr(start, i - start)));
    if (cps[i] == '\r' && i + 1 < cps.size() && cps[i + 1] == '\n') ++i;
    start = i + 1;
  }
  if (start < cps.size()) lines.push_back(EncodeUtf8(std::u32string_view(cps).substr(start)));
  return lines;
}

namespace {

// Python's str.split(sep, maxsplit) and rsplit.
StatusOr<Value> SplitString(const std::string& s, const Value* sep_v, const Value* max_v,
                            bool from_right) {
  int64_t maxsplit = -1;
  if (max_v) {
    ITE_ASSIGN_OR_RETURN(maxsplit, ToInt(*max_v, "maxsplit"));
  }
  Value::List parts;
  if (!sep_v || sep_v->is_none()) {
    // Runs of whitespace separate; leading/trailing whitespace yields no empty parts.
    std::u32string cps = DecodeUtf8(s);
    std::vector<std::pair<size_t, size_t>> words;
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && IsPySpace(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t b = i;
      while (i < cps.size() && !IsPySpace(cps[i])) ++i;
      words.emplace_back(b, i);
    }
    if (maxsplit >= 0 && static_cast<int64_t>(words.size()) > maxsplit + 1) {
      // Merge the surplus words (with their original spacing) into one end part.
      if (!from_right) {
        size_t keep = static_cast<size_t>(maxsplit);
        size_t rest_begin = words[keep].first;
        size_t rest_end = cps.size();
        while (rest_end > rest_begin && IsPySpace(cps[rest_end - 1])) --rest_end;
        words.resize(keep);
        words.emplace_back(rest_begin, rest_end);
      } else {
        size_t keep = static_cast<size_t>(maxsplit);
        size_t first_end = words[words.size() - keep - 1].second;
        size_t first_begin = 0;
        while (first_begin < first_end && IsPySpace(cps[first_begin])) ++first_begin;
        std::vector<std::pair<size_t, size_t>> merged{{first_begin, first_end}};
        merged.insert(merged.end(), words.end() - static_cast<ptrdiff_t>(keep), words.end());
        words = std::move(merged);
      }
    }
    for (auto [b, e] : words)
      parts.emplace_back(EncodeUtf8(std::u32string_view(cps).substr(b, e - b)));
    return Value::MakeList(std::move(parts));
  }
  if (!sep_v->is_string()) return InvalidArgument("must be str or None, not {}", TypeName(*sep_v));
  const std::string& sep = sep_v->as_string();
  if (sep.empty()) return InvalidArgument("empty separator");
  std::vector<std::string> pieces;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    if (p == std::string::npos) break;
    pieces.push_back(s.substr(start, p - start));
    start = p + sep.size();
  }
  pieces.push_back(s.substr(start));
  if (maxsplit >= 0 && static_cast<int64_t>(pieces.size()) > maxsplit + 1) {
    size_t keep = static_cast<size_t>(maxsplit);
    std::vector<std::string> merged;
    if (!from_right) {
      merged.assign(pieces.begin(), pieces.begin() + static_cast<ptrdiff_t>(keep));
      std::string rest = pieces[keep];
      for (size_t i = keep + 1; i < pieces.size(); ++i) rest += sep + pieces[i];
      merged.push_back(rest);
    } else {
      size_t head = pieces.size() - keep;
      std::string first = pieces[0];
      for (size_t i = 1; i < head; ++i) first += sep + pieces[i];
      merged.push_back(first);
      merged.insert(merged.end(), pieces.begin() + static_cast<ptrdiff_t>(head), pieces.end());
    }
    pieces = std::move(merged);
  }
  for (auto& p : pieces) parts.emplace_back(std::move(p));
  return Value::MakeList(std::move(parts));
}

StatusOr<bool> MatchAffix(const std::string& s, const Value& affix, bool prefix) {
  if (affix.is_list() && affix.is_tuple()) {
    for (const auto& a : affix.as_list()) {
      ITE_ASSIGN_OR_RETURN(bool m, MatchAffix(s, a, prefix));
      if (m) return true;
    }
    return false;
  }
  if (!affix.is_string()) {
    return InvalidArgument("{}with first arg must be str or a tuple of str, not {}",
                           prefix ? "starts" : "ends", TypeName(affix));
  }
  const std::string& a = affix.as_string();
  if (a.size() > s.size()) return false;
  return prefix ? s.compare(0, a.size(), a) == 0 : s.compare(s.size() - a.size(), a.size(), a) == 0;
}

std::string PyTitle(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (char32_t cp : DecodeUtf8(s)) {
    auto c = static_cast<utf8proc_int32_t>(cp);
    char32_t mapped = static_cast<char32_t>(prev_cased ? utf8proc_tolower(c) : utf8proc_totitle(c));
    AppendUtf8(out, mapped);
    prev_cased = IsCased(cp);
  }
  return out;
}

std::string PyCapitalize(std::string_view s) {
  std::u32string cps = DecodeUtf8(s);
  std::string out;
  for (size_t i = 0; i < cps.size(); ++i) {
    auto c = static_cast<utf8proc_int32_t>(cps[i]);
    AppendUtf8(out, static_cast<char32_t>(i == 0 ? utf8proc_totitle(c) : utf8proc_tolower(c)));
  }
  return out;
}

template <typename Pred>
Value AllChars(const std::string& s, Pred pred) {
  std::u32string cps = DecodeUtf8(s);
  if (cps.empty()) return Value(false);
  for (char32_t cp : cps) {
    if (!pred(utf8proc_category(static_cast<utf8proc_int32_t>(cp)), cp)) return Value(false);
  }
  return Value(true);
}

bool IsLetterCat(utf8proc_category_t c) {
  return c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT ||
         c == UTF8PROC_CATEGORY_LM || c == UTF8PROC_CATEGORY_LO;
}

// Index of a byte offset in code points.
int64_t CodePointIndex(const std::string& s, size_t byte_offset) {
  return static_cast<int64_t>(CodePointCount(std::string_view(s).substr(0, byte_offset)));
}

}  // namespace

StatusOr<Value> CallStrMethod(const std::string& s, std::string_view name, const CallArgs& args) {
  auto str_arg = [&](const Value* v, std::string_view what) -> StatusOr<std::string> {
    if (!v || !v->is_string()) {
      return InvalidArgument("str.{}() {} must be str, not {}", name, what,
                             v ? TypeName(*v) : "missing");
    }
    return v->as_string();
  };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ArgReader a(args, name, {"chars"});
    ITE_RETURN_IF_ERROR(a.Check());
    const Value* chars = a.Get(0);
    std::string chars_s;
    if (chars && !chars->is_none()) {
      ITE_ASSIGN_OR_RETURN(chars_s, str_arg(chars, "chars"));
    }
    bool has_chars = chars && !chars->is_none();
    return Value(PyStrip(s, has_chars ? &chars_s : nullptr, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    ArgReader a(args, name, {"sep", "maxsplit"});
    ITE_RETURN_IF_ERROR(a.Check());
    return SplitString(s, a.Get(0), a.Get(1), name == "rsplit");
  }
  if (name == "startswith" || name == "endswith") {
    ArgReader a(args, name, {"prefix"});
    ITE_RETURN_IF_ERROR(a.Check());
    if (!a.Get(0)) return InvalidArgument("{}() takes at least 1 argument", name);
    ITE_ASSIGN_OR_RETURN(bool m, MatchAffix(s, *a.Get(0), name == "startswith"));
    return Value(m);
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize" ||
      name == "isdigit" || name == "isalpha" || name == "isalnum" || name == "isspace" ||
      name == "isupper" || name == "islower" || name == "splitlines") {
    ArgReader a(args, name, {});
    ITE_RETURN_IF_ERROR(a.Check());
    if (name == "upper") return Value(PyUpper(s));
    if (name == "lower") return Value(PyLower(s));
    if (name == "title") return Value(PyTitle(s));
    if (name == "capitalize") return Value(PyCapitalize(s));
    if (name == "isdigit") {
      return AllChars(s, [](auto c, char32_t) { return c == UTF8PROC_CATEGORY_ND; });
    }
    if (name == "isalpha") return AllChars(s, [](auto c, char32_t) { return IsLetterCat(c); });
    if (name == "isalnum") {
      return AllChars(s, [](auto c, char32_t) {
        return IsLetterCat(c) || c == UTF8PROC_CATEGORY_ND || c == UTF8PROC_CATEGORY_NL ||
               c == UTF8PROC_CATEGORY_NO;
      });
    }
    if (name == "isspace") return AllChars(s, [](auto, char32_t cp) { return IsPySpace(cp); });
    if (name == "splitlines") {
      Value::List lines;
      for (auto& l : PySplitLines(s)) lines.emplace_back(std::move(l));
      return Value::MakeList(std::move(lines));
    }
    bool want_upper = name == "isupper";
    bool any_cased = false;
    for (char32_t cp : DecodeUtf8(s)) {
      auto c = static_cast<utf8proc_int32_t>(cp);
      if (!IsCased(cp)) continue;
      any_cased = true;
      bool is_upper = utf8proc_tolower(c) != c;
      if (is_upper != want_upper) return Value(false);
    }
    return Value(any_cased);
  }
  if (name == "replace") {
    ArgReader a(args, name, {"old", "new", "count"});
    ITE_RETURN_IF_ERROR(a.Check());
    ITE_ASSIGN_OR_RETURN(std::string old_s, str_arg(a.Get(0), "old"));
    ITE_ASSIGN_OR_RETURN(std::string new_s, str_arg(a.Get(1), "new"));
    int64_t count = -1;
    if (a.Get(2)) {
      ITE_ASSIGN_OR_RETURN(count, ToInt(*a.Get(2), "count"));
    }
    std::string out;
    if (old_s.empty()) {
      // Python inserts `new` before every character and at the end.
      std::u32string cps = DecodeUtf8(s);
      int64_t done = 0;
      for (char32_t cp : cps) {
        if (count < 0 || done < count) {
          out += new_s;
          ++done;
        }
        AppendUtf8(out, cp);
      }
      if (count < 0 || done < count) out += new_s;
      return Value(out);
    }
    size_t start = 0;
    int64_t done = 0;
    while (count < 0 || done < count) {
      size_t p = s.find(old_s, start);
      if (p == std::string::npos) break;
      out.append(s, start, p - start);
      out += new_s;
      start = p + old_s.size();
      ++done;
    }
    out.append(s, start, std::string::npos);
    return Value(out);
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "rindex" || name == "count") {
    ArgReader a(args, name, {"sub"});
    ITE_RETURN_IF_ERROR(a.Check());
    ITE_ASSIGN_OR_RETURN(std::string sub, str_arg(a.Get(0), "sub"));
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(CodePointCount(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    size_t p = name[0] == 'r' ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (name == "index" || name == "rindex") return InvalidArgument("substring not found");
      return Value(int64_t{-1});
    }
    return Value(CodePointIndex(s, p));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    ArgReader a(args, name, {"affix"});
    ITE_RETURN_IF_ERROR(a.Check());
    ITE_ASSIGN_OR_RETURN(std::string affix, str_arg(a.Get(0), "argument"));
    bool prefix = name == "removeprefix";
    ITE_ASSIGN_OR_RETURN(bool m, MatchAffix(s, Value(affix), prefix));
    if (!m) return Value(s);
    return Value(prefix ? s.substr(affix.size()) : s.substr(0, s.size() - affix.size()));
  }
  if (name == "join") {
    ArgReader a(args, name, {"iterable"});
    ITE_RETURN_IF_ERROR(a.Check());
    if (!a.Get(0)) return InvalidArgument("join() takes exactly one argument");
    ITE_ASSIGN_OR_RETURN(Value::List items, Iterate(*a.Get(0)));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return InvalidArgument("sequence item {}: expected str instance, {} found", i,
                               TypeName(items[i]));
      }
      if (i) out += s;
      out += items[i].as_string();
    }
    return Value(out);
  }
  return InvalidArgument("str has no supported method '{}'", name);
}

}  // namespace ite::jinja
