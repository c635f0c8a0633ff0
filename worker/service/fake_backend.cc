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

Status FakeBackend::Forward(const ForwardBatch& batch, std::vector<float>* logits) {
  ++forwards_;
  // Pass 1: write every chunk's tokens, as a real backend writes K/V before attention.
  for (const SequenceChunk& c : batch.chunks) {
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      int32_t pos = c.start_pos + static_cast<int32_t>(i);
      int32_t block = c.block_table[pos / block_size_];
      if (block < 0 || block >= num_blocks_) return InvalidArgument("fake: block {}", block);
      kv_[static_cast<size_t>(block) * block_size_ + pos % block_size_] = c.tokens[i];
    }
  }
  size_t rows = 0;
  for (const SequenceChunk& c : batch.chunks) {
    if (c.logits == LogitsMode::kLast) ++rows;
    if (c.logits == LogitsMode::kAll) return Unimplemented("fake: kAll");
  }
  logits->assign(rows * config_.vocab_size, 0.0f);
  size_t row = 0;
  std::vector<int32_t> context;
  for (const SequenceChunk& c : batch.chunks) {
    if (c.logits != LogitsMode::kLast) continue;
    int32_t len = c.start_pos + static_cast<int32_t>(c.tokens.size());
    context.resize(len);
    for (int32_t pos = 0; pos < len; ++pos) {
      context[pos] = kv_[static_cast<size_t>(c.block_table[pos / block_size_]) * block_size_ +
                         pos % block_size_];
    }
    (*logits)[row * config_.vocab_size + FakeModelNextToken(context, config_.vocab_size)] = 10.0f;
    ++row;
  }
  return Status::Ok();
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
