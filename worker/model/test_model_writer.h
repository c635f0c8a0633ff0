// Test-only: a tiny random Llama/Qwen2 model held as Hugging Face-named float tensors, written
// out as a GGUF file (with llama.cpp's Q/K row permutation for llama) or as a Hugging Face
// folder (config.json + safetensors, optionally sharded), so loader tests can compare formats.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/gguf_reader.h"
#include "worker/model/model_config.h"

namespace ite::testing {

struct HostTensor {
  std::vector<int64_t> shape;  // outermost first
  std::vector<float> values;
};

struct TinyModel {
  ModelConfig config;
  std::map<std::string, HostTensor> tensors;  // HF names
};

// vocab 64, hidden 64, intermediate 96, 2 layers, 4 heads, 2 kv heads, head_dim 16.
TinyModel MakeTinyModel(ModelArch arch, bool tied, uint32_t seed = 1);
// Random weights of `config`'s shapes (head_dim = hidden / heads: config.json does not say it;
// a Qwen2 config's qkv_bias gives Q/K/V biases).
TinyModel MakeTinyModel(const ModelConfig& config, uint32_t seed);

// Raw bytes of a safetensors file from (name -> (dtype, shape, bytes)); dtype "F32"/"BF16"/...
struct SafetensorsEntry {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};
std::string BuildSafetensors(const std::map<std::string, SafetensorsEntry>& tensors);

// Writes config.json and model.safetensors (or two shards + index when `sharded`).
// `dtype`: "F32", "F16" or "BF16" storage.
void WriteHfFolder(const TinyModel& model, const std::string& dir, const std::string& dtype,
                   bool sharded);

// Storage types of GGUF tensors by HF name; a tensor not named is F32. Q8_0 and Q5_0 are
// encoded from the float values (each block rounded to nearest), so a test can mix formats
// within a fused matrix as llama.cpp's Q4_K_M files do.
using GgufTypes = std::map<std::string, GgmlType>;

// The GGUF bytes of the model (F32 tensors unless `types` says otherwise), llama.cpp naming
// and permutation; a non-empty `rope_freqs` is stored as the F32 tensor `rope_freqs.weight`
// (Llama 3 scaling divisors).
std::string BuildGguf(const TinyModel& model, const std::vector<float>& rope_freqs = {},
                      const GgufTypes& types = {});

// A GGUF name -> HF name table entry list, for tests that drop or alter a tensor.
std::string GgufNameOf(const std::string& hf_name);

}  // namespace ite::testing
