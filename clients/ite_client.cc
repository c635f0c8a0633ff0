// ite-client: command-line client of the ite.v1.Generation service.
//   ite-client generate --addr HOST:PORT --prompt TEXT [...]   streams the answer to stdout
//   ite-client chat --addr HOST:PORT [...]                     interactive chat, keeps history
//   ite-client bench --addr HOST:PORT [...]                    serving benchmark
// stdout carries only generated text (generate, chat) or the result table (bench); diagnostics go
// to stderr. Exit codes: see kExitHelp.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "clients/client_bench.h"
#include "clients/client_common.h"

namespace ite::client {
namespace {

constexpr const char* kExitHelp =
    "Exit codes: 0 ok, 1 other error, 2 usage error, 3 cannot connect / server unavailable /\n"
    "deadline exceeded, 4 invalid argument (the server rejected the request; message on stderr).";

struct GenerateOptions {
  std::string addr = "127.0.0.1:50051";
  std::string prompt;
  std::string system;
  int32_t max_tokens = 256;
  float temperature = -1;  // < 0: server default
  float top_p = -1;        // < 0: server default
  int32_t top_k = 0;
  int64_t seed = -1;  // < 0: random
  bool chat = false;
  bool ignore_eos = false;
  bool usage = false;
  std::vector<std::string> stop;
  int32_t connect_timeout_ms = 5000;
};

void FillCommon(const GenerateOptions& o, ite::v1::GenerateRequest* req) {
  req->set_max_tokens(o.max_tokens);
  auto* s = req->mutable_sampling();
  if (o.temperature >= 0) s->set_temperature(o.temperature);
  if (o.top_p >= 0) s->set_top_p(o.top_p);
  s->set_top_k(o.top_k);
  if (o.seed >= 0) s->set_seed(static_cast<uint64_t>(o.seed));
  req->set_ignore_eos(o.ignore_eos);
  for (const auto& st : o.stop) req->add_stop(st);
}

// Streams one request's text to stdout. Returns the call status; `text` gets the full answer.
grpc::Status StreamToStdout(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            bool print_usage, std::string* text) {
  grpc::ClientContext ctx;
  ite::v1::Usage usage;
  ite::v1::FinishReason finish = ite::v1::FINISH_REASON_UNSPECIFIED;
  grpc::Status status = StreamGenerate(stub, req, &ctx, [&](const ite::v1::GenerateResponse& c) {
    if (!c.text().empty()) {
      std::fwrite(c.text().data(), 1, c.text().size(), stdout);
      std::fflush(stdout);
      text->append(c.text());
    }
    if (c.finish_reason() != ite::v1::FINISH_REASON_UNSPECIFIED) {
      finish = c.finish_reason();
      usage = c.usage();
    }
  });
  if (status.ok() && print_usage) {
    fmt::print(stderr, "\n[finish {} | prompt {} tokens, cached {}, completion {}]\n",
               ite::v1::FinishReason_Name(finish), usage.prompt_tokens(), usage.cached_tokens(),
               usage.completion_tokens());
  }
  return status;
}

int Fail(const char* what, const grpc::Status& status) {
  fmt::print(stderr, "ite-client {}: {} (grpc code {})\n", what, status.error_message(),
             static_cast<int>(status.error_code()));
  return ExitCodeFor(status);
}

int RunGenerate(const GenerateOptions& o) {
  grpc::Status status;
  auto channel = Connect(o.addr, std::chrono::milliseconds(o.connect_timeout_ms), &status);
  if (!channel) return Fail("generate", status);
  auto stub = ite::v1::Generation::NewStub(channel);
  ite::v1::GenerateRequest req;
  if (o.chat) {
    auto* msgs = req.mutable_chat();
    if (!o.system.empty()) {
      auto* m = msgs->add_messages();
      m->set_role("system");
      m->set_content(o.system);
    }
    auto* m = msgs->add_messages();
    m->set_role("user");
    m->set_content(o.prompt);
  } else {
    req.set_prompt(o.prompt);
  }
  FillCommon(o, &req);
  std::string text;
  status = StreamToStdout(*stub, req, o.usage, &text);
  std::fputc('\n', stdout);
  if (!status.ok()) return Fail("generate", status);
  return kExitOk;
}

int RunChat(const GenerateOptions& o) {
  grpc::Status status;
  auto channel = Connect(o.addr, std::chrono::milliseconds(o.connect_timeout_ms), &status);
  if (!channel) return Fail("chat", status);
  auto stub = ite::v1::Generation::NewStub(channel);
  ite::v1::ChatMessages history;
  if (!o.system.empty()) {
    auto* m = history.add_messages();
    m->set_role("system");
    m->set_content(o.system);
  }
  fmt::print(stderr, "chat with {} (/reset clears the history, /exit or Ctrl-D quits)\n", o.addr);
  std::string line;
  while (true) {
    fmt::print(stderr, "> ");
    if (!std::getline(std::cin, line) || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      history.clear_messages();
      continue;
    }
    auto* user = history.add_messages();
    user->set_role("user");
    user->set_content(line);
    ite::v1::GenerateRequest req;
    *req.mutable_chat() = history;
    FillCommon(o, &req);
    std::string answer;
    status = StreamToStdout(*stub, req, o.usage, &answer);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (!status.ok()) {
      int rc = Fail("chat", status);
      // The server going away ends the session; a rejected turn is dropped and chat goes on.
      if (rc == kExitUnavailable) return rc;
      history.mutable_messages()->RemoveLast();
      continue;
    }
    auto* assistant = history.add_messages();
    assistant->set_role("assistant");
    assistant->set_content(answer);
  }
  return kExitOk;
}

void AddSamplingFlags(CLI::App* cmd, GenerateOptions* o) {
  cmd->add_option("--addr", o->addr, "server address HOST:PORT")->capture_default_str();
  cmd->add_option("--max-tokens", o->max_tokens, "most new tokens")->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "0 = greedy (server default 1.0)");
  cmd->add_option("--top-p", o->top_p, "nucleus sampling, in (0, 1]");
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens (0: off)");
  cmd->add_option("--seed", o->seed, "random seed (same seed, same output)");
  cmd->add_option("--stop", o->stop, "stop string (repeatable)");
  cmd->add_option("--system", o->system, "system message (chat)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence");
  cmd->add_flag("--usage", o->usage, "print finish reason and token usage on stderr");
  cmd->add_option("--connect-timeout-ms", o->connect_timeout_ms, "give up connecting after this")
      ->capture_default_str();
}

int Main(int argc, char** argv) {
  CLI::App app{"ite-client: command-line client of the ite.v1.Generation gRPC service"};
  app.footer(kExitHelp);
  app.require_subcommand(1);

  GenerateOptions gen;
  auto* generate = app.add_subcommand("generate", "stream a completion to stdout");
  AddSamplingFlags(generate, &gen);
  generate->add_option("--prompt", gen.prompt, "prompt text")->required();
  generate->add_flag("--chat", gen.chat, "send the prompt as a user message (chat template)");
  generate->footer(kExitHelp);

  GenerateOptions chat_opts;
  chat_opts.chat = true;
  auto* chat = app.add_subcommand("chat", "interactive chat that keeps the history");
  AddSamplingFlags(chat, &chat_opts);
  chat->footer(kExitHelp);

  BenchOptions bench_opts;
  bench_opts.addr = "127.0.0.1:50051";
  auto* bench = app.add_subcommand("bench", "serving benchmark: TTFT, ITL, E2E, throughput");
  bench->add_option("--addr", bench_opts.addr, "server address HOST:PORT")->capture_default_str();
  bench->add_option("--requests", bench_opts.requests, "number of requests")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  auto* conc = bench
                   ->add_option("--concurrency", bench_opts.concurrency,
                                "closed loop: requests in flight (default: all at once)")
                   ->check(CLI::PositiveNumber);
  bench->add_option("--rate", bench_opts.rate, "open loop: Poisson arrivals, requests/s")
      ->check(CLI::PositiveNumber)
      ->excludes(conc);
  bench->add_option("--input-len", bench_opts.input_len, "prompt tokens (random ids)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--output-len", bench_opts.output_len, "new tokens per request")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  bench->add_option("--prompts-file", bench_opts.prompts_file, "text prompts, one per line");
  bench->add_option("--json", bench_opts.json_path, "write results as JSON to this file");
  bench->add_option("--seed", bench_opts.seed, "seed of prompts, arrivals and sampling")
      ->capture_default_str();
  bench->add_option("--temperature", bench_opts.temperature, "sampling temperature")
      ->capture_default_str();
  bench
      ->add_option("--connect-timeout-ms", bench_opts.connect_timeout_ms,
                   "give up connecting after this")
      ->capture_default_str();
  bench->footer(kExitHelp);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsage;
  }

  if (generate->parsed()) return RunGenerate(gen);
  if (chat->parsed()) return RunChat(chat_opts);
  if (bench->parsed()) return RunBench(bench_opts);
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
