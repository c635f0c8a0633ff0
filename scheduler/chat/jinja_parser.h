// Recursive-descent parser for our Jinja2 subset, following jinja2's grammar and operator
// precedence (jinja2/parser.py), so expressions group exactly as they do in Python.
#pragma once

#include <memory>
#include <string_view>

#include "common/status.h"
#include "scheduler/chat/jinja_ast.h"
#include "scheduler/chat/jinja_lexer.h"

namespace ite::jinja {

// Lexes and parses a template. Malformed templates (unclosed tags or blocks, unknown tags,
// bad expressions) give an InvalidArgument naming the line; never a crash, whatever the input.
StatusOr<std::unique_ptr<Program>> ParseTemplate(std::string_view source,
                                                 const LexOptions& options = {});

}  // namespace ite::jinja
