#include "common/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace ite {
namespace {

inline void CpuRelax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Spinning this many rounds (tens of microseconds) before sleeping keeps the wake-up latency of
// back-to-back loops (one per matmul of a decode step) far below a futex wake.
constexpr int kSpinRounds = 20000;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  int extra = std::max(num_threads, 1) - 1;
  workers_.reserve(extra);
  for (int i = 0; i < extra; ++i) workers_.emplace_back([this, i] { WorkerLoop(i + 1); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::RunPart(int part, int parts) {
  int64_t begin = job_n_ * part / parts;
  int64_t end = job_n_ * (part + 1) / parts;
  if (begin < end) (*job_)(begin, end);
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  int64_t max_parts = std::max<int64_t>(1, n / std::max<int64_t>(grain, 1));
  int parts = static_cast<int>(std::min<int64_t>(num_threads(), max_parts));
  if (parts == 1) {
    fn(0, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = &fn;
    job_n_ = n;
    job_parts_ = parts;
    pending_.store(parts - 1, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  RunPart(0, parts);
  // Spin briefly, then yield: on a busy machine the workers may need this very core.
  for (int i = 0; pending_.load(std::memory_order_acquire) > 0; ++i) {
    if (i < kSpinRounds / 4) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  while (true) {
    uint64_t gen = generation_.load(std::memory_order_acquire);
    for (int i = 0; i < kSpinRounds && gen == seen; ++i) {
      CpuRelax();
      gen = generation_.load(std::memory_order_acquire);
    }
    if (gen == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    int parts;
    {
      // The generation and the job are read together under the lock, so a worker that was slow
      // to wake runs only the current job, and only once.
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      seen = generation_.load(std::memory_order_acquire);
      parts = job_parts_;
    }
    // Workers whose index is past this job's part count have nothing to do this round.
    if (index < parts) {
      RunPart(index, parts);
      pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }
}

}  // namespace ite
