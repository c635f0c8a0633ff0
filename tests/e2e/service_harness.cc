#include "tests/e2e/service_harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace ite::e2e {
namespace fs = std::filesystem;

Env ReadEnv() {
  Env env;
  const char* bin = std::getenv("ITE_BIN_DIR");
  const char* model = std::getenv("ITE_MODEL_GGUF");
  // Build-time defaults (tests/e2e/CMakeLists.txt says why); the environment wins.
#ifdef ITE_E2E_DEFAULT_BIN_DIR
  if (bin == nullptr) bin = ITE_E2E_DEFAULT_BIN_DIR;
#endif
#ifdef ITE_E2E_DEFAULT_MODEL_GGUF
  if (model == nullptr) model = ITE_E2E_DEFAULT_MODEL_GGUF;
#endif
  if (bin == nullptr || !fs::exists(fs::path(bin) / "ite-serve")) {
    env.missing = "ITE_BIN_DIR with ite-serve not set (run through ctest)";
  } else if (model == nullptr || !fs::exists(model)) {
    env.missing = "ITE_MODEL_GGUF missing (scripts/fetch_model.sh fetches SmolLM2)";
  } else {
    env.bin_dir = bin;
    env.model = model;
  }
  return env;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "ite-e2e.XXXXXX").string();
  if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  if (!path_.empty()) fs::remove_all(path_, ec);
}

int UnusedLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

bool WaitUntil(const std::function<bool()>& pred, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

int WaitForPortFile(const std::string& file, ChildProcess* child, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(file);
    int port = 0;
    if (in >> port && port > 0) return port;
    if (child != nullptr && child->Exited()) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return 0;
}

bool ServeProcess::Start(const Env& env, int workers, const std::vector<std::string>& extra) {
  std::string ready = dir_.path() + "/serve.port";
  std::vector<std::string> argv = {
      env.bin_dir + "/ite-serve", "--model",   env.model, "--port",       "0",  "--workers",
      std::to_string(workers),    "--threads", "1",       "--ready-file", ready};
  argv.insert(argv.end(), extra.begin(), extra.end());
  // ITE_E2E_SERVE_FLAGS: flags for every ite-serve of the suite, e.g. "--device cuda" (with
  // ITE_MODEL_GGUF naming a model folder) to run the same tests on a GPU host.
  if (const char* flags = std::getenv("ITE_E2E_SERVE_FLAGS")) {
    std::istringstream in(flags);
    std::vector<std::string> words;
    for (std::string f; in >> f;) words.push_back(f);
    argv.insert(argv.end(), words.begin(), words.end());
    // With --device cuda, ite-serve starts one worker per GPU of --gpus; a suite asking for
    // several workers on a one-GPU host gets them side by side on GPU 0.
    const bool cuda = std::find(words.begin(), words.end(), "cuda") != words.end();
    const bool gpus = std::find(words.begin(), words.end(), "--gpus") != words.end();
    if (cuda && !gpus) {
      std::string ids = "0";
      for (int i = 1; i < workers; ++i) ids += ",0";
      argv.insert(argv.end(), {"--gpus", ids});
    }
  }
  if (!process_.Start("ite-serve", argv).ok()) return false;
  port_ = WaitForPortFile(ready, &process_, std::chrono::seconds(120));
  return port_ != 0;
}

ServeProcess::~ServeProcess() { process_.Stop(std::chrono::seconds(20)); }

std::vector<int> ServeProcess::ChildPids() const {
  std::vector<int> pids;
  int pid = process_.pid();
  if (pid <= 0) return pids;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  for (int p; in >> p;) pids.push_back(p);
  return pids;
}

std::unique_ptr<ite::v1::Generation::Stub> ServeProcess::Stub() const {
  return ite::v1::Generation::NewStub(
      grpc::CreateChannel(address(), grpc::InsecureChannelCredentials()));
}

ite::v1::StatsResponse GetStats(ite::v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ite::v1::StatsResponse s;
  EXPECT_TRUE(stub.Stats(&ctx, ite::v1::StatsRequest(), &s).ok());
  return s;
}

ite::v1::ModelInfoResponse GetModelInfo(ite::v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ite::v1::ModelInfoResponse info;
  EXPECT_TRUE(stub.ModelInfo(&ctx, ite::v1::ModelInfoRequest(), &info).ok());
  return info;
}

GenerateResult Generate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                        std::chrono::seconds deadline) {
  GenerateResult r;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + deadline);
  auto reader = stub.Generate(&ctx, req);
  ite::v1::GenerateResponse chunk;
  while (reader->Read(&chunk)) {
    ++r.chunks;
    r.text += chunk.text();
    r.tokens.insert(r.tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
    if (chunk.finish_reason() != ite::v1::FINISH_REASON_UNSPECIFIED) {
      r.finish = chunk.finish_reason();
      r.usage = chunk.usage();
    }
  }
  r.status = reader->Finish();
  return r;
}

ite::v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens) {
  ite::v1::GenerateRequest req;
  req.set_prompt(prompt);
  req.set_max_tokens(max_tokens);
  req.mutable_sampling()->set_temperature(0.0f);
  return req;
}

grpc::health::v1::HealthCheckResponse::ServingStatus HealthOf(const std::string& address,
                                                              const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  if (!stub->Check(&ctx, request, &response).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

int RunCommand(const std::string& command, std::string* out) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ProcessName(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return "";
  // "pid (comm) state ..."; a zombie (Z) counts as gone.
  size_t open = line.find('('), close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos) return "";
  if (close + 2 < line.size() && line[close + 2] == 'Z') return "";
  return line.substr(open + 1, close - open - 1);
}

}  // namespace ite::e2e
