// ite-scheduler: the public ite.v1.Generation service, driving ite-worker processes.
//   ite-scheduler --model PATH --workers host:port[,host:port...] [--port 50051]
//                 [--host 127.0.0.1] [--http-port 8000] [--max-batch-tokens N] [--max-running N]
//                 [--no-prefix-cache]
// Serves the OpenAI-compatible HTTP API on --http-port (-1: off) beside the gRPC service.
// Loads the tokenizer and chat template from the model path (not the weights: the workers hold
// those). Waits for every worker to answer Info, then serves. SIGTERM/SIGINT: new requests get
// UNAVAILABLE, running and queued ones finish (drain), then the process exits.
// Exit codes: 0 clean shutdown, 1 failure (message on stderr), 2 usage error.
#include <CLI/CLI.hpp>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>

#include "common/cli_parse.h"
#include "common/logging.h"
#include "common/ready_file.h"
#include "proto/grpc_server_runner.h"
#include "scheduler/chat/chat_template.h"
#include "scheduler/generation_service.h"
#include "scheduler/grpc_worker_client.h"
#include "scheduler/http/http_gateway.h"
#include "scheduler/request_builder.h"
#include "scheduler/request_intake.h"
#include "scheduler/sampling_defaults.h"
#include "scheduler/scheduler.h"
#include "scheduler/tokenizer/tokenizer.h"

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
  int32_t max_batch_tokens = 2048;
  int32_t max_running = 256;
  int32_t max_context = 0;
  int32_t default_max_tokens = 256;
  bool no_prefix_cache = false;
  int32_t worker_wait_ms = 120000;
  int32_t step_timeout_ms = 120000;
  bool verbose = false;
  std::string log_level = "info";   // -v: debug
  std::string log_format = "text";  // or json
};

std::vector<std::string> SplitCommas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

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

// Waits until the worker answers Info (workers start in parallel with the scheduler and load
// weights first).
StatusOr<WorkerInfo> WaitForWorker(GrpcWorkerClient& client, int32_t wait_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  while (true) {
    StatusOr<WorkerInfo> info = client.Info();
    if (info.ok() || std::chrono::steady_clock::now() > deadline) return info;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

int Run(const SchedulerMainOptions& o) {
  std::vector<std::string> addresses = SplitCommas(o.workers);
  if (addresses.empty()) {
    ITE_LOG_ERROR("--workers: give at least one host:port");
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

  std::vector<std::unique_ptr<WorkerClient>> clients;
  WorkerInfo first_info;
  for (size_t i = 0; i < addresses.size(); ++i) {
    GrpcWorkerClientOptions co;
    co.address = addresses[i];
    co.step_timeout_ms = o.step_timeout_ms;
    auto client = std::make_unique<GrpcWorkerClient>(co);
    StatusOr<WorkerInfo> info = WaitForWorker(*client, o.worker_wait_ms);
    if (!info.ok()) {
      ITE_LOG_ERROR("worker {} did not answer within {} ms: {}", addresses[i], o.worker_wait_ms,
                    info.status().ToString());
      return 1;
    }
    ITE_LOG_INFO("worker {}: {} KV blocks of {} tokens on {}", addresses[i], info->num_blocks,
                 info->block_size, info->device);
    if (i == 0) first_info = *info;
    clients.push_back(std::move(client));
  }

  SchedulerOptions so;
  so.max_batch_tokens = o.max_batch_tokens;
  so.max_running = o.max_running;
  so.max_context = o.max_context;
  so.enable_prefix_cache = !o.no_prefix_cache;
  auto metrics = std::make_shared<ServingMetrics>();
  so.on_step = [metrics](int worker, const StepResult& r) { metrics->OnStep(worker, r); };
  Scheduler scheduler(so, tokenizer, std::move(clients));
  if (Status s = scheduler.Start(); !s.ok()) {
    ITE_LOG_ERROR("scheduler: {}", s.ToString());
    return 1;
  }

  RequestBuilderOptions bo;
  bo.model_name = o.model_name.empty() ? DefaultModelName(o.model) : o.model_name;
  bo.max_context = scheduler.max_context();
  bo.vocab_size = scheduler.model_info().vocab_size;
  bo.default_max_tokens = o.default_max_tokens;
  StatusOr<SamplingParams> defaults = SamplingDefaultsForModel(o.model);
  if (!defaults.ok()) {
    ITE_LOG_ERROR("{}", defaults.status().ToString());
    return 1;
  }
  bo.default_sampling = *defaults;
  ITE_LOG_INFO("sampling defaults from the model: {}", DescribeSamplingDefaults(*defaults));
  auto builder = std::make_unique<RequestBuilder>(bo, tokenizer, std::move(chat_template));
  RequestIntake intake(&scheduler, tokenizer, std::move(builder), metrics);
  GenerationService service(&intake, addresses, first_info.block_size);
  ITE_LOG_INFO("serving '{}' (context {} tokens) with {} worker(s)", bo.model_name, bo.max_context,
               addresses.size());

  std::unique_ptr<HttpGateway> http;
  if (o.http_port >= 0) {
    HttpGatewayOptions ho;
    ho.host = o.host;
    ho.port = o.http_port;
    ho.max_body_bytes = static_cast<size_t>(o.http_max_body_mib) << 20;
    ho.threads = o.http_threads;
    http = std::make_unique<HttpGateway>(&intake, ho);
    if (Status s = http->Start(); !s.ok()) {
      ITE_LOG_ERROR("{}", s.ToString());
      return 1;
    }
    ITE_LOG_INFO("OpenAI HTTP API on http://{}:{}/v1", o.host, http->port());
    if (!o.http_ready_file.empty()) {
      if (Status s = WriteReadyFile(o.http_ready_file, http->port()); !s.ok()) {
        ITE_LOG_ERROR("{}", s.ToString());
        return 1;
      }
    }
  }

  GrpcServerOptions server;
  server.name = "ite-scheduler";
  server.host = o.host;
  server.port = o.port;
  server.ready_file = o.ready_file;
  Status s = RunGrpcServer(server, {&service}, [&] {
    intake.StopAccepting();
    ITE_LOG_INFO("draining running requests");
    scheduler.Shutdown(/*drain=*/true);
  });
  if (http) http->Stop();
  scheduler.Shutdown(false);
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
  app.add_option("--workers", o.workers, "comma-separated worker addresses host:port")->required();
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
  app.add_option("--max-batch-tokens", o.max_batch_tokens, "tokens per step")
      ->capture_default_str();
  app.add_option("--max-running", o.max_running, "running sequences per worker")
      ->capture_default_str();
  app.add_option("--max-context", o.max_context, "context limit (0: the model's)")
      ->capture_default_str();
  app.add_option("--default-max-tokens", o.default_max_tokens, "when a request sets none")
      ->capture_default_str();
  app.add_flag("--no-prefix-cache", o.no_prefix_cache, "disable the radix prefix cache");
  app.add_option("--worker-wait-ms", o.worker_wait_ms, "wait this long for workers at start")
      ->capture_default_str();
  app.add_option("--step-timeout-ms", o.step_timeout_ms, "a worker step slower than this fails")
      ->capture_default_str();
  app.add_flag("-v,--verbose", o.verbose, "debug logging (--log-level debug)");
  app.add_option("--log-level", o.log_level, "trace, debug, info, warn or error")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format, "text or json (one JSON object per line)")
      ->capture_default_str();
  app.footer("Exit codes: 0 clean shutdown, 1 failure, 2 usage error.");
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  if (std::optional<int> rc =
          InitLoggingOrExit("ite-scheduler", o.verbose, o.log_level, o.log_format)) {
    return *rc;
  }
  return Run(o);
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
