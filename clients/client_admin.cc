#include "clients/client_admin.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "clients/client_common.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"

namespace ite::client {
namespace {

constexpr auto kCallTimeout = std::chrono::seconds(30);

void SetDeadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

void PrintJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  std::fputs(out.c_str(), stdout);
  if (out.empty() || out.back() != '\n') std::fputc('\n', stdout);
}

std::string Join(const google::protobuf::RepeatedField<int32_t>& ids, const char* sep) {
  std::string out;
  for (int i = 0; i < ids.size(); ++i) {
    if (i > 0) out += sep;
    out += std::to_string(ids[i]);
  }
  return out;
}

// Connects and calls `call(channel)`; maps failures to messages and exit codes.
template <typename Call>
int WithChannel(const char* what, const std::string& addr, int32_t timeout_ms, Call call) {
  grpc::Status status;
  auto channel = Connect(addr, std::chrono::milliseconds(timeout_ms), &status);
  if (!channel) return Fail(what, status, addr);
  status = call(channel);
  if (!status.ok()) return Fail(what, status, addr);
  return kExitOk;
}

}  // namespace

int RunInfo(const AdminOptions& o) {
  return WithChannel("info", o.addr, o.connect_timeout_ms, [&](auto channel) {
    auto stub = ite::v1::Generation::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ite::v1::ModelInfoResponse r;
    grpc::Status s = stub->ModelInfo(&ctx, ite::v1::ModelInfoRequest(), &r);
    if (!s.ok()) return s;
    if (o.json) {
      PrintJson(r);
      return s;
    }
    fmt::print("model_name        {}\n", r.model_name());
    fmt::print("architecture      {}\n", r.architecture());
    fmt::print("vocab_size        {}\n", r.vocab_size());
    fmt::print("max_context       {}\n", r.max_context());
    fmt::print("layers            {}\n", r.num_layers());
    fmt::print("hidden_size       {}\n", r.hidden_size());
    fmt::print("bos_token_id      {}\n", r.bos_token_id());
    fmt::print("eos_token_ids     {}\n", Join(r.eos_token_ids(), ","));
    fmt::print("chat_template     {}\n", r.has_chat_template() ? "yes" : "no");
    fmt::print("workers           {}\n", r.num_workers());
    fmt::print("block_size        {}\n", r.block_size());
    return s;
  });
}

int RunStats(const AdminOptions& o) {
  return WithChannel("stats", o.addr, o.connect_timeout_ms, [&](auto channel) {
    auto stub = ite::v1::Generation::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ite::v1::StatsResponse r;
    grpc::Status s = stub->Stats(&ctx, ite::v1::StatsRequest(), &r);
    if (!s.ok()) return s;
    if (o.json) {
      PrintJson(r);
      return s;
    }
    fmt::print(
        "requests: {} running, {} waiting, {} finished ({} tokens generated) | {} steps, {} "
        "preemptions, scheduler loop CPU {:.1f} ms\n",
        r.running(), r.waiting(), r.finished_requests(), r.generated_tokens(), r.steps(),
        r.preemptions(), r.loop_cpu_us() / 1e3);
    fmt::print("{:<3} {:<21} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}  {}\n", "#", "address",
               "healthy", "blocks", "free", "used", "cached", "running", "waiting", "device");
    for (const auto& w : r.workers()) {
      fmt::print("{:<3} {:<21} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}  {}\n", w.index(),
                 w.address(), w.healthy() ? "yes" : "NO", w.total_blocks(), w.free_blocks(),
                 w.used_blocks(), w.cached_blocks(), w.running(), w.waiting(), w.device());
    }
    return s;
  });
}

int RunTokenize(const TokenizeOptions& o) {
  std::string text, error;
  if (!ReadPrompt(o.input, &text, &error)) {
    fmt::print(stderr, "ite-client tokenize: {}\n", error);
    return kExitUsage;
  }
  return WithChannel("tokenize", o.input.addr, o.input.connect_timeout_ms, [&](auto channel) {
    auto stub = ite::v1::Generation::NewStub(channel);
    ite::v1::TokenizeRequest req;
    if (o.input.chat) {
      auto* msgs = req.mutable_chat();
      if (!o.input.system.empty()) {
        auto* m = msgs->add_messages();
        m->set_role("system");
        m->set_content(o.input.system);
      }
      auto* m = msgs->add_messages();
      m->set_role("user");
      m->set_content(text);
    } else {
      req.set_text(text);
      if (o.no_special_tokens) req.set_add_special_tokens(false);
    }
    req.set_return_tokens(o.tokens);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ite::v1::TokenizeResponse r;
    grpc::Status s = stub->Tokenize(&ctx, req, &r);
    if (!s.ok()) return s;
    if (o.json) {
      PrintJson(r);
      return s;
    }
    if (o.tokens) {
      for (int i = 0; i < r.token_ids_size(); ++i) {
        fmt::print("{}\t{}\n", r.token_ids(i), i < r.tokens_size() ? r.tokens(i) : "");
      }
    } else {
      fmt::print("{}\n", Join(r.token_ids(), " "));
    }
    fmt::print(stderr, "[{} tokens]\n", r.token_ids_size());
    return s;
  });
}

int RunHealth(const HealthOptions& o) {
  grpc::health::v1::HealthCheckResponse r;
  int rc = WithChannel("health", o.admin.addr, o.admin.connect_timeout_ms, [&](auto channel) {
    auto stub = grpc::health::v1::Health::NewStub(channel);
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(o.service);
    return stub->Check(&ctx, req, &r);
  });
  if (rc != kExitOk) return rc;
  if (o.admin.json) {
    PrintJson(r);
  } else {
    fmt::print("{}\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status()));
  }
  return r.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitUnavailable;
}

}  // namespace ite::client
