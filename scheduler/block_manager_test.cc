#include "scheduler/block_manager.h"

#include <gtest/gtest.h>

#include <random>

namespace ite {
namespace {

std::vector<int32_t> Ids(const BlockTable& t) { return t.ids(); }

// Table-style: each row is one operation and the state expected after it.
TEST(BlockManagerTest, TableOfOperations) {
  BlockManager m(4);
  BlockTable a, b;
  std::vector<BlockCopy> copies;

  ASSERT_TRUE(m.Append(&a, 2));
  EXPECT_EQ(Ids(a), (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(m.num_free(), 2);

  m.AppendShared(&b, a.ids());  // b shares a's two blocks
  EXPECT_EQ(m.ref_count(0), 2);
  EXPECT_EQ(m.ref_count(1), 2);
  EXPECT_EQ(m.num_free(), 2);

  ASSERT_TRUE(m.MakeWritable(&b, 1, &copies));  // b diverges in its last (shared) block
  EXPECT_EQ(Ids(b), (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(copies, (std::vector<BlockCopy>{{1, 2}}));
  EXPECT_EQ(m.ref_count(1), 1);
  EXPECT_EQ(m.ref_count(2), 1);
  EXPECT_EQ(m.num_free(), 1);

  ASSERT_TRUE(m.MakeWritable(&b, 1, &copies));  // exclusively owned now: no copy
  EXPECT_EQ(copies.size(), 1u);

  EXPECT_FALSE(m.Append(&a, 2));  // only one free: nothing changes
  EXPECT_EQ(a.size(), 2);
  EXPECT_EQ(m.num_free(), 1);

  ASSERT_TRUE(m.Append(&a, 1));
  EXPECT_EQ(m.num_free(), 0);
  BlockTable c;
  m.AppendShared(&c, std::vector<int32_t>{3});
  EXPECT_FALSE(m.MakeWritable(&c, 0, &copies));  // shared, and no block for the copy
  EXPECT_EQ(Ids(c), (std::vector<int32_t>{3}));

  const BlockTable* tables[] = {&a, &b, &c};
  EXPECT_TRUE(m.CheckConsistency(tables, {}).ok());

  m.Truncate(&a, 1);  // drops blocks 1 and 3 (3 still held by c)
  EXPECT_EQ(Ids(a), (std::vector<int32_t>{0}));
  EXPECT_EQ(m.ref_count(1), 0);
  EXPECT_EQ(m.ref_count(3), 1);
  EXPECT_EQ(m.num_free(), 1);

  m.Release(&a);
  m.Release(&b);
  m.Release(&c);
  EXPECT_EQ(m.num_free(), 4);
  EXPECT_TRUE(m.CheckConsistency({}, {}).ok());
}

TEST(BlockManagerTest, RawReferences) {
  BlockManager m(2);
  BlockTable a;
  ASSERT_TRUE(m.Append(&a, 1));
  m.Retain(0);  // e.g. the prefix cache
  m.Release(&a);
  EXPECT_EQ(m.ref_count(0), 1);
  EXPECT_EQ(m.num_free(), 1);
  std::vector<int32_t> extra{0};
  EXPECT_TRUE(m.CheckConsistency({}, extra).ok());
  EXPECT_FALSE(m.CheckConsistency({}, {}).ok());  // a holder it does not know about
  EXPECT_TRUE(m.Unref(0));
  EXPECT_EQ(m.num_free(), 2);
}

TEST(BlockManagerDeathTest, DoubleFreeAborts) {
  BlockManager m(2);
  BlockTable a;
  ASSERT_TRUE(m.Append(&a, 1));
  m.Release(&a);
  EXPECT_DEATH(m.Unref(0), "double free");
  EXPECT_DEATH(m.Retain(1), "free block");
}

// Thousands of random operations on several tables, checked after each against a model that
// knows which tables hold which blocks.
TEST(BlockManagerTest, RandomizedAgainstModel) {
  for (uint32_t seed : {1u, 2u, 3u, 4u}) {
    constexpr int32_t kBlocks = 32;
    BlockManager m(kBlocks);
    std::mt19937 rng(seed);
    std::vector<BlockTable> tables(6);
    std::vector<int32_t> extra;  // raw references held outside tables
    int64_t copies_made = 0;
    for (int op = 0; op < 5000; ++op) {
      BlockTable& t = tables[rng() % tables.size()];
      switch (rng() % 6) {
        case 0: {
          int32_t n = rng() % 4;
          int32_t before = m.num_free();
          bool ok = m.Append(&t, n);
          ASSERT_EQ(ok, n <= before);
          ASSERT_EQ(m.num_free(), ok ? before - n : before);
          break;
        }
        case 1: {
          const BlockTable& src = tables[rng() % tables.size()];
          if (src.empty()) break;
          int32_t k = 1 + rng() % src.size();
          std::vector<int32_t> prefix(src.ids().begin(), src.ids().begin() + k);
          m.AppendShared(&t, prefix);
          break;
        }
        case 2: {
          if (t.empty()) break;
          int32_t i = rng() % t.size();
          int32_t old = t[i];
          bool shared = m.ref_count(old) > 1;
          std::vector<BlockCopy> copies;
          int32_t before = m.num_free();
          bool ok = m.MakeWritable(&t, i, &copies);
          ASSERT_EQ(ok, !shared || before > 0);
          if (ok) {
            ASSERT_EQ(m.ref_count(t[i]), 1);
          }
          if (ok && shared) {
            ASSERT_EQ(copies.size(), 1u);
            ASSERT_EQ(copies[0].first, old);
            ASSERT_EQ(copies[0].second, t[i]);
            ++copies_made;
          } else {
            ASSERT_TRUE(copies.empty());
          }
          break;
        }
        case 3:
          m.Truncate(&t, t.empty() ? 0 : rng() % t.size());
          break;
        case 4:
          if (!t.empty()) {
            int32_t id = t[rng() % t.size()];
            m.Retain(id);
            extra.push_back(id);
          }
          break;
        case 5:
          if (!extra.empty()) {
            size_t i = rng() % extra.size();
            m.Unref(extra[i]);
            extra.erase(extra.begin() + i);
          }
          break;
      }
      std::vector<const BlockTable*> ptrs;
      for (const BlockTable& x : tables) ptrs.push_back(&x);
      Status s = m.CheckConsistency(ptrs, extra);
      ASSERT_TRUE(s.ok()) << "seed " << seed << " op " << op << ": " << s.ToString();
    }
    EXPECT_GT(copies_made, 0);
    for (BlockTable& t : tables) m.Release(&t);
    for (int32_t id : extra) m.Unref(id);
    EXPECT_EQ(m.num_free(), kBlocks) << "leaked blocks, seed " << seed;
  }
}

}  // namespace
}  // namespace ite
