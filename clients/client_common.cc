#include "clients/client_common.h"

#include <fmt/format.h>
#include <grpcpp/support/client_interceptor.h>

#include <iterator>

#include "proto/grpc_security.h"

namespace ite::client {
namespace {

// gRPC's status codes are fixed wire numbers 0..16, in this order.
const char* StatusName(grpc::StatusCode code) {
  static constexpr const char* kNames[] = {"OK",
                                           "CANCELLED",
                                           "UNKNOWN",
                                           "INVALID_ARGUMENT",
                                           "DEADLINE_EXCEEDED",
                                           "NOT_FOUND",
                                           "ALREADY_EXISTS",
                                           "PERMISSION_DENIED",
                                           "RESOURCE_EXHAUSTED",
                                           "FAILED_PRECONDITION",
                                           "ABORTED",
                                           "OUT_OF_RANGE",
                                           "UNIMPLEMENTED",
                                           "INTERNAL",
                                           "UNAVAILABLE",
                                           "DATA_LOSS",
                                           "UNAUTHENTICATED"};
  const auto i = static_cast<size_t>(code);
  return i < std::size(kNames) ? kNames[i] : "UNKNOWN_CODE";
}

// What to say when the server sent no message of its own (gRPC's own failures often do not).
std::string Hint(grpc::StatusCode code, const std::string& addr) {
  switch (code) {
    case grpc::StatusCode::UNIMPLEMENTED:
      return fmt::format(
          "{} does not serve ite.v1.Generation; is it an ite-worker's port? Point ite-client at "
          "ite-serve or ite-scheduler (default port 50051)",
          addr);
    case grpc::StatusCode::UNAVAILABLE:
      return fmt::format("{} is not reachable or has no worker up; is ite-serve running?", addr);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "the server did not answer in time";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "the server's queue is full; retry later";
    case grpc::StatusCode::CANCELLED:
      return "the call was cancelled";
    case grpc::StatusCode::INTERNAL:
      return "the server hit an internal error (a bug); its log says more";
    default:
      return "";
  }
}

// Adds the API key to every call's metadata. An interceptor rather than call credentials: gRPC
// refuses call credentials on a plaintext channel, and a loopback server takes keys in plaintext.
class ApiKeyInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit ApiKeyInterceptor(const std::string& value) : value_(value) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"authorization", value_});
    }
    methods->Proceed();
  }

 private:
  const std::string& value_;  // owned by the factory, which outlives the channel's calls
};

class ApiKeyInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit ApiKeyInterceptorFactory(std::string key) : value_("Bearer " + std::move(key)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* /*info*/) override {
    return new ApiKeyInterceptor(value_);
  }

 private:
  std::string value_;
};

}  // namespace

ConnectionSecurity& Security() {
  static ConnectionSecurity security;
  return security;
}

int ExitCodeFor(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return kExitOk;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return kExitUnavailable;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return kExitInvalidArgument;
    default:
      return kExitOther;
  }
}

std::string DescribeStatus(const grpc::Status& status, const std::string& addr) {
  const grpc::StatusCode code = status.error_code();
  std::string message = status.error_message();
  // UNIMPLEMENTED from a server that lacks the service carries no useful text of its own.
  if (code == grpc::StatusCode::UNIMPLEMENTED || message.empty()) {
    std::string hint = Hint(code, addr);
    if (!hint.empty()) message = message.empty() ? hint : message + "; " + hint;
  }
  if (message.empty()) message = "no message from the server";
  return fmt::format("{}: {}", StatusName(code), message);
}

int Fail(const std::string& what, const grpc::Status& status, const std::string& addr) {
  fmt::print(stderr, "ite-client {}: {}\n", what, DescribeStatus(status, addr));
  return ExitCodeFor(status);
}

std::shared_ptr<grpc::Channel> Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                       grpc::Status* status) {
  grpc::ChannelArguments args;
  // Long generations stream for minutes; keepalive notices a dead server without waiting for TCP.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetMaxReceiveMessageSize(64 << 20);
  const ConnectionSecurity& sec = Security();
  StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      MakeChannelCredentials(TlsFiles{sec.tls_cert, sec.tls_key, sec.tls_ca});
  if (!creds.ok()) {
    *status = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, creds.status().message());
    return nullptr;
  }
  if (!sec.tls_server_name.empty()) args.SetSslTargetNameOverride(sec.tls_server_name);
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> keys;
  if (!sec.api_key.empty()) keys.push_back(std::make_unique<ApiKeyInterceptorFactory>(sec.api_key));
  auto channel =
      grpc::experimental::CreateCustomChannelWithInterceptors(addr, *creds, args, std::move(keys));
  const bool tls = !sec.tls_ca.empty() || !sec.tls_cert.empty();
  const auto deadline = std::chrono::system_clock::now() + timeout;
  grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    // The first failed attempt (refused, bad name) shows as TRANSIENT_FAILURE; gRPC would retry
    // with backoff until the deadline, which only delays the same answer.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN) {
      *status = grpc::Status(
          grpc::StatusCode::UNAVAILABLE,
          tls ? fmt::format("cannot connect to {}: refused, unknown, or the TLS handshake failed "
                            "(a server certificate not from --tls-ca, or a plaintext server?)",
                            addr)
              : fmt::format("cannot connect to {}: connection refused or address unknown; is "
                            "ite-serve running there?",
                            addr));
      return nullptr;
    }
    if (!channel->WaitForStateChange(state, deadline)) {
      *status =
          grpc::Status(grpc::StatusCode::UNAVAILABLE,
                       fmt::format("cannot connect to {} within {} ms", addr, timeout.count()));
      return nullptr;
    }
    state = channel->GetState(/*try_to_connect=*/true);
  }
  *status = grpc::Status::OK;
  return channel;
}

grpc::Status StreamGenerate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                            grpc::ClientContext* context,
                            const std::function<void(const ite::v1::GenerateResponse&)>& on_chunk) {
  auto reader = stub.Generate(context, req);
  ite::v1::GenerateResponse chunk;
  while (reader->Read(&chunk)) on_chunk(chunk);
  return reader->Finish();
}

}  // namespace ite::client
