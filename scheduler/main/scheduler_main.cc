// ite-scheduler: the public ite.v1.Generation service, driving ite-worker processes.
//   ite-scheduler --model PATH --workers host:port[,host:port...]|dns:///NAME:PORT [--port 50051]
//                 [--host 127.0.0.1] [--http-port 8000] [--max-batch-tokens N] [--max-running N]
//                 [--no-prefix-cache] [--tls-cert F --tls-key F [--tls-ca F]]
//                 [--api-key KEY]... [--api-key-file F]
// Serves the OpenAI-compatible HTTP API on --http-port (-1: off) beside the gRPC service, from
// the moment a worker answers.
// Loads the tokenizer and chat template from the model path (not the weights: the workers hold
// those), then listens at once: health NOT_SERVING (the "liveness" health service SERVING) until
// a worker answers Info, then it serves with the workers that answer and takes in the others
// as they do. Health ("" and "ite.v1.Generation") is SERVING only while some worker is up; a
// worker silent for --worker-down-after-ms is marked down until it answers again. SIGTERM/SIGINT,
// in any phase: new requests get UNAVAILABLE, running and queued ones finish (drain), then the
// process exits. Security: --tls-cert/--tls-key serve gRPC and HTTP over TLS; --tls-ca makes the
// links to the workers mTLS (the workers checked against the CA, this certificate presented to
// them). API keys guard both public APIs except the health checks. Exit codes: 0 clean shutdown, 1
// failure (message on stderr), 2 usage error.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "common/cli_parse.h"
#include "common/logging.h"
#include "common/model_fingerprint.h"
#include "common/ready_file.h"
#include "proto/grpc_security.h"
#include "proto/grpc_server_runner.h"
#include "proto/security_flags.h"
#include "scheduler/chat/chat_template.h"
#include "scheduler/generation_service.h"
#include "scheduler/grpc_worker_client.h"
#include "scheduler/http/http_gateway.h"
#include "scheduler/main/shared_flags.h"
#include "scheduler/request_builder.h"
#include "scheduler/request_intake.h"
#include "scheduler/sampling_defaults.h"
#include "scheduler/scheduler.h"
#include "scheduler/tokenizer/tokenizer.h"
#include "scheduler/worker_discovery.h"

namespace ite {
namespace {

struct SchedulerMainOptions {
  std::string model;
  std::string workers;
  std::string host = "127.0.0.1";
  int port = 50051;
  std::string model_name;
  std::string ready_file;
  int http_port = 8000;  // -1: no HTTP API
  std::string http_ready_file;
  int http_max_body_mib = 8;
  int http_threads = 64;
  SchedulingFlags scheduling;
  int32_t max_running = 256;
  int32_t max_context = 0;
  int32_t default_max_tokens = 256;
  int32_t worker_wait_ms = 120000;
  int32_t max_workers = 16;
  int32_t worker_resolve_interval_ms = 5000;
  std::string model_fingerprint = "auto";  // or "first", or 64 hex digits
  LogFlags log;
  TlsFiles tls;
  bool tls_require_client_cert = false;
  std::string worker_tls_name;
  ApiKeyFlags api_keys;
};

// The name clients see and may send: the model file's name without its extension, or the
// folder's name, as the user named them; a GGUF's general.name is often a generated title
// ("Smollm2 135M 8k Lc100K Mix1 Ep2"). Whitespace becomes '-' so the name is one word.
std::string DefaultModelName(const std::string& model_path) {
  std::filesystem::path p(model_path);
  if (!p.has_filename()) p = p.parent_path();  // "models/llama/"
  std::string name = std::filesystem::is_directory(p) ? p.filename().string() : p.stem().string();
  for (char& c : name) {
    if (std::isspace(static_cast<unsigned char>(c))) c = '-';
  }
  return name.empty() ? "model" : name;
}

// Waits until one of the workers answers Info (workers start in parallel with the scheduler and
// load weights first), giving up at the deadline or when `stopping` turns true.
Status WaitForAnyWorker(std::vector<std::unique_ptr<WorkerClient>>& clients, int32_t wait_ms,
                        const std::atomic<bool>& stopping) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (true) {
    Status last;
    for (auto& client : clients) {
      if (stopping) return Unavailable("stopped while waiting for workers");
      StatusOr<WorkerInfo> info = client->Info();
      if (info.ok()) return Status::Ok();
      last = info.status();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      return Unavailable("no worker answered within {} ms (last: {})", wait_ms, last.message());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

// The model fingerprint every worker must report (SchedulerOptions::model_fingerprint; "": the
// first worker's is pinned). --model-fingerprint auto: the --model's own, or, for a folder
// with only the tokenizer files (the scheduler loads no weights), the first worker's.
StatusOr<std::string> ExpectedFingerprint(const SchedulerMainOptions& o) {
  const std::string& flag = o.model_fingerprint;
  if (flag == "first") {
    ITE_LOG_INFO("--model-fingerprint first: the first worker's model fingerprint is pinned");
    return std::string();
  }
  if (flag != "auto") {  // 64 hex digits, as the flag's check made sure
    ITE_LOG_INFO(
        "model fingerprint {} (--model-fingerprint): workers serving another model are "
        "refused",
        flag);
    return flag;
  }
  StatusOr<std::string> fp = ModelFingerprint(o.model);
  if (fp.ok()) {
    ITE_LOG_INFO("model fingerprint {}: workers serving another model are refused", *fp);
    return fp;
  }
  if (fp.status().code() != StatusCode::kNotFound) {
    return Status(fp.status().code(), fmt::format("model fingerprint: {}", fp.status().message()));
  }
  ITE_LOG_INFO("{}; the first worker's model fingerprint is pinned instead", fp.status().message());
  return std::string();
}

int Run(const SchedulerMainOptions& o) {
  StatusOr<WorkerTarget> target = ParseWorkerTarget(o.workers);
  if (!target.ok()) {
    ITE_LOG_ERROR("{}", target.status().message());
    return 2;
  }
  StatusOr<std::unique_ptr<Tokenizer>> tokenizer_or = Tokenizer::FromFile(o.model);
  if (!tokenizer_or.ok()) {
    ITE_LOG_ERROR("tokenizer: {}", tokenizer_or.status().ToString());
    return 1;
  }
  std::shared_ptr<const Tokenizer> tokenizer = std::move(tokenizer_or).value();
  std::optional<ChatTemplate> chat_template;
  StatusOr<ChatTemplate> tmpl = ChatTemplate::FromFile(o.model);
  if (tmpl.ok()) {
    chat_template = std::move(tmpl).value();
  } else {
    ITE_LOG_WARN("no chat template ({}); chat requests will be rejected", tmpl.status().ToString());
  }

  // Read before listening: a malformed generation_config.json stops the scheduler at once.
  StatusOr<SamplingParams> defaults = SamplingDefaultsForModel(o.model);
  if (!defaults.ok()) {
    ITE_LOG_ERROR("{}", defaults.status().ToString());
    return 1;
  }
  ITE_LOG_INFO("sampling defaults from the model: {}", DescribeSamplingDefaults(*defaults));

  // The workers must serve the model this tokenizer and chat template belong to.
  StatusOr<std::string> fingerprint = ExpectedFingerprint(o);
  if (!fingerprint.ok()) {
    ITE_LOG_ERROR("{}", fingerprint.status().message());
    return 1;
  }

  StatusOr<ApiKeys> keys = ApiKeys::Load(o.api_keys.keys, o.api_keys.files);
  if (!keys.ok()) {
    ITE_LOG_ERROR("{}", keys.status().message());
    return 2;
  }
  auto api_keys = std::make_shared<const ApiKeys>(std::move(keys).value());
  ServerSecurityOptions security;
  security.tls = o.tls;
  security.require_client_cert = o.tls_require_client_cert;
  security.api_keys = api_keys;
  security.host = o.host;
  StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = MakeServerCredentials(security);
  // The worker links: mTLS when a CA is given (this certificate is the client's), else plaintext.
  StatusOr<std::shared_ptr<grpc::ChannelCredentials>> worker_credentials =
      MakeChannelCredentials(o.tls.ca.empty() ? TlsFiles{} : o.tls);
  for (const Status& st : {credentials.status(), worker_credentials.status()}) {
    if (!st.ok()) {
      ITE_LOG_ERROR("{}", st.message());
      return 2;
    }
  }
  if (!api_keys->empty()) ITE_LOG_INFO("API keys: {} (health checks open)", api_keys->size());

  // Built by start-up, once a worker answers; the service answers UNAVAILABLE until.
  auto metrics = std::make_shared<ServingMetrics>();
  std::unique_ptr<Scheduler> scheduler;
  std::unique_ptr<RequestIntake> intake;
  std::unique_ptr<HttpGateway> http;
  GenerationService service;
  // Declared after the scheduler, so it stops before the scheduler (owner of its clients) goes.
  WorkerDiscoveryOptions wo;
  wo.target = *target;
  wo.max_workers = o.max_workers;
  wo.resolve_interval_ms = o.worker_resolve_interval_ms;
  wo.factory = [&o,
                &worker_credentials](const std::string& address) -> std::unique_ptr<WorkerClient> {
    GrpcWorkerClientOptions co;
    co.address = address;
    co.step_timeout_ms = o.scheduling.step_timeout_ms;
    // Each probe may wait this long; a few fit in the time after which a worker is marked down.
    if (o.scheduling.worker_down_after_ms > 0) {
      co.health_timeout_ms =
          std::clamp(o.scheduling.worker_down_after_ms / 3, 100, co.health_timeout_ms);
    }
    co.credentials = *worker_credentials;
    co.tls_server_name = o.worker_tls_name;
    return std::make_unique<GrpcWorkerClient>(co);
  };
  WorkerDiscovery discovery(wo);
  std::vector<std::string> addresses;
  auto start_up = [&](const std::atomic<bool>& stopping) -> Status {
    std::vector<std::unique_ptr<WorkerClient>> clients = discovery.Start();
    addresses = discovery.SlotNames();
    if (Status waited = WaitForAnyWorker(clients, o.worker_wait_ms, stopping); !waited.ok()) {
      discovery.Stop();  // before `clients`, which it points into, go
      return waited;
    }

    SchedulerOptions so;
    so.max_batch_tokens = o.scheduling.max_batch_tokens;
    so.max_running = o.max_running;
    so.max_waiting = o.scheduling.max_waiting;
    so.max_context = o.max_context;
    so.enable_prefix_cache = !o.scheduling.no_prefix_cache;
    so.down_after_ms = o.scheduling.worker_down_after_ms;
    so.route_load_slack = o.scheduling.route_load_slack;
    so.model_fingerprint = *fingerprint;
    so.on_step = [metrics](int worker, const StepResult& r) { metrics->OnStep(worker, r); };
    scheduler = std::make_unique<Scheduler>(so, tokenizer, std::move(clients));
    ITE_RETURN_IF_ERROR(scheduler->Start());
    SchedulerStats stats = scheduler->Stats();
    for (size_t i = 0; i < stats.workers.size(); ++i) {
      if (!stats.workers[i].up) continue;
      ITE_LOG_INFO("worker {}: {} KV blocks on {}", addresses[i], stats.workers[i].num_blocks,
                   stats.workers[i].device);
    }

    RequestBuilderOptions bo;
    bo.model_name = o.model_name.empty() ? DefaultModelName(o.model) : o.model_name;
    bo.max_context = scheduler->max_context();
    bo.vocab_size = scheduler->model_info().vocab_size;
    bo.default_max_tokens = o.default_max_tokens;
    bo.default_sampling = *defaults;
    std::optional<ImageIntake> images;
    if (scheduler->model_info().image_tokens > 0) {
      ITE_ASSIGN_OR_RETURN(ImageIntake made,
                           ImageIntake::Create(o.model, scheduler->model_info(), {}));
      images = std::move(made);
      ITE_LOG_INFO("images: {} positions each, {}x{} pixels", scheduler->model_info().image_tokens,
                   scheduler->model_info().image_size, scheduler->model_info().image_size);
    }
    auto builder = std::make_unique<RequestBuilder>(bo, tokenizer, std::move(chat_template),
                                                    std::move(images));
    intake =
        std::make_unique<RequestIntake>(scheduler.get(), tokenizer, std::move(builder), metrics);
    if (o.http_port >= 0) {
      HttpGatewayOptions ho;
      ho.host = o.host;
      ho.port = o.http_port;
      ho.max_body_bytes = static_cast<size_t>(o.http_max_body_mib) << 20;
      ho.threads = o.http_threads;
      ho.tls_cert_file = o.tls.cert;
      ho.tls_key_file = o.tls.key;
      if (o.tls_require_client_cert) ho.tls_client_ca_file = o.tls.ca;
      ho.api_keys = api_keys;
      http = std::make_unique<HttpGateway>(intake.get(), ho);
      ITE_RETURN_IF_ERROR(http->Start());
      ITE_LOG_INFO("OpenAI HTTP API on {}://{}:{}/v1", o.tls.cert.empty() ? "http" : "https",
                   o.host, http->port());
      if (!o.http_ready_file.empty())
        ITE_RETURN_IF_ERROR(WriteReadyFile(o.http_ready_file, http->port()));
    }
    service.Attach({intake.get(), addresses, scheduler->block_size()});
    ITE_LOG_INFO("serving '{}' (context {} tokens) with {} worker(s)", bo.model_name,
                 bo.max_context, addresses.size());
    return Status::Ok();
  };

  GrpcServerOptions server;
  server.name = "ite-scheduler";
  server.host = o.host;
  server.port = o.port;
  server.ready_file = o.ready_file;
  server.credentials = *credentials;
  server.start_up = start_up;
  // Ready only while some worker can run requests: a load balancer then sends clients to a
  // scheduler that can serve them. "liveness" stays SERVING: waiting for workers is no reason
  // to restart the scheduler.
  server.ready = [&scheduler] { return scheduler != nullptr && scheduler->AnyWorkerUp(); };
  server.health_services = {"ite.v1.Generation"};
  Status s = RunGrpcServer(server, {&service}, [&] {
    if (intake) intake->StopAccepting();
    ITE_LOG_INFO("draining running requests");
    if (scheduler) scheduler->Shutdown(/*drain=*/true);
  });
  if (http) http->Stop();
  discovery.Stop();
  if (scheduler) scheduler->Shutdown(false);
  if (!s.ok()) {
    ITE_LOG_ERROR("{}", s.ToString());
    return 1;
  }
  return 0;
}

int Main(int argc, char** argv) {
  BlockShutdownSignals();
  SchedulerMainOptions o;
  CLI::App app{"ite-scheduler: ite.v1.Generation service over ite-worker processes"};
  app.add_option("--model", o.model, "model path (.gguf or HF folder): tokenizer, chat template")
      ->required();
  app.add_option("--workers", o.workers,
                 "worker addresses host:port[,host:port...], or dns:///NAME:PORT: every address "
                 "of NAME (a headless Service) is a worker, re-resolved")
      ->required();
  app.add_option("--max-workers", o.max_workers, "dns:///: the most workers taken in")
      ->capture_default_str();
  app.add_option("--worker-resolve-interval-ms", o.worker_resolve_interval_ms,
                 "dns:///: how often the name is resolved again")
      ->capture_default_str();
  app.add_option("--host", o.host, "address to listen on (127.0.0.1: loopback only)")
      ->capture_default_str();
  app.add_option("--port", o.port, "port (0: pick a free one; see --ready-file)")
      ->capture_default_str();
  app.add_option("--served-model-name,--model-name", o.model_name,
                 "name clients see and may send (default: the model file's or folder's name)");
  app.add_option("--ready-file", o.ready_file, "write the bound port here once serving");
  app.add_option("--http-port", o.http_port, "OpenAI HTTP API port (0: any free one; -1: off)")
      ->capture_default_str();
  app.add_option("--http-ready-file", o.http_ready_file, "write the bound HTTP port here");
  app.add_option("--http-max-body-mib", o.http_max_body_mib, "larger HTTP bodies get 400")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--http-threads", o.http_threads, "concurrent HTTP requests (streams)")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  AddSchedulingFlags(app, &o.scheduling);
  app.add_option("--max-running", o.max_running, "running sequences per worker")
      ->capture_default_str();
  app.add_option("--max-context", o.max_context, "context limit (0: the model's)")
      ->capture_default_str();
  app.add_option("--default-max-tokens", o.default_max_tokens, "when a request sets none")
      ->capture_default_str();
  app.add_option("--worker-wait-ms", o.worker_wait_ms,
                 "wait this long at start for the first worker to answer")
      ->capture_default_str();
  app.add_option("--model-fingerprint", o.model_fingerprint,
                 "the model fingerprint workers must serve (others are refused): auto (the "
                 "--model's; the first worker's when --model holds no weights), first (the first "
                 "worker's), or 64 hex digits")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        const bool hex =
            v.size() == 64 && v.find_first_not_of("0123456789abcdef") == std::string::npos;
        return v == "auto" || v == "first" || hex ? "" : "auto, first, or 64 lowercase hex digits";
      });
  AddLogFlags(app, &o.log);
  AddTlsFlags(app, &o.tls,
              "TLS: the CA of the workers' certificates (makes the worker links mTLS, this "
              "certificate the client's) and of client certificates");
  app.add_flag("--tls-require-client-cert", o.tls_require_client_cert,
               "public APIs: refuse clients without a certificate from --tls-ca");
  app.add_option("--worker-tls-name", o.worker_tls_name,
                 "the name the workers' certificates carry, when their addresses are not in it");
  AddApiKeyFlags(app, &o.api_keys);
  app.footer("Exit codes: 0 clean shutdown, 1 failure, 2 usage error.");
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  // As ite-serve: with --port 0 (tests, several instances) HTTP takes a free port too, unless
  // --http-port says otherwise, so that instances never collide on 8000.
  if (o.port == 0 && app.count("--http-port") == 0) o.http_port = 0;
  if (std::optional<int> rc = InitLoggingOrExit("ite-scheduler", o.log)) {
    return *rc;
  }
  return Run(o);
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
