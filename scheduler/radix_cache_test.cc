#include "scheduler/radix_cache.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace ite {
namespace {

using Tokens = std::vector<int32_t>;

struct Fixture {
  explicit Fixture(int32_t num_blocks, int32_t block_size = 2)
      : blocks(num_blocks), cache(block_size, &blocks) {}
  // A sequence that computed `tokens` into fresh blocks.
  BlockTable Compute(const Tokens& tokens) {
    BlockTable t;
    int32_t n = (static_cast<int32_t>(tokens.size()) + cache.block_size() - 1) / cache.block_size();
    EXPECT_TRUE(blocks.Append(&t, n));
    return t;
  }
  Status Check(std::vector<const BlockTable*> tables = {}) {
    ITE_RETURN_IF_ERROR(cache.CheckInvariants());
    return blocks.CheckConsistency(tables, cache.HeldBlocks());
  }
  BlockManager blocks;
  RadixCache cache;
};

TEST(RadixCacheTest, TableOfOperations) {
  Fixture f(8);
  // Sequence A computes 5 tokens: 2 full blocks cached, the partial third block is not.
  BlockTable a = f.Compute({1, 2, 3, 4, 5});
  RadixCache::Node* na = f.cache.Insert(Tokens{1, 2, 3, 4, 5}, a.ids());
  EXPECT_EQ(f.cache.cached_blocks(), 2);
  EXPECT_EQ(f.cache.cached_tokens(), 4);
  EXPECT_EQ(f.blocks.ref_count(a[0]), 2);  // A and the tree
  EXPECT_EQ(f.blocks.ref_count(a[2]), 1);
  f.cache.Lock(na);
  EXPECT_EQ(f.cache.evictable_blocks(), 0);
  ASSERT_TRUE(f.Check({&a}).ok());

  // Matches: full blocks, then a partial match inside the next cached block.
  RadixCache::Match m = f.cache.MatchPrefix(Tokens{1, 2, 3, 9});
  EXPECT_EQ(m.blocks, (Tokens{a[0]}));
  EXPECT_EQ(m.partial_block, a[1]);
  EXPECT_EQ(m.partial_tokens, 1);
  EXPECT_EQ(f.cache.PeekPrefixLength(Tokens{1, 2, 3, 9}), 3);
  m = f.cache.MatchPrefix(Tokens{1, 2, 3, 4, 5, 6});
  EXPECT_EQ(m.blocks, (Tokens{a[0], a[1]}));
  EXPECT_EQ(m.node, na);
  EXPECT_EQ(m.partial_tokens, 0);
  m = f.cache.MatchPrefix(Tokens{7, 7});
  EXPECT_TRUE(m.blocks.empty());
  EXPECT_EQ(m.node, f.cache.root());

  // Locked: nothing can be evicted.
  EXPECT_EQ(f.cache.Evict(10), 0);
  // A finishes: unlock and release; the tree keeps the two cached blocks.
  f.cache.Unlock(na);
  f.blocks.Release(&a);
  EXPECT_EQ(f.blocks.num_free(), 6);
  EXPECT_EQ(f.cache.evictable_blocks(), 2);
  ASSERT_TRUE(f.Check().ok());

  // B shares the first block and caches its own second block: a branch.
  BlockTable b;
  m = f.cache.MatchPrefix(Tokens{1, 2, 8, 8});
  f.blocks.AppendShared(&b, m.blocks);
  ASSERT_TRUE(f.blocks.Append(&b, 1));
  RadixCache::Node* nb = f.cache.Insert(Tokens{1, 2, 8, 8}, b.ids());
  f.cache.Lock(nb);
  EXPECT_EQ(f.cache.cached_blocks(), 3);
  ASSERT_TRUE(f.Check({&b}).ok());

  // Eviction takes only the unlocked leaf {3,4}; {1,2} is B's ancestor.
  EXPECT_EQ(f.cache.Evict(10), 1);
  EXPECT_EQ(f.cache.cached_blocks(), 2);
  EXPECT_EQ(f.cache.PeekPrefixLength(Tokens{1, 2, 3, 4}), 2);
  f.cache.Unlock(nb);
  f.blocks.Release(&b);
  EXPECT_EQ(f.cache.Evict(1), 1);  // the leaf {8,8} first, then its parent
  EXPECT_EQ(f.cache.cached_blocks(), 1);
  EXPECT_EQ(f.cache.Evict(5), 1);
  EXPECT_EQ(f.cache.cached_blocks(), 0);
  EXPECT_EQ(f.blocks.num_free(), 8);
  ASSERT_TRUE(f.Check().ok());
}

TEST(RadixCacheTest, EvictsLeastRecentlyUsedFirst) {
  Fixture f(8);
  std::vector<BlockTable> seqs;
  for (int32_t first : {10, 20, 30}) {
    Tokens tokens{first, first + 1};
    seqs.push_back(f.Compute(tokens));
    f.cache.Insert(tokens, seqs.back().ids());
    f.blocks.Release(&seqs.back());
  }
  f.cache.MatchPrefix(Tokens{10, 11});  // 10 becomes the most recently used
  EXPECT_EQ(f.cache.Evict(1), 1);
  EXPECT_EQ(f.cache.PeekPrefixLength(Tokens{20, 21}), 0);  // the oldest went first
  EXPECT_EQ(f.cache.Evict(1), 1);
  EXPECT_EQ(f.cache.PeekPrefixLength(Tokens{30, 31}), 0);
  EXPECT_EQ(f.cache.PeekPrefixLength(Tokens{10, 11}), 2);
  ASSERT_TRUE(f.Check().ok());
}

TEST(RadixCacheTest, DuplicateInsertKeepsTheTreesBlock) {
  Fixture f(8);
  BlockTable a = f.Compute({1, 2});
  BlockTable b = f.Compute({1, 2});  // computed the same prefix independently
  f.cache.Insert(Tokens{1, 2}, a.ids());
  f.cache.Insert(Tokens{1, 2}, b.ids());
  EXPECT_EQ(f.cache.cached_blocks(), 1);
  EXPECT_EQ(f.blocks.ref_count(a[0]), 2);
  EXPECT_EQ(f.blocks.ref_count(b[0]), 1);
  ASSERT_TRUE(f.Check({&a, &b}).ok());
  f.blocks.Release(&a);
  f.blocks.Release(&b);
  f.cache.Clear();
  EXPECT_EQ(f.blocks.num_free(), 8);
}

// Random sequences of admit / finish / evict with a tiny vocabulary (lots of sharing), checked
// after every operation against a model: a map from cached prefix to block, and the prefixes
// sequences have locked.
TEST(RadixCacheTest, RandomizedAgainstModel) {
  constexpr int32_t kBlockSize = 2;
  for (uint32_t seed : {11u, 12u, 13u}) {
    Fixture f(40, kBlockSize);
    std::mt19937 rng(seed);
    std::map<Tokens, int32_t> model;  // cached prefix (whole blocks) -> block
    struct Seq {
      Tokens tokens;
      BlockTable table;
      RadixCache::Node* node;
      Tokens locked;  // the prefix the lock covers
    };
    std::vector<Seq> seqs;
    auto locked_by_someone = [&](const Tokens& prefix) {
      for (const Seq& s : seqs) {
        if (s.locked.size() >= prefix.size() &&
            std::equal(prefix.begin(), prefix.end(), s.locked.begin())) {
          return true;
        }
      }
      return false;
    };
    int64_t matched_tokens = 0, evicted = 0;
    // After an eviction: drop what the tree no longer has from the model; all of it must have
    // been unlocked, and each dropped prefix must have freed exactly one block.
    auto sync_evicted = [&](int32_t freed) {
      size_t before = model.size();
      for (auto it = model.begin(); it != model.end();) {
        if (f.cache.PeekPrefixLength(it->first) == static_cast<int32_t>(it->first.size())) {
          ++it;
          continue;
        }
        EXPECT_FALSE(locked_by_someone(it->first)) << "evicted a locked prefix";
        it = model.erase(it);
      }
      EXPECT_EQ(static_cast<int32_t>(before - model.size()), freed);
      evicted += freed;
    };
    for (int op = 0; op < 3000; ++op) {
      int kind = rng() % 10;
      if (kind < 5 && seqs.size() < 8) {  // admit a sequence
        Seq s;
        int len = 1 + rng() % 10;
        for (int i = 0; i < len; ++i) s.tokens.push_back(rng() % 3);
        RadixCache::Match m = f.cache.MatchPrefix(s.tokens);
        // The model's longest cached prefix.
        Tokens expect_blocks;
        size_t pos = 0;
        while (pos + kBlockSize <= s.tokens.size()) {
          auto it = model.find(Tokens(s.tokens.begin(), s.tokens.begin() + pos + kBlockSize));
          if (it == model.end()) break;
          expect_blocks.push_back(it->second);
          pos += kBlockSize;
        }
        ASSERT_EQ(m.blocks, expect_blocks) << "seed " << seed << " op " << op;
        matched_tokens += pos + m.partial_tokens;
        f.cache.Lock(m.node);
        f.blocks.AppendShared(&s.table, m.blocks);
        int32_t needed = (len + kBlockSize - 1) / kBlockSize - s.table.size();
        if (needed > f.blocks.num_free()) {
          sync_evicted(f.cache.Evict(needed - f.blocks.num_free()));
        }
        if (!f.blocks.Append(&s.table, needed)) {  // pool full: give up on this one
          f.cache.Unlock(m.node);
          f.blocks.Release(&s.table);
        } else {
          s.node = f.cache.Insert(s.tokens, s.table.ids());
          f.cache.Lock(s.node);
          f.cache.Unlock(m.node);
          for (size_t i = 0; i + kBlockSize <= s.tokens.size(); i += kBlockSize) {
            Tokens key(s.tokens.begin(), s.tokens.begin() + i + kBlockSize);
            model.emplace(key, s.table[i / kBlockSize]);  // no-op where already cached
          }
          s.locked.assign(s.tokens.begin(),
                          s.tokens.begin() + s.tokens.size() / kBlockSize * kBlockSize);
          seqs.push_back(std::move(s));
        }
      } else if (kind < 8 && !seqs.empty()) {  // finish one
        size_t i = rng() % seqs.size();
        f.cache.Unlock(seqs[i].node);
        f.blocks.Release(&seqs[i].table);
        seqs.erase(seqs.begin() + i);
      } else {  // evict
        int32_t want = 1 + rng() % 4;
        int32_t freed = f.cache.Evict(want);
        ASSERT_LE(freed, want);
        sync_evicted(freed);
      }
      ASSERT_EQ(f.cache.cached_blocks(), static_cast<int32_t>(model.size()));
      // Prefix-closed: every cached prefix's parent is cached.
      for (const auto& [prefix, block] : model) {
        if (prefix.size() > kBlockSize) {
          ASSERT_TRUE(model.count(Tokens(prefix.begin(), prefix.end() - kBlockSize)));
        }
      }
      std::vector<const BlockTable*> tables;
      for (const Seq& s : seqs) tables.push_back(&s.table);
      Status st = f.Check(tables);
      ASSERT_TRUE(st.ok()) << "seed " << seed << " op " << op << ": " << st.ToString();
    }
    EXPECT_GT(matched_tokens, 0);
    EXPECT_GT(evicted, 0);
    for (Seq& s : seqs) {
      f.cache.Unlock(s.node);
      f.blocks.Release(&s.table);
    }
    f.cache.Clear();
    EXPECT_EQ(f.blocks.num_free(), 40) << "leak, seed " << seed;
  }
}

}  // namespace
}  // namespace ite
