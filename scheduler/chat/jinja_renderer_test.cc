#include "scheduler/chat/jinja_renderer.h"

#include <gtest/gtest.h>

#include "scheduler/chat/jinja_parser.h"

namespace ite::jinja {
namespace {

StatusOr<std::string> RenderWith(std::string_view source, const nlohmann::ordered_json& vars) {
  ITE_ASSIGN_OR_RETURN(auto program, ParseTemplate(source));
  Value::Dict dict;
  for (auto it = vars.begin(); it != vars.end(); ++it) {
    dict.emplace_back(it.key(), Value::FromJson(*it));
  }
  return Render(*program, dict);
}

std::string R(std::string_view source,
              const nlohmann::ordered_json& vars = nlohmann::ordered_json::object()) {
  auto out = RenderWith(source, vars);
  return out.ok() ? *out : "ERROR: " + out.status().message();
}

// Expected values below are what Python jinja2 3.1 prints for the same input (checked by hand
// with ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)).
TEST(JinjaRendererTest, PrintsValuesLikePython) {
  EXPECT_EQ(R("{{ [1, 'a', {'b': none, 'c': 1.5}] }}"), "[1, 'a', {'b': None, 'c': 1.5}]");
  EXPECT_EQ(R("{{ 1e20 }} {{ 1/3 }} {{ 4/2 }} {{ 0.1 + 0.2 }} {{ 1e-5 }}"),
            "1e+20 0.3333333333333333 2.0 0.30000000000000004 1e-05");
  EXPECT_EQ(R("{{ true }} {{ none }} {{ undefined_name }}|{{ (1,) }}"), "True None |(1,)");
  EXPECT_EQ(R("{{ \"it's\" ~ [\"it's\"] }}"), "it's[\"it's\"]");
}

TEST(JinjaRendererTest, ArithmeticFollowsPython) {
  EXPECT_EQ(R("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 'ab' * 2 }}"),
            "3 -4 2 3.5 1024 abab");
  EXPECT_EQ(R("{{ 'a' + 1 }}"), "ERROR: can only concatenate str (not \"int\") to str");
  EXPECT_EQ(R("{{ 1 / 0 }}"), "ERROR: division by zero");
  EXPECT_EQ(R("{{ [1] + [2] }}"), "[1, 2]");
}

TEST(JinjaRendererTest, UndefinedBehavesLikeJinja2Default) {
  EXPECT_EQ(R("[{{ x }}][{{ x|length }}][{{ x is defined }}][{{ x|default('d') }}]"),
            "[][0][False][d]");
  EXPECT_EQ(R("{% for a in x %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(R("{{ x.y }}"), "ERROR: 'x' is undefined");
  EXPECT_EQ(R("{{ d.missing.y }}", {{"d", nlohmann::ordered_json::object()}}),
            "ERROR: 'dict object' has no attribute 'missing'");
  EXPECT_EQ(R("{{ d.missing is defined }}", {{"d", nlohmann::ordered_json::object()}}), "False");
  EXPECT_EQ(R("{{ x + 1 }}"), "ERROR: 'x' is undefined");
  EXPECT_EQ(R("{{ none.x }}|{{ 'abc'[5] }}"), "|");
}

TEST(JinjaRendererTest, LoopVariablesAndScoping) {
  EXPECT_EQ(R("{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}"
              "{{ loop.last }}{{ loop.length }};{% endfor %}"),
            "10TrueFalse3;21FalseFalse3;32FalseTrue3;");
  // A fresh scope per iteration: outer x is seen again in the second iteration.
  EXPECT_EQ(R("{% set x = 1 %}{% for i in [1,2] %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}"
              "{{ x }}"),
            "12121");
  EXPECT_EQ(R("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}"
              "{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(R("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}"), "2242");
  EXPECT_EQ(R("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}"
              "{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "02");
  EXPECT_EQ(R("{% for k, v in {'a': 1, 'b': 2}|items %}{{ k }}={{ v }},{% endfor %}"), "a=1,b=2,");
}

TEST(JinjaRendererTest, FiltersAndMethods) {
  EXPECT_EQ(R("{{ '  hi  '|trim }}|{{ 'a,b'.split(',') }}|{{ 'xAx'.strip('x') }}"),
            "hi|['a', 'b']|A");
  EXPECT_EQ(R("{{ 'héllo'|length }}{{ 'héllo'[::-1] }}{{ 'héllo'|upper }}"), "5olléhHÉLLO");
  EXPECT_EQ(R("{{ [3,1,2]|sort|join('-') }}|{{ [1,2]|map('string')|list }}|{{ []|first }}"),
            "1-2-3|['1', '2']|");
  EXPECT_EQ(R("{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}",
              {{"msgs",
                {{{"role", "user"}, {"c", "A"}},
                 {{"role", "x"}, {"c", "B"}},
                 {{"role", "user"}, {"c", "C"}}}}}),
            "AC");
  EXPECT_EQ(R("{{ 'a\\nb'|indent(2, true) }}"), "  a\n  b");
  EXPECT_EQ(R("{{ 2.5|round }} {{ 2.567|round(2) }} {{ '3'|int + 1 }} {{ 'x'|int }}"),
            "2.0 2.57 4 0");
  EXPECT_EQ(R("{% if true %}{{ x|unknown_filter }}{% endif %}"),
            "ERROR: No filter named 'unknown_filter'.");
  EXPECT_EQ(R("{{ 'x'|truncate }}"), "ERROR: filter 'truncate' is not supported");
}

TEST(JinjaRendererTest, TojsonMatchesTransformers) {
  nlohmann::ordered_json tool = {{"name", "get_weather"},
                                 {"params", {{"z", 1}, {"a", {1.5, true, nullptr}}}},
                                 {"text", "<b>é\"\n"}};
  EXPECT_EQ(R("{{ t|tojson }}", {{"t", tool}}),
            "{\"name\": \"get_weather\", \"params\": {\"z\": 1, \"a\": [1.5, true, null]}, "
            "\"text\": \"<b>é\\\"\\n\"}");
  EXPECT_EQ(R("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}"),
            "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
  EXPECT_EQ(R("{{ {'b': 1, 'a': 'é'}|tojson(sort_keys=true, ensure_ascii=true) }}"),
            "{\"a\": \"\\u00e9\", \"b\": 1}");
  EXPECT_EQ(R("{{ x|tojson }}"), "ERROR: Object of type Undefined is not JSON serializable");
}

TEST(JinjaRendererTest, GlobalsAndMacros) {
  EXPECT_EQ(R("{{ raise_exception('bad role') }}"), "ERROR: bad role");
  EXPECT_EQ(R("{% macro greet(name, p='Hi') %}{{ p }} {{ name }}{% endmacro %}"
              "{{ greet('A') }}/{{ greet('B', p='Yo') }}"),
            "Hi A/Yo B");
  EXPECT_EQ(R("{{ range(3)|list }}{{ dict(a=1) }}"), "[0, 1, 2]{'a': 1}");
  // Top-level names are read when the macro runs; loop variables when it was defined.
  EXPECT_EQ(R("{% set a = 1 %}{% macro f() %}{{ a }}{% endmacro %}{% set a = 2 %}{{ f() }}"), "2");
  EXPECT_EQ(R("{% for i in [1,2] %}{% set c = i %}{% macro g() %}{{ c }}{{ i }}{% endmacro %}"
              "{{ g() }}{% endfor %}"),
            "1122");
  EXPECT_EQ(R("{% macro f(a, b) %}{{ a }}|{{ b }}|{{ b is defined }}{% endmacro %}{{ f(1) }}"),
            "1||False");
  auto year = RenderWith("{{ strftime_now('%Y') }}", nlohmann::ordered_json::object());
  ASSERT_TRUE(year.ok());
  EXPECT_EQ(year->size(), 4u);
  EXPECT_EQ(R("{% set ns = namespace(_x=1) %}").rfind("ERROR: Chat templates cannot store", 0), 0u);
}

TEST(JinjaRendererTest, LimitsStopRunawayTemplates) {
  auto program = ParseTemplate(
      "{% for a in range(100000) %}{% for b in range(100000) %}"
      "{% endfor %}{% endfor %}");
  ASSERT_TRUE(program.ok());
  RenderLimits limits;
  limits.max_steps = 100000;
  auto out = Render(**program, {}, limits);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);

  auto recursive = ParseTemplate("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}");
  ASSERT_TRUE(recursive.ok());
  EXPECT_FALSE(Render(**recursive, {}).ok());
}

}  // namespace
}  // namespace ite::jinja
