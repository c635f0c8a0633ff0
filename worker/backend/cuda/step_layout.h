// The packed layout of one step's inputs: every array the kernels read (tokens, positions, KV
// slots, block tables, sampling parameters, penalty lists) in one region, filled in pinned host
// memory and copied to the device in one transfer. The byte offsets depend only on the array
// sizes, so a CUDA graph captured for some sizes finds its inputs at the same device addresses
// at every replay.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ite {

struct StepSizes {
  int32_t rows = 0;            // token rows
  int32_t seqs = 0;            // sequences (chunks)
  int32_t max_blocks = 0;      // block table stride
  int32_t logit_rows = 0;      // rows gathered for the LM head
  int32_t samples = 0;         // sampled rows
  int32_t penalty_tokens = 0;  // entries of the penalty lists (0: no penalties this step)

  bool operator==(const StepSizes&) const = default;
};

struct StepLayout {
  // Byte offsets from the region's start.
  size_t tokens = 0;        // int32 [rows]: a token, or -(sequence slot + 1) to feed
  size_t positions = 0;     // int32 [rows]
  size_t kv_slots = 0;      // int32 [rows]: block_id * block_size + pos % block_size; -1: skip
  size_t cu_seqlens = 0;    // int32 [seqs + 1]
  size_t kv_lens = 0;       // int32 [seqs]
  size_t block_tables = 0;  // int32 [seqs, max_blocks]
  size_t logit_rows = 0;    // int32 [logit_rows]
  size_t sample_slots = 0;  // int32 [samples]: sequence slot that keeps the sampled token
  size_t temperature = 0;   // f32 [samples]
  size_t top_k = 0;         // int32 [samples]
  size_t top_p = 0;         // f32 [samples]
  size_t min_p = 0;         // f32 [samples]
  size_t seeds = 0;         // u64 [samples]
  size_t steps = 0;         // u64 [samples]
  size_t pen_tokens = 0;    // int32 [penalty_tokens]
  size_t pen_counts = 0;    // int32 [penalty_tokens]
  size_t pen_offsets = 0;   // int32 [samples + 1]
  size_t repetition = 0;    // f32 [samples]
  size_t presence = 0;      // f32 [samples]
  size_t frequency = 0;     // f32 [samples]
  size_t total = 0;

  static StepLayout For(const StepSizes& s) {
    StepLayout l;
    size_t at = 0;
    auto take = [&at](size_t count, size_t elem) {
      const size_t off = at;
      at += (count * elem + 15) / 16 * 16;  // 16-byte aligned arrays
      return off;
    };
    l.tokens = take(s.rows, 4);
    l.positions = take(s.rows, 4);
    l.kv_slots = take(s.rows, 4);
    l.cu_seqlens = take(s.seqs + 1, 4);
    l.kv_lens = take(s.seqs, 4);
    l.block_tables = take(size_t(s.seqs) * s.max_blocks, 4);
    l.logit_rows = take(s.logit_rows, 4);
    l.sample_slots = take(s.samples, 4);
    l.temperature = take(s.samples, 4);
    l.top_k = take(s.samples, 4);
    l.top_p = take(s.samples, 4);
    l.min_p = take(s.samples, 4);
    l.seeds = take(s.samples, 8);
    l.steps = take(s.samples, 8);
    l.pen_tokens = take(s.penalty_tokens, 4);
    l.pen_counts = take(s.penalty_tokens, 4);
    l.pen_offsets = take(s.samples + 1, 4);
    l.repetition = take(s.samples, 4);
    l.presence = take(s.samples, 4);
    l.frequency = take(s.samples, 4);
    l.total = at;
    return l;
  }

  template <typename T>
  static T* At(void* base, size_t offset) {
    return reinterpret_cast<T*>(static_cast<char*>(base) + offset);
  }
};

}  // namespace ite
