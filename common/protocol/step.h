// The unit of work between the scheduler and a worker: one batched forward step.
//
// The scheduler owns every policy decision (which sequences run, which KV blocks they use, what
// is copied for copy-on-write); the worker only executes a StepRequest against its KV pool and
// samples. To keep the control path off the critical path (design.md, "The control path must
// not stall the GPU"), a decode step carries no token: the worker feeds each sequence the token
// it sampled for it last, so the scheduler can send step N+1 before it has seen step N's result.
//
// No gRPC here: this header builds on GPU hosts without it. The step codec (proto/step_codec.h)
// translates these structs to and from ite.v1.Worker messages.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/protocol/model_info.h"
#include "common/protocol/sampling_params.h"

namespace ite {

// An image in a sequence's prompt (LLaVA), preprocessed by the scheduler: the worker runs the
// vision tower on it once, when a step first reaches its positions, and its embeddings take the
// place of the prompt's tokens at [position, position + the model's image tokens).
struct StepImage {
  int32_t position = 0;
  std::vector<float> pixels;  // [3, image_size, image_size], the image processor's output
};

// One sequence's part of a step. Sequences are named by a scheduler-chosen seq_id, unique per
// worker for the sequence's lifetime.
struct StepSequence {
  int64_t seq_id = 0;
  // The tokens to run: a prompt chunk, or a recompute after preemption. EMPTY for a decode step:
  // the worker then feeds the sequence's own last sampled token (which must exist).
  std::vector<int32_t> new_tokens;
  int32_t start_pos = 0;  // tokens of this sequence already in the KV cache
  // The sequence's physical KV block ids from index `block_table_offset` on: the worker keeps
  // the first block_table_offset entries it holds for the sequence and replaces the rest with
  // `block_table` (a decode step that needs no new block sends nothing). The whole table then
  // covers start_pos + the tokens run this step. A (re)joining sequence sends offset 0.
  int32_t block_table_offset = 0;
  std::vector<int32_t> block_table;
  bool sample = true;  // false for a non-final prefill chunk (no logits computed)
  // Set when the sequence joins (or rejoins after preemption) the worker: the worker (re)creates
  // the sequence's sampler from these params and `prompt_tokens` (the context for penalties).
  std::optional<SamplingParams> sampling;
  std::vector<int32_t> prompt_tokens;
  // With `sampling`: how many of prompt_tokens (the last ones) the sequence generated before it
  // was preempted; they count for the penalties and the seeded RNG resumes past them.
  int32_t generated_tokens = 0;
  // With `sampling`: the prompt's images, in position order, not overlapping.
  std::vector<StepImage> images;
};

struct StepRequest {
  int64_t step_id = 0;
  std::vector<StepSequence> seqs;
  // Sequences that finished or were cancelled: the worker forgets their sampler and last token.
  // Applied before `seqs`.
  std::vector<int64_t> release_seq_ids;
  // Whole-block KV copies (src, dst), in order, before the forward: copy-on-write of a shared
  // block that this step's sequences are about to write into.
  std::vector<std::pair<int32_t, int32_t>> copy_blocks;
};

struct StepOutput {
  int64_t seq_id = 0;
  SampleResult sample;
};

struct StepResult {
  int64_t step_id = 0;
  std::vector<StepOutput> outputs;  // one per sequence with sample=true, in request order
  int64_t forward_us = 0;           // time in Backend::Forward + sampling (+ block copies)
  int64_t idle_us = 0;  // worker idle time before this step began (since the previous step ended)
};

struct WorkerInfo {
  ModelInfo model;
  int32_t block_size = 0;  // tokens per KV block
  int32_t num_blocks = 0;  // KV blocks in the worker's pool; valid ids are [0, num_blocks)
  std::string device;      // e.g. "cpu", "cuda:0 NVIDIA H100 80GB HBM3"
  // The loaded model's common/model_fingerprint.h; empty when unknown (an older worker, a
  // test's fake model). The scheduler takes in only workers whose fingerprint is its model's.
  std::string model_fingerprint;
};

}  // namespace ite
