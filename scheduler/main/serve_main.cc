// ite-serve: the whole service on one host. Starts N ite-worker processes (on free loopback
// ports) and one ite-scheduler in front of them, waits until they serve, and supervises them:
//   ite-serve --model PATH [--host H] [--port 50051] [--http-port 8000] [--device cpu|cuda]
//             [--workers N] [--gpus 0,1] [--gpu-memory-utilization F] [--enforce-eager]
//             [--batch-invariant] [--dtype auto|f32|bf16|f16|q8_0] [--kv-dtype auto|f32|bf16]
//             [--worker-metrics-port P]
// The scheduler serves gRPC on --port and the OpenAI HTTP API on --http-port (-1: off; when
// --port is 0 and --http-port is not given, HTTP takes any free port too, so that instances
// started for tests never collide on 8000). --worker-metrics-port P gives worker i its own
// GET /metrics on 127.0.0.1:P+i (0: free ports; each is logged, and kept across restarts).
// With --device cuda there is one worker per GPU: those of --gpus, else every visible one.
// --tensor-parallel-size N: each worker is a group of N ranks that holds one model split N ways
// (ite-worker --tensor-parallel-size): with cuda, one worker per N consecutive GPUs of the list,
// which must divide into such groups; on the CPU, each of --workers splits over threads. A rank
// that fails takes its worker process down, and the whole group restarts as one worker.
// SIGTERM/SIGINT: the scheduler drains running requests and exits, then the workers stop; every
// child is reaped (and dies with ite-serve even if ite-serve is SIGKILLed). A worker that dies is
// reported on stderr and restarted on its port (the scheduler takes it back), up to
// --max-restarts times; a worker that dies once more, or a scheduler that dies, shuts the rest
// down and ends ite-serve with exit code 1.
// Security: --tls-cert/--tls-key/--tls-ca serve both public APIs over TLS and make every
// scheduler-worker link mTLS (the same certificate on both ends; the workers take only callers
// whose certificate chains to the CA). --api-key/--api-key-file reach the scheduler through a
// file in ite-serve's private run directory, never its command line.
// Exit codes: 0 clean shutdown, 1 a child failed, 2 usage error.
#include <fmt/ranges.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/cli_parse.h"
#include "common/logging.h"
#include "common/ready_file.h"
#include "proto/grpc_security.h"
#include "proto/security_flags.h"
#include "scheduler/main/child_process.h"
#include "scheduler/main/shared_flags.h"

namespace ite {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct ServeOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 50051;
  int http_port = 8000;  // -1: off
  std::string http_ready_file;
  std::string device = "cpu";
  int workers = 1;
  int threads = 0;  // per worker; 0: hardware threads / workers
  int32_t kv_blocks = 0;
  int32_t block_size = 16;
  int64_t kv_mib = 512;
  SchedulingFlags scheduling;
  int32_t start_timeout_s = 300;
  int32_t drain_timeout_s = 120;
  int32_t max_restarts = 5;
  int worker_metrics_port = -1;  // -1: off
  std::string ready_file;
  std::string served_model_name;  // empty: the scheduler's default (the file or folder name)
  LogFlags log;
  TlsFiles tls;
  bool tls_require_client_cert = false;
  ApiKeyFlags api_keys;
  // CUDA
  std::string gpus;                     // "0,1"; empty: every visible GPU
  std::vector<int> gpu_ids;             // resolved from gpus, one worker each
  double gpu_memory_utilization = 0.0;  // 0: the KV pool is --kv-mib
  bool enforce_eager = false;
  bool batch_invariant = false;
  std::string dtype = "auto";
  std::string kv_dtype = "auto";
  int tensor_parallel_size = 1;
};

// The GPUs `ite-worker --list-devices` reports (one ordinal per line).
std::vector<int> VisibleGpus(const fs::path& worker_bin) {
  std::vector<int> ids;
  const std::string cmd = "'" + worker_bin.string() + "' --list-devices";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return ids;
  int id = 0;
  while (std::fscanf(p, "%d", &id) == 1) ids.push_back(id);
  ::pclose(p);
  return ids;
}

sigset_t SupervisedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  return set;
}

// Waits for a child's ready file (its bound port). Returns 0 on timeout, on the child's exit or
// on a shutdown signal (`*stop` set).
int WaitForPort(ChildProcess& child, const fs::path& file, int timeout_s, bool* stop) {
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  sigset_t set = SupervisedSignals();
  timespec tick{0, 50 * 1000 * 1000};
  while (Clock::now() < deadline) {
    std::ifstream in(file);
    int port = 0;
    if (in >> port && port > 0) return port;
    if (child.Exited()) {
      ITE_LOG_ERROR("{} {} before serving", child.name(), child.exit_description());
      return 0;
    }
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      *stop = true;
      return 0;
    }
  }
  ITE_LOG_ERROR("{} did not serve within {} s", child.name(), timeout_s);
  return 0;
}

std::vector<std::string> WorkerArgv(const ServeOptions& o, const fs::path& bin, int port,
                                    const fs::path& ready, int threads, int index,
                                    int metrics_port) {
  std::vector<std::string> argv = {bin.string(),
                                   "--model",
                                   o.model,
                                   "--host",
                                   "127.0.0.1",
                                   "--port",
                                   std::to_string(port),
                                   "--ready-file",
                                   ready.string(),
                                   "--device",
                                   o.device,
                                   "--threads",
                                   std::to_string(threads),
                                   "--kv-blocks",
                                   std::to_string(o.kv_blocks),
                                   "--block-size",
                                   std::to_string(o.block_size),
                                   "--kv-mib",
                                   std::to_string(o.kv_mib),
                                   "--dtype",
                                   o.dtype,
                                   "--kv-dtype",
                                   o.kv_dtype};
  if (metrics_port >= 0) {
    const fs::path metrics_ready = ready.parent_path() / fmt::format("worker{}.metrics", index);
    argv.insert(argv.end(), {"--metrics-port", std::to_string(metrics_port), "--metrics-ready-file",
                             metrics_ready.string()});
  }
  if (o.tls.enabled()) {
    argv.insert(argv.end(),
                {"--tls-cert", o.tls.cert, "--tls-key", o.tls.key, "--tls-ca", o.tls.ca});
  }
  if (o.tensor_parallel_size > 1) {
    argv.push_back("--tensor-parallel-size");
    argv.push_back(std::to_string(o.tensor_parallel_size));
  }
  if (o.device == "cuda") {
    // A group's ranks are the worker's --gpu and the ordinals after it.
    const std::vector<std::string> cuda = {
        "--gpu",
        std::to_string(o.gpu_ids.at(index * o.tensor_parallel_size)),
        "--gpu-memory-utilization",
        std::to_string(o.gpu_memory_utilization),
        "--max-step-tokens",
        std::to_string(o.scheduling.max_batch_tokens)};
    argv.insert(argv.end(), cuda.begin(), cuda.end());
    if (o.enforce_eager) argv.push_back("--enforce-eager");
    if (o.batch_invariant) argv.push_back("--batch-invariant");
  }
  return argv;
}

int Serve(ServeOptions o) {
  fs::path self = fs::read_symlink("/proc/self/exe");
  fs::path worker_bin = self.parent_path() / "ite-worker";
  fs::path scheduler_bin = self.parent_path() / "ite-scheduler";
  for (const fs::path& p : {worker_bin, scheduler_bin}) {
    if (!fs::exists(p)) {
      ITE_LOG_ERROR("{} not found (ite-serve runs the binaries beside it)", p.string());
      return 1;
    }
  }
  if (o.device == "cuda") {
    if (o.gpus.empty()) {
      o.gpu_ids = VisibleGpus(worker_bin);
    } else {
      std::stringstream in(o.gpus);
      for (std::string id; std::getline(in, id, ',');) {
        char* end = nullptr;
        const long v = std::strtol(id.c_str(), &end, 10);
        if (id.empty() || *end != '\0' || v < 0) {
          ITE_LOG_ERROR("--gpus {}: a comma-separated list of GPU ordinals", o.gpus);
          return 2;
        }
        o.gpu_ids.push_back(static_cast<int>(v));
      }
    }
    if (o.gpu_ids.empty()) {
      ITE_LOG_ERROR("--device cuda: no CUDA device to run on (ite-worker's reason is above)");
      return 1;
    }
    const int n = o.tensor_parallel_size, gpus = static_cast<int>(o.gpu_ids.size());
    if (gpus % n != 0) {
      ITE_LOG_ERROR("--tensor-parallel-size {} does not divide the {} GPU(s) {} into groups", n,
                    gpus, fmt::join(o.gpu_ids, ","));
      return 2;
    }
    for (int g = 0; g < gpus; g += n) {
      for (int r = 1; r < n; ++r) {
        if (o.gpu_ids[g + r] != o.gpu_ids[g] + r) {
          ITE_LOG_ERROR(
              "--tensor-parallel-size {}: the GPUs of a group must be consecutive "
              "ordinals ({} follows {} in --gpus {})",
              n, o.gpu_ids[g + r], o.gpu_ids[g + r - 1], o.gpus);
          return 2;
        }
      }
    }
    o.workers = gpus / n;
    if (n == 1) {
      ITE_LOG_INFO("one worker per GPU: {}", fmt::join(o.gpu_ids, ","));
    } else {
      ITE_LOG_INFO("{} worker(s) of {} GPUs each (tensor parallel): {}", o.workers, n,
                   fmt::join(o.gpu_ids, ","));
    }
  }
  // Checked here, before any child starts, so that a mistake is one clear message.
  std::string worker_tls_name;
  if (o.tls.enabled()) {
    if (o.tls.cert.empty() || o.tls.key.empty() || o.tls.ca.empty()) {
      ITE_LOG_ERROR(
          "TLS needs --tls-cert, --tls-key and --tls-ca together: the CA checks the "
          "scheduler-worker links");
      return 2;
    }
    // The workers listen on 127.0.0.1, which a certificate rarely names: the scheduler checks
    // their certificate for the name it carries instead.
    StatusOr<std::string> name = CertificateName(o.tls.cert);
    if (!name.ok()) {
      ITE_LOG_ERROR("{}", name.status().message());
      return 2;
    }
    worker_tls_name = *name;
  }
  StatusOr<ApiKeys> keys = ApiKeys::Load(o.api_keys.keys, o.api_keys.files);
  if (!keys.ok()) {
    ITE_LOG_ERROR("{}", keys.status().message());
    return 2;
  }
  // NCCL in the workers: NVLink multicast stays off unless the environment already decided.
  ::setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  std::string tmpl = (fs::temp_directory_path() / "ite-serve.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    ITE_LOG_ERROR("cannot create a temporary directory");
    return 1;
  }
  fs::path run_dir = tmpl;  // mode 0700 (mkdtemp)
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  int threads = o.threads > 0 ? o.threads : std::max(1, hw / o.workers);

  bool stop = false;
  int rc = 0;
  std::vector<std::unique_ptr<ChildProcess>> workers;
  std::vector<int> worker_ports;
  std::vector<int> metrics_ports(o.workers, -1);
  if (o.worker_metrics_port >= 0) {
    for (int i = 0; i < o.workers; ++i) {
      metrics_ports[i] = o.worker_metrics_port == 0 ? 0 : o.worker_metrics_port + i;
    }
  }
  std::vector<int> restarts(o.workers, 0);
  ChildProcess scheduler;
  auto cleanup = [&] {
    if (scheduler.running()) {
      ITE_LOG_INFO("stopping ite-scheduler (draining, up to {} s)", o.drain_timeout_s);
      scheduler.Stop(std::chrono::seconds(o.drain_timeout_s));
      ITE_LOG_INFO("ite-scheduler {}", scheduler.exit_description());
    }
    for (auto& w : workers) {
      if (w->running()) {
        w->Stop(std::chrono::seconds(10));
        ITE_LOG_INFO("{} {}", w->name(), w->exit_description());
      }
    }
    std::error_code ec;
    fs::remove_all(run_dir, ec);
  };

  // Workers load their weights in parallel.
  for (int i = 0; i < o.workers; ++i) {
    auto w = std::make_unique<ChildProcess>();
    fs::path ready = run_dir / fmt::format("worker{}.port", i);
    Status s = w->Start(fmt::format("worker {}", i),
                        WorkerArgv(o, worker_bin, 0, ready, threads, i, metrics_ports[i]));
    if (!s.ok()) {
      ITE_LOG_ERROR("{}", s.ToString());
      cleanup();
      return 1;
    }
    workers.push_back(std::move(w));
  }
  for (int i = 0; i < o.workers; ++i) {
    int port = WaitForPort(*workers[i], run_dir / fmt::format("worker{}.port", i),
                           o.start_timeout_s, &stop);
    if (port == 0) {
      cleanup();
      return stop ? 0 : 1;
    }
    worker_ports.push_back(port);
    ITE_LOG_INFO("worker {} (pid {}) serving on 127.0.0.1:{}", i, workers[i]->pid(), port);
    if (metrics_ports[i] >= 0) {
      // Written before the worker's gRPC port, so it is there now; a restart reuses the port.
      std::ifstream in(run_dir / fmt::format("worker{}.metrics", i));
      int mp = 0;
      if (in >> mp && mp > 0) metrics_ports[i] = mp;
      ITE_LOG_INFO("worker {} metrics on http://127.0.0.1:{}/metrics", i, metrics_ports[i]);
    }
  }

  std::string addresses;
  for (int p : worker_ports) {
    addresses += (addresses.empty() ? "" : ",") + fmt::format("127.0.0.1:{}", p);
  }
  std::vector<std::string> sargv = {scheduler_bin.string(),
                                    "--model",
                                    o.model,
                                    "--workers",
                                    addresses,
                                    "--host",
                                    o.host,
                                    "--port",
                                    std::to_string(o.port),
                                    "--ready-file",
                                    (run_dir / "scheduler.port").string(),
                                    "--http-port",
                                    std::to_string(o.http_port),
                                    "--http-ready-file",
                                    (run_dir / "scheduler.http.port").string()};
  if (!o.served_model_name.empty()) {
    sargv.push_back("--served-model-name");
    sargv.push_back(o.served_model_name);
  }
  for (const std::vector<std::string>& more : {SchedulingArgs(o.scheduling), LogArgs(o.log)})
    sargv.insert(sargv.end(), more.begin(), more.end());
  if (o.tls.enabled()) {
    sargv.insert(sargv.end(), {"--tls-cert", o.tls.cert, "--tls-key", o.tls.key, "--tls-ca",
                               o.tls.ca, "--worker-tls-name", worker_tls_name});
    if (o.tls_require_client_cert) sargv.push_back("--tls-require-client-cert");
  }
  for (const std::string& f : o.api_keys.files) sargv.insert(sargv.end(), {"--api-key-file", f});
  if (!o.api_keys.keys.empty()) {
    const fs::path key_file = run_dir / "api_keys";
    std::ofstream out(key_file);
    for (const std::string& k : o.api_keys.keys) out << k << "\n";
    out.close();
    if (!out) {
      ITE_LOG_ERROR("cannot write {}", key_file.string());
      cleanup();
      return 1;
    }
    // Beside any --api-key-file: the scheduler takes the keys of every file it is given.
    sargv.insert(sargv.end(), {"--api-key-file", key_file.string()});
  }
  if (Status s = scheduler.Start("ite-scheduler", sargv); !s.ok()) {
    ITE_LOG_ERROR("{}", s.ToString());
    cleanup();
    return 1;
  }
  int port = WaitForPort(scheduler, run_dir / "scheduler.port", o.start_timeout_s, &stop);
  if (port == 0) {
    cleanup();
    return stop ? 0 : 1;
  }
  int http_port = -1;
  if (o.http_port >= 0) {
    // Written before the gRPC one, so it is there once the scheduler serves.
    std::ifstream in(run_dir / "scheduler.http.port");
    if (!(in >> http_port)) http_port = -1;
  }
  ITE_LOG_INFO("ready: ite.v1.Generation on {}:{}{} ({} worker(s), device {})", o.host, port,
               http_port > 0 ? fmt::format(", OpenAI HTTP API on {}://{}:{}/v1",
                                           o.tls.enabled() ? "https" : "http", o.host, http_port)
                             : std::string(),
               o.workers, o.device);
  for (const auto& [file, value] :
       {std::pair{o.ready_file, port}, {o.http_ready_file, http_port}}) {
    if (file.empty() || value <= 0) continue;
    if (Status s = WriteReadyFile(file, value); !s.ok()) ITE_LOG_ERROR("{}", s.ToString());
  }

  // Supervise until a shutdown signal or the scheduler's death.
  sigset_t set = SupervisedSignals();
  timespec tick{0, 200 * 1000 * 1000};
  while (!stop) {
    int sig = sigtimedwait(&set, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      ITE_LOG_INFO("signal {} received: draining and shutting down", sig);
      break;
    }
    if (scheduler.Exited()) {
      ITE_LOG_ERROR("ite-scheduler {}; shutting down", scheduler.exit_description());
      rc = 1;
      break;
    }
    for (int i = 0; i < o.workers; ++i) {
      ChildProcess& w = *workers[i];
      // Only a worker that was running and has just exited; one left down stays skipped.
      if (!w.running() || !w.Exited()) continue;
      ITE_LOG_ERROR("worker {} (127.0.0.1:{}) {}", i, worker_ports[i], w.exit_description());
      if (restarts[i] >= o.max_restarts) {
        // Left down, the service would answer every request after a 5 s wait with UNAVAILABLE
        // while still looking alive; exiting non-zero lets the supervisor above (systemd,
        // Kubernetes) see the failure and act on it.
        ITE_LOG_ERROR(
            "worker {}: died again after {} restart(s) (--max-restarts {}); shutting down", i,
            restarts[i], o.max_restarts);
        rc = 1;
        stop = true;
        break;
      }
      ++restarts[i];
      fs::path ready = run_dir / fmt::format("worker{}.restart.port", i);
      Status s =
          w.Start(fmt::format("worker {}", i),
                  WorkerArgv(o, worker_bin, worker_ports[i], ready, threads, i, metrics_ports[i]));
      if (s.ok()) {
        ITE_LOG_INFO("worker {} restarted (pid {}) on port {}", i, w.pid(), worker_ports[i]);
      } else {
        ITE_LOG_ERROR("worker {}: restart failed: {}", i, s.ToString());
      }
    }
  }
  cleanup();
  return rc;
}

int Main(int argc, char** argv) {
  sigset_t set = SupervisedSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ServeOptions o;
  CLI::App app{"ite-serve: runs ite-scheduler and N ite-worker processes on this host"};
  app.add_option("--model", o.model, "model: .gguf file or Hugging Face folder")->required();
  app.add_option("--host", o.host, "address the public service listens on")->capture_default_str();
  app.add_option("--port", o.port, "port of the public service (0: any free port)")
      ->capture_default_str();
  CLI::Option* http_port =
      app.add_option("--http-port", o.http_port,
                     "OpenAI HTTP API port (-1: off; default 8000, or any free one with --port 0)");
  app.add_option("--http-ready-file", o.http_ready_file, "write the HTTP port here once serving");
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--gpus", o.gpus, "CUDA: GPU ordinals, one worker each (default: all)");
  app.add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                 "CUDA: KV pool sized to use this fraction of each GPU (0: --kv-mib)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--enforce-eager", o.enforce_eager, "CUDA: no CUDA graphs");
  app.add_flag("--batch-invariant", o.batch_invariant,
               "CUDA: a request's tokens do not depend on the batch it runs in (slower)");
  app.add_option("--dtype", o.dtype,
                 "worker weights: auto (CPU: as stored, block formats included; CUDA: bf16), "
                 "f32 (CPU), bf16, f16 (CUDA), q8_0 (CPU: every matrix re-quantized to Q8_0)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "f32", "bf16", "f16", "q8_0"}));
  app.add_option("--kv-dtype", o.kv_dtype,
                 "worker KV cache: auto (CPU f32, CUDA the model dtype), f32 or bf16 (CPU)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "f32", "bf16"}));
  app.add_option("--tensor-parallel-size", o.tensor_parallel_size,
                 "ranks each worker splits the model over (CUDA: that many GPUs per worker)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--workers", o.workers, "worker processes (CPU; with cuda, one per GPU)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  app.add_option("--threads", o.threads, "CPU threads per worker (0: cores / workers)")
      ->capture_default_str();
  app.add_option("--kv-blocks", o.kv_blocks, "KV blocks per worker (0: from --kv-mib)")
      ->capture_default_str();
  app.add_option("--block-size", o.block_size, "tokens per KV block")->capture_default_str();
  app.add_option("--kv-mib", o.kv_mib, "KV pool per worker in MiB")->capture_default_str();
  AddSchedulingFlags(app, &o.scheduling);
  app.add_option("--start-timeout-s", o.start_timeout_s, "give up if a child is not serving")
      ->capture_default_str();
  app.add_option("--drain-timeout-s", o.drain_timeout_s, "on SIGTERM, wait this long to drain")
      ->capture_default_str();
  app.add_option("--max-restarts", o.max_restarts, "restarts per worker before giving up")
      ->capture_default_str();
  app.add_option("--ready-file", o.ready_file, "write the public port here once serving");
  app.add_option("--worker-metrics-port", o.worker_metrics_port,
                 "worker i serves GET /metrics on 127.0.0.1:P+i (-1: off; 0: free ports, logged)")
      ->capture_default_str()
      ->check(CLI::Range(-1, 65535));
  app.add_option("--served-model-name", o.served_model_name,
                 "name clients see and may send (default: the model file's or folder's name)");
  AddLogFlags(app, &o.log);
  AddTlsFlags(app, &o.tls,
              "TLS: the CA that signed --tls-cert (checks the scheduler-worker links, and "
              "client certificates)");
  app.add_flag("--tls-require-client-cert", o.tls_require_client_cert,
               "public APIs: refuse clients without a certificate from --tls-ca");
  AddApiKeyFlags(app, &o.api_keys);
  app.footer("Exit codes: 0 clean shutdown, 1 a child failed, 2 usage error.");
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  if (http_port->count() == 0 && o.port == 0) o.http_port = 0;
  if (std::optional<int> rc = InitLoggingOrExit("ite-serve", o.log)) {
    return *rc;
  }
  return Serve(o);
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
