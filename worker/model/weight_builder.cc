#include "worker/model/weight_builder.h"

#include <fmt/ranges.h>

#include <chrono>
#include <cstring>

#include "common/check.h"
#include "common/logging.h"
#include "worker/model/dequantize.h"
#include "worker/model/tensor_parallel.h"

namespace ite {

namespace {

// A run of source rows to place into an output matrix: rows [row0, row0 + rows) of `src`,
// optionally un-interleaving heads of `head_dim` rows, and of each row the output's columns
// from col0 on (a tensor-parallel rank's slice; col0 on a block boundary).
struct Part {
  const SourceTensor* src;
  int64_t rows;
  int64_t head_dim;  // > 0: undo the GGUF Q/K permutation within each head
  int64_t row0 = 0;  // a multiple of head_dim when head_dim > 0
  int64_t col0 = 0;
};

// A rank's slice [begin, begin + n) of a tensor's rows or columns.
struct Range {
  int64_t begin = 0;
  int64_t n = -1;  // -1: to the end
};

// Source row for output row r when undoing the permutation: within a head, HF row s*half + j
// (s = which half, j = pair index) was stored at row 2*j + s.
int64_t SourceRow(int64_t r, int64_t head_dim) {
  if (head_dim <= 0) return r;
  const int64_t half = head_dim / 2;
  const int64_t head = r / head_dim, in_head = r % head_dim;
  const int64_t s = in_head / half, j = in_head % half;
  return head * head_dim + 2 * j + s;
}

// Where output row r of a part starts in its source.
const uint8_t* PartRow(const Part& p, int64_t r) {
  const size_t src_row_bytes = GgmlRowBytes(p.src->type, p.src->shape.back());
  return p.src->data + static_cast<size_t>(SourceRow(p.row0 + r, p.head_dim)) * src_row_bytes +
         GgmlRowBytes(p.src->type, p.col0);
}

void StoreRow(const float* src, int64_t n, DType dtype, void* dst) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * 4);
      return;
    case DType::kF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToHalf(src[i]);
      return;
    }
    case DType::kBF16: {
      auto* out = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) out[i] = FloatToBf16(src[i]);
      return;
    }
    case DType::kQ8_0:
      QuantizeRowQ8_0(src, static_cast<uint8_t*>(dst), n);
      return;
    default:
      ITE_CHECK(false, "StoreRow: no conversion to {}", DTypeName(dtype));
  }
}

// The block format a stored tensor keeps under keep_stored, false if it is not one.
bool QuantizedDType(const SourceTensor& t, DType* dtype) {
  return DTypeFromGgml(t.type, dtype) && DTypeQuantized(*dtype);
}

// A rank's columns of a row in a block format must start and end on block boundaries.
Status CheckColumnSplit(const SourceTensor& t, Range cols) {
  const int64_t block = GgmlBlockSize(t.type);
  if (cols.begin % block == 0 && cols.n % block == 0) return Status::Ok();
  return InvalidArgument(
      "{}: tensor '{}' ({}, blocks of {}) cannot be split at columns [{}, {}) for tensor "
      "parallelism; choose a size whose slices are whole blocks",
      t.file, t.name, GgmlTypeName(t.type), block, cols.begin, cols.begin + cols.n);
}

// Rows [row0, row0 + rows) of a matrix, sharing its memory.
Tensor RowSlice(const Tensor& t, int64_t row0, int64_t rows) {
  Tensor s = t;
  s.shape = {rows, t.cols()};
  s.data = t.row(row0);
  if (t.row_ptrs) {
    s.row_ptrs = std::make_shared<const std::vector<const uint8_t*>>(
        t.row_ptrs->begin() + row0, t.row_ptrs->begin() + row0 + rows);
  }
  return s;
}

bool SameEncoding(GgmlType type, DType dtype) {
  return (type == GgmlType::F32 && dtype == DType::kF32) ||
         (type == GgmlType::F16 && dtype == DType::kF16) ||
         (type == GgmlType::BF16 && dtype == DType::kBF16);
}

class Builder {
 public:
  Builder(const ModelConfig& config, const TensorSet& set, const BuildOptions& options)
      : c_(config), set_(set), opt_(options) {}

  StatusOr<ModelWeights> Build();
  void set_shard(const ShardPlan& shard) { shard_ = shard; }

 private:
  StatusOr<const SourceTensor*> Get(WeightKind kind, int layer, std::vector<int64_t> shape);
  // Output [sum(rows), cols] filled from `parts` in order.
  Tensor Assemble(const std::vector<Part>& parts, int64_t cols, bool is_vector);
  // The same as a view of the parts' rows in their stored block formats; false if a part is in
  // none, or (`want` set) not in `want`, or the parts' formats differ and !mixed. Parts in
  // different formats make a mixed matrix (Tensor::segments).
  bool BlockView(const std::vector<Part>& parts, int64_t cols, const DType* want, bool mixed,
                 Tensor* out) const;
  Tensor Convert(const std::vector<Part>& parts, int64_t cols, bool is_vector, DType dtype);
  // The dtype a matrix from `parts` is given: their shared F32 or BF16 encoding under
  // keep_stored, else opt_.dtype.
  DType OutDType(const std::vector<Part>& parts, bool is_vector) const;
  // Vectors (norms, biases) are never block-encoded: F32 when matrices are re-quantized.
  DType VectorDType() const { return DTypeQuantized(opt_.dtype) ? DType::kF32 : opt_.dtype; }
  // Rows and columns of a matrix: all, or a rank's slice.
  StatusOr<Tensor> Single(WeightKind kind, int layer, std::vector<int64_t> shape, Range rows = {},
                          Range cols = {});
  StatusOr<LayerWeights> Layer(int layer);

  const ModelConfig& c_;
  const TensorSet& set_;
  BuildOptions opt_;
  ShardPlan shard_;  // size 1: the whole model
  std::vector<float> scratch_;
};

StatusOr<const SourceTensor*> Builder::Get(WeightKind kind, int layer, std::vector<int64_t> shape) {
  const std::string name = set_.name_of(kind, layer);
  auto it = set_.tensors.find(name);
  if (it == set_.tensors.end()) {
    return NotFound("{}: tensor '{}' is missing", set_.path, name);
  }
  const SourceTensor& t = it->second;
  if (t.shape != shape) {
    return InvalidArgument("{}: tensor '{}' has shape [{}], the config implies [{}]", t.file, name,
                           fmt::join(t.shape, ", "), fmt::join(shape, ", "));
  }
  if (!DequantizeSupported(t.type)) {
    return Unimplemented("{}: tensor '{}' has type {}, which the loader cannot convert", t.file,
                         name, GgmlTypeName(t.type));
  }
  const int64_t cols = shape.back();
  const int64_t rows = shape.size() == 2 ? shape[0] : 1;
  if (cols % GgmlBlockSize(t.type) != 0 ||
      GgmlRowBytes(t.type, cols) * static_cast<size_t>(rows) != t.nbytes) {
    return InvalidArgument("{}: tensor '{}': {} bytes do not match shape [{}] of {}", t.file, name,
                           t.nbytes, fmt::join(shape, ", "), GgmlTypeName(t.type));
  }
  return &t;
}

Tensor Builder::Assemble(const std::vector<Part>& parts, int64_t cols, bool is_vector) {
  Tensor view;
  // Under keep_stored (the CPU backend's option, whose ops multiply each segment in its own
  // format) parts in different block formats stay in them, not widened to opt_.dtype.
  if (!is_vector && opt_.keep_stored && BlockView(parts, cols, nullptr, true, &view)) return view;
  // Re-quantizing to a block format the parts are already in changes no byte: keep the view.
  if (!is_vector && DTypeQuantized(opt_.dtype) &&
      BlockView(parts, cols, &opt_.dtype, false, &view))
    return view;
  return Convert(parts, cols, is_vector, OutDType(parts, is_vector));
}

DType Builder::OutDType(const std::vector<Part>& parts, bool is_vector) const {
  if (is_vector) return VectorDType();
  if (!opt_.keep_stored) return opt_.dtype;
  const GgmlType type = parts[0].src->type;
  for (const Part& p : parts) {
    if (p.src->type != type) return opt_.dtype;
  }
  if (type == GgmlType::F32) return DType::kF32;
  if (type == GgmlType::BF16) return DType::kBF16;
  return opt_.dtype;
}

bool Builder::BlockView(const std::vector<Part>& parts, int64_t cols, const DType* want,
                        bool mixed, Tensor* out) const {
  auto rows = std::make_shared<std::vector<const uint8_t*>>();
  auto segments = std::make_shared<std::vector<RowSegment>>();
  for (const Part& p : parts) {
    DType d;
    if (!QuantizedDType(*p.src, &d) || (want != nullptr && d != *want)) return false;
    if (segments->empty() || segments->back().dtype != d) {
      if (!segments->empty() && !mixed) return false;
      segments->push_back({d, 0});
    }
    segments->back().rows += p.rows;
    for (int64_t r = 0; r < p.rows; ++r) rows->push_back(PartRow(p, r));
  }
  out->dtype = segments->front().dtype;
  out->shape = {static_cast<int64_t>(rows->size()), cols};
  out->data = rows->empty() ? nullptr : (*rows)[0];
  out->owner = parts[0].src->owner;  // every part comes from one file's mapping
  out->row_ptrs = std::move(rows);
  if (segments->size() > 1) out->segments = std::move(segments);
  return true;
}

Tensor Builder::Convert(const std::vector<Part>& parts, int64_t cols, bool is_vector, DType dtype) {
  int64_t total_rows = 0;
  for (const Part& p : parts) total_rows += p.rows;
  void* out = nullptr;
  std::vector<int64_t> shape =
      is_vector ? std::vector<int64_t>{cols} : std::vector<int64_t>{total_rows, cols};
  Tensor t = AllocTensor(dtype, std::move(shape), &out);
  scratch_.resize(static_cast<size_t>(cols));
  const size_t out_row_bytes = DTypeRowBytes(dtype, cols);
  auto* dst = static_cast<uint8_t*>(out);
  for (const Part& p : parts) {
    for (int64_t r = 0; r < p.rows; ++r) {
      const uint8_t* src = PartRow(p, r);
      if (dtype == DType::kF32) {
        DequantizeRow(p.src->type, src, reinterpret_cast<float*>(dst), cols);
      } else if (SameEncoding(p.src->type, dtype)) {
        std::memcpy(dst, src, out_row_bytes);
      } else {
        DequantizeRow(p.src->type, src, scratch_.data(), cols);
        StoreRow(scratch_.data(), cols, dtype, dst);
      }
      dst += out_row_bytes;
    }
  }
  return t;
}

StatusOr<Tensor> Builder::Single(WeightKind kind, int layer, std::vector<int64_t> shape, Range rows,
                                 Range cols) {
  ITE_ASSIGN_OR_RETURN(const SourceTensor* src, Get(kind, layer, shape));
  const bool is_vector = shape.size() == 1;
  if (rows.n < 0) rows.n = (is_vector ? 1 : shape[0]) - rows.begin;
  if (cols.n < 0) cols.n = shape.back() - cols.begin;
  ITE_RETURN_IF_ERROR(CheckColumnSplit(*src, cols));
  const std::vector<Part> parts = {Part{src, rows.n, 0, rows.begin, cols.begin}};
  const DType dtype = OutDType(parts, is_vector);
  const bool whole_rows = cols.begin == 0 && cols.n == shape.back();
  // Already in the wanted encoding, aligned, and whole rows: use the mapping in place.
  const uint8_t* first = PartRow(parts[0], 0);
  if (whole_rows && !DTypeQuantized(dtype) && SameEncoding(src->type, dtype) &&
      reinterpret_cast<uintptr_t>(first) % DTypeSize(dtype) == 0) {
    Tensor t;
    t.dtype = dtype;
    t.shape = is_vector ? shape : std::vector<int64_t>{rows.n, cols.n};
    t.data = first;
    t.owner = src->owner;
    return t;
  }
  return Assemble(parts, cols.n, is_vector);
}

StatusOr<LayerWeights> Builder::Layer(int l) {
  const int64_t h = c_.hidden_size, q = c_.q_dim(), kv = c_.kv_dim(), ff = c_.intermediate_size;
  const int64_t qk_head = set_.qk_interleaved ? c_.head_dim : 0;
  // This rank's rows of Q, K and V (head-aligned) and of gate and up; the same runs are its
  // columns of O and down. The whole model at size 1.
  const int64_t hd = c_.head_dim;
  const Range q_rows{shard_.q_head_begin * hd, shard_.num_heads * hd};
  const Range kv_rows{shard_.kv_head_begin * hd, shard_.num_kv_heads * hd};
  const Range ff_rows{shard_.inter_begin, shard_.intermediate};
  LayerWeights w;
  ITE_ASSIGN_OR_RETURN(w.attn_norm, Single(WeightKind::kAttnNorm, l, {h}));
  ITE_ASSIGN_OR_RETURN(const SourceTensor* wq, Get(WeightKind::kQ, l, {q, h}));
  ITE_ASSIGN_OR_RETURN(const SourceTensor* wk, Get(WeightKind::kK, l, {kv, h}));
  ITE_ASSIGN_OR_RETURN(const SourceTensor* wv, Get(WeightKind::kV, l, {kv, h}));
  w.wqkv = Assemble({{wq, q_rows.n, qk_head, q_rows.begin},
                     {wk, kv_rows.n, qk_head, kv_rows.begin},
                     {wv, kv_rows.n, 0, kv_rows.begin}},
                    h, false);
  if (c_.qkv_bias) {
    // Qwen2 only; its GGUF rows are not permuted (set_.qk_interleaved is false there), and the
    // biases are converted as one-column matrices so the same row logic applies.
    ITE_ASSIGN_OR_RETURN(const SourceTensor* bq, Get(WeightKind::kQBias, l, {q}));
    ITE_ASSIGN_OR_RETURN(const SourceTensor* bk, Get(WeightKind::kKBias, l, {kv}));
    ITE_ASSIGN_OR_RETURN(const SourceTensor* bv, Get(WeightKind::kVBias, l, {kv}));
    void* out = nullptr;
    const DType bias_dtype = VectorDType();
    w.bqkv = AllocTensor(bias_dtype, {q_rows.n + 2 * kv_rows.n}, &out);
    auto* dst = static_cast<uint8_t*>(out);
    for (auto [b, range] : {std::pair{bq, q_rows}, {bk, kv_rows}, {bv, kv_rows}}) {
      ITE_RETURN_IF_ERROR(CheckColumnSplit(*b, range));
      const int64_t n = range.n;
      scratch_.resize(static_cast<size_t>(n));
      DequantizeRow(b->type, b->data + GgmlRowBytes(b->type, range.begin), scratch_.data(), n);
      StoreRow(scratch_.data(), n, bias_dtype, dst);
      dst += static_cast<size_t>(n) * DTypeSize(bias_dtype);
    }
  }
  ITE_ASSIGN_OR_RETURN(w.wo, Single(WeightKind::kO, l, {h, q}, {}, q_rows));
  ITE_ASSIGN_OR_RETURN(w.ffn_norm, Single(WeightKind::kFfnNorm, l, {h}));
  ITE_ASSIGN_OR_RETURN(const SourceTensor* gate, Get(WeightKind::kGate, l, {ff, h}));
  ITE_ASSIGN_OR_RETURN(const SourceTensor* up, Get(WeightKind::kUp, l, {ff, h}));
  w.w_gate_up =
      Assemble({{gate, ff_rows.n, 0, ff_rows.begin}, {up, ff_rows.n, 0, ff_rows.begin}}, h, false);
  ITE_ASSIGN_OR_RETURN(w.w_down, Single(WeightKind::kDown, l, {h, ff}, {}, ff_rows));
  return w;
}

StatusOr<ModelWeights> Builder::Build() {
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const int64_t h = c_.hidden_size, vocab = c_.vocab_size;
  ModelWeights w;
  ITE_ASSIGN_OR_RETURN(w.token_embedding, Single(WeightKind::kEmbedding, 0, {vocab, h}));
  w.layers.reserve(static_cast<size_t>(c_.num_layers));
  double last_report = 0;
  for (int l = 0; l < c_.num_layers; ++l) {
    ITE_ASSIGN_OR_RETURN(LayerWeights layer, Layer(l));
    w.layers.push_back(std::move(layer));
    // At most a line a second: a small model loads with none, a big one shows it is moving.
    if (opt_.show_progress && elapsed() - last_report >= opt_.progress_interval_s) {
      last_report = elapsed();
      ITE_LOG_INFO("loading {}: layer {}/{} ({:.2f} s)", set_.path, l + 1, c_.num_layers,
                   last_report);
    }
  }
  ITE_ASSIGN_OR_RETURN(w.final_norm, Single(WeightKind::kFinalNorm, 0, {h}));
  // A tensor-parallel rank keeps the whole embedding (every rank embeds every token) but only
  // its vocabulary rows of the LM head.
  const Range vocab_rows =
      shard_.size > 1 ? Range{shard_.vocab_begin, shard_.vocab_rows} : Range{0, vocab};
  if (c_.tie_embeddings) {
    w.lm_head = shard_.size > 1 ? RowSlice(w.token_embedding, vocab_rows.begin, vocab_rows.n)
                                : w.token_embedding;  // shares the buffer (and its owner)
  } else {
    ITE_ASSIGN_OR_RETURN(w.lm_head, Single(WeightKind::kLmHead, 0, {vocab, h}, vocab_rows));
  }
  if (opt_.show_progress) {
    ITE_LOG_INFO("loaded {} in {:.2f} s ({} layers, {}{})", set_.path, elapsed(), c_.num_layers,
                 DTypeName(opt_.dtype), opt_.keep_stored ? ", stored formats kept" : "");
  }
  return w;
}

}  // namespace

StatusOr<ModelWeights> BuildWeights(const ModelConfig& config, const TensorSet& set,
                                    const BuildOptions& options) {
  if (DTypeQuantized(options.dtype)) {
    if (options.dtype != DType::kQ8_0) {
      return InvalidArgument("{}: cannot convert weights to {} (of the block formats only Q8_0)",
                             set.path, DTypeName(options.dtype));
    }
    // Every matrix row (hidden, q_dim or intermediate wide) must be whole Q8_0 blocks.
    for (int32_t cols : {config.hidden_size, config.q_dim(), config.intermediate_size}) {
      if (cols % DTypeBlockSize(options.dtype) != 0) {
        return InvalidArgument("{}: cannot convert to Q8_0: rows of {} elements are not blocks of {}",
                               set.path, cols, DTypeBlockSize(options.dtype));
      }
    }
  }
  ITE_ASSIGN_OR_RETURN(ShardPlan shard, PlanShard(config, options.tp_rank, options.tp_size));
  Builder builder(config, set, options);
  builder.set_shard(shard);
  return builder.Build();
}

}  // namespace ite
