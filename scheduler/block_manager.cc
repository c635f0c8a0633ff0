#include "scheduler/block_manager.h"

#include "common/check.h"

namespace ite {

BlockTable& BlockTable::operator=(BlockTable&& other) noexcept {
  ITE_DCHECK(ids_.empty(), "a BlockTable holding {} blocks was overwritten (leak)", ids_.size());
  ids_ = std::move(other.ids_);
  other.ids_.clear();
  return *this;
}

BlockTable::~BlockTable() {
  ITE_DCHECK(ids_.empty(), "a BlockTable holding {} blocks was destroyed (leak)", ids_.size());
}

BlockManager::BlockManager(int32_t num_blocks) : refs_(num_blocks, 0) {
  ITE_CHECK(num_blocks >= 0, "num_blocks {}", num_blocks);
  free_.reserve(num_blocks);
  // Reverse, so blocks are handed out 0, 1, 2, ...: easier to read in tests and logs.
  for (int32_t id = num_blocks - 1; id >= 0; --id) free_.push_back(id);
}

int32_t BlockManager::ref_count(int32_t id) const {
  ITE_CHECK(id >= 0 && id < num_blocks(), "block {} out of range [0, {})", id, num_blocks());
  return refs_[id];
}

int32_t BlockManager::Allocate() {
  ITE_CHECK(!free_.empty(), "no free block");
  int32_t id = free_.back();
  free_.pop_back();
  ITE_DCHECK(refs_[id] == 0, "free block {} has {} references", id, refs_[id]);
  refs_[id] = 1;
  return id;
}

bool BlockManager::Append(BlockTable* table, int32_t n) {
  ITE_CHECK(n >= 0, "n {}", n);
  if (n > num_free()) return false;
  for (int32_t i = 0; i < n; ++i) table->ids_.push_back(Allocate());
  return true;
}

void BlockManager::AppendShared(BlockTable* table, std::span<const int32_t> ids) {
  for (int32_t id : ids) {
    Retain(id);
    table->ids_.push_back(id);
  }
}

bool BlockManager::MakeWritable(BlockTable* table, int32_t index, std::vector<BlockCopy>* copies) {
  ITE_CHECK(index >= 0 && index < table->size(), "index {} of a {}-block table", index,
            table->size());
  int32_t old_id = table->ids_[index];
  if (ref_count(old_id) == 1) return true;
  if (free_.empty()) return false;
  int32_t new_id = Allocate();
  copies->emplace_back(old_id, new_id);
  table->ids_[index] = new_id;
  Unref(old_id);
  return true;
}

void BlockManager::Truncate(BlockTable* table, int32_t keep) {
  ITE_CHECK(keep >= 0, "keep {}", keep);
  while (table->size() > keep) {
    Unref(table->ids_.back());
    table->ids_.pop_back();
  }
}

void BlockManager::Retain(int32_t id) {
  ITE_CHECK(id >= 0 && id < num_blocks(), "block {} out of range [0, {})", id, num_blocks());
  ITE_CHECK(refs_[id] > 0, "Retain of free block {}", id);
  ++refs_[id];
}

bool BlockManager::Unref(int32_t id) {
  ITE_CHECK(id >= 0 && id < num_blocks(), "block {} out of range [0, {})", id, num_blocks());
  ITE_CHECK(refs_[id] > 0, "block {} released twice (double free)", id);
  if (--refs_[id] > 0) return false;
  free_.push_back(id);
  return true;
}

Status BlockManager::CheckConsistency(std::span<const BlockTable* const> tables,
                                      std::span<const int32_t> extra_refs) const {
  std::vector<int32_t> expected(refs_.size(), 0);
  auto count = [&](int32_t id) -> Status {
    if (id < 0 || id >= num_blocks()) return Internal("reference to block {} out of range", id);
    ++expected[id];
    return Status::Ok();
  };
  for (const BlockTable* table : tables) {
    for (int32_t id : table->ids()) ITE_RETURN_IF_ERROR(count(id));
  }
  for (int32_t id : extra_refs) ITE_RETURN_IF_ERROR(count(id));
  std::vector<int32_t> on_free_list(refs_.size(), 0);
  for (int32_t id : free_) {
    if (id < 0 || id >= num_blocks()) return Internal("free list holds bad id {}", id);
    if (++on_free_list[id] > 1) return Internal("block {} is on the free list twice", id);
  }
  for (int32_t id = 0; id < num_blocks(); ++id) {
    if (refs_[id] != expected[id]) {
      return Internal("block {} has count {} but {} holders", id, refs_[id], expected[id]);
    }
    if ((refs_[id] == 0) != (on_free_list[id] == 1)) {
      return Internal("block {} with count {} is {}on the free list", id, refs_[id],
                      on_free_list[id] ? "" : "not ");
    }
  }
  return Status::Ok();
}

}  // namespace ite
