// ite-client: command-line client of the ite.v1.Generation service.
//   ite-client generate --addr HOST:PORT --prompt TEXT|- | --prompt-file FILE|- [...]
//   ite-client chat --addr HOST:PORT [...]      interactive chat with line editing, keeps history
//   ite-client bench --addr HOST:PORT [...]     serving benchmark (gRPC)
//   ite-client bench --api openai --url http://HOST:PORT [...]   the same through OpenAI HTTP
//   ite-client info | stats | tokenize | health  ask the server about itself
// stdout carries only generated text (generate, chat) or the result (bench, info, ...);
// diagnostics go to stderr. Exit codes: see kExitHelp.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "clients/client_admin.h"
#include "clients/client_bench.h"
#include "clients/client_common.h"
#include "clients/client_generate.h"
#include "common/cli_parse.h"

namespace ite::client {
namespace {

// --prompt TEXT|- and --prompt-file FILE|-: exactly one of them.
void AddPromptFlags(CLI::App* cmd, GenerateOptions* o) {
  auto* text = cmd->add_option("--prompt", o->prompt, "prompt text ('-': read it from stdin)");
  auto* file = cmd->add_option("--prompt-file", o->prompt_file,
                               "read the prompt from this file ('-': stdin)");
  text->excludes(file);
  file->excludes(text);
  cmd->callback([cmd, text, file] {
    if (text->count() == 0 && file->count() == 0) {
      throw CLI::RequiredError(cmd->get_name() + ": --prompt or --prompt-file");
    }
  });
}

// --chat and --system (which needs --chat: a raw prompt has nowhere to put a system message).
void AddChatFlags(CLI::App* cmd, GenerateOptions* o) {
  auto* chat =
      cmd->add_flag("--chat", o->chat, "send the prompt as a user message (chat template)");
  cmd->add_option("--system", o->system, "system message (with --chat)")->needs(chat);
}

void AddBenchFlags(CLI::App* bench, BenchOptions* o) {
  AddConnectionFlags(bench, &o->addr, &o->connect_timeout_ms);
  bench->add_option("--requests", o->requests, "number of requests")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* conc = bench
                   ->add_option("--concurrency", o->concurrency,
                                "closed loop: requests in flight (default: all at once)")
                   ->check(CLI::PositiveNumber);
  bench->add_option("--rate", o->rate, "open loop: Poisson arrivals, requests/s")
      ->check(CLI::PositiveNumber)
      ->excludes(conc);
  bench->add_option("--input-len", o->input_len, "prompt tokens (random ids)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--output-len", o->output_len, "new tokens per request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--prompts-file", o->prompts_file, "text prompts, one per line");
  bench->add_option("--json", o->json_path, "write results as JSON to this file");
  bench->add_option("--seed", o->seed, "seed of prompts, arrivals and sampling")
      ->capture_default_str();
  bench->add_option("--temperature", o->temperature, "sampling temperature")
      ->capture_default_str()
      ->check(Within(0, kInf));
  bench
      ->add_option("--api", o->api,
                   "grpc (ite.v1.Generation at --addr) or openai (streamed /v1/completions at "
                   "--url)")
      ->capture_default_str()
      ->check(CLI::IsMember({"grpc", "openai"}));
  bench->add_option("--url", o->url, "--api openai: the server, http://HOST:PORT");
}

int Main(int argc, char** argv) {
  CLI::App app{"ite-client: command-line client of the ite.v1.Generation gRPC service"};
  app.footer(kExitHelp);
  app.require_subcommand(1);

  GenerateOptions gen;
  auto* generate = app.add_subcommand("generate", "stream a completion to stdout");
  AddRequestFlags(generate, &gen);
  AddPromptFlags(generate, &gen);
  AddChatFlags(generate, &gen);
  generate->add_option("--image", gen.images,
                       "image file (repeatable; a raw prompt marks each place with <image>)");

  GenerateOptions chat_opts;
  chat_opts.chat = true;
  auto* chat = app.add_subcommand(
      "chat", "interactive chat that keeps the history (line editing; Ctrl-C stops an answer)");
  AddRequestFlags(chat, &chat_opts);
  chat->add_option("--system", chat_opts.system, "system message");

  BenchOptions bench_opts;
  bench_opts.addr = "127.0.0.1:50051";
  auto* bench = app.add_subcommand(
      "bench", "serving benchmark: TTFT, ITL, E2E, throughput (Ctrl-C: partial results)");
  AddBenchFlags(bench, &bench_opts);

  AdminOptions info_opts;
  auto* info = app.add_subcommand("info", "describe the served model and deployment");
  AddConnectionFlags(info, &info_opts.addr, &info_opts.connect_timeout_ms);
  info->add_flag("--json", info_opts.json, "print JSON");

  AdminOptions stats_opts;
  auto* stats = app.add_subcommand("stats", "KV blocks, queues and steps per worker");
  AddConnectionFlags(stats, &stats_opts.addr, &stats_opts.connect_timeout_ms);
  stats->add_flag("--json", stats_opts.json, "print JSON");

  TokenizeOptions tok_opts;
  auto* tokenize = app.add_subcommand(
      "tokenize", "token ids of a prompt (or a rendered chat) exactly as generate would send");
  AddConnectionFlags(tokenize, &tok_opts.input.addr, &tok_opts.input.connect_timeout_ms);
  AddPromptFlags(tokenize, &tok_opts.input);
  AddChatFlags(tokenize, &tok_opts.input);
  tokenize->add_flag("--tokens", tok_opts.tokens, "one line per token: id and vocabulary string");
  tokenize->add_flag("--no-special-tokens", tok_opts.no_special_tokens,
                     "do not add BOS etc. to a raw prompt");
  tokenize->add_flag("--json", tok_opts.json, "print JSON (with the rendered chat prompt)");

  HealthOptions health_opts;
  auto* health = app.add_subcommand(
      "health", "gRPC health check: prints SERVING (exit 0) or NOT_SERVING (exit 3)");
  AddConnectionFlags(health, &health_opts.admin.addr, &health_opts.admin.connect_timeout_ms);
  health->add_option("--service", health_opts.service, "service name ('': the whole server)");
  health->add_flag("--json", health_opts.admin.json, "print JSON");

  for (CLI::App* sub : app.get_subcommands({})) sub->footer(kExitHelp);

  // CLI11 would only say "A subcommand is required" for a misspelt one.
  if (argc > 1 && argv[1][0] != '-') {
    std::string names;
    bool known = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      names += (names.empty() ? "" : ", ") + sub->get_name();
      known = known || sub->get_name() == argv[1];
    }
    if (!known) {
      fmt::print(stderr, "ite-client: unknown subcommand '{}' (one of: {})\n", argv[1], names);
      return kExitUsage;
    }
  }

  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;

  if (generate->parsed()) return RunGenerate(gen);
  if (chat->parsed()) return RunChat(chat_opts);
  if (bench->parsed()) return RunBench(bench_opts);
  if (info->parsed()) return RunInfo(info_opts);
  if (stats->parsed()) return RunStats(stats_opts);
  if (tokenize->parsed()) return RunTokenize(tok_opts);
  if (health->parsed()) return RunHealth(health_opts);
  return kExitUsage;
}

}  // namespace
}  // namespace ite::client

int main(int argc, char** argv) {
  try {
    return ite::client::Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ite-client: %s\n", e.what());
    return ite::client::kExitOther;
  }
}
