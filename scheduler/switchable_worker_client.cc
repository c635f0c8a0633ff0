#include "scheduler/switchable_worker_client.h"

namespace ite {

SwitchableWorkerClient::SwitchableWorkerClient(Factory factory)
    : factory_(std::move(factory)), failer_([this] { FailLoop(); }) {}

SwitchableWorkerClient::~SwitchableWorkerClient() {
  SetAddress("");
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  fail_cv_.notify_all();
  failer_.join();
}

void SwitchableWorkerClient::SetAddress(const std::string& address) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (address == address_) return;
  }
  std::unique_ptr<WorkerClient> fresh = address.empty() ? nullptr : factory_(address);
  std::shared_ptr<WorkerClient> old;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (address == address_) return;  // set meanwhile by another caller
    old = std::move(client_);
    client_ = std::move(fresh);
    address_ = address;
    switched_ = true;
  }
  // Outside the lock: destroying a client completes its steps in flight (UNAVAILABLE), and
  // their callbacks may call back into this client. A caller that still holds it (a step
  // being sent) keeps it alive until then.
  old.reset();
}

std::string SwitchableWorkerClient::address() const {
  std::lock_guard<std::mutex> lock(mu_);
  return address_;
}

std::shared_ptr<WorkerClient> SwitchableWorkerClient::Current(std::string* address) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (address != nullptr) *address = address_;
  return client_;
}

StatusOr<WorkerInfo> SwitchableWorkerClient::Info() {
  std::shared_ptr<WorkerClient> c = Current(nullptr);
  if (!c) return Unavailable("no worker in this slot");
  return c->Info();
}

void SwitchableWorkerClient::StepAsync(StepRequest request, Done done) {
  std::shared_ptr<WorkerClient> c = Current(nullptr);
  if (c) {
    c->StepAsync(std::move(request), std::move(done));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    to_fail_.push_back(std::move(done));
  }
  fail_cv_.notify_all();
}

Status SwitchableWorkerClient::Health() {
  std::shared_ptr<WorkerClient> c = Current(nullptr);
  return c ? c->Health() : Unavailable("no worker in this slot");
}

Status SwitchableWorkerClient::Clear() {
  std::string address;
  std::shared_ptr<WorkerClient> c = Current(&address);
  if (!c) return Unavailable("no worker in this slot");
  Status st = c->Clear();
  if (st.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    // Only if the slot still holds the worker just cleared.
    if (address_ == address) switched_ = false;
  }
  return st;
}

bool SwitchableWorkerClient::StateLost() {
  std::shared_ptr<WorkerClient> c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (switched_) return true;
    c = client_;
  }
  return c && c->StateLost();
}

void SwitchableWorkerClient::FailLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    fail_cv_.wait(lock, [this] { return stopping_ || !to_fail_.empty(); });
    while (!to_fail_.empty()) {
      Done done = std::move(to_fail_.front());
      to_fail_.pop_front();
      lock.unlock();
      done(Unavailable("no worker in this slot (it left)"));
      lock.lock();
    }
    if (stopping_) return;
  }
}

}  // namespace ite
