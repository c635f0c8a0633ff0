#include "worker/backend/cuda/cuda_model_ops.h"

#include <cmath>
#include <cstdlib>
#include <iterator>

#include "common/check.h"
#include "common/env_flag.h"
#include "common/logging.h"
#include "ite/kernels/activation.h"
#include "ite/kernels/attention.h"
#include "ite/kernels/decoder_stack.h"
#include "ite/kernels/embedding.h"
#include "ite/kernels/gemm.h"
#include "ite/kernels/norm.h"
#include "ite/kernels/rope.h"
#include "ite/kernels/step_io.h"
#include "ite/kernels/vision.h"
#include "worker/backend/cpu/cpu_ops.h"

namespace ite {

namespace {
DType HostDType(kernels::DType d) { return d == kernels::DType::kF16 ? DType::kF16 : DType::kBF16; }
}  // namespace

CudaModelOps::CudaModelOps(const ModelConfig& config, const CudaOpsOptions& options,
                           cudaStream_t stream)
    : config_(config), options_(options), stream_(stream) {}

CudaModelOps::~CudaModelOps() = default;

StatusOr<std::unique_ptr<CudaModelOps>> CudaModelOps::Create(const ModelConfig& config,
                                                             const CudaOpsOptions& options,
                                                             cudaStream_t stream) {
  if (options.max_rows < 1 || options.max_seqs < 1 || options.max_logit_rows < 1)
    return InvalidArgument("CUDA ops: max_rows {}, max_seqs {}, max_logit_rows {} must be >= 1",
                           options.max_rows, options.max_seqs, options.max_logit_rows);
  if (config.head_dim != 64 && config.head_dim != 128)
    return Unimplemented("CUDA backend: head_dim {} (the attention kernels have 64 and 128)",
                         config.head_dim);
  auto ops = std::unique_ptr<CudaModelOps>(new CudaModelOps(config, options, stream));
  ITE_RETURN_IF_ERROR(ops->Init());
  return ops;
}

Status CudaModelOps::Init() {
  ITE_ASSIGN_OR_RETURN(gemm_, kernels::GemmRunner::Create(32u << 20, options_.batch_invariant));
  const std::vector<float> inv_freq = cpu::RopeInvFreq(config_);
  ITE_RETURN_IF_ERROR(inv_freq_.Allocate(inv_freq.size() * sizeof(float), "RoPE frequencies"));
  ITE_CUDA_TRY(cudaMemcpy(inv_freq_.get(), inv_freq.data(), inv_freq.size() * sizeof(float),
                          cudaMemcpyHostToDevice));
  const size_t rows = options_.max_rows, h = config_.hidden_size, inter = config_.intermediate_size;
  // The vision tower's buffers hold one image (none for a text-only model).
  const VisionConfig* v = config_.vision ? &*config_.vision : nullptr;
  const size_t vrows = v ? v->num_positions() : 0, vh = v ? v->hidden_size : 0;
  const size_t sizes[] = {
      rows * h,                                          // kResidual
      rows * h,                                          // kNormed
      rows * config_.qkv_dim(),                          // kQkv
      rows * config_.q_dim(),                            // kAttn
      rows * h,                                          // kProj
      rows * 2 * inter,                                  // kGateUp
      rows * inter,                                      // kMlp
      static_cast<size_t>(options_.max_logit_rows) * h,  // kLogitRows
      vrows * (v ? v->patch_dim() : 0),                  // kVisionPatches
      vrows * vh,                                        // kVisionX
      vrows * vh,                                        // kVisionH
      vrows * 3 * vh,                                    // kVisionQkv
      vrows * vh,                                        // kVisionAttn
      vrows * (v ? v->intermediate_size : 0),            // kVisionMlp
      vrows * h,                                         // kVisionProj
  };
  static_assert(std::size(sizes) == static_cast<size_t>(ActBuffer::kCount));
  if (config_.vision) {
    ITE_RETURN_IF_ERROR(vision_staging_.Allocate(
        sizes[static_cast<int>(ActBuffer::kVisionPatches)] * sizeof(float), "vision patches"));
  }
  for (size_t i = 0; i < std::size(sizes); ++i) {
    ITE_RETURN_IF_ERROR(buffers_[i].Allocate(sizes[i] * 2, "activations"));
    buffer_elems_[i] = sizes[i];
  }
  ITE_RETURN_IF_ERROR(logits_.Allocate(
      static_cast<size_t>(options_.max_logit_rows) * config_.vocab_size * sizeof(float), "logits"));
  ITE_RETURN_IF_ERROR(decode_workspace_.Allocate(
      kernels::DecodeWorkspaceBytes(options_.max_seqs, config_.num_heads, config_.head_dim,
                                    options_.max_splits),
      "decode workspace"));
  // One-row products that normalise x (QKV, gate|up, the LM head; all k = hidden) take it in
  // shared memory, the residual-adding ones not (LinearAdd). On an H200 that was 4.6% faster a
  // Llama-3.2-1B decode step and, once O and down read x from global memory, 1.4% faster a
  // Qwen2.5-0.5B one (k = 896); see docs/perf.md. gemv.cu still checks each product's k against
  // kernels::kGemvSharedXBytes. Measured on one GPU only, so not for tensor-parallel shards.
  shared_x_ = config_.hidden_size * int64_t{sizeof(float)} <= kernels::kGemvSharedXBytes &&
              options_.comm == nullptr && !options_.batch_invariant;
  if (shared_x_) ITE_LOG_INFO("one-row products: x in shared memory");
  static const bool attention_out_asked = EnvFlag("ITE_ATTENTION_OUT");
  if (options_.attention_out && attention_out_asked && !options_.batch_invariant &&
      options_.comm == nullptr) {
    attention_out_ =
        kernels::PlanDecodeAttentionOut(options_.dtype, config_.num_heads, config_.num_kv_heads,
                                        config_.head_dim, config_.hidden_size);
    if (attention_out_.splits > 0) {
      ITE_RETURN_IF_ERROR(attention_out_workspace_.Allocate(attention_out_.workspace_bytes,
                                                            "attention + O workspace"));
      ITE_CUDA_TRY(cudaMemset(attention_out_workspace_.get(), 0, attention_out_.workspace_bytes));
      ITE_LOG_INFO(
          "decode of one sequence: attention and O in one kernel ({} kv heads x {} splits, {} "
          "output rows a block)",
          config_.num_kv_heads, attention_out_.splits, attention_out_.rows);
    } else {
      ITE_LOG_INFO("decode of one sequence: attention and O apart ({})", attention_out_.why_not);
    }
  }
  if (options_.fused_decoder_stack && !options_.batch_invariant && options_.comm == nullptr) {
    const size_t bytes = kernels::DecoderStackWorkspaceBytes(
        config_.hidden_size, config_.intermediate_size, config_.num_heads, config_.num_kv_heads,
        config_.head_dim);
    kernels::DecoderStackArgs a = StackShape();
    a.num_layers = config_.num_layers;
    std::string why;
    if (kernels::DecoderStackApplies(a, &why)) {
      ITE_RETURN_IF_ERROR(stack_workspace_.Allocate(bytes, "decoder stack workspace"));
      ITE_CUDA_TRY(cudaMemset(stack_workspace_.get(), 0, bytes));
      ITE_LOG_INFO("decode at batch 1: the {} layers in one kernel (kernels/decoder_stack.h)",
                   config_.num_layers);
    } else {
      ITE_LOG_INFO("decode at batch 1: {} kernels a layer (the fused stack does not apply: {})",
                   attention_out_.splits > 0 ? 4 : 5, why);
    }
  }
  return InitParallel();
}

int64_t CudaModelOps::kv_block_bytes(int32_t block_size) const {
  return int64_t{2} * config_.num_layers * block_size * config_.kv_dim() * 2;
}

Status CudaModelOps::InitKv(int32_t block_size, int32_t num_blocks) {
  if (block_size <= 0 || num_blocks <= 0)
    return InvalidArgument("KV cache: {} blocks of {} tokens", num_blocks, block_size);
  block_size_ = block_size;
  num_blocks_ = num_blocks;
  kv_plane_bytes_ = int64_t{num_blocks} * block_size * config_.kv_dim() * 2;
  ITE_RETURN_IF_ERROR(
      kv_pool_.Allocate(static_cast<size_t>(kv_plane_bytes_) * 2 * config_.num_layers, "KV cache"));
  // Zeroed once: a padded graph row reads block 0, and stale NaN bit patterns must not appear.
  ITE_CUDA_TRY(cudaMemsetAsync(kv_pool_.get(), 0, kv_pool_.bytes(), stream_));
  return Status::Ok();
}

kernels::PagedKvCache CudaModelOps::LayerKv(int32_t layer) const {
  kernels::PagedKvCache c;
  char* base = kv_pool_.as<char>() + 2 * layer * kv_plane_bytes_;
  c.k = base;
  c.v = base + kv_plane_bytes_;
  c.dtype = options_.dtype;
  c.num_blocks = num_blocks_;
  c.block_size = block_size_;
  c.num_kv_heads = config_.num_kv_heads;
  c.head_dim = config_.head_dim;
  return c;
}

Status CudaModelOps::CopyBlocks(const int32_t* src, const int32_t* dst, int32_t pairs) {
  const int64_t block_bytes = int64_t{block_size_} * config_.kv_dim() * 2;
  return kernels::CopyKvBlocks(kv_pool_.get(), kv_plane_bytes_, 2 * config_.num_layers, block_bytes,
                               src, dst, pairs, stream_);
}

StatusOr<const void*> CudaModelOps::Upload(const Tensor& t, const std::string& name) {
  if (t.dtype != HostDType(options_.dtype))
    return InvalidArgument("CUDA backend: weight {} is {}, expected {} (load the model as {})",
                           name, DTypeName(t.dtype), DTypeName(HostDType(options_.dtype)),
                           kernels::DTypeName(options_.dtype));
  if (auto it = uploaded_.find(t.data); it != uploaded_.end()) return it->second;
  DeviceBuffer buf;
  ITE_RETURN_IF_ERROR(buf.Allocate(t.nbytes(), name.c_str()));
  ITE_CUDA_TRY(cudaMemcpy(buf.get(), t.data, t.nbytes(), cudaMemcpyHostToDevice));
  const void* ptr = buf.get();
  uploaded_[t.data] = ptr;
  weights_.push_back(std::move(buf));
  weight_bytes_ += static_cast<int64_t>(t.nbytes());
  uploaded_bytes_ += static_cast<int64_t>(t.nbytes());
  const int64_t total = options_.expected_weight_bytes;
  if (total > 0 && uploaded_bytes_ >= next_progress_) {
    ITE_LOG_INFO("weights on the GPU: {:.0f}% ({:.2f} of {:.2f} GB)",
                 100.0 * uploaded_bytes_ / total, uploaded_bytes_ / 1e9, total / 1e9);
    next_progress_ += total / 5;
  }
  return ptr;
}

StatusOr<OpWeight> CudaModelOps::LoadMatrix(const Tensor& w, const Tensor& bias,
                                            const std::string& name) {
  OpWeight out;
  out.rows = static_cast<int32_t>(w.shape[0]);
  out.cols = static_cast<int32_t>(w.shape[1]);
  out.dtype = w.dtype;
  ITE_ASSIGN_OR_RETURN(out.data, Upload(w, name));
  if (!bias.empty()) {
    if (bias.numel() != out.rows)
      return InvalidArgument("CUDA backend: bias of {} has {} values for {} rows", name,
                             bias.numel(), out.rows);
    ITE_ASSIGN_OR_RETURN(out.bias, Upload(bias, name + " bias"));
  }
  return out;
}

StatusOr<OpWeight> CudaModelOps::LoadNormedMatrix(const Tensor& norm, const Tensor& w,
                                                  const Tensor& bias, const std::string& name) {
  if (w.shape.size() != 2 || norm.numel() != w.shape[1])
    return InvalidArgument("CUDA backend: norm of {} has {} values for {} columns", name,
                           norm.numel(), w.shape.size() == 2 ? w.shape[1] : 0);
  ITE_ASSIGN_OR_RETURN(OpWeight out, LoadMatrix(w, bias, name));
  ITE_ASSIGN_OR_RETURN(out.norm, Upload(norm, name + " norm"));
  return out;
}

StatusOr<OpWeight> CudaModelOps::LoadVector(const Tensor& v, const std::string& name) {
  OpWeight out;
  out.rows = 1;
  out.cols = static_cast<int32_t>(v.numel());
  out.dtype = v.dtype;
  ITE_ASSIGN_OR_RETURN(out.data, Upload(v, name));
  return out;
}

StatusOr<OpWeight> CudaModelOps::LoadTable(const Tensor& table, const std::string& name) {
  return LoadMatrix(table, Tensor(), name);
}

Activation CudaModelOps::Buffer(ActBuffer which, int32_t rows, int32_t cols) {
  const int i = static_cast<int>(which);
  ITE_CHECK(static_cast<size_t>(rows) * cols <= buffer_elems_[i],
            "activation buffer {} too small for [{}, {}]", i, rows, cols);
  return {buffers_[i].get(), rows, cols};
}

Status CudaModelOps::Embedding(const OpWeight& table, Activation out) {
  ITE_RETURN_IF_ERROR(kernels::Embedding(options_.dtype, table.data, table.rows, table.cols,
                                         step_.tokens, step_.num_rows, out.data, stream_));
  if (embeds_ == nullptr) return Status::Ok();
  const size_t row_bytes = static_cast<size_t>(out.cols) * 2;
  for (const EmbedRun& run : *embeds_) {
    ITE_CUDA_TRY(cudaMemcpyAsync(static_cast<char*>(out.data) + run.row0 * row_bytes, run.src,
                                 run.rows * row_bytes, cudaMemcpyDeviceToDevice, stream_));
  }
  return Status::Ok();
}

kernels::GemmArgs CudaModelOps::Args(Activation x, const OpWeight& w, void* out) const {
  kernels::GemmArgs g;
  g.dtype = options_.dtype;
  g.x = x.data;
  g.w = w.data;
  g.bias = w.bias;
  g.out = out;
  g.m = x.rows;
  g.n = w.rows;
  g.k = w.cols;
  g.shared_x = shared_x_ && x.rows == 1;
  // ITE_GEMV_GRID=N caps the few-row products' grids at N blocks a multiprocessor (measuring).
  static const int32_t grid_cap = EnvInt("ITE_GEMV_GRID", 0);
  g.max_blocks_per_sm = grid_cap;
  return g;
}

kernels::RopeKvWriteArgs CudaModelOps::RopeArgs(int32_t layer) const {
  kernels::RopeKvWriteArgs a;
  a.positions = step_.positions;
  a.slots = step_.kv_slots;
  a.inv_freq = inv_freq_.as<float>();
  a.num_tokens = step_.num_rows;
  a.num_heads = config_.num_heads;
  a.num_kv_heads = config_.num_kv_heads;
  a.head_dim = config_.head_dim;
  a.cache = LayerKv(layer);
  return a;
}

StatusOr<Activation> CudaModelOps::NormedApart(Activation x, const OpWeight& w, float eps) {
  Activation h = Buffer(ActBuffer::kNormed, x.rows, x.cols);
  kernels::RmsNormArgs a;
  a.dtype = options_.dtype;
  a.x = x.data;
  a.weight = w.norm;
  a.out = h.data;
  a.rows = x.rows;
  a.dim = x.cols;
  a.eps = eps;
  ITE_RETURN_IF_ERROR(kernels::RmsNorm(a, stream_));
  return h;
}

Status CudaModelOps::Linear(Activation x, const OpWeight& w, Activation out) {
  return gemm_->Run(Args(x, w, out.data), stream_);
}

Status CudaModelOps::LinearAdd(Activation x, const OpWeight& w, Activation residual) {
  kernels::GemmArgs g = Args(x, w, residual.data);
  g.epilogue = kernels::GemmEpilogue::kAccumulate;
  // The residual-adding products (O, down) read x from global memory even where the others take
  // it in shared memory: on an H200 the Llama-3.2-1B's decode step was 1.6% faster so (0.741
  // against 0.753 ms), with O and down alone 0.2 and 0.9 us faster (docs/perf.md).
  g.shared_x = false;
  return gemm_->Run(g, stream_);
}

Status CudaModelOps::NormLinearRopeKv(int32_t layer, Activation x, const OpWeight& w, float eps,
                                      Activation qkv) {
  kernels::RopeKvWriteArgs rope = RopeArgs(layer);
  kernels::GemmArgs g = Args(x, w, qkv.data);
  g.epilogue = kernels::GemmEpilogue::kRopeKv;
  g.rms_norm_x = true;
  g.norm_weight = w.norm;
  g.eps = eps;
  g.rope = &rope;
  if (gemm_->Fuses(g)) return gemm_->Run(g, stream_);
  ITE_ASSIGN_OR_RETURN(Activation h, NormedApart(x, w, eps));
  ITE_RETURN_IF_ERROR(Linear(h, w, qkv));
  rope.qkv = qkv.data;
  return kernels::RopeKvWrite(rope, stream_);
}

Status CudaModelOps::NormLinearSiluMul(Activation x, const OpWeight& w, float eps, Activation out) {
  kernels::GemmArgs g = Args(x, w, out.data);
  g.epilogue = kernels::GemmEpilogue::kSiluMul;
  g.rms_norm_x = true;
  g.norm_weight = w.norm;
  g.eps = eps;
  if (gemm_->Fuses(g)) return gemm_->Run(g, stream_);
  ITE_ASSIGN_OR_RETURN(Activation h, NormedApart(x, w, eps));
  Activation gate_up = Buffer(ActBuffer::kGateUp, x.rows, w.rows);
  ITE_RETURN_IF_ERROR(Linear(h, w, gate_up));
  return kernels::SiluMul(options_.dtype, gate_up.data, gate_up.rows, out.cols, out.data, stream_);
}

Status CudaModelOps::NormLogitRows(Activation x, const OpWeight& w, float eps, Activation out) {
  kernels::RmsNormArgs a;
  a.dtype = options_.dtype;
  a.x = x.data;
  a.weight = w.data;
  a.out = out.data;
  a.rows = out.rows;
  a.dim = x.cols;
  a.eps = eps;
  a.row_index = step_.logit_rows;  // null: the logit rows are the token rows
  return kernels::RmsNorm(a, stream_);
}

kernels::DecodeAttentionArgs CudaModelOps::DecodeArgs(int32_t layer, Activation qkv,
                                                      Activation out) const {
  // Q is the first q_dim columns of each qkv row (RoPE applied in place), read with its stride.
  kernels::DecodeAttentionArgs a;
  a.q = qkv.data;
  a.q_row_stride = qkv.cols;
  a.out = out.data;
  a.cache = LayerKv(layer);
  a.kv_lens = step_.kv_lens;
  a.block_tables = step_.block_tables;
  a.max_blocks_per_seq = step_.max_blocks;
  a.batch = step_.num_seqs;
  a.num_heads = config_.num_heads;
  a.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  a.num_splits = step_.num_splits;
  a.workspace = decode_workspace_.get();
  a.workspace_bytes = decode_workspace_.bytes();
  return a;
}

Status CudaModelOps::Attention(int32_t layer, Activation qkv, Activation out) {
  if (step_.decode && !options_.batch_invariant)
    return kernels::DecodeAttention(DecodeArgs(layer, qkv, out), stream_);
  const float scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  kernels::PrefillAttentionArgs a;
  a.q = qkv.data;
  a.q_row_stride = qkv.cols;
  a.out = out.data;
  a.cache = LayerKv(layer);
  a.cu_seqlens_q = step_.cu_seqlens;
  a.kv_lens = step_.kv_lens;
  a.block_tables = step_.block_tables;
  a.max_blocks_per_seq = step_.max_blocks;
  a.batch = step_.num_seqs;
  a.max_q_len = step_.max_q_len;
  a.num_heads = config_.num_heads;
  a.scale = scale;
  return kernels::PrefillAttention(a, stream_);
}

Status CudaModelOps::AttentionLinearAdd(int32_t layer, Activation qkv, const OpWeight& o,
                                        Activation attn, Activation residual) {
  // The plan is made only where batch invariance is off (its arithmetic differs from the
  // separate kernels'); the O weight in the activation dtype, without a bias.
  if (attention_out_.splits > 0 && step_.decode && step_.num_seqs == 1 && step_.num_rows == 1 &&
      int64_t{step_.max_blocks} * block_size_ <= kAttentionOutMaxContext && o.bias == nullptr &&
      o.rows == residual.cols && o.cols == config_.q_dim()) {
    kernels::DecodeAttentionOutArgs a;
    a.attention = DecodeArgs(layer, qkv, attn);
    a.wo = o.data;
    a.residual = residual.data;
    a.hidden = residual.cols;
    a.workspace = attention_out_workspace_.get();
    a.workspace_bytes = attention_out_workspace_.bytes();
    return kernels::DecodeAttentionOut(a, attention_out_, stream_);
  }
  return ModelOps::AttentionLinearAdd(layer, qkv, o, attn, residual);
}

Status CudaModelOps::LmHead(Activation x, const OpWeight& w) {
  kernels::GemmArgs g = Args(x, w, logits_.get());
  g.bias = nullptr;
  g.out_f32 = true;
  return gemm_->Run(g, stream_);
}

kernels::DecoderStackArgs CudaModelOps::StackShape() const {
  kernels::DecoderStackArgs a;
  a.dtype = options_.dtype;
  a.hidden = config_.hidden_size;
  a.intermediate = config_.intermediate_size;
  a.num_heads = config_.num_heads;
  a.num_kv_heads = config_.num_kv_heads;
  a.head_dim = config_.head_dim;
  return a;
}

StatusOr<bool> CudaModelOps::DecoderStack(Activation x,
                                          const std::vector<DecoderLayerWeights>& layers,
                                          float eps) {
  if (stack_workspace_.get() == nullptr || !step_.decode || step_.num_rows != 1 ||
      step_.num_seqs != 1 || x.rows != 1)
    return false;
  std::vector<kernels::DecoderStackLayer> stack(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const DecoderLayerWeights& w = layers[l];
    if (w.o.bias || w.gate_up.bias || w.down.bias) return false;  // not in the fused epilogues
    const kernels::PagedKvCache kv = LayerKv(static_cast<int32_t>(l));
    stack[l] = {w.qkv.norm,     w.qkv.data,  w.qkv.bias, w.o.data, w.gate_up.norm,
                w.gate_up.data, w.down.data, kv.k,       kv.v};
  }
  kernels::DecoderStackArgs a = StackShape();
  a.num_layers = static_cast<int32_t>(stack.size());
  a.layers = stack.data();
  a.eps = eps;
  a.scale = 1.0f / std::sqrt(static_cast<float>(config_.head_dim));
  a.x = x.data;
  a.positions = step_.positions;
  a.kv_slots = step_.kv_slots;
  a.kv_lens = step_.kv_lens;
  a.block_tables = step_.block_tables;
  a.max_blocks_per_seq = step_.max_blocks;
  a.block_size = block_size_;
  a.num_blocks = num_blocks_;
  a.inv_freq = inv_freq_.as<float>();
  a.workspace = stack_workspace_.get();
  a.workspace_bytes = stack_workspace_.bytes();
  ITE_RETURN_IF_ERROR(kernels::DecoderStack(a, stream_));
  return true;
}

Status CudaModelOps::UploadRows(const float* host, Activation out) {
  const size_t n = static_cast<size_t>(out.rows) * out.cols;
  if (vision_staging_.bytes() < n * sizeof(float))
    return InvalidArgument("UploadRows: [{}, {}] exceeds the vision staging buffer", out.rows,
                           out.cols);
  // From pageable memory: returns once `host` is consumed, so the caller may free it.
  ITE_CUDA_TRY(cudaMemcpyAsync(vision_staging_.get(), host, n * sizeof(float),
                               cudaMemcpyHostToDevice, stream_));
  return kernels::ConvertFromF32(options_.dtype, vision_staging_.as<float>(), out.data,
                                 static_cast<int64_t>(n), stream_);
}

Status CudaModelOps::LayerNorm(Activation x, const OpWeight& w, const OpWeight& b, float eps,
                               Activation out) {
  kernels::LayerNormArgs a;
  a.dtype = options_.dtype;
  a.x = x.data;
  a.weight = w.data;
  a.bias = b.data;
  a.out = out.data;
  a.rows = x.rows;
  a.dim = x.cols;
  a.eps = eps;
  return kernels::LayerNorm(a, stream_);
}

Status CudaModelOps::Add(Activation x, Activation y) {
  return kernels::AddInPlace(options_.dtype, x.data, y.data, int64_t{x.rows} * x.cols, stream_);
}

Status CudaModelOps::AddTable(Activation x, const OpWeight& table) {
  if (table.rows < x.rows || table.cols != x.cols)
    return InvalidArgument("AddTable: table [{}, {}] for [{}, {}]", table.rows, table.cols, x.rows,
                           x.cols);
  return kernels::AddInPlace(options_.dtype, x.data, table.data, int64_t{x.rows} * x.cols, stream_);
}

Status CudaModelOps::Activate(Activation x, ActFn fn) {
  return kernels::Gelu(options_.dtype,
                       fn == ActFn::kGelu ? kernels::GeluKind::kErf : kernels::GeluKind::kQuick,
                       x.data, int64_t{x.rows} * x.cols, stream_);
}

Status CudaModelOps::DenseAttention(Activation qkv, int32_t num_heads, Activation out) {
  if (num_heads <= 0 || qkv.cols % (3 * num_heads) != 0 || out.cols * 3 != qkv.cols)
    return InvalidArgument("DenseAttention: qkv [{}, {}] with {} heads into {} columns", qkv.rows,
                           qkv.cols, num_heads, out.cols);
  kernels::DenseAttentionArgs a;
  a.dtype = options_.dtype;
  a.qkv = qkv.data;
  a.out = out.data;
  a.rows = qkv.rows;
  a.num_heads = num_heads;
  a.head_dim = qkv.cols / (3 * num_heads);
  a.scale = 1.0f / std::sqrt(static_cast<float>(a.head_dim));
  return kernels::DenseAttention(a, stream_);
}

Activation CudaModelOps::Rows(Activation x, int32_t row0, int32_t rows) {
  return {static_cast<char*>(x.data) + static_cast<size_t>(row0) * x.cols * 2, rows, x.cols};
}

}  // namespace ite
