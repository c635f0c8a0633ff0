#include "worker/service/fake_backend.h"

#include <algorithm>

namespace ite {

int32_t FakeModelNextToken(std::span<const int32_t> context, int32_t vocab) {
  uint64_t h = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < context.size(); ++i) {
    h ^= (static_cast<uint64_t>(static_cast<uint32_t>(context[i])) << 20) + i;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  return static_cast<int32_t>(h % static_cast<uint64_t>(vocab));
}

std::vector<int32_t> FakeModelGenerate(std::span<const int32_t> prompt, int32_t num_tokens,
                                       int32_t vocab) {
  std::vector<int32_t> context(prompt.begin(), prompt.end());
  std::vector<int32_t> out;
  for (int32_t i = 0; i < num_tokens; ++i) {
    out.push_back(FakeModelNextToken(context, vocab));
    context.push_back(out.back());
  }
  return out;
}

ModelConfig FakeModelConfig(int32_t vocab, int32_t max_position) {
  ModelConfig c;
  c.name = "fake";
  c.vocab_size = vocab;
  c.max_position = max_position;
  c.num_layers = 1;
  c.num_heads = 1;
  c.num_kv_heads = 1;
  c.head_dim = 1;
  c.hidden_size = 1;
  return c;
}

FakeBackend::FakeBackend(ModelConfig config, int32_t block_size, int32_t num_blocks)
    : config_(std::move(config)),
      block_size_(block_size),
      num_blocks_(num_blocks),
      kv_(static_cast<size_t>(num_blocks) * block_size, -1) {}

Status FakeBackend::AddSequence(int64_t seq_id, const SamplingParams& params,
                                std::span<const int32_t> context, int32_t generated) {
  seqs_.Add(seq_id, params, context, generated);
  return Status::Ok();
}

Status FakeBackend::Submit(const ForwardBatch& batch) {
  if (device_failed_) return Internal("fake: the device failed");
  const PlanLimits limits{config_.vocab_size, config_.max_position, block_size_, num_blocks_};
  ITE_RETURN_IF_ERROR(PlanStep(batch, limits, &plan_));
  ITE_RETURN_IF_ERROR(seqs_.FeedDecodes(&plan_));
  const int64_t idle_us = timer_.Begin();
  ++forwards_;
  // Pass 1: write every chunk's tokens, as a real backend writes K/V before attention.
  for (const PlannedChunk& c : plan_.chunks) {
    for (int32_t i = 0; i < c.len; ++i) {
      const int32_t pos = c.start_pos + i;
      const int32_t block = c.block_table[pos / block_size_];
      kv_[static_cast<size_t>(block) * block_size_ + pos % block_size_] = plan_.tokens[c.row0 + i];
    }
  }
  std::vector<float> logits(plan_.logit_rows.size() * config_.vocab_size, 0.0f);
  std::vector<int32_t> context;
  for (const PlannedChunk& c : plan_.chunks) {
    for (int32_t r = 0; r < c.logit_rows; ++r) {
      // The logit row of token i predicts position i + 1 from the context up to i.
      const int32_t len = c.start_pos + c.len - c.logit_rows + r + 1;
      context.resize(len);
      for (int32_t pos = 0; pos < len; ++pos) {
        context[pos] = kv_[static_cast<size_t>(c.block_table[pos / block_size_]) * block_size_ +
                           pos % block_size_];
      }
      logits[static_cast<size_t>(c.logit_row0 + r) * config_.vocab_size +
             FakeModelNextToken(context, config_.vocab_size)] = 10.0f;
    }
  }
  ForwardOutput out;
  out.device_idle_us = idle_us;
  seqs_.SampleChunks(plan_, logits.data(), config_.vocab_size, &out);
  std::lock_guard<std::mutex> lock(done_mu_);
  done_.push_back(std::move(out));
  timer_.End();
  return Status::Ok();
}

StatusOr<ForwardOutput> FakeBackend::Collect() {
  std::lock_guard<std::mutex> lock(done_mu_);
  if (done_.empty()) return FailedPrecondition("fake: Collect without a submitted step");
  ForwardOutput out = std::move(done_.front());
  done_.pop_front();
  return out;
}

Status FakeBackend::CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) {
  for (size_t i = 0; i < src.size(); ++i) {
    std::copy_n(kv_.begin() + static_cast<size_t>(src[i]) * block_size_, block_size_,
                kv_.begin() + static_cast<size_t>(dst[i]) * block_size_);
    ++copies_;
  }
  return Status::Ok();
}

}  // namespace ite
