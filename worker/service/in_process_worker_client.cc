// Steps run on a thread of the client's own, in order, so the scheduler's pipelining behaves as
// it does against a remote worker.
#include "worker/service/in_process_worker_client.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

namespace ite {

namespace {

class InProcessWorkerClient : public WorkerClient {
 public:
  explicit InProcessWorkerClient(std::unique_ptr<WorkerEngine> engine)
      : engine_(std::move(engine)), thread_([this] { Run(); }) {}

  ~InProcessWorkerClient() override {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      stopping_ = true;
    }
    queue_cv_.notify_all();
    thread_.join();
  }

  StatusOr<WorkerInfo> Info() override {
    std::lock_guard<std::mutex> lock(engine_mu_);
    return engine_->Info();
  }

  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override {
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      queue_.push_back({std::move(request), std::move(done)});
    }
    queue_cv_.notify_one();
  }

  Status Health() override { return Status::Ok(); }

  Status Clear() override {
    std::lock_guard<std::mutex> lock(engine_mu_);
    return engine_->Clear();
  }

 private:
  struct Pending {
    StepRequest request;
    std::function<void(StatusOr<StepResult>)> done;
  };

  void Run() {
    while (true) {
      Pending next;
      {
        std::unique_lock<std::mutex> lock(queue_mu_);
        queue_cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping, nothing left
        next = std::move(queue_.front());
        queue_.pop_front();
        if (stopping_) {
          lock.unlock();
          next.done(Unavailable("in-process worker is shutting down"));
          continue;
        }
      }
      StatusOr<StepResult> result = [&] {
        std::lock_guard<std::mutex> lock(engine_mu_);
        return engine_->Step(next.request);
      }();
      next.done(std::move(result));
    }
  }

  std::unique_ptr<WorkerEngine> engine_;
  std::mutex engine_mu_;  // one caller at a time (WorkerEngine's contract)
  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<Pending> queue_;
  bool stopping_ = false;
  std::thread thread_;  // last: starts after the members it uses
};

}  // namespace

std::unique_ptr<WorkerClient> MakeInProcessWorkerClient(std::unique_ptr<WorkerEngine> engine) {
  return std::make_unique<InProcessWorkerClient>(std::move(engine));
}

}  // namespace ite
