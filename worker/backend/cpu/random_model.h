// Test helper: a tiny Llama/Qwen2-shaped model with random weights (F32 or BF16), for tests that
// need a Backend without a model file.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "worker/model/model_loader.h"

namespace ite {

// vocab 97, hidden 32, intermediate 48, 2 layers, 4 heads / 2 KV heads of 8, context 64.
ModelConfig TinyRandomConfig(bool qkv_bias);

// Normal(mean, stddev) values; BF16 by truncation.
Tensor RandomTensor(DType dtype, std::vector<int64_t> shape, std::mt19937* rng, float mean,
                    float stddev);

LoadedModel RandomModel(const ModelConfig& config, DType dtype, uint32_t seed);

}  // namespace ite
