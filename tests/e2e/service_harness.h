// Test harness for the end-to-end service tests: starts REAL ite-serve / ite-worker /
// ite-scheduler processes from ITE_BIN_DIR on kernel-chosen loopback ports (ready files, no port
// guessing), with bounded waits, and kills every child when it goes out of scope.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/ite/v1/generation.grpc.pb.h"
#include "scheduler/main/child_process.h"

namespace ite::e2e {

struct Env {
  std::string bin_dir;  // ITE_BIN_DIR
  std::string model;    // ITE_MODEL_GGUF
  // Empty when something is missing; the message says what (tests GTEST_SKIP with it).
  std::string missing;
};
Env ReadEnv();

// A scratch directory removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A port nothing listens on at 127.0.0.1 (the kernel's pick, released at once), for a server
// that must be named before it exists. (A race with another process taking it is possible but
// needs that process to bind the same ephemeral port in between.)
int UnusedLoopbackPort();

// Polls `pred` every 50 ms until it holds or `timeout` passes; returns its last value.
bool WaitUntil(const std::function<bool()>& pred, std::chrono::seconds timeout);

// Waits for a ready file written by one of our binaries; 0 on timeout or if `child` exited.
int WaitForPortFile(const std::string& file, ChildProcess* child, std::chrono::seconds timeout);

// ite-serve with N workers on a free port. Children of ite-serve die with it (PDEATHSIG).
class ServeProcess {
 public:
  // `extra` flags are appended to ite-serve's command line.
  bool Start(const Env& env, int workers, const std::vector<std::string>& extra = {});
  ~ServeProcess();

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  ChildProcess& process() { return process_; }
  // Pids of ite-serve's direct children (scheduler and workers), from /proc.
  std::vector<int> ChildPids() const;
  std::unique_ptr<ite::v1::Generation::Stub> Stub() const;

 private:
  TempDir dir_;
  ChildProcess process_;
  int port_ = 0;
};

// A test suite sharing one ite-serve (one worker): `Suite::Model()` names the model (empty:
// ITE_MODEL_GGUF). Tests skip when the binaries or the model are missing.
template <typename Suite>
class SharedServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    env_ = new Env(ReadEnv());
    if (!env_->missing.empty()) return;
    if (std::string model = Suite::Model(); !model.empty()) env_->model = model;
    serve_ = new ServeProcess();
    started_ = serve_->Start(*env_, 1);
  }
  static void TearDownTestSuite() {
    delete serve_;
    serve_ = nullptr;
    delete env_;
  }
  void SetUp() override {
    if (!env_->missing.empty()) GTEST_SKIP() << env_->missing;
    ASSERT_TRUE(started_) << "ite-serve did not come up";
    stub_ = serve_->Stub();
  }

  inline static Env* env_ = nullptr;
  inline static ServeProcess* serve_ = nullptr;
  inline static bool started_ = false;
  std::unique_ptr<ite::v1::Generation::Stub> stub_;
};

// Result of one streamed Generate call.
struct GenerateResult {
  grpc::Status status;
  std::string text;
  std::vector<int32_t> tokens;
  ite::v1::FinishReason finish = ite::v1::FINISH_REASON_UNSPECIFIED;
  ite::v1::Usage usage;
  int chunks = 0;
};
GenerateResult Generate(ite::v1::Generation::Stub& stub, const ite::v1::GenerateRequest& req,
                        std::chrono::seconds deadline = std::chrono::seconds(120));

// The admin Stats and ModelInfo calls (10 s deadline); a failed call is a test failure.
ite::v1::StatsResponse GetStats(ite::v1::Generation::Stub& stub);
ite::v1::ModelInfoResponse GetModelInfo(ite::v1::Generation::Stub& stub);

// A greedy request for `prompt` with `max_tokens`.
ite::v1::GenerateRequest Greedy(const std::string& prompt, int max_tokens);

// grpc.health.v1 status of `service` ("": the whole server) at `address`; UNKNOWN when the call
// fails.
grpc::health::v1::HealthCheckResponse::ServingStatus HealthOf(const std::string& address,
                                                              const std::string& service);

// Runs a shell command, returns its exit code and stdout (stderr passes through).
int RunCommand(const std::string& command, std::string* out);

// The process's comm name ("ite-worker"...) or "" when the pid does not exist (or is a zombie).
std::string ProcessName(int pid);

}  // namespace ite::e2e
