// The host-side layout of one step, shared by the backends: every chunk validated against the
// model and the KV pool, its tokens laid out as rows, and the rows whose logits are computed.
// The CUDA backend copies this layout to the device in one transfer; the CPU ops read it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"
#include "worker/backend/forward_batch.h"
#include "worker/model/model_config.h"

namespace ite {

struct PlannedChunk {
  int64_t seq_id = 0;
  int32_t row0 = 0;                      // first token row of the chunk
  int32_t len = 0;                       // token rows (1 for a decode)
  int32_t start_pos = 0;                 // position of the first row
  std::span<const int32_t> block_table;  // the caller's table (valid during Submit only)
  bool decode = false;  // fed with the backend's last sampled token of the sequence
  bool sample = false;
  LogitsMode logits = LogitsMode::kNone;
  int32_t logit_row0 = 0;  // index into StepPlan::logit_rows of the chunk's first logit row
  int32_t logit_rows = 0;  // 0, 1 (the last token) or len (kAll)

  int32_t kv_len() const { return start_pos + len; }
};

// Rows of the step whose input embeddings come from an image's features instead of the token
// table: rows [row0, row0 + rows) take the rows starting at `src` (ops activation dtype and
// memory, hidden wide), which stay valid until the step has run.
struct EmbedRun {
  int32_t row0 = 0;
  int32_t rows = 0;
  const void* src = nullptr;
};

struct StepPlan {
  std::vector<PlannedChunk> chunks;
  std::vector<int32_t> tokens;      // [rows]; a decode row holds -1 until the backend feeds it
  std::vector<int32_t> positions;   // [rows]
  std::vector<int32_t> logit_rows;  // token rows whose logits are computed, in chunk order
  std::vector<EmbedRun> embeds;     // filled by the backend (SequenceImages::Prepare)
  int32_t max_q_len = 0;
  int32_t max_kv_len = 0;
  int32_t max_blocks = 0;   // longest block table any chunk needs
  bool decode_only = true;  // every chunk runs one token (a CUDA graph can replay it)

  int32_t num_rows() const { return static_cast<int32_t>(tokens.size()); }
};

struct PlanLimits {
  int32_t vocab_size = 0;
  int32_t max_position = 0;
  int32_t block_size = 0;
  int32_t num_blocks = 0;
};

// Fills `plan` (reusing its storage) from `batch`, or says which chunk is invalid: no tokens
// where a decode is not allowed, a token outside the vocabulary, a position past the context,
// a block table too short or naming a block outside the pool, a chunk that samples nothing and
// asks for no logits being fine. A chunk with tokens is planned with them; an empty one as a
// decode.
Status PlanStep(const ForwardBatch& batch, const PlanLimits& limits, StepPlan* plan);

}  // namespace ite
