#include "worker/backend/cpu/cpu_backend.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "common/check.h"
#include "common/thread_pool.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite {
namespace {

// A weight matrix [out, in] in F32 or BF16, with an optional fp32 bias [out].
struct Linear {
  DType dtype = DType::kF32;
  const void* w = nullptr;
  const float* bias = nullptr;
  int32_t out = 0;
  int32_t in = 0;

  // y[m, out] = x[m, in] @ w^T (+ bias)
  void Apply(const float* x, int32_t m, float* y, ThreadPool* pool) const {
    if (dtype == DType::kBF16) {
      cpu::MatMulBf16(x, static_cast<const uint16_t*>(w), bias, m, out, in, y, pool);
    } else {
      cpu::MatMul(x, static_cast<const float*>(w), bias, m, out, in, y, pool);
    }
  }
};

struct Layer {
  const float* attn_norm = nullptr;
  Linear qkv;
  Linear o;
  const float* ffn_norm = nullptr;
  Linear gate_up;
  Linear down;
};

float ToF32(DType dtype, const void* data, int64_t i) {
  switch (dtype) {
    case DType::kF32:
      return static_cast<const float*>(data)[i];
    case DType::kBF16: {
      uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(data)[i]) << 16;
      float f;
      std::memcpy(&f, &bits, 4);
      return f;
    }
    case DType::kF16:
      return _cvtsh_ss(static_cast<const uint16_t*>(data)[i]);
  }
  return 0.0f;
}

class CpuBackend final : public Backend {
 public:
  CpuBackend(LoadedModel model, int num_threads) : model_(std::move(model)), pool_(num_threads) {}

  Status Init(const KvCacheOptions& kv);

  const ModelConfig& config() const override { return model_.config; }
  int32_t block_size() const override { return block_size_; }
  int32_t num_blocks() const override { return num_blocks_; }
  Status Forward(const ForwardBatch& batch, std::vector<float>* logits) override;
  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) override;

 private:
  // Checks a tensor's shape and returns an fp32 pointer to it (converting into owned storage
  // when it is not F32). For norms, biases and the embedding table.
  StatusOr<const float*> Vector(const Tensor& t, const std::string& name,
                                std::vector<int64_t> shape);
  StatusOr<Linear> Matrix(const Tensor& t, const std::string& name, int32_t out, int32_t in);
  Status Validate(const ForwardBatch& batch) const;
  cpu::PagedKv LayerKv(int layer);

  LoadedModel model_;
  ThreadPool pool_;
  std::vector<std::unique_ptr<float[]>> owned_;  // converted weights
  Tensor embedding_;  // [vocab, hidden], any dtype: only looked up row by row
  std::vector<Layer> layers_;
  const float* final_norm_ = nullptr;
  Linear lm_head_;
  std::vector<float> inv_freq_;

  int32_t block_size_ = 0;
  int32_t num_blocks_ = 0;
  int64_t block_floats_ = 0;          // floats of one block of K (or V) of one layer
  std::unique_ptr<float[]> kv_pool_;  // per layer: K blocks then V blocks

  // Activations, resized per Forward and reused.
  std::vector<int32_t> tokens_, positions_;
  std::vector<float> x_, h_, qkv_, q_, k_, v_, attn_, proj_, gate_up_, act_, last_;
};

StatusOr<const float*> CpuBackend::Vector(const Tensor& t, const std::string& name,
                                          std::vector<int64_t> shape) {
  if (t.empty()) return InvalidArgument("CPU backend: weight {} is missing", name);
  if (t.shape != shape) {
    Tensor want;
    want.shape = shape;
    return InvalidArgument("CPU backend: weight {} has shape {}, expected {}", name,
                           t.ShapeString(), want.ShapeString());
  }
  if (t.dtype == DType::kF32) return t.as<float>();
  int64_t n = t.numel();
  owned_.push_back(std::unique_ptr<float[]>(new float[n]));
  float* dst = owned_.back().get();
  for (int64_t i = 0; i < n; ++i) dst[i] = ToF32(t.dtype, t.data, i);
  return static_cast<const float*>(dst);
}

StatusOr<Linear> CpuBackend::Matrix(const Tensor& t, const std::string& name, int32_t out,
                                    int32_t in) {
  Linear lin;
  lin.out = out;
  lin.in = in;
  if (t.dtype == DType::kBF16) {
    if (t.empty()) return InvalidArgument("CPU backend: weight {} is missing", name);
    if (t.shape != std::vector<int64_t>{out, in})
      return InvalidArgument("CPU backend: weight {} has shape {}, expected [{}, {}]", name,
                             t.ShapeString(), out, in);
    lin.dtype = DType::kBF16;
    lin.w = t.data;
    return lin;
  }
  // F32 as is; F16 widened to F32 once.
  ITE_ASSIGN_OR_RETURN(const float* w, Vector(t, name, {out, in}));
  lin.w = w;
  return lin;
}

Status CpuBackend::Init(const KvCacheOptions& kv) {
  const ModelConfig& c = model_.config;
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.num_layers <= 0 || c.num_heads <= 0 ||
      c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.num_heads % c.num_kv_heads != 0 || c.intermediate_size <= 0) {
    return InvalidArgument(
        "CPU backend: bad model config (vocab {}, hidden {}, layers {}, heads {}/{}, head_dim {})",
        c.vocab_size, c.hidden_size, c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim);
  }
  const ModelWeights& w = model_.weights;
  if (static_cast<int32_t>(w.layers.size()) != c.num_layers)
    return InvalidArgument("CPU backend: {} layers of weights for num_layers {}", w.layers.size(),
                           c.num_layers);
  embedding_ = w.token_embedding;
  if (embedding_.empty()) return InvalidArgument("CPU backend: weight token_embedding is missing");
  if (embedding_.shape != std::vector<int64_t>{c.vocab_size, c.hidden_size})
    return InvalidArgument("CPU backend: weight token_embedding has shape {}, expected [{}, {}]",
                           embedding_.ShapeString(), c.vocab_size, c.hidden_size);
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    std::string p = fmt::format("layers.{}.", l);
    Layer layer;
    ITE_ASSIGN_OR_RETURN(layer.attn_norm, Vector(lw.attn_norm, p + "attn_norm", {c.hidden_size}));
    ITE_ASSIGN_OR_RETURN(layer.qkv, Matrix(lw.wqkv, p + "wqkv", c.qkv_dim(), c.hidden_size));
    if (c.qkv_bias) {
      ITE_ASSIGN_OR_RETURN(layer.qkv.bias, Vector(lw.bqkv, p + "bqkv", {c.qkv_dim()}));
    } else if (!lw.bqkv.empty()) {
      return InvalidArgument("CPU backend: {}bqkv present but the config has no qkv bias", p);
    }
    ITE_ASSIGN_OR_RETURN(layer.o, Matrix(lw.wo, p + "wo", c.hidden_size, c.q_dim()));
    ITE_ASSIGN_OR_RETURN(layer.ffn_norm, Vector(lw.ffn_norm, p + "ffn_norm", {c.hidden_size}));
    ITE_ASSIGN_OR_RETURN(layer.gate_up, Matrix(lw.w_gate_up, p + "w_gate_up",
                                               2 * c.intermediate_size, c.hidden_size));
    ITE_ASSIGN_OR_RETURN(layer.down,
                         Matrix(lw.w_down, p + "w_down", c.hidden_size, c.intermediate_size));
    layers_.push_back(layer);
  }
  ITE_ASSIGN_OR_RETURN(final_norm_, Vector(w.final_norm, "final_norm", {c.hidden_size}));
  const Tensor& head = w.lm_head.empty() && c.tie_embeddings ? w.token_embedding : w.lm_head;
  ITE_ASSIGN_OR_RETURN(lm_head_, Matrix(head, "lm_head", c.vocab_size, c.hidden_size));
  inv_freq_ = cpu::RopeInvFreq(c);

  if (kv.block_size <= 0) return InvalidArgument("KV cache: block_size {} <= 0", kv.block_size);
  block_size_ = kv.block_size;
  block_floats_ = static_cast<int64_t>(block_size_) * c.kv_dim();
  int64_t bytes_per_block = 2 * block_floats_ * c.num_layers * static_cast<int64_t>(sizeof(float));
  int64_t blocks = kv.num_blocks > 0 ? kv.num_blocks : kv.max_kv_bytes / bytes_per_block;
  if (blocks <= 0 || blocks > INT32_MAX)
    return InvalidArgument("KV cache: {} blocks of {} bytes (num_blocks {}, max_kv_bytes {})",
                           blocks, bytes_per_block, kv.num_blocks, kv.max_kv_bytes);
  num_blocks_ = static_cast<int32_t>(blocks);
  // Left uninitialised: pages become resident only as blocks are written.
  kv_pool_.reset(new (std::nothrow) float[2 * block_floats_ * num_blocks_ * c.num_layers]);
  if (kv_pool_ == nullptr)
    return ResourceExhausted("KV cache: cannot allocate {} bytes", bytes_per_block * blocks);
  return Status::Ok();
}

cpu::PagedKv CpuBackend::LayerKv(int layer) {
  float* base = kv_pool_.get() + 2 * block_floats_ * num_blocks_ * layer;
  return {base,        base + block_floats_ * num_blocks_, num_blocks_,
          block_size_, model_.config.num_kv_heads,         model_.config.head_dim};
}

Status CpuBackend::Validate(const ForwardBatch& batch) const {
  const ModelConfig& c = model_.config;
  if (batch.chunks.empty()) return InvalidArgument("Forward: empty batch");
  for (size_t i = 0; i < batch.chunks.size(); ++i) {
    const SequenceChunk& ch = batch.chunks[i];
    if (ch.tokens.empty()) return InvalidArgument("Forward: chunk {} has no tokens", i);
    if (ch.start_pos < 0) return InvalidArgument("Forward: chunk {} start_pos {}", i, ch.start_pos);
    int64_t end = static_cast<int64_t>(ch.start_pos) + ch.tokens.size();
    if (end > c.max_position)
      return OutOfRange("Forward: chunk {} reaches position {} past the context of {}", i, end,
                        c.max_position);
    int64_t need = (end + block_size_ - 1) / block_size_;
    if (static_cast<int64_t>(ch.block_table.size()) < need)
      return InvalidArgument("Forward: chunk {} covers {} positions with {} blocks of {}", i, end,
                             ch.block_table.size(), block_size_);
    for (int64_t b = 0; b < need; ++b) {
      int32_t id = ch.block_table[b];
      if (id < 0 || id >= num_blocks_)
        return InvalidArgument("Forward: chunk {} block_table[{}] = {} outside [0, {})", i, b, id,
                               num_blocks_);
    }
    for (size_t t = 0; t < ch.tokens.size(); ++t) {
      if (ch.tokens[t] < 0 || ch.tokens[t] >= c.vocab_size)
        return InvalidArgument("Forward: chunk {} token {} = {} outside the vocabulary of {}", i, t,
                               ch.tokens[t], c.vocab_size);
    }
  }
  return Status::Ok();
}

Status CpuBackend::Forward(const ForwardBatch& batch, std::vector<float>* logits) {
  ITE_RETURN_IF_ERROR(Validate(batch));
  const ModelConfig& c = model_.config;
  const int32_t hidden = c.hidden_size, qd = c.q_dim(), kvd = c.kv_dim();
  const int32_t inter = c.intermediate_size;

  tokens_.clear();
  positions_.clear();
  for (const SequenceChunk& ch : batch.chunks) {
    for (size_t t = 0; t < ch.tokens.size(); ++t) {
      tokens_.push_back(ch.tokens[t]);
      positions_.push_back(ch.start_pos + static_cast<int32_t>(t));
    }
  }
  const int32_t n = static_cast<int32_t>(tokens_.size());
  x_.resize(static_cast<size_t>(n) * hidden);
  h_.resize(x_.size());
  proj_.resize(x_.size());
  qkv_.resize(static_cast<size_t>(n) * c.qkv_dim());
  q_.resize(static_cast<size_t>(n) * qd);
  k_.resize(static_cast<size_t>(n) * kvd);
  v_.resize(k_.size());
  attn_.resize(q_.size());
  gate_up_.resize(static_cast<size_t>(n) * 2 * inter);
  act_.resize(static_cast<size_t>(n) * inter);

  if (embedding_.dtype == DType::kF32) {
    cpu::Embedding(embedding_.as<float>(), hidden, tokens_, x_.data());
  } else {
    for (int32_t t = 0; t < n; ++t)
      for (int32_t i = 0; i < hidden; ++i)
        x_[static_cast<size_t>(t) * hidden + i] =
            ToF32(embedding_.dtype, embedding_.data, static_cast<int64_t>(tokens_[t]) * hidden + i);
  }
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (int32_t l = 0; l < c.num_layers; ++l) {
    const Layer& layer = layers_[l];
    cpu::RmsNorm(x_.data(), layer.attn_norm, n, hidden, c.rms_norm_eps, h_.data());
    layer.qkv.Apply(h_.data(), n, qkv_.data(), &pool_);
    for (int32_t t = 0; t < n; ++t) {
      const float* row = qkv_.data() + static_cast<int64_t>(t) * c.qkv_dim();
      std::memcpy(&q_[static_cast<size_t>(t) * qd], row, sizeof(float) * qd);
      std::memcpy(&k_[static_cast<size_t>(t) * kvd], row + qd, sizeof(float) * kvd);
      std::memcpy(&v_[static_cast<size_t>(t) * kvd], row + qd + kvd, sizeof(float) * kvd);
    }
    cpu::Rope(q_.data(), k_.data(), positions_, c.num_heads, c.num_kv_heads, c.head_dim, inv_freq_);
    cpu::PagedKv kv = LayerKv(l);
    int32_t row0 = 0;
    for (const SequenceChunk& ch : batch.chunks) {
      int32_t len = static_cast<int32_t>(ch.tokens.size());
      std::span<const int32_t> pos(positions_.data() + row0, len);
      cpu::KvWrite(kv, ch.block_table, pos, &k_[static_cast<size_t>(row0) * kvd],
                   &v_[static_cast<size_t>(row0) * kvd]);
      cpu::PagedAttention(kv, ch.block_table, ch.start_pos, &q_[static_cast<size_t>(row0) * qd],
                          len, c.num_heads, scale, &attn_[static_cast<size_t>(row0) * qd], &pool_);
      row0 += len;
    }
    layer.o.Apply(attn_.data(), n, proj_.data(), &pool_);
    cpu::AddRmsNorm(x_.data(), proj_.data(), layer.ffn_norm, n, hidden, c.rms_norm_eps, h_.data());
    layer.gate_up.Apply(h_.data(), n, gate_up_.data(), &pool_);
    cpu::SiluMul(gate_up_.data(), n, inter, act_.data());
    layer.down.Apply(act_.data(), n, proj_.data(), &pool_);
    for (size_t i = 0; i < x_.size(); ++i) x_[i] += proj_[i];
  }

  // Rows whose logits were asked for, in chunk order.
  last_.clear();
  int32_t row0 = 0;
  for (const SequenceChunk& ch : batch.chunks) {
    int32_t len = static_cast<int32_t>(ch.tokens.size());
    int32_t first = ch.logits == LogitsMode::kAll    ? row0
                    : ch.logits == LogitsMode::kLast ? row0 + len - 1
                                                     : row0 + len;
    for (int32_t r = first; r < row0 + len; ++r) {
      const float* src = x_.data() + static_cast<int64_t>(r) * hidden;
      last_.insert(last_.end(), src, src + hidden);
    }
    row0 += len;
  }
  int32_t rows = static_cast<int32_t>(last_.size() / hidden);
  logits->resize(static_cast<size_t>(rows) * c.vocab_size);
  if (rows == 0) return Status::Ok();
  cpu::RmsNorm(last_.data(), final_norm_, rows, hidden, c.rms_norm_eps, last_.data());
  lm_head_.Apply(last_.data(), rows, logits->data(), &pool_);
  return Status::Ok();
}

Status CpuBackend::CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) {
  if (src.size() != dst.size())
    return InvalidArgument("CopyBlocks: {} sources for {} destinations", src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] < 0 || src[i] >= num_blocks_ || dst[i] < 0 || dst[i] >= num_blocks_)
      return InvalidArgument("CopyBlocks: pair {} ({} -> {}) outside [0, {})", i, src[i], dst[i],
                             num_blocks_);
  }
  for (int32_t l = 0; l < model_.config.num_layers; ++l) {
    cpu::PagedKv kv = LayerKv(l);
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == dst[i]) continue;
      std::memcpy(kv.k + dst[i] * block_floats_, kv.k + src[i] * block_floats_,
                  sizeof(float) * block_floats_);
      std::memcpy(kv.v + dst[i] * block_floats_, kv.v + src[i] * block_floats_,
                  sizeof(float) * block_floats_);
    }
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(LoadedModel model, const KvCacheOptions& kv,
                                                    int num_threads) {
  auto backend = std::make_unique<CpuBackend>(std::move(model), std::max(num_threads, 1));
  ITE_RETURN_IF_ERROR(backend->Init(kv));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace ite
