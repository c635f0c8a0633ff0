// ite-tokenize: encode / decode with any tokenizer the service loads, line by line, for scripts
// and for comparing with Hugging Face `tokenizers`.
//
//   encode: stdin has one JSON string per line -> stdout one JSON array of ids per line.
//   --decode: stdin has one JSON array of ids per line -> stdout one JSON string per line.
// Special tokens written in the text are parsed as special (HF encode semantics); BOS/EOS are
// added only with --add-special-tokens. A bad line stops the run with a message naming the line
// and exit status 1; a tokenizer that fails to load gives exit status 2.
//   --chat-template FILE (tokenizer_config.json, .gguf or .jinja; no --tokenizer needed): stdin has
//   one JSON list of messages per line -> stdout the rendered prompt as one JSON string per line,
//   with add_generation_prompt=true. A line may also be an object {"messages": [...], ...} whose
//   other keys are template variables (tools, enable_thinking, add_generation_prompt, ...).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/cli_parse.h"
#include "scheduler/chat/chat_template.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace {

using nlohmann::json;

// Returns false (after printing why) when the line is not what the mode expects.
bool ProcessLine(const ite::Tokenizer& tok, const std::string& line, size_t line_no, bool decode,
                 bool add_special, bool skip_special, std::string& out) {
  json in = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded()) {
    std::cerr << "ite-tokenize: line " << line_no << ": not valid JSON\n";
    return false;
  }
  if (!decode) {
    if (!in.is_string()) {
      std::cerr << "ite-tokenize: line " << line_no << ": expected a JSON string\n";
      return false;
    }
    out = json(tok.Encode(in.get_ref<const std::string&>(), add_special)).dump();
    return true;
  }
  if (!in.is_array()) {
    std::cerr << "ite-tokenize: line " << line_no << ": expected a JSON array of ids\n";
    return false;
  }
  std::vector<int32_t> ids;
  ids.reserve(in.size());
  for (const json& v : in) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= tok.vocab_size()) {
      std::cerr << "ite-tokenize: line " << line_no << ": " << v.dump()
                << " is not a token id in [0, " << tok.vocab_size() << ")\n";
      return false;
    }
    ids.push_back(static_cast<int32_t>(v.get<int64_t>()));
  }
  out = json(tok.Decode(ids, skip_special)).dump(-1, ' ', false, json::error_handler_t::replace);
  return true;
}

// --chat-template mode. Key order is kept (ordered_json) because `tojson` output depends on it.
int RenderChatLines(const std::string& template_path) {
  using OJson = nlohmann::ordered_json;
  auto tmpl = ite::ChatTemplate::FromFile(template_path);
  if (!tmpl.ok()) {
    std::cerr << "ite-tokenize: " << tmpl.status().ToString() << "\n";
    return 2;
  }
  std::string line;
  size_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    OJson in = OJson::parse(line, nullptr, /*allow_exceptions=*/false);
    OJson messages = in;
    OJson extra = OJson::object();
    bool add_generation_prompt = true;
    if (in.is_object()) {
      messages = in.contains("messages") ? in["messages"] : OJson();
      for (auto it = in.begin(); it != in.end(); ++it) {
        if (it.key() == "add_generation_prompt" && it->is_boolean()) {
          add_generation_prompt = it->get<bool>();
        } else if (it.key() != "messages") {
          extra[it.key()] = *it;
        }
      }
    }
    if (in.is_discarded() || !messages.is_array()) {
      std::cerr << "ite-tokenize: line " << line_no
                << ": expected a JSON list of messages (or an object with \"messages\")\n";
      return 1;
    }
    auto text = tmpl->Render(messages, add_generation_prompt, extra);
    if (!text.ok()) {
      std::cerr << "ite-tokenize: line " << line_no << ": " << text.status().message() << "\n";
      return 1;
    }
    std::cout << json(*text).dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  std::cout.flush();
  return std::cout.good() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Encode JSON strings to token ids (or decode ids) one line at a time"};
  std::string tokenizer_path;
  bool add_special = false;
  bool decode = false;
  bool skip_special = false;
  std::string chat_template;
  app.add_option("--tokenizer", tokenizer_path,
                 "tokenizer.json, tokenizer.model, a .gguf, or a HF model folder");
  app.add_flag("--add-special-tokens", add_special,
               "add BOS/EOS as the tokenizer's post-processor / config says");
  app.add_flag("--decode", decode, "read JSON arrays of ids, write JSON strings");
  app.add_flag("--skip-special-tokens", skip_special, "with --decode: leave special tokens out");
  app.add_option("--chat-template", chat_template,
                 "render chat templates instead: tokenizer_config.json, .gguf or .jinja");
  app.footer(
      "Input and output, one item per line:\n"
      "  encode (default): stdin one JSON string per line (\"Hello\\nworld\") -> stdout one\n"
      "    JSON array of ids per line ([9906, 198, 14957]). Special tokens written in the text\n"
      "    are parsed as special; BOS/EOS are added only with --add-special-tokens.\n"
      "  --decode: stdin one JSON array of ids per line -> stdout one JSON string per line.\n"
      "  --chat-template FILE: stdin one JSON list of messages per line\n"
      "    ([{\"role\": \"user\", \"content\": \"Hi\"}]), or an object {\"messages\": [...], ...}\n"
      "    whose other keys are template variables -> stdout the rendered prompt as one JSON\n"
      "    string per line (add_generation_prompt=true).\n"
      "Exit codes: 0 ok, 1 a bad input line (the message names it), 2 usage error or a\n"
      "tokenizer that cannot be loaded.");
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  if (!chat_template.empty()) return RenderChatLines(chat_template);
  if (tokenizer_path.empty()) {
    std::cerr << "ite-tokenize: --tokenizer is required (unless --chat-template is given)\n";
    return 2;
  }

  auto tok = ite::Tokenizer::FromFile(tokenizer_path);
  if (!tok.ok()) {
    std::cerr << "ite-tokenize: " << tok.status().ToString() << "\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  std::string line;
  std::string out;
  size_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (!ProcessLine(**tok, line, line_no, decode, add_special, skip_special, out)) return 1;
    std::cout << out << '\n';
  }
  std::cout.flush();
  return std::cout.good() ? 0 : 1;
}
