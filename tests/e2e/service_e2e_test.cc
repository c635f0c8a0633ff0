// End-to-end tests of the service: REAL ite-serve / ite-scheduler / ite-worker processes on
// loopback ports chosen by the kernel, the CPU backend, SmolLM2-135M-Instruct (ITE_MODEL_GGUF; or a
// model folder, as on a GPU host), real gRPC. Every wait is bounded; every child is killed when
// its owner goes out of scope.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <thread>

#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Sum over workers, from the admin Stats call.
struct Totals {
  int free_blocks = 0, running = 0, waiting = 0;
};
Totals GetTotals(ite::v1::Generation::Stub& stub) {
  Totals t;
  ite::v1::StatsResponse stats = GetStats(stub);
  for (const auto& w : stats.workers()) {
    t.free_blocks += w.free_blocks();
    t.running += w.running();
    t.waiting += w.waiting();
  }
  return t;
}

// The served model's vocabulary as its own files give it: config.json's vocab_size for a model
// folder (a GPU host runs the suite on one made there), SmolLM2's for the suite's GGUF.
int64_t ExpectedVocabSize(const Env& env) {
  if (!std::filesystem::is_directory(env.model)) return 49152;
  std::ifstream in(std::filesystem::path(env.model) / "config.json");
  const auto config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return config.is_object() ? config.value("vocab_size", int64_t{-1}) : -1;
}

std::string ClientCmd(const Env& env, const std::string& args) {
  return env.bin_dir + "/ite-client " + args + " 2>/dev/null";
}

class ServiceE2E : public SharedServeTest<ServiceE2E> {
 public:
  static std::string Model() { return ""; }
};

TEST_F(ServiceE2E, StreamingGenerateViaIteClient) {
  GenerateResult r = Generate(*stub_, Greedy("The capital of France is", 12));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_GE(r.chunks, 2) << "expected a stream of chunks, not one reply";
  EXPECT_FALSE(r.text.empty());
  EXPECT_NE(r.finish, ite::v1::FINISH_REASON_UNSPECIFIED);
  EXPECT_EQ(r.usage.completion_tokens(), static_cast<int>(r.tokens.size()));
  EXPECT_GT(r.usage.prompt_tokens(), 0);

  // ite-client prints exactly the generated text (plus a newline) on stdout.
  std::string out;
  int rc = RunCommand(ClientCmd(*env_, "generate --addr " + serve_->address() +
                                           " --prompt 'The capital of France is' "
                                           "--max-tokens 12 --temperature 0"),
                      &out);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(out, r.text + "\n");

  // Chat: a line on stdin, an answer on stdout.
  out.clear();
  rc = RunCommand("echo 'Say hello.' | " + ClientCmd(*env_, "chat --addr " + serve_->address() +
                                                                " --max-tokens 8 --temperature 0"),
                  &out);
  EXPECT_EQ(rc, 0);
  EXPECT_GT(out.size(), 1u);

  // Exit codes a script relies on.
  out.clear();
  // Rejected by the server (flag values out of range are refused by ite-client itself, exit 2:
  // tests/e2e/client_cli_test.py).
  EXPECT_EQ(
      RunCommand(ClientCmd(*env_, "generate --addr " + serve_->address() + " --prompt ''"), &out),
      4);
  EXPECT_EQ(RunCommand(ClientCmd(*env_, "generate --addr " + serve_->address() +
                                            " --prompt hi --model no-such-model"),
                       &out),
            4);
  EXPECT_EQ(RunCommand(ClientCmd(*env_,
                                 "generate --addr 127.0.0.1:1 --prompt hi "
                                 "--connect-timeout-ms 500"),
                       &out),
            3);
  EXPECT_EQ(RunCommand(ClientCmd(*env_, "generate --addr " + serve_->address()), &out), 2);
  EXPECT_EQ(RunCommand(ClientCmd(*env_, "frobnicate"), &out), 2);
}

TEST_F(ServiceE2E, IteClientBenchReportsTableAndJson) {
  TempDir dir;
  std::string json = dir.path() + "/bench.json";
  std::string out;
  int rc = RunCommand(ClientCmd(*env_, "bench --addr " + serve_->address() +
                                           " --requests 4 --concurrency 2 --input-len 16 "
                                           "--output-len 4 --seed 5 --json " +
                                           json),
                      &out);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("TTFT"), std::string::npos) << out;
  EXPECT_NE(out.find("ITL"), std::string::npos) << out;
  EXPECT_NE(out.find("E2E"), std::string::npos) << out;
  std::ifstream in(json);
  nlohmann::json j = nlohmann::json::parse(in);
  EXPECT_EQ(j["ok"], 4);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_GT(j["output_tok_per_s"].get<double>(), 0.0);
  EXPECT_EQ(j["ttft_ms"]["count"], 4);
  EXPECT_EQ(j["itl_ms"]["count"], 4 * 3);  // 4 tokens per request: 3 gaps each
  EXPECT_LE(j["ttft_ms"]["p50"].get<double>(), j["ttft_ms"]["p99"].get<double>());
  EXPECT_LE(j["ttft_ms"]["p99"].get<double>(), j["e2e_ms"]["p99"].get<double>());
}

TEST_F(ServiceE2E, ThirtyTwoConcurrentGreedyStreamsEqualEachAlone) {
  constexpr int kN = 32;
  constexpr int kTokens = 10;
  std::vector<ite::v1::GenerateRequest> reqs;
  for (int i = 0; i < kN; ++i) {
    reqs.push_back(Greedy(
        "Write one sentence about the number " + std::to_string(i * 7 + 3) + " and why it matters.",
        kTokens));
    reqs.back().set_ignore_eos(true);
  }
  std::vector<GenerateResult> alone;
  for (const auto& r : reqs) alone.push_back(Generate(*stub_, r));
  std::vector<std::future<GenerateResult>> futures;
  for (const auto& r : reqs) {
    futures.push_back(std::async(std::launch::async, [&, r] {
      auto stub = serve_->Stub();
      return Generate(*stub, r);
    }));
  }
  for (int i = 0; i < kN; ++i) {
    GenerateResult together = futures[i].get();
    ASSERT_TRUE(alone[i].status.ok()) << alone[i].status.error_message();
    ASSERT_TRUE(together.status.ok()) << together.status.error_message();
    EXPECT_EQ(alone[i].tokens.size(), static_cast<size_t>(kTokens));
    EXPECT_EQ(together.tokens, alone[i].tokens) << "prompt " << i;
    EXPECT_EQ(together.text, alone[i].text) << "prompt " << i;
  }
}

TEST_F(ServiceE2E, RepeatedPrefixIsCachedAndGivesTheSameOutput) {
  std::string system;
  for (int i = 0; i < 12; ++i) {
    system += "You are a careful assistant who answers questions about geography briefly. ";
  }
  ite::v1::GenerateRequest a = Greedy(system + "Question: what is the capital of Italy?", 12);
  ite::v1::GenerateRequest no_cache = a;
  no_cache.set_disable_prefix_cache(true);
  GenerateResult ref = Generate(*stub_, no_cache);
  ASSERT_TRUE(ref.status.ok()) << ref.status.error_message();
  EXPECT_EQ(ref.usage.cached_tokens(), 0);

  GenerateResult first = Generate(*stub_, a);   // publishes the prefix
  GenerateResult second = Generate(*stub_, a);  // reuses it
  ASSERT_TRUE(first.status.ok() && second.status.ok());
  EXPECT_GT(second.usage.cached_tokens(), 0);
  EXPECT_GE(second.usage.cached_tokens(), second.usage.prompt_tokens() / 2);
  EXPECT_EQ(first.tokens, ref.tokens);
  EXPECT_EQ(second.tokens, ref.tokens);

  // A different question after the same system text shares the prefix too.
  ite::v1::GenerateRequest b = Greedy(system + "Question: what is the capital of Spain?", 12);
  ite::v1::GenerateRequest b_no_cache = b;
  b_no_cache.set_disable_prefix_cache(true);
  GenerateResult b_cached = Generate(*stub_, b);
  GenerateResult b_ref = Generate(*stub_, b_no_cache);
  ASSERT_TRUE(b_cached.status.ok() && b_ref.status.ok());
  EXPECT_GT(b_cached.usage.cached_tokens(), 0);
  EXPECT_EQ(b_cached.tokens, b_ref.tokens);
}

TEST_F(ServiceE2E, ClientDisconnectCancelsAndFreesBlocks) {
  Totals before = GetTotals(*stub_);
  ASSERT_EQ(before.running, 0);
  ite::v1::GenerateRequest req = Greedy("Tell me a very long story about a dragon.", 4000);
  req.set_ignore_eos(true);
  req.set_disable_prefix_cache(true);  // so every block it takes must come back to the free list
  grpc::ClientContext ctx;
  auto reader = stub_->Generate(&ctx, req);
  ite::v1::GenerateResponse chunk;
  int got = 0;
  while (got < 3 && reader->Read(&chunk)) got += chunk.token_ids_size();
  ASSERT_GE(got, 3);
  Totals during = GetTotals(*stub_);
  EXPECT_EQ(during.running, 1);
  EXPECT_LT(during.free_blocks, before.free_blocks);
  ctx.TryCancel();  // what a client that disconnects looks like to the server
  reader->Finish();
  auto deadline = Clock::now() + seconds(5);
  Totals after;
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    after = GetTotals(*stub_);
  } while ((after.running != 0 || after.free_blocks != before.free_blocks) &&
           Clock::now() < deadline);
  EXPECT_EQ(after.running, 0);
  EXPECT_EQ(after.free_blocks, before.free_blocks);
}

// A client deadline that passes mid-stream ends the call DEADLINE_EXCEEDED and cancels the
// generation on the server at once (its blocks back on the free list), with no polling thread.
TEST_F(ServiceE2E, ClientDeadlineCancelsTheGenerationAndFreesBlocks) {
  Totals before = GetTotals(*stub_);
  ASSERT_EQ(before.running, 0);
  ite::v1::GenerateRequest req = Greedy("Tell me a very long story about a castle.", 4000);
  req.set_ignore_eos(true);
  req.set_disable_prefix_cache(true);
  const auto t0 = Clock::now();
  GenerateResult r = Generate(*stub_, req, seconds(2));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << r.status.error_message();
  EXPECT_GT(r.tokens.size(), 0u);
  EXPECT_LT(Clock::now() - t0, seconds(4));
  Totals after;
  auto deadline = Clock::now() + seconds(5);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    after = GetTotals(*stub_);
  } while ((after.running != 0 || after.free_blocks != before.free_blocks) &&
           Clock::now() < deadline);
  EXPECT_EQ(after.running, 0);
  EXPECT_EQ(after.free_blocks, before.free_blocks);
}

TEST_F(ServiceE2E, BadRequestsGetInvalidArgumentWithAMessage) {
  struct Case {
    std::string name;
    ite::v1::GenerateRequest req;
    std::string expect;  // in the message
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", ite::v1::GenerateRequest(), "prompt"});
  cases.push_back({"empty prompt", Greedy("", 4), "prompt"});
  cases.push_back({"invalid UTF-8", Greedy("caf\xc3 \xff", 4), "UTF-8"});
  cases.push_back({"max_tokens 0", Greedy("hi", 0), "max_tokens"});
  ite::v1::GenerateRequest r = Greedy("hi", 4);
  r.mutable_sampling()->set_top_p(0.0f);
  cases.push_back({"top_p 0", r, "top_p"});
  r.mutable_sampling()->set_top_p(1.01f);
  cases.push_back({"top_p > 1", r, "top_p"});
  r = Greedy("hi", 4);
  r.set_model("no-such-model");
  cases.push_back({"unknown model", r, "model"});
  r = Greedy("hi", 4);
  r.mutable_sampling()->set_temperature(-0.5f);
  cases.push_back({"negative temperature", r, "temperature"});
  r = ite::v1::GenerateRequest();
  r.set_max_tokens(4);
  // One token more than the served context, whatever the model.
  const int32_t context = GetModelInfo(*stub_).max_context();
  ASSERT_GT(context, 0);
  for (int32_t i = 0; i <= context; ++i) r.mutable_prompt_token_ids()->add_ids(1000 + i % 500);
  cases.push_back({"prompt longer than the context", r, "context"});
  r = ite::v1::GenerateRequest();
  auto* m = r.mutable_chat()->add_messages();
  m->set_role("user");
  m->set_content("bad \xc0\xaf");
  cases.push_back({"invalid UTF-8 chat", r, "content"});

  for (const Case& c : cases) {
    auto start = Clock::now();
    GenerateResult res = Generate(*stub_, c.req, seconds(30));
    EXPECT_EQ(res.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << res.status.error_message();
    EXPECT_NE(res.status.error_message().find(c.expect), std::string::npos)
        << c.name << ": message '" << res.status.error_message() << "'";
    EXPECT_EQ(res.chunks, 0) << c.name;
    EXPECT_LT(Clock::now() - start, seconds(5)) << c.name;
  }
  // The server is still fine afterwards.
  EXPECT_TRUE(Generate(*stub_, Greedy("hi", 2)).status.ok());
}

TEST_F(ServiceE2E, HealthModelInfoAndTokenize) {
  auto channel = grpc::CreateChannel(serve_->address(), grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext hctx;
  grpc::health::v1::HealthCheckResponse hres;
  ASSERT_TRUE(health->Check(&hctx, grpc::health::v1::HealthCheckRequest(), &hres).ok());
  EXPECT_EQ(hres.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  grpc::ClientContext ictx;
  ite::v1::ModelInfoResponse info;
  ASSERT_TRUE(stub_->ModelInfo(&ictx, ite::v1::ModelInfoRequest(), &info).ok());
  EXPECT_EQ(info.vocab_size(), ExpectedVocabSize(*env_));
  EXPECT_EQ(info.architecture(), "llama");
  EXPECT_TRUE(info.has_chat_template());
  EXPECT_EQ(info.num_workers(), 1);
  EXPECT_GT(info.max_context(), 0);

  // A request naming the served model is accepted.
  ite::v1::GenerateRequest named = Greedy("hi", 2);
  named.set_model(info.model_name());
  EXPECT_TRUE(Generate(*stub_, named).status.ok());

  grpc::ClientContext tctx;
  ite::v1::TokenizeRequest treq;
  treq.set_text("Hello world");
  treq.set_add_special_tokens(false);
  treq.set_return_tokens(true);
  ite::v1::TokenizeResponse tres;
  ASSERT_TRUE(stub_->Tokenize(&tctx, treq, &tres).ok());
  ASSERT_EQ(tres.token_ids_size(), 2);
  EXPECT_EQ(tres.tokens(0), "Hello");
  EXPECT_EQ(tres.tokens(1), "\xc4\xa0world");  // byte-level BPE: "Ġworld"
}

// Maps worker index -> pid from the --ready-file path in each child's command line.
std::map<int, int> WorkerPids(const ServeProcess& serve) {
  std::map<int, int> out;
  for (int pid : serve.ChildPids()) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline");
    std::string cmd((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (int i = 0; i < 8; ++i) {
      if (cmd.find("/worker" + std::to_string(i) + ".") != std::string::npos) out[i] = pid;
    }
  }
  return out;
}

TEST(ServiceFailureE2E, KilledWorkerFailsFastAndARestartedOneIsTakenBack) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 2));
  auto stub = serve.Stub();
  std::map<int, int> pids = WorkerPids(serve);
  ASSERT_EQ(pids.size(), 2u);

  // Long requests on both workers.
  std::vector<std::future<std::pair<GenerateResult, Clock::time_point>>> futures;
  for (int i = 0; i < 4; ++i) {
    futures.push_back(std::async(std::launch::async, [&, i] {
      ite::v1::GenerateRequest req =
          Greedy("Story number " + std::to_string(i) + ": once upon a time", 150);
      req.set_ignore_eos(true);
      auto s = serve.Stub();
      GenerateResult r = Generate(*s, req, seconds(300));
      return std::make_pair(r, Clock::now());
    }));
  }
  // Wait until a worker's running sequences have streamed tokens (a few steps past their
  // prefill; one with nothing streamed yet would move to the other worker), then kill it.
  int victim = -1;
  auto deadline = Clock::now() + seconds(30);
  while (victim < 0 && Clock::now() < deadline) {
    ite::v1::StatsResponse s = GetStats(*stub);
    for (const auto& w : s.workers()) {
      if (w.running() > 0 && w.steps() >= 4) victim = w.index();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(victim, 0);
  ASSERT_EQ(ProcessName(pids[victim]), "ite-worker");
  ite::v1::StatsResponse before_kill = GetStats(*stub);
  int victim_running = before_kill.workers(victim).running();
  ASSERT_EQ(::kill(pids[victim], SIGKILL), 0);
  Clock::time_point killed = Clock::now();

  int unavailable = 0;
  for (auto& f : futures) {
    auto [r, finished] = f.get();
    if (r.status.ok()) {
      EXPECT_EQ(r.tokens.size(), 150u);
      continue;
    }
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
    EXPECT_LT(finished - killed, seconds(10)) << "a request on the dead worker hung";
    ++unavailable;
  }
  EXPECT_GE(unavailable, 1);
  EXPECT_LE(unavailable, victim_running);

  // The scheduler keeps serving meanwhile.
  EXPECT_TRUE(Generate(*stub, Greedy("Still there?", 4)).status.ok());

  // ite-serve restarts the worker on its port; the scheduler probes it and takes it back.
  deadline = Clock::now() + seconds(60);
  bool back = false;
  while (!back && Clock::now() < deadline) {
    ite::v1::StatsResponse s = GetStats(*stub);
    back = s.workers_size() == 2 && s.workers(victim).healthy();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(back) << "worker " << victim << " was not taken back";
  int64_t steps_before = GetStats(*stub).workers(victim).steps();
  std::vector<std::future<GenerateResult>> more;
  for (int i = 0; i < 6; ++i) {
    more.push_back(std::async(std::launch::async, [&, i] {
      auto s = serve.Stub();
      return Generate(*s, Greedy("After the restart, request " + std::to_string(i), 6));
    }));
  }
  for (auto& f : more) {
    GenerateResult r = f.get();
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  EXPECT_GT(GetStats(*stub).workers(victim).steps(), steps_before)
      << "the restarted worker got no work";
}

// The only worker is killed between requests; ite-serve restarts it. The next request, sent as
// soon as the kill happened (before the restarted worker is up), waits for it and succeeds with
// the same text as before, instead of failing on the dead worker's lost state.
TEST(ServiceFailureE2E, RequestAfterAnIdleWorkerRestartSucceeds) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 1));
  auto stub = serve.Stub();
  const ite::v1::GenerateRequest req = Greedy("The three primary colors are", 12);
  GenerateResult before = Generate(*stub, req);
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  std::map<int, int> pids = WorkerPids(serve);
  ASSERT_EQ(pids.size(), 1u);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the scheduler sees the break
  GenerateResult after = Generate(*stub, req, seconds(60));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, before.tokens);
  EXPECT_NE(WorkerPids(serve)[0], pids[0]) << "the worker was not restarted";
}

TEST(ServiceFailureE2E, SigtermDrainsRunningRequestsAndLeavesNoOrphans) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 2));
  std::vector<int> children = serve.ChildPids();
  ASSERT_EQ(children.size(), 3u);  // scheduler + 2 workers
  auto stub = serve.Stub();
  ite::v1::GenerateRequest req = Greedy("Count from one to one hundred:", 40);
  req.set_ignore_eos(true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(120));
  auto reader = stub->Generate(&ctx, req);
  ite::v1::GenerateResponse chunk;
  std::vector<int32_t> tokens;
  ASSERT_TRUE(reader->Read(&chunk));
  tokens.insert(tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
  serve.process().Signal(SIGTERM);  // mid-stream
  while (reader->Read(&chunk)) {
    tokens.insert(tokens.end(), chunk.token_ids().begin(), chunk.token_ids().end());
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(tokens.size(), 40u) << "the running request was not drained";

  auto deadline = Clock::now() + seconds(30);
  while (!serve.process().Exited() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_FALSE(serve.process().running()) << "ite-serve did not exit";
  EXPECT_EQ(serve.process().exit_description(), "exited with code 0");
  for (int pid : children) EXPECT_EQ(ProcessName(pid), "") << "orphan pid " << pid;
}

}  // namespace
}  // namespace ite::e2e
