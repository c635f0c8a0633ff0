// ite_chat_render: renders chat-template cases for the jinja2 comparison test.
//
//   ite_chat_render CASES.json       -> one JSON object per case and line:
//                                       {"ok": true, "text": "..."} or {"ok": false, "error":
//                                       "..."}
//   ite_chat_render --dump FILE      -> {"source": "...", "special_tokens": {...}}
//
// A case: {"template": FILE (.gguf, tokenizer_config.json, .jinja), "messages": [...],
//          "add_generation_prompt": bool, "extra": {...}}. Inputs keep their key order.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "scheduler/chat/chat_template.h"

namespace {

using Json = nlohmann::ordered_json;

int Fail(const std::string& message) {
  std::fprintf(stderr, "ite_chat_render: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--dump") {
    auto tmpl = ite::ChatTemplate::FromFile(argv[2]);
    if (!tmpl.ok()) return Fail(tmpl.status().ToString());
    Json out = {{"source", tmpl->source()}, {"special_tokens", Json::object()}};
    for (const auto& [k, v] : tmpl->special_tokens()) out["special_tokens"][k] = v;
    std::cout << out.dump() << "\n";
    return 0;
  }
  if (argc != 2) return Fail("usage: ite_chat_render CASES.json | --dump TEMPLATE_FILE");
  std::ifstream in(argv[1]);
  if (!in) return Fail(std::string("cannot open ") + argv[1]);
  std::stringstream ss;
  ss << in.rdbuf();
  Json cases = Json::parse(ss.str(), nullptr, false);
  if (cases.is_discarded() || !cases.is_array()) return Fail("cases file is not a JSON array");
  std::map<std::string, ite::ChatTemplate> templates;
  for (const auto& c : cases) {
    Json result;
    std::string file = c.value("template", "");
    auto it = templates.find(file);
    if (it == templates.end()) {
      auto loaded = ite::ChatTemplate::FromFile(file);
      if (!loaded.ok()) return Fail(loaded.status().ToString());
      it = templates.emplace(file, std::move(loaded).value()).first;
    }
    Json extra = c.contains("extra") ? c["extra"] : Json::object();
    auto text = it->second.Render(c.contains("messages") ? c["messages"] : Json(),
                                  c.value("add_generation_prompt", false), extra);
    if (text.ok()) {
      result = {{"ok", true}, {"text", *text}};
    } else {
      result = {{"ok", false}, {"error", text.status().message()}};
    }
    // Invalid UTF-8 can't appear: inputs are parsed JSON and templates are checked text.
    std::cout << result.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
  }
  return 0;
}
