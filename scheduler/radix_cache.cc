#include "scheduler/radix_cache.h"

#include <algorithm>
#include <unordered_map>

#include "common/check.h"

namespace ite {

namespace {

uint64_t HashBlock(std::span<const int32_t> tokens) {
  // FNV-1a over the token bytes, then a final mix: cheap, and good enough for a keyed map whose
  // hits are verified against the stored tokens.
  uint64_t h = 1469598103934665603ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint32_t>(t);
    h *= 1099511628211ull;
  }
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

}  // namespace

struct RadixCache::Node {
  Node* parent = nullptr;
  std::vector<int32_t> tokens;  // block_size tokens (empty for the root)
  uint64_t hash = 0;
  int32_t block = -1;
  int32_t lock_count = 0;
  uint64_t last_use = 0;
  bool in_evictable = false;
  uint64_t evictable_key = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Node>> children;
};

RadixCache::RadixCache(int32_t block_size, BlockManager* blocks)
    : block_size_(block_size), blocks_(blocks), root_(std::make_unique<Node>()) {
  ITE_CHECK(block_size > 0, "block_size {}", block_size);
}

RadixCache::~RadixCache() { Clear(); }

RadixCache::Node* RadixCache::FindChild(const Node* parent,
                                        std::span<const int32_t> block_tokens) const {
  auto it = parent->children.find(HashBlock(block_tokens));
  if (it == parent->children.end()) return nullptr;
  Node* child = it->second.get();
  if (!std::equal(block_tokens.begin(), block_tokens.end(), child->tokens.begin())) return nullptr;
  return child;
}

void RadixCache::UpdateEvictable(Node* node) {
  if (node == root_.get()) return;
  bool should = node->lock_count == 0 && node->children.empty();
  if (node->in_evictable && (!should || node->evictable_key != node->last_use)) {
    evictable_.erase({node->evictable_key, node});
    node->in_evictable = false;
  }
  if (should && !node->in_evictable) {
    evictable_.insert({node->last_use, node});
    node->in_evictable = true;
    node->evictable_key = node->last_use;
  }
}

void RadixCache::Touch(Node* node) {
  node->last_use = ++clock_;
  UpdateEvictable(node);
}

RadixCache::Match RadixCache::MatchPrefix(std::span<const int32_t> tokens) {
  Match match;
  Node* node = root_.get();
  size_t pos = 0;
  while (pos + block_size_ <= tokens.size()) {
    Node* child = FindChild(node, tokens.subspan(pos, block_size_));
    if (child == nullptr) break;
    match.blocks.push_back(child->block);
    node = child;
    pos += block_size_;
  }
  // Mark the path, deepest last, so it is the most recently used.
  for (Node* n = node; n != root_.get(); n = n->parent) n->last_use = ++clock_;
  UpdateEvictable(node);
  match.node = node;
  // A partially matching next block: the child sharing the longest run of leading tokens.
  std::span<const int32_t> rest = tokens.subspan(pos);
  for (const auto& [hash, child] : node->children) {
    size_t n = std::min(rest.size(), child->tokens.size());
    size_t k =
        std::mismatch(rest.begin(), rest.begin() + n, child->tokens.begin()).first - rest.begin();
    if (static_cast<int32_t>(k) > match.partial_tokens) {
      match.partial_tokens = static_cast<int32_t>(k);
      match.partial_block = child->block;
    }
  }
  ITE_DCHECK(match.partial_tokens < block_size_, "a full block match was not descended");
  return match;
}

int32_t RadixCache::PeekPrefixLength(std::span<const int32_t> tokens) const {
  const Node* node = root_.get();
  size_t pos = 0;
  while (pos + block_size_ <= tokens.size()) {
    const Node* child = FindChild(node, tokens.subspan(pos, block_size_));
    if (child == nullptr) break;
    node = child;
    pos += block_size_;
  }
  size_t best = 0;
  std::span<const int32_t> rest = tokens.subspan(pos);
  for (const auto& [hash, child] : node->children) {
    size_t n = std::min(rest.size(), child->tokens.size());
    best = std::max<size_t>(
        best,
        std::mismatch(rest.begin(), rest.begin() + n, child->tokens.begin()).first - rest.begin());
  }
  return static_cast<int32_t>(pos + best);
}

RadixCache::Node* RadixCache::Insert(std::span<const int32_t> tokens,
                                     std::span<const int32_t> blocks) {
  size_t num_full = tokens.size() / block_size_;
  ITE_CHECK(blocks.size() >= num_full, "{} blocks for {} full blocks of tokens", blocks.size(),
            num_full);
  Node* node = root_.get();
  for (size_t i = 0; i < num_full; ++i) {
    std::span<const int32_t> block_tokens = tokens.subspan(i * block_size_, block_size_);
    Node* child = FindChild(node, block_tokens);
    if (child == nullptr) {
      uint64_t hash = HashBlock(block_tokens);
      if (node->children.count(hash) != 0) break;  // hash collision: stop caching here
      auto fresh = std::make_unique<Node>();
      fresh->parent = node;
      fresh->tokens.assign(block_tokens.begin(), block_tokens.end());
      fresh->hash = hash;
      fresh->block = blocks[i];
      blocks_->Retain(blocks[i]);
      child = fresh.get();
      node->children.emplace(hash, std::move(fresh));
      ++num_nodes_;
      UpdateEvictable(node);  // no longer a leaf
    }
    child->last_use = ++clock_;
    UpdateEvictable(child);
    node = child;
  }
  return node;
}

void RadixCache::Lock(Node* node) {
  ITE_CHECK(node != nullptr, "Lock(nullptr)");
  for (Node* n = node; n != root_.get(); n = n->parent) {
    if (n->lock_count++ == 0) {
      ++num_locked_nodes_;
      UpdateEvictable(n);
    }
  }
}

void RadixCache::Unlock(Node* node) {
  ITE_CHECK(node != nullptr, "Unlock(nullptr)");
  for (Node* n = node; n != root_.get(); n = n->parent) {
    ITE_CHECK(n->lock_count > 0, "Unlock of an unlocked node");
    if (--n->lock_count == 0) {
      --num_locked_nodes_;
      UpdateEvictable(n);
    }
  }
}

void RadixCache::RemoveLeaf(Node* node) {
  ITE_DCHECK(node->children.empty() && node->lock_count == 0, "removing a locked or inner node");
  if (node->in_evictable) evictable_.erase({node->evictable_key, node});
  Node* parent = node->parent;
  auto it = parent->children.find(node->hash);
  ITE_CHECK(it != parent->children.end() && it->second.get() == node, "broken parent link");
  parent->children.erase(it);  // destroys node
  --num_nodes_;
  UpdateEvictable(parent);
}

int32_t RadixCache::Evict(int32_t num_blocks) {
  int32_t freed = 0;
  while (freed < num_blocks && !evictable_.empty()) {
    Node* victim = evictable_.begin()->second;
    int32_t block = victim->block;
    RemoveLeaf(victim);
    // An unlocked node's block is held by the tree alone, so it must go back to the free list.
    bool to_free_list = blocks_->Unref(block);
    ITE_DCHECK(to_free_list, "evicted block {} is still referenced", block);
    if (to_free_list) ++freed;
  }
  return freed;
}

void RadixCache::Clear() {
  ITE_CHECK(num_locked_nodes_ == 0, "Clear with {} locked nodes", num_locked_nodes_);
  // Post-order without recursion: the tree can be thousands of blocks deep.
  std::vector<Node*> stack;
  for (auto& [hash, child] : root_->children) stack.push_back(child.get());
  std::vector<int32_t> held;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    held.push_back(n->block);
    for (auto& [hash, child] : n->children) stack.push_back(child.get());
  }
  // Detach children bottom-up so destruction is not recursive either.
  std::vector<std::unique_ptr<Node>> owned;
  std::vector<Node*> order{root_.get()};
  for (size_t i = 0; i < order.size(); ++i) {
    for (auto& [hash, child] : order[i]->children) order.push_back(child.get());
  }
  for (size_t i = order.size(); i-- > 0;) {
    for (auto& [hash, child] : order[i]->children) owned.push_back(std::move(child));
    order[i]->children.clear();
  }
  owned.clear();
  for (int32_t block : held) blocks_->Unref(block);
  evictable_.clear();
  num_nodes_ = 0;
  num_locked_nodes_ = 0;
}

std::vector<int32_t> RadixCache::HeldBlocks() const {
  std::vector<int32_t> held;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    if (n != root_.get()) held.push_back(n->block);
    for (const auto& [hash, child] : n->children) stack.push_back(child.get());
  }
  return held;
}

Status RadixCache::CheckInvariants() const {
  int32_t nodes = 0, locked = 0;
  size_t evictable = 0;
  std::vector<const Node*> stack{root_.get()};
  while (!stack.empty()) {
    const Node* n = stack.back();
    stack.pop_back();
    int32_t child_locks = 0;
    for (const auto& [hash, child] : n->children) {
      if (child->parent != n) return Internal("node with a wrong parent link");
      if (child->hash != hash || HashBlock(child->tokens) != hash) return Internal("bad hash");
      if (static_cast<int32_t>(child->tokens.size()) != block_size_) {
        return Internal("node with {} tokens", child->tokens.size());
      }
      child_locks = std::max(child_locks, child->lock_count);
      stack.push_back(child.get());
    }
    if (n == root_.get()) continue;
    ++nodes;
    if (n->lock_count < 0) return Internal("negative lock count");
    // A lock pins the whole path, so a node is locked at least as often as any child.
    if (n->lock_count < child_locks) return Internal("node locked less than its child");
    if (n->lock_count > 0) ++locked;
    if (blocks_->ref_count(n->block) < 1) return Internal("cached block {} is free", n->block);
    bool should = n->lock_count == 0 && n->children.empty();
    if (should != n->in_evictable) return Internal("evictable flag wrong");
    if (should) {
      ++evictable;
      if (evictable_.count({n->evictable_key, const_cast<Node*>(n)}) != 1) {
        return Internal("evictable leaf missing from the LRU set");
      }
    }
  }
  if (nodes != num_nodes_) return Internal("{} nodes, counter says {}", nodes, num_nodes_);
  if (locked != num_locked_nodes_)
    return Internal("{} locked, counter {}", locked, num_locked_nodes_);
  if (evictable != evictable_.size()) return Internal("LRU set has stale entries");
  return Status::Ok();
}

}  // namespace ite
