#include "scheduler/fake_worker_client.h"

#include "common/check.h"
#include "worker/service/fake_backend.h"
#include "worker/service/in_process_worker_client.h"

namespace ite {

FakeWorkerClient::FakeWorkerClient(const FakeWorkerOptions& options)
    : address_(options.address), model_fingerprint_(options.model_fingerprint) {
  ModelConfig config = FakeModelConfig(options.vocab, options.max_position);
  config.eos_token_ids = options.eos_token_ids;
  auto backend = std::make_unique<FakeBackend>(config, options.block_size, options.num_blocks);
  inner_ =
      MakeInProcessWorkerClient(std::make_unique<WorkerEngine>(std::move(backend), options.device));
}

FakeWorkerClient::~FakeWorkerClient() {
  Resume();
  inner_.reset();  // joins the engine thread after the held steps ran
}

StatusOr<WorkerInfo> FakeWorkerClient::Info() {
  std::string fingerprint;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.ok()) return failure_;
    fingerprint = model_fingerprint_;
  }
  StatusOr<WorkerInfo> info = inner_->Info();
  if (info.ok()) info->model_fingerprint = fingerprint;
  return info;
}

void FakeWorkerClient::SetModelFingerprint(std::string fingerprint) {
  std::lock_guard<std::mutex> lock(mu_);
  model_fingerprint_ = std::move(fingerprint);
}

Status FakeWorkerClient::Health() {
  std::lock_guard<std::mutex> lock(mu_);
  if (failure_.ok()) last_healthy_ = std::chrono::steady_clock::now();
  return failure_;
}

Status FakeWorkerClient::Clear() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!failure_.ok()) return failure_;
    ++counters_.clears;
  }
  Status st = inner_->Clear();
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    state_lost_ = false;
  }
  return st;
}

bool FakeWorkerClient::StateLost() {
  std::lock_guard<std::mutex> lock(mu_);
  return state_lost_;
}

void FakeWorkerClient::LoseState() {
  ITE_CHECK(inner_->Clear().ok());
  std::lock_guard<std::mutex> lock(mu_);
  state_lost_ = true;
}

void FakeWorkerClient::StepAsync(StepRequest request,
                                 std::function<void(StatusOr<StepResult>)> done) {
  std::lock_guard<std::mutex> lock(mu_);
  ++counters_.steps;
  ++inflight_;
  counters_.max_inflight = std::max(counters_.max_inflight, inflight_);
  int64_t tokens = 0;
  for (const StepSequence& s : request.seqs) {
    tokens += s.new_tokens.empty() ? 1 : static_cast<int64_t>(s.new_tokens.size());
    if (s.new_tokens.empty()) ++counters_.decodes_without_tokens;
    if (s.sampling.has_value()) ++counters_.joins;
  }
  counters_.max_step_tokens = std::max(counters_.max_step_tokens, tokens);
  counters_.block_copies += static_cast<int64_t>(request.copy_blocks.size());
  for (const StepSequence& s : request.seqs) {
    counters_.block_ids_sent += static_cast<int64_t>(s.block_table.size());
  }
  if (paused_) {
    held_.emplace_back(std::move(request), std::move(done));
    return;
  }
  Forward(std::move(request), std::move(done));
}

// Called with mu_ held, so held and new steps reach the engine in order.
void FakeWorkerClient::Forward(StepRequest request,
                               std::function<void(StatusOr<StepResult>)> done) {
  inner_->StepAsync(std::move(request), [this, done = std::move(done)](StatusOr<StepResult> r) {
    Status failure;
    {
      std::lock_guard<std::mutex> lock(mu_);
      --inflight_;
      failure = failure_;
      if (failure.ok() && state_lost_) failure = Unavailable("the worker lost its state");
    }
    if (!failure.ok()) {
      done(failure);
    } else {
      done(std::move(r));
    }
  });
}

void FakeWorkerClient::Pause() {
  std::lock_guard<std::mutex> lock(mu_);
  paused_ = true;
}

void FakeWorkerClient::Resume() {
  std::lock_guard<std::mutex> lock(mu_);
  paused_ = false;
  while (!held_.empty()) {
    auto [request, done] = std::move(held_.front());
    held_.pop_front();
    Forward(std::move(request), std::move(done));
  }
}

void FakeWorkerClient::Fail(Status error) {
  std::lock_guard<std::mutex> lock(mu_);
  failure_ = std::move(error);
}

void FakeWorkerClient::Heal() {
  std::lock_guard<std::mutex> lock(mu_);
  failure_ = Status::Ok();
}

std::chrono::steady_clock::time_point FakeWorkerClient::last_healthy() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_healthy_;
}

FakeWorkerCounters FakeWorkerClient::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counters_;
}

}  // namespace ite
