#include "worker/parallel/in_process_communicator.h"

#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "worker/model/dequantize.h"

namespace ite {
namespace {

// Runs fn(rank) on `size` threads at once.
void OnRanks(int size, const std::function<void(int)>& fn) {
  std::vector<std::thread> threads;
  for (int r = 0; r < size; ++r) threads.emplace_back(fn, r);
  for (std::thread& t : threads) t.join();
}

TEST(InProcessCommunicatorTest, AllReduceSumsInRankOrderOnEveryRank) {
  for (int size : {1, 2, 3, 4}) {
    InProcessGroup group({size});
    std::vector<std::vector<float>> data(size);
    OnRanks(size, [&](int r) {
      data[r] = {1.0f * (r + 1), -2.0f * r, 1e8f * (r == 0 ? 1 : 0), 1.0f};
      // Repeated collectives reuse the barrier.
      for (int i = 0; i < 3; ++i) {
        Communicator* c = group.rank(r);
        EXPECT_EQ(c->rank(), r);
        EXPECT_EQ(c->size(), size);
        ASSERT_TRUE(c->AllReduceSum(data[r].data(), 4, DType::kF32, nullptr).ok());
        if (i < 2) {
          ASSERT_TRUE(c->Barrier().ok());
          data[r] = {1.0f * (r + 1), -2.0f * r, 1e8f * (r == 0 ? 1 : 0), 1.0f};
          ASSERT_TRUE(c->Barrier().ok());
        }
      }
    });
    const float n = static_cast<float>(size);
    for (int r = 0; r < size; ++r) {
      EXPECT_EQ(data[r][0], n * (n + 1) / 2) << size;
      EXPECT_EQ(data[r][1], -n * (n - 1)) << size;
      EXPECT_EQ(data[r][2], 1e8f);
      EXPECT_EQ(data[r][3], n);
      EXPECT_EQ(data[r], data[0]);
    }
  }
}

TEST(InProcessCommunicatorTest, Bf16SumsInFp32AndRoundsOnce) {
  InProcessGroup group({2});
  std::vector<std::vector<uint16_t>> data(2);
  OnRanks(2, [&](int r) {
    data[r] = {FloatToBf16(r == 0 ? 1.0f : 1.0f / 256), FloatToBf16(3.0f)};
    ASSERT_TRUE(group.rank(r)->AllReduceSum(data[r].data(), 2, DType::kBF16, nullptr).ok());
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_EQ(Bf16ToFloat(data[r][0]), 1.0f);  // 1 + 2^-8 rounds to 1 in bf16 (8 bits)
    EXPECT_EQ(Bf16ToFloat(data[r][1]), 6.0f);
  }
}

TEST(InProcessCommunicatorTest, BroadcastCopiesTheRootsBytes) {
  InProcessGroup group({3});
  std::vector<std::vector<int32_t>> data(3);
  OnRanks(3, [&](int r) {
    data[r] = {r, 10 * r, 100 * r};
    ASSERT_TRUE(group.rank(r)->Broadcast(data[r].data(), 12, 1, nullptr).ok());
  });
  for (int r = 0; r < 3; ++r) EXPECT_EQ(data[r], (std::vector<int32_t>{1, 10, 100}));
}

TEST(InProcessCommunicatorTest, MismatchedCallsFailOnEveryRank) {
  InProcessGroup group({2});
  std::vector<Status> st(2);
  OnRanks(2, [&](int r) {
    std::vector<float> v(4, 1.0f);
    st[r] = group.rank(r)->AllReduceSum(v.data(), r == 0 ? 4 : 3, DType::kF32, nullptr);
  });
  for (const Status& s : st) {
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    EXPECT_NE(s.message().find("mismatch"), std::string::npos) << s.ToString();
  }
  std::vector<float> v(1);
  EXPECT_FALSE(group.rank(0)->AllReduceSum(v.data(), 1, DType::kQ4_0, nullptr).ok());
  EXPECT_FALSE(group.rank(0)->Broadcast(v.data(), 4, 2, nullptr).ok());
}

// A rank that never comes: the others time out instead of hanging, and stay failed.
TEST(InProcessCommunicatorTest, MissingRankTimesOutThenAbortedStaysFailed) {
  InProcessGroupOptions o;
  o.size = 2;
  o.timeout_ms = 100;
  InProcessGroup group(o);
  std::vector<float> v(2, 1.0f);
  Status s = group.rank(0)->AllReduceSum(v.data(), 2, DType::kF32, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("100 ms"), std::string::npos) << s.ToString();
  EXPECT_EQ(group.rank(1)->Barrier().code(), StatusCode::kUnavailable);
}

TEST(InProcessCommunicatorTest, AbortWakesWaitingRanks) {
  InProcessGroup group({3});
  EXPECT_FALSE(group.rank(0)->failed());
  std::vector<Status> st(2);
  std::thread waiter0([&] { st[0] = group.rank(0)->Barrier(); });
  std::thread waiter1([&] { st[1] = group.rank(1)->Barrier(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  group.Abort();
  waiter0.join();
  waiter1.join();
  for (const Status& s : st) EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(group.rank(2)->failed());
}

}  // namespace
}  // namespace ite
