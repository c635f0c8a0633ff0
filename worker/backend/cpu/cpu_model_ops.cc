#include "worker/backend/cpu/cpu_model_ops.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>

#include "common/check.h"
#include "worker/backend/cpu/cpu_vision_ops.h"
#include "worker/model/dequantize.h"

namespace ite {
namespace {

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
    default:
      ITE_CHECK(false, "ToF32: {} is a block format", DTypeName(dtype));
  }
  return 0.0f;
}

float* F(Activation a) { return static_cast<float*>(a.data); }

}  // namespace

CpuModelOps::CpuModelOps(const ModelConfig& config, int num_threads)
    : config_(config),
      pool_(std::max(num_threads, 1)),
      inv_freq_(cpu::RopeInvFreq(config)),
      quant_kernels_(&cpu::QuantKernelsFor(cpu::BestQuantIsa())) {}

Status CpuModelOps::InitKv(const KvCacheOptions& kv) {
  if (kv.block_size <= 0) return InvalidArgument("KV cache: block_size {} <= 0", kv.block_size);
  block_size_ = kv.block_size;
  kv_bf16_ = kv.cpu_bf16;
  block_floats_ = static_cast<int64_t>(block_size_) * config_.kv_dim();
  const int64_t element_bytes = kv_bf16_ ? 2 : 4;
  const int64_t bytes_per_block = 2 * block_floats_ * config_.num_layers * element_bytes;
  const int64_t blocks = kv.num_blocks > 0 ? kv.num_blocks : kv.max_kv_bytes / bytes_per_block;
  if (blocks <= 0 || blocks > INT32_MAX)
    return InvalidArgument("KV cache: {} blocks of {} bytes (num_blocks {}, max_kv_bytes {})",
                           blocks, bytes_per_block, kv.num_blocks, kv.max_kv_bytes);
  num_blocks_ = static_cast<int32_t>(blocks);
  // Left uninitialised: pages become resident only as blocks are written.
  const int64_t elements = 2 * block_floats_ * num_blocks_ * config_.num_layers;
  if (kv_bf16_) {
    kv_pool16_.reset(new (std::nothrow) uint16_t[elements]);
  } else {
    kv_pool_.reset(new (std::nothrow) float[elements]);
  }
  if (kv_pool_ == nullptr && kv_pool16_ == nullptr)
    return ResourceExhausted("KV cache: cannot allocate {} bytes", bytes_per_block * blocks);
  return Status::Ok();
}

cpu::PagedKv CpuModelOps::LayerKv(int32_t layer) {
  cpu::PagedKv kv;
  kv.num_blocks = num_blocks_;
  kv.block_size = block_size_;
  kv.num_kv_heads = config_.num_kv_heads;
  kv.head_dim = config_.head_dim;
  const int64_t layer_offset = 2 * block_floats_ * num_blocks_ * layer;
  if (kv_bf16_) {
    kv.k16 = kv_pool16_.get() + layer_offset;
    kv.v16 = kv.k16 + block_floats_ * num_blocks_;
  } else {
    kv.k = kv_pool_.get() + layer_offset;
    kv.v = kv.k + block_floats_ * num_blocks_;
  }
  return kv;
}

Status CpuModelOps::CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) {
  if (src.size() != dst.size())
    return InvalidArgument("CopyBlocks: {} sources for {} destinations", src.size(), dst.size());
  for (size_t i = 0; i < src.size(); ++i) {
    if (src[i] < 0 || src[i] >= num_blocks_ || dst[i] < 0 || dst[i] >= num_blocks_)
      return InvalidArgument("CopyBlocks: pair {} ({} -> {}) outside [0, {})", i, src[i], dst[i],
                             num_blocks_);
  }
  for (int32_t l = 0; l < config_.num_layers; ++l) {
    cpu::PagedKv kv = LayerKv(l);
    for (size_t i = 0; i < src.size(); ++i) {
      if (src[i] == dst[i]) continue;
      if (kv_bf16_) {
        std::memcpy(kv.k16 + dst[i] * block_floats_, kv.k16 + src[i] * block_floats_,
                    sizeof(uint16_t) * block_floats_);
        std::memcpy(kv.v16 + dst[i] * block_floats_, kv.v16 + src[i] * block_floats_,
                    sizeof(uint16_t) * block_floats_);
        continue;
      }
      std::memcpy(kv.k + dst[i] * block_floats_, kv.k + src[i] * block_floats_,
                  sizeof(float) * block_floats_);
      std::memcpy(kv.v + dst[i] * block_floats_, kv.v + src[i] * block_floats_,
                  sizeof(float) * block_floats_);
    }
  }
  return Status::Ok();
}

const float* CpuModelOps::Fp32(const Tensor& t) {
  if (t.dtype == DType::kF32) return t.as<float>();
  const int64_t n = t.numel();
  owned_.push_back(std::unique_ptr<float[]>(new float[n]));
  float* dst = owned_.back().get();
  for (int64_t i = 0; i < n; ++i) dst[i] = ToF32(t.dtype, t.data, i);
  return dst;
}

StatusOr<const cpu::QuantMatrix*> CpuModelOps::Quant(const Tensor& t, const std::string& name) {
  bool supported = cpu::QuantMatMulSupported(t.dtype) && t.shape.size() == 2;
  if (t.mixed()) {
    for (const RowSegment& s : *t.segments) supported &= cpu::QuantMatMulSupported(s.dtype);
  }
  if (!supported)
    return Unimplemented("CPU backend: weight {} is {} {}, which it cannot multiply", name,
                         DTypeName(t.dtype), t.ShapeString());
  quant_.push_back(std::make_unique<cpu::QuantMatrix>(cpu::QuantMatrixOf(t)));
  return quant_.back().get();
}

StatusOr<OpWeight> CpuModelOps::LoadMatrix(const Tensor& w, const Tensor& bias,
                                           const std::string& name) {
  OpWeight out;
  out.rows = static_cast<int32_t>(w.shape[0]);
  out.cols = static_cast<int32_t>(w.shape[1]);
  if (DTypeQuantized(w.dtype)) {  // multiplied as stored
    out.dtype = w.dtype;
    ITE_ASSIGN_OR_RETURN(out.data, Quant(w, name));
  } else {
    // BF16 stays as it is (the matmul widens it); F16 is widened to F32 once.
    out.dtype = w.dtype == DType::kBF16 ? DType::kBF16 : DType::kF32;
    out.data = w.dtype == DType::kBF16 ? w.data : Fp32(w);
  }
  if (!bias.empty()) {
    if (bias.numel() != out.rows)
      return InvalidArgument("CPU backend: bias of {} has {} values for {} rows", name,
                             bias.numel(), out.rows);
    out.bias = Fp32(bias);
  }
  return out;
}

StatusOr<OpWeight> CpuModelOps::LoadVector(const Tensor& v, const std::string& name) {
  OpWeight out;
  out.rows = 1;
  out.cols = static_cast<int32_t>(v.numel());
  out.data = Fp32(v);
  return out;
}

StatusOr<OpWeight> CpuModelOps::LoadTable(const Tensor& table, const std::string& name) {
  // Looked up row by row, so it stays in its dtype.
  OpWeight out;
  out.rows = static_cast<int32_t>(table.shape[0]);
  out.cols = static_cast<int32_t>(table.shape[1]);
  out.dtype = table.dtype;
  out.data = table.data;
  if (DTypeQuantized(table.dtype)) {
    // Embedding decodes every row as table.dtype; the builder fuses no table.
    if (!DequantizeSupported(DTypeGgml(table.dtype)) || table.mixed())
      return Unimplemented("CPU backend: table {} is {}", name, DTypeName(table.dtype));
    ITE_ASSIGN_OR_RETURN(out.data, Quant(table, name));
  }
  return out;
}

Activation CpuModelOps::Buffer(ActBuffer which, int32_t rows, int32_t cols) {
  std::vector<float>& b = buffers_[static_cast<int>(which)];
  b.resize(static_cast<size_t>(rows) * cols);
  return {b.data(), rows, cols};
}

Status CpuModelOps::Embedding(const OpWeight& table, Activation out) {
  const std::vector<int32_t>& tokens = plan_->tokens;
  if (table.dtype == DType::kF32) {
    cpu::Embedding(static_cast<const float*>(table.data), table.cols, tokens, F(out));
  } else if (DTypeQuantized(table.dtype)) {
    const auto* q = static_cast<const cpu::QuantMatrix*>(table.data);
    for (size_t t = 0; t < tokens.size(); ++t) {
      DequantizeRow(DTypeGgml(table.dtype), q->row_ptrs[static_cast<size_t>(tokens[t])],
                    F(out) + t * table.cols, table.cols);
    }
  } else {
    for (size_t t = 0; t < tokens.size(); ++t) {
      for (int32_t i = 0; i < table.cols; ++i) {
        F(out)
        [t * table.cols + i] =
            ToF32(table.dtype, table.data, static_cast<int64_t>(tokens[t]) * table.cols + i);
      }
    }
  }
  for (const EmbedRun& run : plan_->embeds) {
    std::memcpy(F(out) + static_cast<size_t>(run.row0) * out.cols, run.src,
                sizeof(float) * run.rows * out.cols);
  }
  return Status::Ok();
}

StatusOr<OpWeight> CpuModelOps::LoadNormedMatrix(const Tensor& norm, const Tensor& w,
                                                  const Tensor& bias, const std::string& name) {
  ITE_ASSIGN_OR_RETURN(OpWeight out, LoadMatrix(w, bias, name));
  ITE_ASSIGN_OR_RETURN(OpWeight n, LoadVector(norm, name + " norm"));
  out.norm = n.data;
  return out;
}

Activation CpuModelOps::Normed(Activation x, const OpWeight& w, float eps) {
  Activation h = Buffer(ActBuffer::kNormed, x.rows, x.cols);
  cpu::RmsNorm(F(x), static_cast<const float*>(w.norm), x.rows, x.cols, eps, F(h));
  return h;
}

Status CpuModelOps::Linear(Activation x, const OpWeight& w, Activation out) {
  const float* bias = static_cast<const float*>(w.bias);
  if (DTypeQuantized(w.dtype)) {
    cpu::QuantMatMul(F(x), *static_cast<const cpu::QuantMatrix*>(w.data), bias, x.rows, F(out),
                     *quant_kernels_, &quant_scratch_, &pool_);
  } else if (w.dtype == DType::kBF16) {
    cpu::MatMulBf16(F(x), static_cast<const uint16_t*>(w.data), bias, x.rows, w.rows, w.cols,
                    F(out), &pool_);
  } else {
    cpu::MatMul(F(x), static_cast<const float*>(w.data), bias, x.rows, w.rows, w.cols, F(out),
                &pool_);
  }
  return Status::Ok();
}

Status CpuModelOps::LinearAdd(Activation x, const OpWeight& w, Activation residual) {
  Activation y = Buffer(ActBuffer::kProj, x.rows, w.rows);
  ITE_RETURN_IF_ERROR(Linear(x, w, y));
  return Add(residual, y);
}

Status CpuModelOps::NormLinearRopeKv(int32_t layer, Activation x, const OpWeight& w, float eps,
                                     Activation qkv) {
  ITE_RETURN_IF_ERROR(Linear(Normed(x, w, eps), w, qkv));
  RopeKvWrite(layer, qkv);
  return Status::Ok();
}

Status CpuModelOps::NormLinearSiluMul(Activation x, const OpWeight& w, float eps,
                                      Activation out) {
  Activation gate_up = Buffer(ActBuffer::kGateUp, x.rows, w.rows);
  ITE_RETURN_IF_ERROR(Linear(Normed(x, w, eps), w, gate_up));
  cpu::SiluMul(F(gate_up), gate_up.rows, out.cols, F(out));
  return Status::Ok();
}

void CpuModelOps::RopeKvWrite(int32_t layer, Activation qkv) {
  const int32_t n = qkv.rows, qd = config_.q_dim(), kvd = config_.kv_dim();
  q_.resize(static_cast<size_t>(n) * qd);
  k_.resize(static_cast<size_t>(n) * kvd);
  v_.resize(k_.size());
  for (int32_t t = 0; t < n; ++t) {
    const float* row = F(qkv) + static_cast<int64_t>(t) * qkv.cols;
    std::memcpy(&q_[static_cast<size_t>(t) * qd], row, sizeof(float) * qd);
    std::memcpy(&k_[static_cast<size_t>(t) * kvd], row + qd, sizeof(float) * kvd);
    std::memcpy(&v_[static_cast<size_t>(t) * kvd], row + qd + kvd, sizeof(float) * kvd);
  }
  cpu::Rope(q_.data(), k_.data(), plan_->positions, config_.num_heads, config_.num_kv_heads,
            config_.head_dim, inv_freq_);
  cpu::PagedKv kv = LayerKv(layer);
  for (const PlannedChunk& ch : plan_->chunks) {
    std::span<const int32_t> pos(plan_->positions.data() + ch.row0, ch.len);
    cpu::KvWrite(kv, ch.block_table, pos, &k_[static_cast<size_t>(ch.row0) * kvd],
                 &v_[static_cast<size_t>(ch.row0) * kvd]);
  }
}

Status CpuModelOps::Attention(int32_t layer, Activation qkv, Activation out) {
  // Reads the rotated Q that RopeKvWrite of this layer left in q_.
  const int32_t qd = config_.q_dim();
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  cpu::PagedKv kv = LayerKv(layer);
  for (const PlannedChunk& ch : plan_->chunks) {
    cpu::PagedAttention(kv, ch.block_table, ch.start_pos, &q_[static_cast<size_t>(ch.row0) * qd],
                        ch.len, config_.num_heads, scale,
                        F(out) + static_cast<size_t>(ch.row0) * qd, &pool_);
  }
  return Status::Ok();
}

Status CpuModelOps::NormLogitRows(Activation x, const OpWeight& w, float eps, Activation out) {
  for (size_t r = 0; r < plan_->logit_rows.size(); ++r) {
    std::memcpy(F(out) + r * x.cols, F(x) + static_cast<size_t>(plan_->logit_rows[r]) * x.cols,
                sizeof(float) * x.cols);
  }
  cpu::RmsNorm(F(out), static_cast<const float*>(w.data), out.rows, out.cols, eps, F(out));
  return Status::Ok();
}

Status CpuModelOps::LmHead(Activation x, const OpWeight& w) {
  logits_.resize(static_cast<size_t>(x.rows) * w.rows);
  Activation logits{logits_.data(), x.rows, w.rows};
  return Linear(x, w, logits);
}

Status CpuModelOps::LinearAllReduceAdd(Activation x, const OpWeight& w, Activation residual) {
  if (comm_ == nullptr) return FailedPrecondition("LinearAllReduceAdd: no tensor-parallel group");
  Activation y = Buffer(ActBuffer::kProj, x.rows, w.rows);
  ITE_RETURN_IF_ERROR(Linear(x, w, y));
  ITE_RETURN_IF_ERROR(
      comm_->AllReduceSum(y.data, static_cast<int64_t>(y.rows) * y.cols, DType::kF32, nullptr));
  return Add(residual, y);
}

// The gather is an all-reduce of logits that are zero outside each rank's columns: one
// collective, exact (x + 0 == x), and the same on every rank.
Status CpuModelOps::LmHeadShard(Activation x, const OpWeight& w, int32_t vocab_begin,
                                int32_t vocab) {
  if (comm_ == nullptr) return FailedPrecondition("LmHeadShard: no tensor-parallel group");
  if (vocab_begin < 0 || vocab_begin + w.rows > vocab)
    return InvalidArgument("LmHeadShard: rows [{}, {}) of a vocabulary of {}", vocab_begin,
                           vocab_begin + w.rows, vocab);
  shard_logits_.resize(static_cast<size_t>(x.rows) * w.rows);
  ITE_RETURN_IF_ERROR(Linear(x, w, {shard_logits_.data(), x.rows, w.rows}));
  logits_.assign(static_cast<size_t>(x.rows) * vocab, 0.0f);
  for (int32_t r = 0; r < x.rows; ++r) {
    std::copy_n(shard_logits_.data() + static_cast<size_t>(r) * w.rows, w.rows,
                logits_.data() + static_cast<size_t>(r) * vocab + vocab_begin);
  }
  return comm_->AllReduceSum(logits_.data(), static_cast<int64_t>(logits_.size()), DType::kF32,
                             nullptr);
}

Status CpuModelOps::UploadRows(const float* host, Activation out) {
  std::memcpy(out.data, host, sizeof(float) * out.rows * out.cols);
  return Status::Ok();
}

Status CpuModelOps::LayerNorm(Activation x, const OpWeight& w, const OpWeight& b, float eps,
                              Activation out) {
  cpu::LayerNorm(F(x), static_cast<const float*>(w.data), static_cast<const float*>(b.data), x.rows,
                 x.cols, eps, F(out));
  return Status::Ok();
}

Status CpuModelOps::Add(Activation x, Activation y) {
  const int64_t n = int64_t{x.rows} * x.cols;
  for (int64_t i = 0; i < n; ++i) F(x)[i] += F(y)[i];
  return Status::Ok();
}

Status CpuModelOps::AddTable(Activation x, const OpWeight& table) {
  if (table.rows < x.rows || table.cols != x.cols)
    return InvalidArgument("AddTable: table [{}, {}] for [{}, {}]", table.rows, table.cols, x.rows,
                           x.cols);
  const int64_t n = int64_t{x.rows} * x.cols;
  for (int64_t i = 0; i < n; ++i) F(x)[i] += ToF32(table.dtype, table.data, i);
  return Status::Ok();
}

Status CpuModelOps::Activate(Activation x, ActFn fn) {
  const int64_t n = int64_t{x.rows} * x.cols;
  if (fn == ActFn::kGelu) {
    cpu::Gelu(F(x), n);
  } else {
    cpu::QuickGelu(F(x), n);
  }
  return Status::Ok();
}

Status CpuModelOps::DenseAttention(Activation qkv, int32_t num_heads, Activation out) {
  if (num_heads <= 0 || qkv.cols % (3 * num_heads) != 0 || out.cols * 3 != qkv.cols)
    return InvalidArgument("DenseAttention: qkv [{}, {}] with {} heads into {} columns", qkv.rows,
                           qkv.cols, num_heads, out.cols);
  cpu::DenseAttention(F(qkv), qkv.rows, num_heads, qkv.cols / (3 * num_heads), F(out), &pool_);
  return Status::Ok();
}

Activation CpuModelOps::Rows(Activation x, int32_t row0, int32_t rows) {
  return {F(x) + static_cast<size_t>(row0) * x.cols, rows, x.cols};
}

}  // namespace ite
