#include "clients/client_admin.h"

#include <fmt/format.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>

#include "clients/client_common.h"
#include "common/model_fingerprint.h"
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

// One unary call on the Generation service: connects, calls, and prints the answer as JSON
// (--json) or through `print_text`; failures become messages and exit codes.
template <typename Request, typename Response, typename PrintText>
int CallAndPrint(const char* what, const AdminOptions& o,
                 grpc::Status (ite::v1::Generation::Stub::*rpc)(grpc::ClientContext*,
                                                                const Request&, Response*),
                 const Request& request, PrintText print_text) {
  grpc::Status status;
  auto channel = Connect(o.addr, std::chrono::milliseconds(o.connect_timeout_ms), &status);
  if (!channel) return Fail(what, status, o.addr);
  auto stub = ite::v1::Generation::NewStub(channel);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  Response response;
  status = ((*stub).*rpc)(&ctx, request, &response);
  if (!status.ok()) return Fail(what, status, o.addr);
  if (o.json) {
    PrintJson(response);
  } else {
    print_text(response);
  }
  return kExitOk;
}

}  // namespace

int RunInfo(const AdminOptions& o) {
  using Stub = ite::v1::Generation::Stub;
  return CallAndPrint("info", o, &Stub::ModelInfo, ite::v1::ModelInfoRequest(),
                      [](const ite::v1::ModelInfoResponse& r) {
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
                      });
}

int RunStats(const AdminOptions& o) {
  using Stub = ite::v1::Generation::Stub;
  return CallAndPrint(
      "stats", o, &Stub::Stats, ite::v1::StatsRequest(), [](const ite::v1::StatsResponse& r) {
        fmt::print(
            "requests: {} running, {} waiting, {} finished ({} tokens generated) | {} steps, {} "
            "preemptions, scheduler loop CPU {:.1f} ms\n",
            r.running(), r.waiting(), r.finished_requests(), r.generated_tokens(), r.steps(),
            r.preemptions(), r.loop_cpu_us() / 1e3);
        fmt::print("model fingerprint: {}\n",
                   r.model_fingerprint().empty() ? "none yet" : r.model_fingerprint());
        fmt::print("{:<3} {:<21} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}  {:<22} {}\n", "#",
                   "address", "healthy", "blocks", "free", "used", "cached", "running", "waiting",
                   "fingerprint", "device");
        for (const auto& w : r.workers()) {
          // A worker kept down for serving another model shows that model's fingerprint.
          const std::string fingerprint =
              w.refused_model_fingerprint().empty()
                  ? ShortFingerprint(w.model_fingerprint())
                  : "OTHER " + ShortFingerprint(w.refused_model_fingerprint());
          fmt::print("{:<3} {:<21} {:<7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>8}  {:<22} {}\n",
                     w.index(), w.address(), w.healthy() ? "yes" : "NO", w.total_blocks(),
                     w.free_blocks(), w.used_blocks(), w.cached_blocks(), w.running(), w.waiting(),
                     fingerprint, w.device());
        }
      });
}

int RunTokenize(const TokenizeOptions& o) {
  std::string text, error;
  if (!ReadPrompt(o.input, &text, &error)) {
    fmt::print(stderr, "ite-client tokenize: {}\n", error);
    return kExitUsage;
  }
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
  const AdminOptions call{o.input.addr, o.input.connect_timeout_ms, o.json};
  using Stub = ite::v1::Generation::Stub;
  return CallAndPrint(
      "tokenize", call, &Stub::Tokenize, req, [&](const ite::v1::TokenizeResponse& r) {
        if (o.tokens) {
          for (int i = 0; i < r.token_ids_size(); ++i) {
            fmt::print("{}\t{}\n", r.token_ids(i), i < r.tokens_size() ? r.tokens(i) : "");
          }
        } else {
          fmt::print("{}\n", Join(r.token_ids(), " "));
        }
        fmt::print(stderr, "[{} tokens]\n", r.token_ids_size());
      });
}

int RunHealth(const HealthOptions& o) {
  grpc::Status status;
  const AdminOptions& a = o.admin;
  auto channel = Connect(a.addr, std::chrono::milliseconds(a.connect_timeout_ms), &status);
  if (!channel) return Fail("health", status, a.addr);
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  grpc::health::v1::HealthCheckRequest req;
  req.set_service(o.service);
  grpc::health::v1::HealthCheckResponse r;
  status = stub->Check(&ctx, req, &r);
  if (!status.ok()) return Fail("health", status, a.addr);
  if (a.json) {
    PrintJson(r);
  } else {
    fmt::print("{}\n", grpc::health::v1::HealthCheckResponse::ServingStatus_Name(r.status()));
  }
  return r.status() == grpc::health::v1::HealthCheckResponse::SERVING ? kExitOk : kExitUnavailable;
}

}  // namespace ite::client
