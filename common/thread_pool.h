// A fixed set of worker threads for data-parallel loops (the CPU backend's matmuls and attention).
// The calling thread takes part, so ThreadPool(1) runs everything inline with no threads at all.
// ParallelFor may be called from one thread at a time and must not be nested.
//
// Work is handed out in chunks that threads claim as they come, not split up front: on a busy
// machine a worker that is not scheduled in time simply gets no chunks, instead of holding the
// whole loop up for a scheduler time slice.
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

  // Calls fn(begin, end) on disjoint contiguous chunks of `grain` items (the last one shorter)
  // covering [0, n), from any of the pool's threads, and returns when all have finished.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)>* fn = nullptr;
    int64_t n = 0;
    int64_t grain = 1;
    uint32_t chunks = 0;
    uint32_t generation = 0;
  };

  void WorkerLoop();
  // Claims and runs chunks of `job` until none is left; returns the items it ran.
  int64_t RunChunks(const Job& job);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  Job job_;  // guarded by mu_
  // High 32 bits: the job's generation; low 32 bits: the next unclaimed chunk. Packing both makes
  // a late worker's claim fail once its job is over and another has started.
  std::atomic<uint64_t> cursor_{0};
  std::atomic<uint32_t> generation_{0};
  std::atomic<int64_t> done_{0};  // items finished in the current job
};

}  // namespace ite
