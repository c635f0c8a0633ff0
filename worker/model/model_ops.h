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

#include "common/status.h"
#include "worker/model/tensor.h"

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
};

// Scratch activations by role; the ops keep one buffer per role, sized for their largest step.
enum class ActBuffer { kResidual, kNormed, kQkv, kAttn, kProj, kGateUp, kMlp, kLogitRows, kCount };

class ModelOps {
 public:
  virtual ~ModelOps() = default;

  // Loading, once, at model creation. `name` appears in errors. An empty `bias` means none.
  virtual StatusOr<OpWeight> LoadMatrix(const Tensor& w, const Tensor& bias,
                                        const std::string& name) = 0;
  virtual StatusOr<OpWeight> LoadVector(const Tensor& v, const std::string& name) = 0;
  virtual StatusOr<OpWeight> LoadTable(const Tensor& table, const std::string& name) = 0;

  // The planned step: token rows, and rows whose logits are computed (after GatherLogitRows).
  virtual int32_t num_tokens() const = 0;
  virtual int32_t num_logit_rows() const = 0;
  virtual Activation Buffer(ActBuffer which, int32_t rows, int32_t cols) = 0;

  // out[t] = table[token t of the step]
  virtual Status Embedding(const OpWeight& table, Activation out) = 0;
  // out = RmsNorm(x) * w; out may alias x.
  virtual Status RmsNorm(Activation x, const OpWeight& w, float eps, Activation out) = 0;
  // residual += x; out = RmsNorm(residual) * w.
  virtual Status AddRmsNorm(Activation residual, Activation x, const OpWeight& w, float eps,
                            Activation out) = 0;
  // out = x @ w^T (+ bias)
  virtual Status Linear(Activation x, const OpWeight& w, Activation out) = 0;
  // qkv [tokens, q | k | v]: rotates Q in place and writes the rotated K and V of every token
  // into layer `layer`'s paged cache at its planned slot.
  virtual Status RopeKvWrite(int32_t layer, Activation qkv) = 0;
  // Causal attention of each sequence's new tokens (Q of qkv, after RopeKvWrite) over its paged
  // cache, GQA; out [tokens, num_heads * head_dim].
  virtual Status Attention(int32_t layer, Activation qkv, Activation out) = 0;
  // out = silu(gate) * up; gate_up [rows, 2 * inter], out [rows, inter].
  virtual Status SiluMul(Activation gate_up, Activation out) = 0;
  // out[r] = x[planned logit row r]
  virtual Status GatherLogitRows(Activation x, Activation out) = 0;
  // fp32 logits [rows, vocab] = x @ w^T into the ops' logits buffer.
  virtual Status LmHead(Activation x, const OpWeight& w) = 0;
};

}  // namespace ite
