// Loads a Llama-family model (Llama, Qwen2) from a Hugging Face folder (config.json +
// safetensors, sharded or not) or a GGUF file into fused ModelWeights (model_weights.h layouts).
//
// Every malformed input (truncated file, bad JSON, missing or mis-shaped tensor, unsupported
// dtype or architecture) comes back as a Status that names the file and the key or tensor.
// Tensors already in the requested dtype and layout point into the file's memory map; the rest
// are converted (dequantized, fused) into owned buffers.
#pragma once

#include <string>

#include "common/gguf_reader.h"
#include "common/status.h"
#include "worker/model/model_config.h"
#include "worker/model/model_weights.h"
#include "worker/model/tensor.h"

namespace ite {

struct LoadOptions {
  // dtype of every output tensor (norms and biases included); Q8_0 for matrices only, vectors
  // then F32.
  DType dtype = DType::kF32;
  bool show_progress = false;        // log per-layer progress and total time (spdlog, stderr)
  double progress_interval_s = 1.0;  // at most one per-layer progress line this often
  // Matrices stored as F32, BF16 or a ggml block format keep it (weight_builder.h); "auto".
  bool keep_stored = false;
  // Tensor parallelism: load only rank tp_rank's share of tp_size (tensor_parallel.h); the
  // LoadedModel's config is then the rank's (ShardConfig).
  int32_t tp_rank = 0;
  int32_t tp_size = 1;
};

struct LoadedModel {
  ModelConfig config;
  ModelWeights weights;
  std::string path;
  std::string format;  // "gguf" or "safetensors"
};

// What a --dtype flag ("auto", "f32", "bf16", "f16", "q8_0") asks of the loader for `device`
// ("cpu" or "cuda"). auto: on the CPU every matrix stays as stored (F32, BF16 or a ggml block
// format, multiplied as it is), the rest F32; on CUDA bf16. f32 and q8_0 are CPU-only (q8_0:
// every matrix re-quantized to Q8_0 blocks at load, those already Q8_0 kept as stored; vectors
// F32), f16 CUDA-only.
StatusOr<LoadOptions> LoadOptionsForDType(const std::string& dtype, const std::string& device);

// `path`: a .gguf file, or a folder with config.json and model.safetensors /
// model.safetensors.index.json.
StatusOr<LoadedModel> LoadModel(const std::string& path, const LoadOptions& options);

// The GGUF half of LoadModel on an already-opened file (the fuzz target parses in-memory bytes).
// Tensors that need no conversion point into the file's data: its mapping is shared with them,
// and for a file made by ParseGgufBuffer the caller's buffer must outlive the result.
StatusOr<LoadedModel> LoadModelFromGguf(const GgufFile& file, const LoadOptions& options);

}  // namespace ite
