// GrpcWorkerClient against a real ite.v1.Worker server on a loopback port, over a WorkerEngine
// with the deterministic fake backend: pipelined steps come back in order with the fake model's
// tokens, engine errors keep their code, and a server that goes away fails steps fast with
// UNAVAILABLE instead of hanging.
#include "scheduler/grpc_worker_client.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "worker/service/fake_backend.h"
#include "worker/service/grpc_worker_service.h"
#include "worker/service/worker_engine.h"

namespace ite {
namespace {

constexpr int32_t kVocab = 50;
constexpr int32_t kBlockSize = 4;

// The fake backend, with a Collect that takes 20 ms (as if the device were busy) and a count of
// the steps submitted and not yet collected: 2 means the next step was submitted while the
// previous one was still running.
class SlowCollectBackend : public FakeBackend {
 public:
  SlowCollectBackend() : FakeBackend(FakeModelConfig(kVocab, 64), kBlockSize, 16) {}
  Status Submit(const ForwardBatch& batch) override {
    ITE_RETURN_IF_ERROR(FakeBackend::Submit(batch));
    const int n = ++pending_;
    int seen = max_pending_.load();
    while (n > seen && !max_pending_.compare_exchange_weak(seen, n)) {
    }
    return Status::Ok();
  }
  StatusOr<ForwardOutput> Collect() override {
    std::this_thread::sleep_for(std::chrono::milliseconds(collect_ms_.load()));
    --pending_;
    return FakeBackend::Collect();
  }
  static std::atomic<int> max_pending_;
  static std::atomic<int> collect_ms_;

 private:
  std::atomic<int> pending_{0};
};
std::atomic<int> SlowCollectBackend::max_pending_{0};
std::atomic<int> SlowCollectBackend::collect_ms_{20};

class GrpcWorkerClientTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer(); }
  void TearDown() override { StopServer(); }

  void StartServer(bool slow = false) {
    std::unique_ptr<Backend> backend;
    if (slow) {
      backend = std::make_unique<SlowCollectBackend>();
    } else {
      backend = std::make_unique<FakeBackend>(FakeModelConfig(kVocab, 64), kBlockSize, 16);
    }
    service_ = std::make_unique<GrpcWorkerService>(
        std::make_unique<WorkerEngine>(std::move(backend), "fake"));
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port_),
                             grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
  }
  void StopServer() {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now());
      server_->Wait();
      server_.reset();
    }
  }
  std::unique_ptr<GrpcWorkerClient> MakeClient(int32_t step_timeout_ms = 120000) {
    GrpcWorkerClientOptions o;
    o.address = "127.0.0.1:" + std::to_string(port_);
    o.rpc_timeout_ms = 2000;
    o.step_timeout_ms = step_timeout_ms;
    return std::make_unique<GrpcWorkerClient>(o);
  }
  // Sends `r` and returns a future of its result.
  static std::future<StatusOr<StepResult>> Send(GrpcWorkerClient& c, StepRequest r) {
    auto p = std::make_shared<std::promise<StatusOr<StepResult>>>();
    auto f = p->get_future();
    c.StepAsync(std::move(r), [p](StatusOr<StepResult> res) { p->set_value(std::move(res)); });
    return f;
  }
  static StepRequest Join(int64_t step, int64_t id, std::vector<int32_t> prompt,
                          std::vector<int32_t> blocks) {
    StepRequest r;
    r.step_id = step;
    StepSequence& s = r.seqs.emplace_back();
    s.seq_id = id;
    s.new_tokens = prompt;
    s.block_table = std::move(blocks);
    SamplingParams greedy;
    greedy.temperature = 0.0f;
    s.sampling = greedy;
    s.prompt_tokens = prompt;
    return r;
  }
  static StepRequest Decode(int64_t step, int64_t id, int32_t pos, std::vector<int32_t> blocks) {
    StepRequest r;
    r.step_id = step;
    StepSequence& s = r.seqs.emplace_back();
    s.seq_id = id;
    s.start_pos = pos;
    s.block_table = std::move(blocks);
    return r;
  }

  int port_ = 0;
  std::unique_ptr<GrpcWorkerService> service_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(GrpcWorkerClientTest, InfoHealthClear) {
  auto client = MakeClient();
  StatusOr<WorkerInfo> info = client->Info();
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->block_size, kBlockSize);
  EXPECT_EQ(info->num_blocks, 16);
  EXPECT_EQ(info->model.vocab_size, kVocab);
  EXPECT_EQ(info->device, "fake");
  EXPECT_TRUE(client->Health().ok());
  EXPECT_TRUE(client->Clear().ok());
}

TEST_F(GrpcWorkerClientTest, PipelinedStepsComeBackInOrderWithTheModelsTokens) {
  auto client = MakeClient();
  std::vector<int32_t> prompt{1, 2, 3, 4, 5};
  constexpr int kSteps = 6;
  std::vector<int32_t> expected = FakeModelGenerate(prompt, kSteps, kVocab);
  // All steps are sent before any result is read: decode steps carry no token, the worker
  // feeds its own last sample.
  std::vector<std::future<StatusOr<StepResult>>> results;
  results.push_back(Send(*client, Join(1, 7, prompt, {3, 9})));
  for (int i = 1; i < kSteps; ++i) {
    results.push_back(Send(*client, Decode(1 + i, 7, 4 + i, {3, 9, 11})));
  }
  for (int i = 0; i < kSteps; ++i) {
    StatusOr<StepResult> r = results[i].get();
    ASSERT_TRUE(r.ok()) << "step " << i << ": " << r.status().ToString();
    EXPECT_EQ(r->step_id, 1 + i);
    ASSERT_EQ(r->outputs.size(), 1u);
    EXPECT_EQ(r->outputs[0].seq_id, 7);
    EXPECT_EQ(r->outputs[0].sample.token, expected[i]) << "token " << i;
  }
}

TEST_F(GrpcWorkerClientTest, EngineErrorKeepsItsCodeAndTheNextStreamWorks) {
  auto client = MakeClient();
  // A decode for a sequence the worker never saw: the engine rejects it.
  StatusOr<StepResult> bad = Send(*client, Decode(1, 99, 3, {0})).get();
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().code(), StatusCode::kOk);
  EXPECT_FALSE(bad.status().message().empty());
  // The failed stream may have lost sequence state: steps fail until the scheduler clears.
  EXPECT_EQ(Send(*client, Join(2, 1, {4, 5}, {0})).get().status().code(), StatusCode::kUnavailable);
  ASSERT_TRUE(client->Clear().ok());
  StatusOr<StepResult> good = Send(*client, Join(2, 1, {4, 5}, {0})).get();
  ASSERT_TRUE(good.ok()) << good.status().ToString();
  EXPECT_EQ(good->outputs[0].sample.token,
            FakeModelGenerate(std::vector<int32_t>{4, 5}, 1, kVocab)[0]);
}

TEST_F(GrpcWorkerClientTest, DeadWorkerFailsStepsFastWithUnavailable) {
  auto client = MakeClient();
  ASSERT_TRUE(Send(*client, Join(1, 1, {1, 2, 3}, {0})).get().ok());
  StopServer();
  auto start = std::chrono::steady_clock::now();
  StatusOr<StepResult> r = Send(*client, Decode(2, 1, 3, {0})).get();
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_LT(elapsed, std::chrono::seconds(3));
  EXPECT_FALSE(client->Health().ok());
  // A worker back on the same port is found again (reconnect backoff is capped at 1 s).
  StartServer();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool back = false;
  while (!back && std::chrono::steady_clock::now() < deadline) {
    back = client->Info().ok();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(back);
  ASSERT_TRUE(client->Clear().ok());
  StatusOr<StepResult> again = Send(*client, Join(3, 5, {7, 8}, {1})).get();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
}

// A worker killed and restarted between two steps has an empty KV pool: the next step must not
// run as if nothing happened (the scheduler's cached blocks would be garbage there).
TEST_F(GrpcWorkerClientTest, WorkerRestartedWhileIdleIsNotUsedBeforeClear) {
  auto client = MakeClient();
  ASSERT_TRUE(Send(*client, Join(1, 1, {1, 2, 3}, {0})).get().ok());
  StopServer();
  StartServer();
  ASSERT_TRUE(client->Info().ok());  // reachable again...
  // ...but its state is gone: a decode of sequence 1 must fail, and fail as UNAVAILABLE.
  StatusOr<StepResult> r = Send(*client, Decode(2, 1, 3, {0})).get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  ASSERT_TRUE(client->Clear().ok());
  EXPECT_TRUE(Send(*client, Join(3, 2, {4, 5}, {1})).get().ok());
}

// A worker that stops answering (SIGSTOPped, wedged) fails its steps once the step timeout has
// passed, and the failure says it was the step timeout, not a bare "Cancelled".
TEST_F(GrpcWorkerClientTest, StuckWorkerFailsStepsWithAStepTimeout) {
  StopServer();
  SlowCollectBackend::collect_ms_ = 4000;
  StartServer(/*slow=*/true);
  auto client = MakeClient(/*step_timeout_ms=*/300);
  auto start = std::chrono::steady_clock::now();
  StatusOr<StepResult> r = Send(*client, Join(1, 1, {1, 2, 3}, {0})).get();
  auto elapsed = std::chrono::steady_clock::now() - start;
  SlowCollectBackend::collect_ms_ = 20;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("step timeout"), std::string::npos) << r.status().message();
  EXPECT_LT(elapsed, std::chrono::milliseconds(2500));  // 300 ms + the once-a-second check
}

TEST_F(GrpcWorkerClientTest, NothingListeningFailsFast) {
  StopServer();
  auto client = MakeClient();
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(client->Info().ok());
  StatusOr<StepResult> r = Send(*client, Join(1, 1, {1}, {0})).get();
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST_F(GrpcWorkerClientTest, TheStepStreamSubmitsTheNextStepWhileOneRuns) {
  StopServer();
  StartServer(/*slow=*/true);
  auto client = MakeClient();
  const std::vector<int32_t> prompt = {1, 2, 3};
  const std::vector<int32_t> expected = FakeModelGenerate(prompt, 6, kVocab);
  std::vector<std::future<StatusOr<StepResult>>> results;
  results.push_back(Send(*client, Join(1, 9, prompt, {0, 1})));
  for (int k = 0; k < 5; ++k) results.push_back(Send(*client, Decode(2 + k, 9, 3 + k, {0, 1})));
  for (size_t k = 0; k < results.size(); ++k) {
    auto r = results[k].get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->outputs.size(), 1u);
    EXPECT_EQ(r->outputs[0].sample.token, expected[k]) << "step " << k;
  }
  EXPECT_GE(SlowCollectBackend::max_pending_.load(), 2);
}

TEST(GrpcWorkerServiceTest, ADeviceFailureIsReportedOnce) {
  auto backend = std::make_unique<FakeBackend>(FakeModelConfig(kVocab, 64), kBlockSize, 16);
  FakeBackend* fake = backend.get();
  int failures = 0;
  GrpcWorkerService service(std::make_unique<WorkerEngine>(std::move(backend), "fake"),
                            [&] { ++failures; });
  ite::v1::StepRequest request;
  request.set_step_id(1);
  auto* seq = request.add_seqs();
  seq->set_seq_id(3);
  seq->add_new_tokens(5);
  seq->add_block_table(0);
  seq->mutable_sampling()->set_top_p(1.0f);  // greedy (temperature 0), no penalties
  seq->mutable_sampling()->set_repetition_penalty(1.0f);
  seq->add_prompt_tokens(5);
  ite::v1::StepResult result;
  grpc::ServerContext context;
  ASSERT_TRUE(service.Step(&context, &request, &result).ok());
  EXPECT_EQ(failures, 0);
  fake->FailDevice();
  request.set_step_id(2);
  EXPECT_FALSE(service.Step(&context, &request, &result).ok());
  request.set_step_id(3);
  EXPECT_FALSE(service.Step(&context, &request, &result).ok());
  EXPECT_EQ(failures, 1);
}

}  // namespace
}  // namespace ite
