// ite-worker: one process per GPU (or the CPU backend) serving ite.v1.Worker.
//   ite-worker --model PATH --port P [--host H] [--device cpu|cuda] [--threads N]
//              [--dtype auto|f32|bf16|f16|q8_0] [--kv-dtype auto|f32|bf16] [--kv-blocks N]
//              [--block-size N] [--ready-file F] [--metrics-port P [--metrics-ready-file F]]
//              [--tls-cert F --tls-key F --tls-ca F]
//              [--tensor-parallel-size N]
//              CUDA: [--gpu I] [--gpu-memory-utilization F]
//                    [--max-step-tokens N] [--max-seqs N] [--enforce-eager] [--batch-invariant]
//   ite-worker --list-devices     prints one line per visible CUDA device and exits
// --tensor-parallel-size N: one process drives a group of N ranks, each holding its shard of
// the model (GPUs --gpu .. --gpu + N - 1 over NCCL; on the CPU, N threads sharing memory), and
// serves as one worker.
// Listens on 127.0.0.1 unless --host says otherwise. --metrics-port serves GET /metrics
// (Prometheus text, worker_metrics.h) on that port of the same host (0: any free one). With
// --tls-cert it serves TLS and takes only callers whose client certificate chains to --tls-ca
// (its scheduler).
// Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 2 usage, 1 load or serve failure, 3 the
// device failed while serving, 4 a model file changed in place while served
// (model_file_guard.h; message on stderr).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "common/cli_parse.h"
#include "common/logging.h"
#include "common/model_fingerprint.h"
#include "proto/grpc_security.h"
#include "proto/grpc_server_runner.h"
#include "proto/security_flags.h"
#include "worker/backend/cpu/cpu_backend.h"
#if ITE_HAVE_CUDA_BACKEND
#include "worker/backend/cuda/cuda_backend.h"
#endif
#include "worker/main/model_file_guard.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"
#include "worker/parallel/in_process_communicator.h"
#include "worker/parallel/tensor_parallel_backend.h"
#if ITE_HAVE_NCCL
#include "worker/parallel/nccl_communicator.h"
#endif
#include "worker/service/grpc_worker_service.h"
#include "worker/service/metrics_http_server.h"
#include "worker/service/worker_engine.h"

namespace ite {
namespace {

struct WorkerOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 0;
  std::string device = "cpu";
  int threads = 0;  // 0: all hardware threads
  int32_t kv_blocks = 0;
  int32_t block_size = 16;
  int64_t kv_mib = 512;
  std::string dtype = "auto";
  std::string kv_dtype = "auto";
  std::string ready_file;
  int metrics_port = -1;  // -1: no metrics server
  std::string metrics_ready_file;
  bool verbose = false;
  TlsFiles tls;
  // CUDA
  int gpu = 0;
  double gpu_memory_utilization = 0.0;
  int32_t max_step_tokens = 8192;
  int32_t max_seqs = 256;
  bool enforce_eager = false;
  bool batch_invariant = false;
  int tensor_parallel_size = 1;
};

// Why --device cuda cannot run here, or "" when it can (a CUDA build that sees a device).
std::string CudaUnavailableReason() {
#if ITE_HAVE_CUDA_BACKEND
  if (CudaDeviceCount() > 0) return "";
  return "no CUDA device is visible (no NVIDIA GPU or driver here, or CUDA_VISIBLE_DEVICES hides "
         "them; nvidia-smi says which); --device cpu runs on the CPU";
#else
  return "this ite-worker was built without CUDA (configure with -DITE_WITH_CUDA=ON where nvcc "
         "is installed); --device cpu runs on the CPU";
#endif
}

// One ordinal per visible CUDA device on stdout (ite-serve reads them); when there is none, the
// reason on stderr.
int ListDevices() {
  if (std::string why = CudaUnavailableReason(); !why.empty()) {
    std::fprintf(stderr, "ite-worker: %s\n", why.c_str());
    return 0;
  }
#if ITE_HAVE_CUDA_BACKEND
  const int n = CudaDeviceCount();
  for (int i = 0; i < n; ++i) std::printf("%d\n", i);
#endif
  return 0;
}

// One rank's backend (the whole model when tp_size is 1) on GPU o.gpu + rank, or the CPU.
StatusOr<std::unique_ptr<Backend>> CreateRankBackend(const WorkerOptions& o, int rank,
                                                     Communicator* comm) {
  ITE_ASSIGN_OR_RETURN(LoadOptions load, LoadOptionsForDType(o.dtype, o.device));
  load.show_progress = rank == 0;  // a line per second of loading: a big model not looking hung
  load.tp_rank = rank;
  load.tp_size = o.tensor_parallel_size;
  const auto t0 = std::chrono::steady_clock::now();
  ITE_ASSIGN_OR_RETURN(LoadedModel model, LoadModel(o.model, load));
  ITE_LOG_INFO("read {} ({}) in {:.3f} s; --dtype {}: {}", o.model, model.format,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
               o.dtype, DescribeWeights(model.weights));
  KvCacheOptions kv;
  kv.block_size = o.block_size;
  kv.num_blocks = o.kv_blocks;
  kv.max_kv_bytes = o.kv_mib << 20;
  if (o.kv_dtype != "auto" && o.kv_dtype != "f32" && o.kv_dtype != "bf16")
    return InvalidArgument("--kv-dtype {}: auto, f32 or bf16", o.kv_dtype);
  if (o.device == "cuda" && o.kv_dtype != "auto")
    return InvalidArgument("--kv-dtype {}: the CUDA KV pool is in the model's dtype", o.kv_dtype);
  kv.cpu_bf16 = o.kv_dtype == "bf16";
  if (o.device == "cuda") {
#if ITE_HAVE_CUDA_BACKEND
    CudaBackendOptions c;
    c.device = o.gpu + rank;
    c.comm = comm;
    c.kv = kv;
    c.gpu_memory_utilization = o.gpu_memory_utilization;
    c.max_step_tokens = o.max_step_tokens;
    c.max_seqs = o.max_seqs;
    c.enforce_eager = o.enforce_eager;
    c.batch_invariant = o.batch_invariant;
    return CreateCudaBackend(std::move(model), c);
#endif
  }
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency());
  // The ranks share the cores.
  threads = std::max(1, threads / o.tensor_parallel_size);
  return CreateCpuBackend(std::move(model), kv, threads, comm);
}

// N ranks as one backend: their communicators (NCCL across GPUs, or the in-process group of
// CPU ranks) live as long as it does.
StatusOr<std::unique_ptr<Backend>> CreateGroupBackend(const WorkerOptions& o) {
  const int n = o.tensor_parallel_size;
  TensorParallelOptions tp;
  tp.size = n;
  if (o.device == "cpu") {
    auto group = std::make_shared<InProcessGroup>(InProcessGroupOptions{n, nullptr, 600000});
    tp.make_rank = [&o, group](int r) { return CreateRankBackend(o, r, group->rank(r)); };
    tp.abort = [group] { group->Abort(); };
    tp.group_failed = [group] { return group->rank(0)->failed(); };
    tp.keep_alive = group;
    return CreateTensorParallelBackend(tp);
  }
#if ITE_HAVE_CUDA_BACKEND && ITE_HAVE_NCCL
  const int visible = CudaDeviceCount();
  if (o.gpu + n > visible)
    return FailedPrecondition(
        "--tensor-parallel-size {} from --gpu {} needs GPUs {}..{}, {} visible", n, o.gpu, o.gpu,
        o.gpu + n - 1, visible);
  ITE_ASSIGN_OR_RETURN(CommId id, NcclCreateId());
  auto comms = std::make_shared<std::vector<std::unique_ptr<Communicator>>>(n);
  tp.make_rank = [&o, id, comms, n](int r) -> StatusOr<std::unique_ptr<Backend>> {
    NcclOptions no;
    no.rank = r;
    no.size = n;
    no.device = o.gpu + r;
    ITE_ASSIGN_OR_RETURN((*comms)[r], CreateNcclCommunicator(id, no));
    return CreateRankBackend(o, r, (*comms)[r].get());
  };
  tp.group_failed = [comms] {
    for (const auto& c : *comms) {
      if (c != nullptr && c->failed()) return true;
    }
    return false;
  };
  tp.keep_alive = comms;
  return CreateTensorParallelBackend(tp);
#else
  return FailedPrecondition(
      "--tensor-parallel-size {} with --device cuda: this ite-worker was built without NCCL", n);
#endif
}

StatusOr<std::unique_ptr<Backend>> CreateBackend(const WorkerOptions& o) {
  if (o.device != "cpu" && o.device != "cuda")
    return InvalidArgument("--device {}: cpu or cuda", o.device);
  // Checked before loading: a model can take minutes to read only to find there is no GPU.
  if (o.device == "cuda") {
    if (std::string why = CudaUnavailableReason(); !why.empty())
      return FailedPrecondition("--device cuda: {}", why);
  }
  if (o.tensor_parallel_size > 1) return CreateGroupBackend(o);
  return CreateRankBackend(o, 0, nullptr);
}

int Main(int argc, char** argv) {
  BlockShutdownSignals();
  WorkerOptions o;
  CLI::App app{"ite-worker: serves ite.v1.Worker (model forward + sampling) for ite-scheduler"};
  app.add_option("--model", o.model, "model: .gguf file or Hugging Face folder");
  app.add_option("--host", o.host, "address to listen on (127.0.0.1: loopback only)")
      ->capture_default_str();
  app.add_option("--port", o.port, "port (0: pick a free one; see --ready-file)")
      ->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads (0: all)")->capture_default_str();
  app.add_option("--kv-blocks", o.kv_blocks, "KV blocks in the pool (0: from --kv-mib)")
      ->capture_default_str();
  app.add_option("--block-size", o.block_size, "tokens per KV block")->capture_default_str();
  app.add_option("--kv-mib", o.kv_mib, "KV pool size in MiB when --kv-blocks is 0")
      ->capture_default_str();
  app.add_option(
         "--kv-dtype", o.kv_dtype,
         "KV cache: auto (CPU f32, CUDA the model dtype), f32 or bf16 (CPU: half the memory)")
      ->capture_default_str();
  app.add_option("--ready-file", o.ready_file, "write the bound port here once serving");
  app.add_option("--metrics-port", o.metrics_port,
                 "serve GET /metrics (Prometheus text) on this port (-1: off, 0: any free one)")
      ->capture_default_str();
  app.add_option("--metrics-ready-file", o.metrics_ready_file,
                 "write the metrics port here once it serves");
  app.add_option("--gpu", o.gpu, "CUDA device ordinal")->capture_default_str();
  app.add_option("--dtype", o.dtype,
                 "weights: auto (CPU: as stored, block formats included; CUDA: bf16), f32 (CPU), "
                 "bf16, f16 (CUDA), q8_0 (CPU: every matrix re-quantized to Q8_0)")
      ->capture_default_str();
  app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                 "CUDA: size the KV pool so the GPU is used to this fraction (0: --kv-mib)")
      ->capture_default_str();
  app.add_option("--max-step-tokens", o.max_step_tokens, "CUDA: token rows one step may carry")
      ->capture_default_str();
  app.add_option("--max-seqs", o.max_seqs, "CUDA: sequences one step may carry")
      ->capture_default_str();
  app.add_flag("--enforce-eager", o.enforce_eager, "CUDA: no CUDA graphs");
  app.add_flag("--batch-invariant", o.batch_invariant,
               "CUDA: a request's tokens do not depend on the batch it runs in (slower)");
  app.add_option("--tensor-parallel-size", o.tensor_parallel_size,
                 "ranks one model is split over (CUDA: one GPU each from --gpu on)")
      ->capture_default_str();
  bool list_devices = false;
  app.add_flag("--list-devices", list_devices, "print the visible CUDA devices and exit");
  app.add_flag("-v,--verbose", o.verbose, "debug logging");
  AddTlsFlags(app, &o.tls, "TLS: the CA a caller's client certificate must chain to (required)");
  app.footer(
      "Exit codes: 0 clean shutdown, 1 load/serve failure, 2 usage error, 3 device failure, 4 "
      "a model file changed in place while served.");
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  if (list_devices) return ListDevices();
  if (o.model.empty()) {
    std::fprintf(stderr, "--model is required\n");
    return 2;
  }
  InitLogging("ite-worker", o.verbose);
  if (o.block_size <= 0 || o.kv_blocks < 0 || o.port < 0 || o.port > 65535 || o.gpu < 0 ||
      o.metrics_port < -1 || o.metrics_port > 65535 || o.max_step_tokens < 1 || o.max_seqs < 1 ||
      o.gpu_memory_utilization < 0 || o.gpu_memory_utilization > 1 ||
      o.tensor_parallel_size < 1) {
    ITE_LOG_ERROR(
        "--block-size must be > 0, --kv-blocks >= 0, --port in [0, 65535], --metrics-port in "
        "[-1, 65535], --gpu >= 0, "
        "--max-step-tokens and --max-seqs >= 1, --gpu-memory-utilization in [0, 1], "
        "--tensor-parallel-size >= 1");
    return 2;
  }
  // Checked before the weights load: a typo in a flag should not cost a minute of loading.
  if (o.tls.enabled() && (o.tls.cert.empty() || o.tls.ca.empty())) {
    ITE_LOG_ERROR(
        "a worker with TLS needs --tls-cert, --tls-key and --tls-ca: it takes only "
        "callers with a client certificate from that CA");
    return 2;
  }
  ServerSecurityOptions security;
  security.tls = o.tls;
  security.require_client_cert = o.tls.enabled();
  security.host = o.host;
  StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials = MakeServerCredentials(security);
  if (!credentials.ok()) {
    ITE_LOG_ERROR("{}", credentials.status().message());
    return 2;
  }

  // Identities taken before loading, so that a change during the load is caught too.
  ModelFileGuard guard(o.model, std::chrono::seconds(1), [](const std::string& why) {
    ITE_LOG_ERROR("{}: its weights may have changed under it; exiting (code 4) so that a fresh "
                  "worker loads the file as it is now",
                  why);
    spdlog::default_logger()->flush();
    std::fflush(nullptr);
    std::_Exit(4);
  });
  ExitClearlyOnSigbus(4);
  // Right after the guard's identities and before the load opens the files: a change in place
  // from here on makes the worker exit (the guard), so what it serves is what was fingerprinted.
  // One fingerprint for the process: a tensor-parallel group is one worker of one model.
  const auto fingerprint_t0 = std::chrono::steady_clock::now();
  StatusOr<std::string> fingerprint = ModelFingerprint(o.model);
  if (!fingerprint.ok()) {
    ITE_LOG_ERROR("model fingerprint: {}", fingerprint.status().ToString());
    return 1;
  }
  ITE_LOG_DEBUG(
      "model fingerprint in {:.3f} s",
      std::chrono::duration<double>(std::chrono::steady_clock::now() - fingerprint_t0).count());
  StatusOr<std::unique_ptr<Backend>> backend = CreateBackend(o);
  if (!backend.ok()) {
    ITE_LOG_ERROR("{}", backend.status().ToString());
    return 1;
  }
  const std::string device = (*backend)->device();
  auto engine = std::make_unique<WorkerEngine>(std::move(backend).value(), device, *fingerprint);
  WorkerInfo info = engine->Info();
  // Started before the gRPC service takes the engine; the service outlives it (stopped below).
  std::unique_ptr<MetricsHttpServer> metrics;
  if (o.metrics_port >= 0) {
    MetricsHttpServerOptions m;
    m.host = o.host;
    m.port = o.metrics_port;
    m.ready_file = o.metrics_ready_file;
    const WorkerEngine* e = engine.get();
    metrics = std::make_unique<MetricsHttpServer>(m, [e] { return e->RenderMetrics(); });
    if (Status s = metrics->Start(); !s.ok()) {
      ITE_LOG_ERROR("{}", s.ToString());
      return 1;
    }
    ITE_LOG_INFO("metrics on http://{}:{}/metrics", o.host, metrics->port());
  }
  ITE_LOG_INFO("model {} ({} layers, fingerprint {}), {} KV blocks of {} tokens on {}",
               info.model.name, info.model.num_layers, info.model_fingerprint, info.num_blocks,
               info.block_size, info.device);
  // A device that can run no more steps (a lost CUDA context) is not coming back: exit, and
  // ite-serve (or Kubernetes) starts a fresh worker; the scheduler meanwhile fails this worker's
  // requests with UNAVAILABLE and takes the new one back.
  GrpcWorkerService service(std::move(engine), [] {
    ITE_LOG_ERROR("the device failed and cannot run more steps; exiting for a restart");
    std::fflush(nullptr);
    std::_Exit(3);
  });

  guard.Start();

  GrpcServerOptions server;
  server.name = "ite-worker";
  server.host = o.host;
  server.port = o.port;
  server.ready_file = o.ready_file;
  server.credentials = *credentials;
  Status s = RunGrpcServer(server, {&service}, nullptr);
  if (metrics) metrics->Stop();
  if (!s.ok()) {
    ITE_LOG_ERROR("{}", s.ToString());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
