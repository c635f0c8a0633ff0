// Turns the tensors of a checkpoint (GGUF or safetensors, already validated by their readers)
// into fused ModelWeights (model_weights.h): checks every tensor's presence and shape against the
// config, converts to the requested dtype, fuses Q/K/V and gate/up, undoes the GGUF llama Q/K
// row permutation, and shares the embedding as lm_head when tied.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf_reader.h"
#include "common/status.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"
#include "worker/model/tensor.h"

namespace ite {

// One stored tensor, in any encoding DequantizeRow understands.
struct SourceTensor {
  std::string name;  // as in the file
  std::string file;  // the file holding it, for errors
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> shape;  // outermost first: [out, in] for matrices, [n] for vectors
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  std::shared_ptr<const void> owner;  // keeps `data` valid (the file's mapping)
};

enum class WeightKind {
  kEmbedding,
  kAttnNorm,
  kQ,
  kK,
  kV,
  kQBias,
  kKBias,
  kVBias,
  kO,
  kFfnNorm,
  kGate,
  kUp,
  kDown,
  kFinalNorm,
  kLmHead,
};

struct TensorSet {
  std::string path;  // the model, for errors
  std::map<std::string, SourceTensor, std::less<>> tensors;
  std::function<std::string(WeightKind kind, int layer)> name_of;  // the file's tensor names
  // llama.cpp's converter reorders each Q/K head's rows as (pair index, half) to suit GPT-J style
  // RoPE; the builder restores the Hugging Face (half, pair index) order when set.
  bool qk_interleaved = false;
};

struct BuildOptions {
  DType dtype = DType::kF32;  // or Q8_0: matrices re-quantized, vectors F32
  bool show_progress = false;
  double progress_interval_s = 1.0;  // at most one per-layer line this often
  // Matrices (the embedding included) stored as F32, BF16 or a ggml block format stay in it:
  // block formats point into the file (fused ones through row pointers), F32/BF16 as before
  // (in place unless fused). A fused matrix whose parts are in different block formats keeps
  // each part's (a mixed matrix, Tensor::segments), so this is the CPU backend's option: its ops
  // multiply each segment as stored, while the CUDA ops take one F16/BF16 dtype and never ask
  // for it (LoadOptionsForDType). The rest is converted to `dtype`, as is a fused matrix with a
  // float part (F32, F16, BF16) and a part in another encoding: llama.cpp's quantization mixes
  // only block formats within Q|K|V or gate|up (float matrices come from unquantized files,
  // where all parts share one type), so that case stays on the simpler widened path.
  bool keep_stored = false;
  // Tensor parallelism: only rank tp_rank's share of tp_size (tensor_parallel.h) is built, read
  // from the source tensors where they lie. The config passed stays the whole model's.
  int32_t tp_rank = 0;
  int32_t tp_size = 1;
};

StatusOr<ModelWeights> BuildWeights(const ModelConfig& config, const TensorSet& set,
                                    const BuildOptions& options);

}  // namespace ite
