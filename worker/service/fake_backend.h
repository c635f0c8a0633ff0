// A deterministic stand-in for a model, for tests of the worker engine and the scheduler.
//
// Its "KV cache" stores the token id at each (block, slot), so what it computes depends on the
// block tables it is given: next token = FakeModelNextToken(tokens read back through the block
// table). A scheduler that hands out a wrong block, forgets a copy-on-write or shares a block it
// should not produces different tokens than FakeModelNextToken over the true context, which the
// tests compare against.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "worker/backend/backend.h"
#include "worker/backend/host_sequences.h"

namespace ite {

// The fake model: a hash of every (position, token) of the context, mapped into [0, vocab).
int32_t FakeModelNextToken(std::span<const int32_t> context, int32_t vocab);

// Greedy continuation of `prompt` by the fake model (the expected output of a request run alone).
std::vector<int32_t> FakeModelGenerate(std::span<const int32_t> prompt, int32_t num_tokens,
                                       int32_t vocab);

// A ModelConfig for the fake: vocab, context and a name; the rest is irrelevant.
ModelConfig FakeModelConfig(int32_t vocab, int32_t max_position);

class FakeBackend : public Backend {
 public:
  FakeBackend(ModelConfig config, int32_t block_size, int32_t num_blocks);

  const ModelConfig& config() const override { return config_; }
  int32_t block_size() const override { return block_size_; }
  int32_t num_blocks() const override { return num_blocks_; }
  std::string device() const override { return "fake"; }

  Status AddSequence(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
                     int32_t generated) override;
  void ReleaseSequence(int64_t seq_id) override { seqs_.Release(seq_id); }
  void ClearSequences() override { seqs_.Clear(); }
  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) override;
  // Runs the step at once. Logits are one-hot-ish: 10 at the fake model's next token, 0
  // elsewhere, and the sequence's sampler picks from them (the fake token when greedy).
  Status Submit(const ForwardBatch& batch) override;
  StatusOr<ForwardOutput> Collect() override;

  // From now on every step fails as on a GPU that lost its context (failed() turns true).
  void FailDevice() { device_failed_ = true; }
  bool failed() const override { return device_failed_; }

  int64_t forwards() const { return forwards_; }
  int64_t copies() const { return copies_; }

 private:
  ModelConfig config_;
  int32_t block_size_;
  int32_t num_blocks_;
  std::vector<int32_t> kv_;  // [num_blocks, block_size] token ids; -1 = never written
  HostSequences seqs_;
  StepPlan plan_;
  HostStepTimer timer_;
  std::mutex done_mu_;  // Collect may run on another thread than Submit
  std::deque<ForwardOutput> done_;
  std::atomic<bool> device_failed_{false};
  int64_t forwards_ = 0;
  int64_t copies_ = 0;
};

}  // namespace ite
