#include "worker/parallel/tensor_parallel_backend.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <mutex>
#include <thread>

namespace ite {
namespace {

// One thread running posted tasks in order.
class Lane {
 public:
  Lane() : thread_([this] { Loop(); }) {}
  ~Lane() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  template <class Fn>
  auto Post(Fn fn) -> std::future<decltype(fn())> {
    auto task = std::make_shared<std::packaged_task<decltype(fn())()>>(std::move(fn));
    std::future<decltype(fn())> result = task->get_future();
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.emplace_back([task] { (*task)(); });
    }
    cv_.notify_one();
    return result;
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
        if (tasks_.empty()) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

class TensorParallelBackend final : public Backend {
 public:
  TensorParallelBackend(int size, std::shared_ptr<void> keep_alive,
                        std::function<bool()> group_failed)
      : keep_alive_(std::move(keep_alive)),
        group_failed_(std::move(group_failed)),
        submit_(size),
        collect_(size),
        ranks_(size) {}

  ~TensorParallelBackend() override {
    // Each rank's backend ends on its own thread, as it began.
    std::vector<std::future<void>> done;
    for (size_t r = 0; r < ranks_.size(); ++r)
      done.push_back(submit_[r].Post([this, r] { ranks_[r].reset(); }));
    for (auto& d : done) d.wait();
  }

  Status Init(const TensorParallelOptions& o) {
    // The rank that failed first is the cause; the others then fail for waiting on it.
    std::mutex mu;
    Status first;
    std::vector<std::future<void>> made;
    for (int r = 0; r < o.size; ++r) {
      made.push_back(submit_[r].Post([&, r] {
        auto b = o.make_rank(r);
        if (b.ok()) {
          ranks_[r] = std::move(b).value();
          return;
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          if (first.ok())
            first = Status(b.status().code(), fmt::format("rank {}: {}", r, b.status().message()));
        }
        o.abort();
      }));
    }
    for (auto& m : made) m.get();
    ITE_RETURN_IF_ERROR(first);
    for (size_t r = 1; r < ranks_.size(); ++r) {
      if (ranks_[r]->num_blocks() != ranks_[0]->num_blocks() ||
          ranks_[r]->block_size() != ranks_[0]->block_size())
        return Internal("rank {} has {} KV blocks of {}, rank 0 {} of {}", r,
                        ranks_[r]->num_blocks(), ranks_[r]->block_size(), ranks_[0]->num_blocks(),
                        ranks_[0]->block_size());
    }
    device_ = fmt::format("tp{}[", ranks_.size());
    for (size_t r = 0; r < ranks_.size(); ++r)
      device_ += fmt::format("{}{}", r ? ", " : "", ranks_[r]->device());
    device_ += "]";
    return Status::Ok();
  }

  // The shard's config: vocabulary, context, layers and hidden size are the whole model's.
  const ModelConfig& config() const override { return ranks_[0]->config(); }
  int32_t block_size() const override { return ranks_[0]->block_size(); }
  int32_t num_blocks() const override { return ranks_[0]->num_blocks(); }
  std::string device() const override { return device_; }

  Status AddSequence(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
                     int32_t generated) override {
    return OnAll([&](Backend& b) { return b.AddSequence(seq_id, params, context, generated); });
  }
  Status SetSequenceImages(int64_t seq_id, std::vector<StepImage> images,
                           std::span<const int32_t> context) override {
    return OnAll([&](Backend& b) { return b.SetSequenceImages(seq_id, images, context); });
  }
  void ReleaseSequence(int64_t seq_id) override {
    (void)OnAll([&](Backend& b) {
      b.ReleaseSequence(seq_id);
      return Status::Ok();
    });
  }
  void ClearSequences() override {
    (void)OnAll([&](Backend& b) {
      b.ClearSequences();
      return Status::Ok();
    });
  }
  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) override {
    return OnAll([&](Backend& b) { return b.CopyBlocks(src, dst); });
  }
  // Every rank validates the same batch alike, so a bad one fails on all before any collective.
  Status Submit(const ForwardBatch& batch) override {
    return OnAll([&](Backend& b) { return b.Submit(batch); }, /*step=*/true);
  }

  StatusOr<ForwardOutput> Collect() override {
    std::vector<std::future<StatusOr<ForwardOutput>>> outs;
    for (size_t r = 0; r < ranks_.size(); ++r)
      outs.push_back(collect_[r].Post([this, r] { return ranks_[r]->Collect(); }));
    std::vector<StatusOr<ForwardOutput>> got;
    for (auto& o : outs) got.push_back(o.get());
    for (size_t r = 0; r < got.size(); ++r) {
      if (!got[r].ok())
        return Status(got[r].status().code(),
                      fmt::format("rank {}: {}", r, got[r].status().message()));
    }
    // The ranks sample from the same all-reduced logits; different tokens mean a broken group.
    for (size_t r = 1; r < got.size(); ++r) {
      for (size_t i = 0; i < got[0]->samples.size(); ++i) {
        if (i >= got[r]->samples.size() || got[r]->samples[i].token != got[0]->samples[i].token) {
          diverged_ = true;
          return Internal("tensor-parallel rank {} sampled differently from rank 0 (sample {})", r,
                          i);
        }
      }
    }
    return std::move(got[0]);
  }

  bool failed() const override {
    if (diverged_ || group_failed_()) return true;
    for (const auto& b : ranks_) {
      if (b->failed()) return true;
    }
    return false;
  }

 private:
  // fn on every rank at once (their submit threads), the first failure returned. A step that
  // some ranks took and others refused leaves the group out of step for good.
  Status OnAll(const std::function<Status(Backend&)>& fn, bool step = false) {
    std::vector<std::future<Status>> st;
    for (size_t r = 0; r < ranks_.size(); ++r)
      st.push_back(submit_[r].Post([&, r] { return fn(*ranks_[r]); }));
    Status first;
    size_t failures = 0;
    for (size_t r = 0; r < st.size(); ++r) {
      Status s = st[r].get();
      if (s.ok()) continue;
      ++failures;
      if (first.ok()) first = Status(s.code(), fmt::format("rank {}: {}", r, s.message()));
    }
    if (step && failures > 0 && failures < st.size()) diverged_ = true;
    return first;
  }

  std::shared_ptr<void> keep_alive_;  // first: destroyed after the lanes and ranks
  std::function<bool()> group_failed_;
  std::vector<Lane> submit_, collect_;
  std::vector<std::unique_ptr<Backend>> ranks_;
  std::string device_;
  std::atomic<bool> diverged_{false};
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateTensorParallelBackend(const TensorParallelOptions& o) {
  if (o.size < 1 || !o.make_rank)
    return InvalidArgument("tensor-parallel group of {} ranks", o.size);
  auto backend = std::make_unique<TensorParallelBackend>(o.size, o.keep_alive, o.group_failed);
  ITE_RETURN_IF_ERROR(backend->Init(o));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace ite
