// Paged KV block accounting for one worker: a free list and a reference count per block.
//
// Blocks are held through references only: a sequence's BlockTable holds one per entry, the
// prefix cache (RadixCache) holds one per cached block, and a block returns to the free list when
// its count reaches zero. A BlockTable's blocks can only be added and dropped through the
// BlockManager, so a table can't release a block twice or forget one silently: releasing a block
// whose count is already zero aborts, and a non-empty table that is destroyed aborts in debug
// builds (a leak).
//
// Thread safety: none; the scheduler loop thread owns it.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "common/status.h"

namespace ite {

// Physical block ids of one sequence, in position order: entry i holds the KV of positions
// [i * block_size, (i + 1) * block_size). Holds one reference on each entry.
class BlockTable {
 public:
  BlockTable() = default;
  BlockTable(BlockTable&& other) noexcept : ids_(std::move(other.ids_)) { other.ids_.clear(); }
  BlockTable& operator=(BlockTable&& other) noexcept;
  BlockTable(const BlockTable&) = delete;
  BlockTable& operator=(const BlockTable&) = delete;
  ~BlockTable();

  const std::vector<int32_t>& ids() const { return ids_; }
  int32_t size() const { return static_cast<int32_t>(ids_.size()); }
  bool empty() const { return ids_.empty(); }
  int32_t operator[](int32_t i) const { return ids_[i]; }

 private:
  friend class BlockManager;
  std::vector<int32_t> ids_;
};

using BlockCopy = std::pair<int32_t, int32_t>;  // (src, dst) whole-block KV copy

class BlockManager {
 public:
  explicit BlockManager(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(refs_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks() - num_free(); }
  int32_t ref_count(int32_t id) const;

  // Appends `n` fresh blocks (one reference each). Returns false, changing nothing, if fewer than
  // `n` blocks are free.
  [[nodiscard]] bool Append(BlockTable* table, int32_t n);

  // Appends blocks someone else holds (cached prefix blocks), taking one reference on each.
  void AppendShared(BlockTable* table, std::span<const int32_t> ids);

  // Copy-on-write: makes entry `index` of `table` exclusively the table's before it is written.
  // If the block is shared, a fresh block replaces it, (old, new) is appended to `copies` (the
  // worker copies the KV before the step's forward) and the reference on the old block is
  // dropped. Returns false, changing nothing, if a copy is needed and no block is free.
  [[nodiscard]] bool MakeWritable(BlockTable* table, int32_t index, std::vector<BlockCopy>* copies);

  // Drops the table's entries from `keep` on.
  void Truncate(BlockTable* table, int32_t keep);
  void Release(BlockTable* table) { Truncate(table, 0); }

  // Raw references, for holders that are not tables (the prefix cache). Unref returns true when
  // the block went back to the free list.
  void Retain(int32_t id);
  bool Unref(int32_t id);

  // Full recount for tests and debug builds: every block's count must equal the references
  // `tables` and `extra_refs` (one entry per raw reference) hold, and the free list must hold
  // exactly the blocks with no reference, each once.
  Status CheckConsistency(std::span<const BlockTable* const> tables,
                          std::span<const int32_t> extra_refs) const;

 private:
  int32_t Allocate();  // pops a free block, count 1; the caller has checked num_free()

  std::vector<int32_t> refs_;  // per block
  std::vector<int32_t> free_;  // stack; the next block handed out is free_.back()
};

}  // namespace ite
