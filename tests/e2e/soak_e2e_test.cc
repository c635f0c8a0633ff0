// Soak: 1,000 concurrent streaming clients against a REAL ite-scheduler and ite-worker on
// loopback (CPU backend, the tiny Llama of tests/data, so the scheduler and the gRPC edge, not
// the model, are what is under load), for ITE_SOAK_SECONDS (default 20). Each client runs
// Generate calls back to back. Checks: no error but the documented RESOURCE_EXHAUSTED, every
// stream complete, no KV block left in use afterwards, the scheduler's thread count bounded (no
// thread per call) and its resident memory flat. Prints the figures (scripts/soak.sh runs it for
// minutes and docs/reliability.md keeps them).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kAddressSanitizer = true;
#else
constexpr bool kAddressSanitizer = false;
#endif
#else
constexpr bool kAddressSanitizer = false;
#endif

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// "Threads:" and "VmRSS:" (kB) of /proc/PID/status; -1 when absent.
int64_t ProcStatus(int pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key, 0) == 0) return std::atoll(line.c_str() + key.size());
  }
  return -1;
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// What every client reports, under one lock.
struct Tally {
  std::mutex mu;
  std::condition_variable done_cv;
  std::map<grpc::StatusCode, int64_t> codes;
  std::string first_error;
  int64_t incomplete = 0;  // OK without a final chunk, or not the tokens asked for
  std::vector<double> ttft_ms, e2e_ms;
  int clients_done = 0;
  std::atomic<int> in_flight{0};
  std::atomic<int> peak_in_flight{0};
};

// One call of a client: a Generate stream on the callback API. When it ends, the client's next
// call starts (until the deadline) and this one deletes itself.
class Client final : public grpc::ClientReadReactor<ite::v1::GenerateResponse> {
 public:
  Client(ite::v1::Generation::Stub* stub, Tally* tally, Clock::time_point deadline, uint32_t seed)
      : stub_(stub), tally_(tally), deadline_(deadline), rng_(seed) {}

  void Begin() {
    ctx_.set_deadline(std::chrono::system_clock::now() + seconds(120));
    const int prompt = 8 + static_cast<int>(rng_() % 24);
    for (int i = 0; i < prompt; ++i)
      request_.mutable_prompt_token_ids()->add_ids(3 + static_cast<int32_t>(rng_() % 500));
    want_tokens_ = 4 + static_cast<int>(rng_() % 13);
    request_.set_max_tokens(want_tokens_);
    request_.set_ignore_eos(true);
    request_.mutable_sampling()->set_temperature(0.0f);
    started_ = Clock::now();
    int now = ++tally_->in_flight;
    for (int peak = tally_->peak_in_flight; now > peak;) {
      if (tally_->peak_in_flight.compare_exchange_weak(peak, now)) break;
    }
    stub_->async()->Generate(&ctx_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (first_chunk_) {
      ttft_ = Clock::now();
      first_chunk_ = false;
    }
    tokens_ += response_.token_ids_size();
    if (response_.finish_reason() != ite::v1::FINISH_REASON_UNSPECIFIED) finished_ = true;
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    --tally_->in_flight;
    const auto end = Clock::now();
    {
      std::lock_guard<std::mutex> lock(tally_->mu);
      ++tally_->codes[status.error_code()];
      if (!status.ok() && status.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
          tally_->first_error.empty()) {
        tally_->first_error = std::to_string(status.error_code()) + ": " + status.error_message();
      }
      if (status.ok()) {
        if (!finished_ || tokens_ != want_tokens_) ++tally_->incomplete;
        tally_->ttft_ms.push_back(std::chrono::duration<double, std::milli>(ttft_ - started_).count());
        tally_->e2e_ms.push_back(std::chrono::duration<double, std::milli>(end - started_).count());
      }
    }
    if (Clock::now() < deadline_) {
      // The same client's next call, on a reactor of its own (one reactor per call).
      (new Client(stub_, tally_, deadline_, static_cast<uint32_t>(rng_())))->Begin();
    } else {
      std::lock_guard<std::mutex> lock(tally_->mu);
      ++tally_->clients_done;
      tally_->done_cv.notify_all();
    }
    delete this;
  }

 private:
  ite::v1::Generation::Stub* stub_;
  Tally* tally_;
  Clock::time_point deadline_;
  std::mt19937 rng_;
  grpc::ClientContext ctx_;
  ite::v1::GenerateRequest request_;
  ite::v1::GenerateResponse response_;
  int want_tokens_ = 0, tokens_ = 0;
  bool finished_ = false, first_chunk_ = true;
  Clock::time_point started_, ttft_;
};

ite::v1::StatsResponse Stats(ite::v1::Generation::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  ite::v1::StatsResponse s;
  grpc::Status st = stub.Stats(&ctx, ite::v1::StatsRequest(), &s);
  EXPECT_TRUE(st.ok()) << st.error_message();
  return s;
}

TEST(SoakE2E, ThousandConcurrentStreamsWithoutErrorsLeaksOrAThreadPerCall) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  const std::string tiny = ITE_E2E_TINY_LLAMA;
  ASSERT_TRUE(std::filesystem::exists(tiny + "/config.json")) << tiny;
  const char* env_seconds = std::getenv("ITE_SOAK_SECONDS");
  const int duration_s = env_seconds != nullptr ? std::atoi(env_seconds) : 20;
  const char* env_clients = std::getenv("ITE_SOAK_CLIENTS");
  const int clients = env_clients != nullptr ? std::atoi(env_clients) : 1000;
  ASSERT_GT(duration_s, 0);
  ASSERT_GT(clients, 0);

  TempDir dir;
  ChildProcess worker;
  ASSERT_TRUE(worker
                  .Start("ite-worker", {env.bin_dir + "/ite-worker", "--model", tiny, "--port", "0",
                                        "--threads", "1", "--kv-blocks", "4096", "--ready-file",
                                        dir.path() + "/worker.port"})
                  .ok());
  const int worker_port = WaitForPortFile(dir.path() + "/worker.port", &worker, seconds(60));
  ASSERT_GT(worker_port, 0);
  // The scheduler takes its tokenizer from SmolLM2 (the tiny model has none); requests send
  // token ids below the tiny vocabulary, so the tokenizer only turns output ids into text. The
  // model fingerprints differ on purpose: the worker's is pinned instead of SmolLM2's.
  ChildProcess scheduler;
  ASSERT_TRUE(scheduler
                  .Start("ite-scheduler",
                         {env.bin_dir + "/ite-scheduler", "--model", env.model, "--workers",
                          "127.0.0.1:" + std::to_string(worker_port), "--port", "0", "--http-port",
                          "-1", "--log-level", "warn", "--model-fingerprint", "first",
                          "--ready-file", dir.path() + "/scheduler.port"})
                  .ok());
  const int port = WaitForPortFile(dir.path() + "/scheduler.port", &scheduler, seconds(60));
  ASSERT_GT(port, 0);
  const std::string address = "127.0.0.1:" + std::to_string(port);
  auto control = ite::v1::Generation::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  const ite::v1::StatsResponse before = Stats(*control);
  ASSERT_EQ(before.workers_size(), 1);
  const int pid = scheduler.pid();
  const int64_t threads_idle = ProcStatus(pid, "Threads:");

  // Clients spread over several connections, as many client processes would be.
  constexpr int kChannels = 16;
  std::vector<std::unique_ptr<ite::v1::Generation::Stub>> stubs;
  for (int i = 0; i < kChannels; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("ite.soak.channel", i);  // distinct arguments: a connection of its own
    stubs.push_back(ite::v1::Generation::NewStub(
        grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args)));
  }
  Tally tally;
  const auto start = Clock::now();
  const auto deadline = start + seconds(duration_s);
  for (int i = 0; i < clients; ++i) {
    (new Client(stubs[i % kChannels].get(), &tally, deadline, 1234u + i))->Begin();
  }

  // Sample the scheduler while the clients run: threads, memory, requests in flight.
  int64_t threads_peak = 0, rss_warm_kb = -1, rss_peak_kb = 0, rss_last_kb = 0;
  int32_t server_peak = 0;
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(500));
    threads_peak = std::max(threads_peak, ProcStatus(pid, "Threads:"));
    rss_last_kb = ProcStatus(pid, "VmRSS:");
    rss_peak_kb = std::max(rss_peak_kb, rss_last_kb);
    // Memory once the queues have filled (a quarter in) is the baseline the end is held to.
    if (rss_warm_kb < 0 && Clock::now() - start > seconds(duration_s) / 4) rss_warm_kb = rss_last_kb;
    ite::v1::StatsResponse s = Stats(*control);
    server_peak = std::max(server_peak, s.running() + s.waiting());
  }
  {
    std::unique_lock<std::mutex> lock(tally.mu);
    ASSERT_TRUE(tally.done_cv.wait_for(lock, seconds(180),
                                       [&] { return tally.clients_done == clients; }))
        << tally.clients_done << " of " << clients << " clients finished";
  }
  const double took_s = std::chrono::duration<double>(Clock::now() - start).count();

  // Every block back: nothing in use, the rest free or held by the prefix cache only.
  ite::v1::StatsResponse after;
  ASSERT_TRUE(WaitUntil(
      [&] {
        after = Stats(*control);
        return after.running() == 0 && after.waiting() == 0 && after.workers(0).used_blocks() == 0;
      },
      seconds(30)));
  const ite::v1::WorkerStats& w = after.workers(0);
  const int64_t rss_end_kb = ProcStatus(pid, "VmRSS:");
  const int64_t threads_end = ProcStatus(pid, "Threads:");

  int64_t total = 0;
  for (const auto& [code, n] : tally.codes) total += n;
  const int64_t ok = tally.codes[grpc::StatusCode::OK];
  const int64_t exhausted = tally.codes[grpc::StatusCode::RESOURCE_EXHAUSTED];
  std::cout << "soak: " << clients << " clients, " << took_s << " s, " << total << " streams ("
            << ok << " OK, " << exhausted << " RESOURCE_EXHAUSTED, " << total - ok - exhausted
            << " other errors, " << tally.incomplete << " incomplete), peak in flight "
            << tally.peak_in_flight << " (server " << server_peak << ")\n"
            << "soak: " << static_cast<double>(ok) / took_s << " req/s; TTFT p50/p99 "
            << Percentile(tally.ttft_ms, 0.5) << " / " << Percentile(tally.ttft_ms, 0.99)
            << " ms; E2E p50/p99 " << Percentile(tally.e2e_ms, 0.5) << " / "
            << Percentile(tally.e2e_ms, 0.99) << " ms\n"
            << "soak: scheduler threads idle " << threads_idle << ", peak " << threads_peak
            << ", end " << threads_end << "; RSS warm " << rss_warm_kb / 1024 << " MiB, peak "
            << rss_peak_kb / 1024 << " MiB, end " << rss_end_kb / 1024 << " MiB\n"
            << "soak: KV blocks total " << w.total_blocks() << ", free before "
            << before.workers(0).free_blocks() << ", after " << w.free_blocks() << " free + "
            << w.cached_blocks() << " cached, " << w.used_blocks() << " used\n";

  EXPECT_EQ(total - ok - exhausted, 0) << "first: " << tally.first_error;
  EXPECT_EQ(tally.incomplete, 0);
  EXPECT_GT(ok, clients);  // every client finished at least one stream, most several
  EXPECT_EQ(tally.peak_in_flight, clients);
  EXPECT_EQ(w.used_blocks(), 0);
  EXPECT_EQ(w.free_blocks() + w.cached_blocks(), w.total_blocks());
  EXPECT_EQ(w.free_blocks() + w.cached_blocks(), before.workers(0).free_blocks());
  // A thread per call would be ~clients threads; gRPC's callback executor stays near the cores.
  EXPECT_LT(threads_peak, threads_idle + 64);
  // Flat: the end within a quarter (and 32 MiB) of the warm baseline. Not under ASan, whose
  // quarantine keeps freed memory resident by design (up to 256 MiB).
  if (rss_warm_kb > 0 && !kAddressSanitizer) {
    EXPECT_LT(rss_end_kb, rss_warm_kb + rss_warm_kb / 4 + 32 * 1024);
  }
  scheduler.Stop(seconds(20));
  worker.Stop(seconds(20));
}

}  // namespace
}  // namespace ite::e2e
