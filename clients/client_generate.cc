#include "clients/client_generate.h"

#include <fmt/format.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "clients/client_common.h"

namespace ite::client {
namespace {

template <typename T>
void AddOptional(CLI::App* cmd, const std::string& name, std::optional<T>* target,
                 const std::string& help, const CLI::Validator& check) {
  cmd->add_option_function<T>(
         name, [target](const T& v) { *target = v; }, help)
      ->check(check);
}

bool ReadAll(std::istream& in, std::string* out) {
  out->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return !in.bad();
}

void PrintLogprobs(const google::protobuf::RepeatedPtrField<ite::v1::PositionLogprobs>& lps) {
  for (const auto& p : lps) {
    // JSON quoting shows spaces, newlines and partial characters unambiguously.
    fmt::print(stderr, "{:>10.4f} {}", p.sampled().logprob(),
               nlohmann::json(p.sampled().text())
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    for (int i = 0; i < p.top_size(); ++i) {
      fmt::print(stderr, "{} {} {:.4f}", i == 0 ? "  | top:" : ",",
                 nlohmann::json(p.top(i).text())
                     .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                 p.top(i).logprob());
    }
    std::fputc('\n', stderr);
  }
}

}  // namespace

CLI::Validator Within(double lo, double hi, bool lo_open) {
  const std::string range = std::isinf(hi)
                                ? fmt::format("{} {}", lo_open ? ">" : ">=", lo)
                                : fmt::format("in {}{}, {}]", lo_open ? "(" : "[", lo, hi);
  return CLI::Validator(
      [=](std::string& text) -> std::string {
        char* end = nullptr;
        errno = 0;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0' || errno == ERANGE)
          return "'" + text + "' is not a number";
        const bool above_lo = lo_open ? v > lo : v >= lo;
        if (!(above_lo && v <= hi)) return "'" + text + "' must be " + range;
        return "";
      },
      range);
}

void AddConnectionFlags(CLI::App* cmd, std::string* addr, int32_t* connect_timeout_ms) {
  cmd->add_option("--addr", *addr, "server address HOST:PORT (ite-serve / ite-scheduler)")
      ->capture_default_str();
  cmd->add_option("--connect-timeout-ms", *connect_timeout_ms,
                  "give up connecting after this (a refused connection fails at once)")
      ->capture_default_str()
      ->check(Within(1, kInf));
  ConnectionSecurity& sec = Security();
  cmd->add_option("--tls-ca", sec.tls_ca, "TLS: the CA the server's certificate must chain to")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-cert", sec.tls_cert, "TLS: a client certificate (mTLS)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-key", sec.tls_key, "TLS: the private key of --tls-cert")
      ->check(CLI::ExistingFile);
  cmd->add_option("--tls-server-name", sec.tls_server_name,
                  "TLS: the name the server's certificate carries, if --addr's host is not it");
  cmd->add_option("--api-key", sec.api_key, "API key, sent as 'authorization: Bearer KEY'")
      ->envname("ITE_API_KEY");
}

void AddRequestFlags(CLI::App* cmd, GenerateOptions* o) {
  AddConnectionFlags(cmd, &o->addr, &o->connect_timeout_ms);
  cmd->add_option("--model", o->model, "model name to ask for (default: the served one)");
  cmd->add_option("--max-tokens", o->max_tokens, "most new tokens")
      ->capture_default_str()
      ->check(Within(1, kInf));
  AddOptional(cmd, "--temperature", &o->temperature, "0 = greedy (default: the model's, else 1.0)",
              Within(0, kInf));
  AddOptional(cmd, "--top-p", &o->top_p, "nucleus sampling (default: the model's, else 1.0)",
              Within(0, 1, /*lo_open=*/true));
  cmd->add_option("--top-k", o->top_k, "keep the k most likely tokens (0: off)")
      ->check(Within(0, kInf));
  AddOptional(cmd, "--min-p", &o->min_p, "drop tokens below min-p * p(most likely) (0: off)",
              Within(0, 1));
  AddOptional(cmd, "--repetition-penalty", &o->repetition_penalty,
              "divide logits of tokens already seen (1: off)", Within(0, kInf, true));
  AddOptional(cmd, "--presence-penalty", &o->presence_penalty,
              "subtract from logits of tokens already seen (0: off)", Within(-2, 2));
  AddOptional(cmd, "--frequency-penalty", &o->frequency_penalty,
              "subtract per occurrence of tokens already seen (0: off)", Within(-2, 2));
  AddOptional(cmd, "--seed", &o->seed, "random seed (same seed, same output)", Within(0, kInf));
  cmd->add_option("--stop", o->stop, "stop string (repeatable)");
  cmd->add_flag("--ignore-eos", o->ignore_eos, "keep generating past end-of-sequence");
  cmd->add_flag("--logprobs", o->logprobs, "print each token's log-probability on stderr");
  cmd->add_option("--top-logprobs", o->top_logprobs,
                  "also print this many most likely alternatives per token (implies --logprobs)")
      ->check(Within(0, 20));
  cmd->add_flag("--usage", o->usage, "print finish reason and token usage on stderr");
}

void FillRequest(const GenerateOptions& o, ite::v1::GenerateRequest* req) {
  if (!o.model.empty()) req->set_model(o.model);
  req->set_max_tokens(o.max_tokens);
  auto* s = req->mutable_sampling();
  if (o.temperature) s->set_temperature(*o.temperature);
  if (o.top_p) s->set_top_p(*o.top_p);
  s->set_top_k(o.top_k);
  if (o.min_p) s->set_min_p(*o.min_p);
  if (o.repetition_penalty) s->set_repetition_penalty(*o.repetition_penalty);
  if (o.presence_penalty) s->set_presence_penalty(*o.presence_penalty);
  if (o.frequency_penalty) s->set_frequency_penalty(*o.frequency_penalty);
  if (o.seed) s->set_seed(*o.seed);
  req->set_ignore_eos(o.ignore_eos);
  req->set_logprobs(o.logprobs || o.top_logprobs > 0);
  req->set_top_logprobs(o.top_logprobs);
  for (const auto& st : o.stop) req->add_stop(st);
}

bool ReadPrompt(const GenerateOptions& o, std::string* prompt, std::string* error) {
  const bool from_file = !o.prompt_file.empty();
  const std::string& source = from_file ? o.prompt_file : o.prompt;
  if (!from_file && o.prompt != "-") {
    *prompt = o.prompt;
    return true;
  }
  const char* flag = from_file ? "--prompt-file" : "--prompt";
  if (source == "-") {
    if (!ReadAll(std::cin, prompt)) {
      *error = fmt::format("{} -: cannot read stdin", flag);
      return false;
    }
  } else {
    std::ifstream in(source, std::ios::binary);
    if (!in || !ReadAll(in, prompt)) {
      *error = fmt::format("{} {}: cannot read: {}", flag, source, std::strerror(errno));
      return false;
    }
  }
  // `echo question | ite-client generate --prompt -` should not send the echo's newline.
  while (!prompt->empty() && (prompt->back() == '\n' || prompt->back() == '\r')) prompt->pop_back();
  return true;
}

grpc::Status StreamToStdout(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            const GenerateOptions& o, grpc::ClientContext* ctx, std::string* text) {
  ite::v1::Usage usage;
  ite::v1::FinishReason finish = ite::v1::FINISH_REASON_UNSPECIFIED;
  google::protobuf::RepeatedPtrField<ite::v1::PositionLogprobs> logprobs;
  grpc::Status status = StreamGenerate(stub, req, ctx, [&](const ite::v1::GenerateResponse& c) {
    if (!c.text().empty()) {
      std::fwrite(c.text().data(), 1, c.text().size(), stdout);
      std::fflush(stdout);
      text->append(c.text());
    }
    for (const auto& lp : c.logprobs()) *logprobs.Add() = lp;
    if (c.finish_reason() != ite::v1::FINISH_REASON_UNSPECIFIED) {
      finish = c.finish_reason();
      usage = c.usage();
    }
  });
  if (!logprobs.empty()) {
    std::fflush(stdout);
    fmt::print(stderr, "\n[logprobs: one line per token]\n");
    PrintLogprobs(logprobs);
  }
  if (status.ok() && o.usage) {
    fmt::print(stderr, "\n[finish {} | prompt {} tokens, cached {}, completion {}]\n",
               ite::v1::FinishReason_Name(finish), usage.prompt_tokens(), usage.cached_tokens(),
               usage.completion_tokens());
  }
  return status;
}

bool ReadImage(const std::string& path, ite::v1::Image* image) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fmt::print(stderr, "ite-client: --image {}: cannot read the file\n", path);
    return false;
  }
  image->set_data(std::string((std::istreambuf_iterator<char>(in)), {}));
  return true;
}

int RunGenerate(const GenerateOptions& o) {
  std::string prompt, error;
  if (!ReadPrompt(o, &prompt, &error)) {
    fmt::print(stderr, "ite-client generate: {}\n", error);
    return kExitUsage;
  }
  grpc::Status status;
  auto channel = Connect(o.addr, std::chrono::milliseconds(o.connect_timeout_ms), &status);
  if (!channel) return Fail("generate", status, o.addr);
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
    if (o.images.empty()) {
      m->set_content(prompt);
    } else {  // the images, then the text, as content parts
      for (const std::string& path : o.images)
        if (!ReadImage(path, m->add_parts()->mutable_image())) return kExitUsage;
      m->add_parts()->set_text(prompt);
    }
  } else {
    req.set_prompt(prompt);
    for (const std::string& path : o.images)
      if (!ReadImage(path, req.add_images())) return kExitUsage;
  }
  FillRequest(o, &req);
  std::string text;
  grpc::ClientContext ctx;
  status = StreamToStdout(*stub, req, o, &ctx, &text);
  std::fputc('\n', stdout);
  if (!status.ok()) return Fail("generate", status, o.addr);
  return kExitOk;
}

}  // namespace ite::client
