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

// Spinning this many rounds (microseconds) before sleeping catches back-to-back loops (one per
// matmul of a decode step) without a futex wake; longer spins only burn the CPU time that other
// processes on a busy machine need.
constexpr int kSpinRounds = 2000;

}  // namespace

ThreadPool::ThreadPool(int num_threads) {
  int extra = std::max(num_threads, 1) - 1;
  workers_.reserve(extra);
  for (int i = 0; i < extra; ++i) workers_.emplace_back([this] { WorkerLoop(); });
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

int64_t ThreadPool::RunChunks(const Job& job) {
  int64_t ran = 0;
  uint64_t cur = cursor_.load(std::memory_order_acquire);
  while (true) {
    if (static_cast<uint32_t>(cur >> 32) != job.generation) break;
    uint32_t chunk = static_cast<uint32_t>(cur);
    if (chunk >= job.chunks) break;
    if (!cursor_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) continue;
    int64_t begin = static_cast<int64_t>(chunk) * job.grain;
    int64_t end = std::min(job.n, begin + job.grain);
    (*job.fn)(begin, end);
    ran += end - begin;
    cur = cursor_.load(std::memory_order_acquire);
  }
  return ran;
}

void ThreadPool::ParallelFor(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (workers_.empty() || n <= grain) {
    fn(0, n);
    return;
  }
  Job job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    job.fn = &fn;
    job.n = n;
    job.grain = grain;
    job.chunks = static_cast<uint32_t>((n + grain - 1) / grain);
    job.generation = generation_.load(std::memory_order_relaxed) + 1;
    job_ = job;
    done_.store(0, std::memory_order_relaxed);
    cursor_.store(static_cast<uint64_t>(job.generation) << 32, std::memory_order_release);
    generation_.store(job.generation, std::memory_order_release);
  }
  wake_.notify_all();
  int64_t mine = RunChunks(job);
  // Wait only for chunks other threads claimed: spin briefly, then yield, since on a busy
  // machine the worker finishing one may need this very core.
  for (int i = 0; done_.load(std::memory_order_acquire) + mine < n; ++i) {
    if (i < kSpinRounds / 4) {
      CpuRelax();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop() {
  uint32_t seen = 0;
  while (true) {
    for (int i = 0; i < kSpinRounds && generation_.load(std::memory_order_acquire) == seen; ++i)
      CpuRelax();
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      if (stop_) return;
      job = job_;
      seen = job.generation;
    }
    int64_t ran = RunChunks(job);
    // The caller cannot finish (and invalidate job.fn) before this count includes our chunks.
    if (ran > 0) done_.fetch_add(ran, std::memory_order_acq_rel);
  }
}

}  // namespace ite
