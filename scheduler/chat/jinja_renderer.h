// Evaluates a parsed template against variables, with jinja2's scoping (a `for` body gets a new
// scope per iteration; `if` does not; macros see the template's top-level scope) and transformers'
// globals (raise_exception, strftime_now, namespace, dict, range).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"
#include "scheduler/chat/jinja_ast.h"
#include "scheduler/chat/jinja_value.h"

namespace ite::jinja {

// Bounds that keep a hostile template from exhausting memory or time.
struct RenderLimits {
  size_t max_output_bytes = 64u << 20;
  int64_t max_steps = 20'000'000;  // statements executed + loop iterations
  int max_call_depth = 64;         // nested macro calls
};

// Renders `program`. `variables` shadow the globals. Errors (raise_exception, undefined
// attribute access, type errors) come back as InvalidArgument with jinja2's message.
StatusOr<std::string> Render(const Program& program, const Value::Dict& variables,
                             const RenderLimits& limits = {});

}  // namespace ite::jinja
