// Tokenizer for our Jinja2 subset. It follows jinja2's lexer (3.1) rule for rule, configured as
// transformers configures it: trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False.
// Whitespace control is resolved here: text tokens come out already trimmed, and comments are
// dropped, so the parser never sees `-`/`+` markers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ite::jinja {

struct Token {
  enum class Type {
    kText,        // literal template text
    kVarBegin,    // {{
    kVarEnd,      // }}
    kBlockBegin,  // {%
    kBlockEnd,    // %}
    kName,
    kString,   // value holds the unescaped string
    kInteger,  // value holds the digits (underscores removed)
    kFloat,
    kOperator,  // value holds the operator text, e.g. "==", "(", "|"
    kEnd,
  };
  Type type;
  std::string value;
  int line;
};

struct LexOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Errors name the line: "line 3: unexpected end of template (missing '%}')".
StatusOr<std::vector<Token>> Lex(std::string_view source, const LexOptions& options = {});

const char* TokenTypeName(Token::Type type);

}  // namespace ite::jinja
