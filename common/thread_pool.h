// A fixed set of worker threads for data-parallel loops (the CPU backend's matmuls and attention).
// The calling thread takes part, so ThreadPool(1) runs everything inline with no threads at all.
// ParallelFor may be called from one thread at a time and must not be nested.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ite {

class ThreadPool {
 public:
  // num_threads: total threads including the caller; values < 1 mean 1.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(begin, end) on disjoint contiguous ranges covering [0, n), at most one range per
  // thread, and returns when all have finished. Ranges hold at least `grain` items (except when
  // n < grain) so tiny loops are not split.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  void WorkerLoop(int index);
  void RunPart(int part, int parts);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  // Bumped once per ParallelFor; workers run when they see a new value.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  bool stop_ = false;
  // The current job, valid while pending_ > 0.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_parts_ = 0;
};

}  // namespace ite
