#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <vector>

namespace ite {
namespace {

TEST(ThreadPoolTest, CoversEveryIndexOnceAcrossManyLoops) {
  ThreadPool pool(3);  // more threads than this machine's cores, on purpose
  std::vector<int> hits(1000, 0);
  for (int round = 0; round < 300; ++round) {
    int64_t n = 1 + round * 3;
    int64_t grain = 1 + round % 7;
    pool.ParallelFor(n, grain, [&](int64_t b, int64_t e) {
      ASSERT_LE(e - b, grain);
      for (int64_t i = b; i < e; ++i) ++hits[i];
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i], 1) << "round " << round << " i " << i;
    std::fill(hits.begin(), hits.end(), 0);
  }
}

TEST(ThreadPoolTest, UnevenWorkIsSharedAndFinishesBeforeReturn) {
  ThreadPool pool(2);
  std::mt19937 rng(1);
  for (int round = 0; round < 20; ++round) {
    std::vector<int> sleep_us(16);
    for (int& s : sleep_us) s = static_cast<int>(rng() % 300);
    std::atomic<int> done{0};
    pool.ParallelFor(16, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        std::this_thread::sleep_for(std::chrono::microseconds(sleep_us[i]));
        done.fetch_add(1);
      }
    });
    ASSERT_EQ(done.load(), 16);  // nothing still running after ParallelFor returned
  }
}

TEST(ThreadPoolTest, OneThreadRunsInlineAndEmptyLoopsAreNoOps) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.num_threads(), 1);
  std::thread::id caller = std::this_thread::get_id();
  int calls = 0;
  pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    calls += static_cast<int>(e - b);
  });
  EXPECT_EQ(calls, 10);
  ThreadPool two(2);
  two.ParallelFor(0, 1, [&](int64_t, int64_t) { ADD_FAILURE() << "called for n = 0"; });
}

}  // namespace
}  // namespace ite
