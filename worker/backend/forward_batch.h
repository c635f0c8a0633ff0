// One step of work for a backend: a chunk of new tokens per sequence, with the sequence's KV
// block table. The scheduler decides every block id; a backend only reads and writes them.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "worker/sampling/sampler.h"

namespace ite {

// Logits a chunk hands back to the host besides its sampled token. Only goldens and prompt
// logprobs ask: on a GPU every row is a [vocab] fp32 device-to-host copy.
enum class LogitsMode {
  kNone,  // none (the usual case)
  kLast,  // the last token's row
  kAll,   // every token's row
};

struct SequenceChunk {
  int64_t seq_id = 0;  // a sequence added to the backend (Backend::AddSequence) when sample
  // The new tokens. EMPTY: a decode of one token, the one the backend sampled for seq_id last
  // (on a GPU it never leaves the device between the two steps).
  std::span<const int32_t> tokens;
  int32_t start_pos = 0;                 // tokens of this sequence already in the KV cache
  std::span<const int32_t> block_table;  // physical block ids, covering start_pos + tokens run
  bool sample = true;  // sample the token after the chunk (false: a non-final prefill chunk)
  LogitsMode logits = LogitsMode::kNone;

  int32_t num_tokens() const { return tokens.empty() ? 1 : static_cast<int32_t>(tokens.size()); }
};

// A chunk that samples nothing: it fills the KV cache and returns the logits `mode` asks for
// (goldens, tests, benchmarks).
inline SequenceChunk LogitsChunk(std::span<const int32_t> tokens, int32_t start_pos,
                                 std::span<const int32_t> block_table, LogitsMode mode) {
  SequenceChunk c;
  c.tokens = tokens;
  c.start_pos = start_pos;
  c.block_table = block_table;
  c.sample = false;
  c.logits = mode;
  return c;
}

struct ForwardBatch {
  std::vector<SequenceChunk> chunks;
};

struct ForwardOutput {
  std::vector<SampleResult> samples;  // one per chunk with sample, in chunk order
  std::vector<float> logits;          // [rows, vocab]: the rows LogitsMode asked for, in order
  // Time the device sat idle between the previous step's end and this step's start (the GPU's
  // own clock on CUDA; the backend's caller on the CPU), 0 for the first step.
  int64_t device_idle_us = 0;
};

}  // namespace ite
