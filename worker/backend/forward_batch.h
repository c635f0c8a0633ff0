// One step of work for a backend: a chunk of new tokens per sequence, with the sequence's KV
// block table. The scheduler decides every block id; a backend only reads and writes them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ite {

enum class LogitsMode {
  kNone,  // prefill chunk that is not the last: only fill the KV cache
  kLast,  // logits of the last token of the chunk (the usual case)
  kAll,   // logits of every token of the chunk (goldens, prompt logprobs)
};

struct SequenceChunk {
  std::span<const int32_t> tokens;       // the new tokens; non-empty
  int32_t start_pos = 0;                 // tokens of this sequence already in the KV cache
  std::span<const int32_t> block_table;  // physical block ids, covering start_pos + tokens.size()
  LogitsMode logits = LogitsMode::kLast;
};

struct ForwardBatch {
  std::vector<SequenceChunk> chunks;
};

}  // namespace ite
