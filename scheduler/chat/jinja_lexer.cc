#include "scheduler/chat/jinja_lexer.h"

#include <cctype>

#include "scheduler/chat/jinja_value.h"

namespace ite::jinja {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsNameChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Byte length of the Python-whitespace character at s[pos] (0 if none): tags and `-` trimming
// use Python's \s, which includes Unicode spaces.
size_t SpaceLen(std::string_view s, size_t pos) {
  if (pos >= s.size()) return 0;
  unsigned char c = static_cast<unsigned char>(s[pos]);
  if (c < 0x80) return IsPySpace(c) ? 1 : 0;
  size_t n = (c >= 0xF0) ? 4 : (c >= 0xE0) ? 3 : (c >= 0xC0) ? 2 : 1;
  if (pos + n > s.size()) return 0;
  std::u32string cp = DecodeUtf8(s.substr(pos, n));
  return cp.size() == 1 && IsPySpace(cp[0]) ? n : 0;
}

size_t SkipSpaces(std::string_view s, size_t pos) {
  while (size_t n = SpaceLen(s, pos)) pos += n;
  return pos;
}

// True if s[from, to) is one or more whitespace characters (jinja2: \s+ fullmatch).
bool AllSpaces(std::string_view s, size_t from, size_t to) {
  return from < to && SkipSpaces(s.substr(0, to), from) == to;
}

std::string RStripSpaces(std::string_view text) {
  size_t end = text.size();
  // Walk back over whole characters: find the start of each trailing character.
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) --start;
    if (SpaceLen(text, start) != end - start) break;
    end = start;
  }
  return std::string(text.substr(0, end));
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Python's "unicode-escape" decoding, which jinja2 applies to string literals.
StatusOr<std::string> Unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out.push_back(c);
      continue;
    }
    char e = body[++i];
    switch (e) {
      case '\n':
        break;  // line continuation
      case '\\':
        out.push_back('\\');
        break;
      case '\'':
        out.push_back('\'');
        break;
      case '"':
        out.push_back('"');
        break;
      case 'a':
        out.push_back('\a');
        break;
      case 'b':
        out.push_back('\b');
        break;
      case 'f':
        out.push_back('\f');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      case 't':
        out.push_back('\t');
        break;
      case 'v':
        out.push_back('\v');
        break;
      case 'x':
      case 'u':
      case 'U': {
        size_t digits = e == 'x' ? 2 : (e == 'u' ? 4 : 8);
        uint32_t cp = 0;
        for (size_t k = 0; k < digits; ++k) {
          int h = i + 1 + k < body.size() ? HexValue(body[i + 1 + k]) : -1;
          if (h < 0) return InvalidArgument("line {}: truncated \\{} escape in string", line, e);
          cp = cp * 16 + static_cast<uint32_t>(h);
        }
        if (cp > 0x10FFFF) return InvalidArgument("line {}: invalid \\U escape in string", line);
        i += digits;
        AppendUtf8(out, static_cast<char32_t>(cp));
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t cp = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            cp = cp * 8 + static_cast<uint32_t>(body[++i] - '0');
          }
          AppendUtf8(out, static_cast<char32_t>(cp));
        } else {
          // Unknown escapes keep their backslash, as in Python.
          out.push_back('\\');
          out.push_back(e);
        }
    }
  }
  return out;
}

// Length of a jinja2 float literal at s[pos] (0 if none). Grammar:
// digits ( (.digits)? e[+-]?digits | .digits ), digits = (\d+_)*\d+, case-insensitive 'e'.
size_t MatchDigits(std::string_view s, size_t pos) {
  size_t p = pos;
  if (p >= s.size() || !IsDigit(s[p])) return 0;
  while (true) {
    while (p < s.size() && IsDigit(s[p])) ++p;
    if (p + 1 < s.size() && s[p] == '_' && IsDigit(s[p + 1])) {
      ++p;
      continue;
    }
    return p - pos;
  }
}

size_t MatchFloat(std::string_view s, size_t pos) {
  if (pos > 0 && s[pos - 1] == '.') return 0;
  size_t p = pos + MatchDigits(s, pos);
  if (p == pos) return 0;
  auto match_exp = [&](size_t q) -> size_t {
    if (q < s.size() && (s[q] == 'e' || s[q] == 'E')) {
      ++q;
      if (q < s.size() && (s[q] == '+' || s[q] == '-')) ++q;
      size_t d = MatchDigits(s, q);
      if (d) return q + d;
    }
    return 0;
  };
  if (p < s.size() && s[p] == '.') {
    size_t frac = MatchDigits(s, p + 1);
    if (frac) {
      size_t q = p + 1 + frac;
      size_t with_exp = match_exp(q);
      return (with_exp ? with_exp : q) - pos;
    }
  }
  size_t with_exp = match_exp(p);
  return with_exp ? with_exp - pos : 0;
}

// jinja2: [1-9](_?\d)* | 0(_?0)*
size_t MatchInteger(std::string_view s, size_t pos) {
  if (pos >= s.size() || !IsDigit(s[pos])) return 0;
  char want_zero = s[pos] == '0';
  size_t p = pos + 1;
  while (p < s.size()) {
    size_t q = p;
    if (s[q] == '_') ++q;
    if (q < s.size() && IsDigit(s[q]) && (!want_zero || s[q] == '0')) {
      p = q + 1;
    } else {
      break;
    }
  }
  return p - pos;
}

std::string StripUnderscores(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '_') out.push_back(c);
  }
  return out;
}

class Lexer {
 public:
  Lexer(std::string source, const LexOptions& options) : s_(std::move(source)), options_(options) {}

  StatusOr<std::vector<Token>> Run() {
    while (pos_ < s_.size()) {
      size_t q = FindTagStart(pos_);
      if (q == std::string::npos) {
        Emit(Token::Type::kText, s_.substr(pos_));
        Advance(s_.size());
        break;
      }
      char kind = s_[q + 1];
      size_t after = q + 2;
      char sign = after < s_.size() && (s_[after] == '-' || s_[after] == '+') ? s_[after] : 0;
      size_t raw_body = kind == '%' ? MatchRawBegin(q) : 0;
      EmitLeadingText(q, sign, kind != '{');
      Advance(q);
      if (raw_body) {
        ITE_RETURN_IF_ERROR(LexRaw(raw_body));
      } else if (kind == '#') {
        ITE_RETURN_IF_ERROR(LexComment(after + (sign ? 1 : 0)));
      } else {
        ITE_RETURN_IF_ERROR(LexTag(kind, q, after + (sign ? 1 : 0)));
      }
    }
    tokens_.push_back(Token{Token::Type::kEnd, "", line_});
    return std::move(tokens_);
  }

 private:
  size_t FindTagStart(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) {
        return i;
      }
    }
    return std::string::npos;
  }

  void Advance(size_t to) {
    for (size_t i = pos_; i < to; ++i) {
      if (s_[i] == '\n') ++line_;
    }
    pos_ = to;
    line_starting_ = to > 0 && s_[to - 1] == '\n';
  }

  void Emit(Token::Type type, std::string value) {
    if (type == Token::Type::kText && value.empty()) return;
    tokens_.push_back(Token{type, std::move(value), line_});
  }

  // jinja2's OptionalLStrip: `-` strips all whitespace before the tag; otherwise lstrip_blocks
  // removes spaces between a line start and a block or comment tag.
  void EmitLeadingText(size_t tag_pos, char sign, bool lstrip_applies) {
    std::string text = s_.substr(pos_, tag_pos - pos_);
    if (sign == '-') {
      text = RStripSpaces(text);
    } else if (sign != '+' && options_.lstrip_blocks && lstrip_applies) {
      size_t nl = text.rfind('\n');
      size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
      if ((l_pos > 0 || line_starting_) && AllSpaces(text, l_pos, text.size())) {
        text.resize(l_pos);
      }
    }
    Emit(Token::Type::kText, std::move(text));
  }

  // {%[-+]?\s*raw\s*(-%}\s*|%}) at q; returns the offset just past it or 0.
  size_t MatchRawBegin(size_t q) const {
    size_t p = q + 2;
    if (p < s_.size() && (s_[p] == '-' || s_[p] == '+')) ++p;
    p = SkipSpaces(s_, p);
    if (s_.compare(p, 3, "raw") != 0) return 0;
    p = SkipSpaces(s_, p + 3);
    if (s_.compare(p, 3, "-%}") == 0) return SkipSpaces(s_, p + 3);
    if (s_.compare(p, 2, "%}") == 0) return p + 2;
    return 0;
  }

  // Block end at p: returns the offset past it (with trimming) or 0.
  size_t MatchBlockEnd(size_t p) const {
    if (s_.compare(p, 3, "+%}") == 0) return p + 3;
    if (s_.compare(p, 3, "-%}") == 0) return SkipSpaces(s_, p + 3);
    if (s_.compare(p, 2, "%}") == 0) {
      return p + 2 + (options_.trim_blocks && p + 2 < s_.size() && s_[p + 2] == '\n' ? 1 : 0);
    }
    return 0;
  }

  Status LexRaw(size_t body) {
    Advance(body);
    for (size_t q = s_.find("{%", body); q != std::string::npos; q = s_.find("{%", q + 1)) {
      size_t p = q + 2;
      char sign = p < s_.size() && (s_[p] == '-' || s_[p] == '+') ? s_[p] : 0;
      if (sign) ++p;
      p = SkipSpaces(s_, p);
      if (s_.compare(p, 6, "endraw") != 0) continue;
      size_t end = MatchBlockEnd(SkipSpaces(s_, p + 6));
      if (!end) continue;
      EmitLeadingText(q, sign, true);
      Advance(end);
      return Status::Ok();
    }
    return InvalidArgument("line {}: missing end of raw directive", line_);
  }

  Status LexComment(size_t body) {
    int start_line = line_;
    for (size_t p = body; p + 1 < s_.size(); ++p) {
      size_t end = 0;
      if (s_.compare(p, 3, "+#}") == 0) {
        end = p + 3;
      } else if (s_.compare(p, 3, "-#}") == 0) {
        end = SkipSpaces(s_, p + 3);
      } else if (s_.compare(p, 2, "#}") == 0) {
        end = p + 2 + (options_.trim_blocks && p + 2 < s_.size() && s_[p + 2] == '\n' ? 1 : 0);
      }
      if (end) {
        Advance(end);
        return Status::Ok();
      }
    }
    return InvalidArgument("line {}: missing end of comment tag", start_line);
  }

  Status LexTag(char kind, size_t q, size_t body) {
    bool block = kind == '%';
    Emit(block ? Token::Type::kBlockBegin : Token::Type::kVarBegin, block ? "{%" : "{{");
    Advance(body);
    std::vector<char> balance;
    while (pos_ < s_.size()) {
      size_t p = pos_;
      if (balance.empty()) {
        size_t end = 0;
        if (block) {
          end = MatchBlockEnd(p);
        } else if (s_.compare(p, 3, "-}}") == 0) {
          end = SkipSpaces(s_, p + 3);
        } else if (s_.compare(p, 2, "}}") == 0) {
          end = p + 2;
        }
        if (end) {
          Emit(block ? Token::Type::kBlockEnd : Token::Type::kVarEnd, block ? "%}" : "}}");
          Advance(end);
          return Status::Ok();
        }
      }
      if (size_t n = SpaceLen(s_, p)) {
        Advance(SkipSpaces(s_, p + n));
        continue;
      }
      if (size_t n = MatchFloat(s_, p)) {
        Emit(Token::Type::kFloat, StripUnderscores(s_.substr(p, n)));
        Advance(p + n);
        continue;
      }
      if (size_t n = MatchInteger(s_, p)) {
        Emit(Token::Type::kInteger, StripUnderscores(s_.substr(p, n)));
        Advance(p + n);
        continue;
      }
      if (IsNameStart(s_[p])) {
        size_t e = p + 1;
        while (e < s_.size() && IsNameChar(s_[e])) ++e;
        Emit(Token::Type::kName, s_.substr(p, e - p));
        Advance(e);
        continue;
      }
      if (s_[p] == '\'' || s_[p] == '"') {
        size_t e = p + 1;
        while (e < s_.size() && s_[e] != s_[p]) e += s_[e] == '\\' ? 2 : 1;
        if (e < s_.size()) {
          ITE_ASSIGN_OR_RETURN(std::string value,
                               Unescape(std::string_view(s_).substr(p + 1, e - p - 1), line_));
          Emit(Token::Type::kString, std::move(value));
          Advance(e + 1);
          continue;
        }
        // An unterminated string falls through to the "unexpected char" error, as in jinja2.
      }
      static constexpr std::string_view kTwoChar[] = {"//", "**", "==", "!=", ">=", "<="};
      std::string op;
      for (auto two : kTwoChar) {
        if (s_.compare(p, 2, two) == 0) op = std::string(two);
      }
      if (op.empty() &&
          std::string_view("+-/*%~[](){}=.:|,;<>").find(s_[p]) != std::string_view::npos) {
        op = std::string(1, s_[p]);
      }
      if (op.empty()) {
        return InvalidArgument("line {}: unexpected char '{}' in tag", line_, s_[p]);
      }
      if (op == "(" || op == "[" || op == "{") {
        balance.push_back(op == "(" ? ')' : (op == "[" ? ']' : '}'));
      } else if (op == ")" || op == "]" || op == "}") {
        if (balance.empty()) return InvalidArgument("line {}: unexpected '{}'", line_, op);
        if (balance.back() != op[0]) {
          return InvalidArgument("line {}: unexpected '{}', expected '{}'", line_, op,
                                 balance.back());
        }
        balance.pop_back();
      }
      Emit(Token::Type::kOperator, op);
      Advance(p + op.size());
    }
    return InvalidArgument(
        "line {}: unexpected end of template, missing '{}' for the tag opened "
        "at offset {}",
        line_, block ? "%}" : "}}", q);
  }

  std::string s_;
  LexOptions options_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

// jinja2 normalizes every newline sequence to "\n" and drops one trailing newline
// (keep_trailing_newline=False).
std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

StatusOr<std::vector<Token>> Lex(std::string_view source, const LexOptions& options) {
  return Lexer(NormalizeNewlines(source), options).Run();
}

const char* TokenTypeName(Token::Type type) {
  switch (type) {
    case Token::Type::kText:
      return "text";
    case Token::Type::kVarBegin:
      return "'{{'";
    case Token::Type::kVarEnd:
      return "'}}'";
    case Token::Type::kBlockBegin:
      return "'{%'";
    case Token::Type::kBlockEnd:
      return "'%}'";
    case Token::Type::kName:
      return "name";
    case Token::Type::kString:
      return "string";
    case Token::Type::kInteger:
      return "integer";
    case Token::Type::kFloat:
      return "float";
    case Token::Type::kOperator:
      return "operator";
    case Token::Type::kEnd:
      return "end of template";
  }
  return "token";
}

}  // namespace ite::jinja
