// Prefix cache of one worker: a radix tree over token ids at block granularity. Each node below
// the root is one full KV block (block_size tokens) and holds one reference on it in the
// BlockManager; a path from the root spells a cached prefix.
//
// Sequences share cached blocks by reference (BlockManager::AppendShared) and Lock() the last
// node they use, which pins it and its ancestors. Eviction takes least recently used leaves that
// no sequence has locked, so an evicted block always goes back to the free list.
//
// Children are found by a 64-bit hash of the block's tokens, checked against the stored tokens;
// in the (astronomically unlikely) case of two different blocks with one hash under one parent,
// the second is simply not cached.
//
// Thread safety: none; the scheduler loop thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"
#include "scheduler/block_manager.h"

namespace ite {

class RadixCache {
 public:
  struct Node;

  RadixCache(int32_t block_size, BlockManager* blocks);
  ~RadixCache();  // drops every reference the tree holds (no node may be locked)

  RadixCache(const RadixCache&) = delete;
  RadixCache& operator=(const RadixCache&) = delete;

  struct Match {
    std::vector<int32_t> blocks;  // cached blocks of the longest full-block prefix
    Node* node = nullptr;         // node of the last full block (the root if none): Lock it
    // A cached block, following `blocks`, whose first `partial_tokens` tokens (< block_size)
    // match the next tokens: usable by copying it (copy-on-write), not by sharing.
    int32_t partial_block = -1;
    int32_t partial_tokens = 0;
  };
  // The longest cached prefix of `tokens`; marks its nodes as recently used.
  Match MatchPrefix(std::span<const int32_t> tokens);
  // Tokens MatchPrefix would match (full blocks + partial), without touching the LRU order.
  int32_t PeekPrefixLength(std::span<const int32_t> tokens) const;

  // Caches the first tokens.size() / block_size full blocks of a sequence: blocks[i] holds the KV
  // of tokens [i * block_size, (i + 1) * block_size). Where the tree already caches a block for
  // the same tokens it keeps its own (the caller's duplicate stays the caller's); new nodes take
  // a reference on the caller's block. Returns the node of the last full block (root if none).
  Node* Insert(std::span<const int32_t> tokens, std::span<const int32_t> blocks);

  // Pins `node` and its ancestors against eviction; one Unlock per Lock.
  void Lock(Node* node);
  void Unlock(Node* node);

  // Evicts least recently used unlocked leaves until `num_blocks` blocks went back to the free
  // list or nothing is evictable. Returns the number freed.
  int32_t Evict(int32_t num_blocks);

  // Drops every node. No node may be locked.
  void Clear();

  Node* root() { return root_.get(); }
  int32_t block_size() const { return block_size_; }
  int32_t cached_blocks() const { return num_nodes_; }
  int64_t cached_tokens() const { return int64_t{num_nodes_} * block_size_; }
  int32_t evictable_blocks() const { return num_nodes_ - num_locked_nodes_; }

  // Block ids the tree holds a reference on (one entry per node), for consistency checks.
  std::vector<int32_t> HeldBlocks() const;
  // Full structural check (tests, debug): parent links, lock counts >= 0, hashes, the evictable
  // set equals the unlocked leaves, counters.
  Status CheckInvariants() const;

 private:
  Node* FindChild(const Node* parent, std::span<const int32_t> block_tokens) const;
  void Touch(Node* node);
  void UpdateEvictable(Node* node);
  void RemoveLeaf(Node* node);

  int32_t block_size_;
  BlockManager* blocks_;
  std::unique_ptr<Node> root_;
  uint64_t clock_ = 0;
  int32_t num_nodes_ = 0;
  int32_t num_locked_nodes_ = 0;
  std::set<std::pair<uint64_t, Node*>> evictable_;  // (last use, leaf) of unlocked leaves
};

}  // namespace ite
