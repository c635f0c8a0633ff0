// A worker serving another model of the same shape is never used (REAL ite-scheduler and
// ite-worker processes on loopback). "Another model" is a copy of SmolLM2 with one byte of one
// tensor changed at a place the fingerprint samples: the same vocabulary, context and layers, so
// only the fingerprint tells it apart. A worker restarted with it is kept down (the scheduler
// says so, naming both fingerprints, and requests fail UNAVAILABLE); restarted with the right
// model it is taken back. A scheduler started against it fails at once, naming both.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/gguf_reader.h"
#include "common/model_fingerprint.h"
#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

namespace fs = std::filesystem;
using std::chrono::seconds;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

class ModelFingerprintE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = ReadEnv();
    if (!env_.missing.empty()) GTEST_SKIP() << env_.missing;
    // The other model: the last byte of the first tensor (its last window) changed. One bit of
    // a Q4_1 quant or of an F32 exponent's low bit: the model still loads and runs.
    other_ = dir_.path() + "/other.gguf";
    fs::copy_file(env_.model, other_);
    StatusOr<std::unique_ptr<GgufFile>> gguf = GgufFile::Open(env_.model);
    ASSERT_TRUE(gguf.ok()) << gguf.status().ToString();
    const GgufTensorInfo& t = (*gguf)->tensors().at(0);
    const auto at = static_cast<std::streamoff>(t.data - (*gguf)->mapping()->data() + t.nbytes - 1);
    std::fstream f(other_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(at);
    char byte = 0;
    f.get(byte);
    f.seekp(at);
    f.put(static_cast<char>(byte ^ 0x01));
    f.close();
    StatusOr<std::string> ours = ModelFingerprint(env_.model);
    StatusOr<std::string> other = ModelFingerprint(other_);
    ASSERT_TRUE(ours.ok() && other.ok());
    ours_fp_ = *ours;
    other_fp_ = *other;
    ASSERT_NE(ours_fp_, other_fp_);
  }

  // An ite-worker for `model` on `port`; false when it does not come up.
  bool StartWorker(ChildProcess* worker, const std::string& model, int port) {
    const std::string ready = dir_.path() + "/worker.port";
    fs::remove(ready);
    std::vector<std::string> argv = {env_.bin_dir + "/ite-worker",
                                     "--model",
                                     model,
                                     "--port",
                                     std::to_string(port),
                                     "--threads",
                                     "1",
                                     "--ready-file",
                                     ready};
    return worker->Start("ite-worker", argv).ok() &&
           WaitForPortFile(ready, worker, seconds(120)) == port;
  }

  // ite-scheduler for our model, its log in scheduler.log (through sh, for the redirection).
  bool StartScheduler(ChildProcess* scheduler, int worker_port, const std::string& extra = "") {
    ready_ = dir_.path() + "/scheduler.port";
    log_ = dir_.path() + "/scheduler.log";
    fs::remove(ready_);
    const std::string command = "exec " + env_.bin_dir + "/ite-scheduler --model " + env_.model +
                                " --workers 127.0.0.1:" + std::to_string(worker_port) +
                                " --port 0 --http-port -1 --worker-wait-ms 20000 --ready-file " +
                                ready_ + " " + extra + " 2>" + log_;
    return scheduler->Start("ite-scheduler", {"/bin/sh", "-c", command}).ok();
  }

  std::unique_ptr<ite::v1::Generation::Stub> Stub() const {
    return ite::v1::Generation::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                            grpc::InsecureChannelCredentials()));
  }
  ite::v1::StatsResponse Stats() const {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    ite::v1::StatsResponse s;
    EXPECT_TRUE(Stub()->Stats(&ctx, ite::v1::StatsRequest(), &s).ok());
    return s;
  }

  Env env_;
  TempDir dir_;
  std::string other_, ours_fp_, other_fp_;
  std::string ready_, log_;
  int port_ = 0;
};

TEST_F(ModelFingerprintE2E, AWorkerRestartedWithAnotherModelIsKeptDownWithOursTakenBack) {
  const int worker_port = UnusedLoopbackPort();
  ChildProcess worker;
  ASSERT_TRUE(StartWorker(&worker, env_.model, worker_port));
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, worker_port));
  port_ = WaitForPortFile(ready_, &scheduler, seconds(60));
  ASSERT_GT(port_, 0) << ReadAll(log_);
  const ite::v1::GenerateRequest req = Greedy("The capital of France is", 6);
  GenerateResult reference = Generate(*Stub(), req);
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  ite::v1::StatsResponse stats = Stats();
  EXPECT_EQ(stats.model_fingerprint(), ours_fp_);
  ASSERT_EQ(stats.workers_size(), 1);
  EXPECT_EQ(stats.workers(0).model_fingerprint(), ours_fp_);

  // Restarted on the same address with the other model.
  worker.Stop(std::chrono::milliseconds(5000));
  ASSERT_TRUE(StartWorker(&worker, other_, worker_port));
  // Whether the scheduler noticed the restart by itself or only at this request, the request
  // must not run on that worker: it fails UNAVAILABLE, saying why.
  GenerateResult refused;
  ASSERT_TRUE(WaitUntil(
      [&] {
        refused = Generate(*Stub(), req, seconds(20));
        return !refused.status.ok() &&
               refused.status.error_message().find(other_fp_) != std::string::npos;
      },
      seconds(60)))
      << "last answer: " << refused.status.error_message() << "\n"
      << ReadAll(log_);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(refused.tokens.empty());
  stats = Stats();
  EXPECT_FALSE(stats.workers(0).healthy());
  EXPECT_EQ(stats.workers(0).refused_model_fingerprint(), other_fp_);
  const std::string line = "worker 0 (127.0.0.1:" + std::to_string(worker_port) +
                           ") serves a model with fingerprint " + other_fp_ + ", not " + ours_fp_;
  std::this_thread::sleep_for(seconds(2));  // four more probes: it stays down, said once
  EXPECT_FALSE(Stats().workers(0).healthy());
  const std::string log = ReadAll(log_);
  EXPECT_GE(Count(log, line), 1u) << log;
  EXPECT_EQ(Count(log, "; keeping it down"), 1u) << log;

  // Restarted with the right model: taken back, the same answer as before.
  worker.Stop(std::chrono::milliseconds(5000));
  ASSERT_TRUE(StartWorker(&worker, env_.model, worker_port));
  GenerateResult back;
  ASSERT_TRUE(WaitUntil(
      [&] {
        back = Generate(*Stub(), req, seconds(30));
        return back.status.ok();
      },
      seconds(60)))
      << back.status.error_message() << "\n"
      << ReadAll(log_);
  EXPECT_EQ(back.tokens, reference.tokens);
  stats = Stats();
  EXPECT_TRUE(stats.workers(0).healthy());
  EXPECT_EQ(stats.workers(0).model_fingerprint(), ours_fp_);
  EXPECT_EQ(stats.workers(0).refused_model_fingerprint(), "");
}

TEST_F(ModelFingerprintE2E, ASchedulerStartedAgainstAWorkerWithAnotherModelFailsNamingBoth) {
  const int worker_port = UnusedLoopbackPort();
  ChildProcess worker;
  ASSERT_TRUE(StartWorker(&worker, other_, worker_port));
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, worker_port));
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Exited(); }, seconds(60)))
      << "the scheduler went on with a worker serving another model\n"
      << ReadAll(log_);
  EXPECT_EQ(scheduler.exit_description(), "exited with code 1");
  EXPECT_FALSE(fs::exists(ready_)) << "it became ready";
  const std::string log = ReadAll(log_);
  for (const std::string& part :
       {ours_fp_, other_fp_, "127.0.0.1:" + std::to_string(worker_port)}) {
    EXPECT_NE(log.find(part), std::string::npos) << part << "\n" << log;
  }
}

// --model-fingerprint names the model the workers must serve, whatever --model holds (a
// Kubernetes scheduler's tokenizer-only folder): then the other model's worker is the right one.
TEST_F(ModelFingerprintE2E, AnExplicitFingerprintIsTheOneWorkersMustServe) {
  const int worker_port = UnusedLoopbackPort();
  ChildProcess worker;
  ASSERT_TRUE(StartWorker(&worker, other_, worker_port));
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, worker_port, "--model-fingerprint " + other_fp_));
  port_ = WaitForPortFile(ready_, &scheduler, seconds(60));
  ASSERT_GT(port_, 0) << ReadAll(log_);
  GenerateResult r = Generate(*Stub(), Greedy("The capital of France is", 4));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(Stats().model_fingerprint(), other_fp_);
}

}  // namespace
}  // namespace ite::e2e
