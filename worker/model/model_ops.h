// The operators an architecture is written over. Each backend implements them once on its
// device (CpuModelOps: fp32 on the host; CudaModelOps: bf16/fp16 kernels and cuBLASLt), and each
// architecture (model.h) is written once over them, so adding an architecture is one file and
// adding a backend is one ops implementation.
//
// The step's layout (tokens, positions, block tables, which rows need logits) is planned by the
// backend before Model::Forward; the ops read it, the model sees only row counts. Ops calls
// enqueue work (on a GPU they return before it ran); a Status reports bad arguments or a failed
// launch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "worker/model/tensor.h"
#include "worker/model/vision_config.h"

namespace ite {

// An activation [rows, cols], row-major, in the ops' activation dtype; memory owned by the ops.
struct Activation {
  void* data = nullptr;
  int32_t rows = 0;
  int32_t cols = 0;
};

// A weight as the ops hold it (device memory on a GPU); opaque to the model.
//   matrix [out, in] (nn.Linear layout) with an optional bias [out]; vector [n]; table [rows, n].
struct OpWeight {
  const void* data = nullptr;
  const void* bias = nullptr;
  int32_t rows = 0;  // out (matrix) or vocab (table); 1 for a vector
  int32_t cols = 0;  // in (matrix), n (vector), dim (table)
  DType dtype = DType::kF32;
  // LoadNormedMatrix: the norm's weight, in the backend's memory.
  const void* norm = nullptr;
};

// One Llama-architecture decoder layer (model.h): qkv and gate_up carry their norms
// (LoadNormedMatrix), qkv its optional bias.
struct DecoderLayerWeights {
  OpWeight qkv, o, gate_up, down;
};

// Scratch activations by role; the ops keep one buffer per role, sized for their largest step.
// kNormed, kProj and kGateUp are the ops' own: the intermediates of their fused operators.
// The kVision* buffers serve the vision tower (one image at a time, num_positions rows).
enum class ActBuffer {
  kResidual,
  kNormed,
  kQkv,
  kAttn,
  kProj,
  kGateUp,
  kMlp,
  kLogitRows,
  kVisionPatches,
  kVisionX,
  kVisionH,
  kVisionQkv,
  kVisionAttn,
  kVisionMlp,
  kVisionProj,
  kCount
};

class ModelOps {
 public:
  virtual ~ModelOps() = default;

  // Loading, once, at model creation. `name` appears in errors. An empty `bias` means none.
  virtual StatusOr<OpWeight> LoadMatrix(const Tensor& w, const Tensor& bias,
                                        const std::string& name) = 0;
  virtual StatusOr<OpWeight> LoadVector(const Tensor& v, const std::string& name) = 0;
  virtual StatusOr<OpWeight> LoadTable(const Tensor& table, const std::string& name) = 0;
  // A matrix whose input is always RmsNorm(x) * norm (NormLinearRopeKv, NormLinearSiluMul): the
  // norm travels with it, so a backend can apply it inside the product.
  virtual StatusOr<OpWeight> LoadNormedMatrix(const Tensor& norm, const Tensor& w,
                                              const Tensor& bias, const std::string& name) = 0;

  // The planned step: token rows, and rows whose logits are computed (NormLogitRows).
  virtual int32_t num_tokens() const = 0;
  virtual int32_t num_logit_rows() const = 0;
  virtual Activation Buffer(ActBuffer which, int32_t rows, int32_t cols) = 0;

  // out[t] = table[token t of the step], or, for rows the plan fills from image features, that
  // feature row.
  virtual Status Embedding(const OpWeight& table, Activation out) = 0;
  // out = x @ w^T (+ bias)
  virtual Status Linear(Activation x, const OpWeight& w, Activation out) = 0;
  // residual += x @ w^T (+ bias)
  virtual Status LinearAdd(Activation x, const OpWeight& w, Activation residual) = 0;
  // qkv [tokens, q | k | v] = RmsNorm(x) * norm @ w^T (+ bias), w from LoadNormedMatrix; then
  // RoPE on Q (in place) and K, and the rotated K and V of every token written into layer
  // `layer`'s paged cache at its planned slot.
  virtual Status NormLinearRopeKv(int32_t layer, Activation x, const OpWeight& w, float eps,
                                  Activation qkv) = 0;
  // Causal attention of each sequence's new tokens (Q of qkv, after NormLinearRopeKv) over its
  // paged cache, GQA; out [tokens, num_heads * head_dim].
  virtual Status Attention(int32_t layer, Activation qkv, Activation out) = 0;
  // residual += Attention(layer, qkv) @ o^T: the attention and the O product with its residual
  // add as one operator, so that a backend can run them as one kernel (the CUDA ops: a decode
  // step of one sequence). attn is the attention's output where they run apart, as here.
  virtual Status AttentionLinearAdd(int32_t layer, Activation qkv, const OpWeight& o,
                                    Activation attn, Activation residual) {
    ITE_RETURN_IF_ERROR(Attention(layer, qkv, attn));
    return LinearAdd(attn, o, residual);
  }
  // out [rows, inter] = silu(g) * u, where [g | u] = RmsNorm(x) * norm @ w^T and w [2 * inter,
  // in] comes from LoadNormedMatrix.
  virtual Status NormLinearSiluMul(Activation x, const OpWeight& w, float eps, Activation out) = 0;
  // out[r] = RmsNorm(x[planned logit row r]) * w
  virtual Status NormLogitRows(Activation x, const OpWeight& w, float eps, Activation out) = 0;
  // fp32 logits [rows, vocab] = x @ w^T into the ops' logits buffer.
  virtual Status LmHead(Activation x, const OpWeight& w) = 0;

  // Optional: every layer of a Llama-architecture decoder on the residual stream x, the same as
  // NormLinearRopeKv, Attention, LinearAdd (O), NormLinearSiluMul and LinearAdd (down) layer by
  // layer. Returns true where the backend ran the stack fused for the planned step (the CUDA
  // ops: one token of one sequence, in one kernel); false, having done nothing, where the model
  // should run those operators.
  virtual StatusOr<bool> DecoderStack(Activation x, const std::vector<DecoderLayerWeights>& layers,
                                      float eps) {
    (void)x, (void)layers, (void)eps;
    return false;
  }

  // Tensor parallelism: called only when the config's shard.size > 1, by every rank of the
  // group in the same order (the ops hold the group's Communicator).
  // residual += the sum over the ranks of x @ w^T: the row-parallel O and down products, each
  // rank's partial, summed before the (replicated) residual takes them once.
  virtual Status LinearAllReduceAdd(Activation x, const OpWeight& w, Activation residual) {
    (void)x, (void)w, (void)residual;
    return Unimplemented("these ops do not run tensor-parallel");
  }
  // fp32 logits [rows, vocab] into the ops' logits buffer, the same on every rank: each rank's
  // columns [vocab_begin, vocab_begin + w.rows) are x @ w^T of its LM head rows `w`.
  virtual Status LmHeadShard(Activation x, const OpWeight& w, int32_t vocab_begin, int32_t vocab) {
    (void)x, (void)w, (void)vocab_begin, (void)vocab;
    return Unimplemented("these ops do not run tensor-parallel");
  }

  // The vision tower's operators (LLaVA). They work on whole activations, not on the step plan.
  // out = host fp32 values [out.rows, out.cols], converted to the activation dtype.
  virtual Status UploadRows(const float* host, Activation out) = 0;
  // out = (x - mean) / sqrt(var + eps) * w + b per row; out may alias x.
  virtual Status LayerNorm(Activation x, const OpWeight& w, const OpWeight& b, float eps,
                           Activation out) = 0;
  // x += y, same shape.
  virtual Status Add(Activation x, Activation y) = 0;
  // x[r] += table[r] for r < x.rows (table: LoadTable, at least x.rows rows of x.cols).
  virtual Status AddTable(Activation x, const OpWeight& table) = 0;
  // x = fn(x), in place.
  virtual Status Activate(Activation x, ActFn fn) = 0;
  // Non-causal attention among all rows of qkv [rows, 3 * num_heads * head_dim] (Q | K | V, one
  // image), scaled by 1/sqrt(head_dim); out [rows, num_heads * head_dim].
  virtual Status DenseAttention(Activation qkv, int32_t num_heads, Activation out) = 0;
  // Rows [row0, row0 + rows) of x, sharing its memory.
  virtual Activation Rows(Activation x, int32_t row0, int32_t rows) = 0;
};

}  // namespace ite
