// libFuzzer target: parse arbitrary bytes as a template and, when they parse, render them with a
// small conversation under tight limits. Every input must end in a Status, never a crash, hang
// or sanitizer report.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "scheduler/chat/jinja_parser.h"
#include "scheduler/chat/jinja_renderer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ite::jinja::Value;
  std::string_view source(reinterpret_cast<const char*>(data), size);
  auto program = ite::jinja::ParseTemplate(source);
  if (!program.ok()) return 0;
  Value::List messages{
      Value::MakeDict({{"role", Value("system")}, {"content", Value("Be brief.")}}),
      Value::MakeDict({{"role", Value("user")}, {"content", Value("Hi <b>\u00e9</b>")}}),
      Value::MakeDict(
          {{"role", Value("assistant")},
           {"content", Value("")},
           {"tool_calls", Value::MakeList({Value::MakeDict(
                              {{"name", Value("f")}, {"arguments", Value::MakeDict({})}})})}}),
  };
  Value::Dict vars{{"messages", Value::MakeList(std::move(messages))},
                   {"add_generation_prompt", Value(true)},
                   {"bos_token", Value("<s>")},
                   {"tools", Value::None()}};
  ite::jinja::RenderLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_steps = 200000;
  limits.max_call_depth = 16;
  auto out = ite::jinja::Render(**program, vars, limits);
  (void)out;
  return 0;
}
