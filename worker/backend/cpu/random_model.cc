#include "worker/backend/cpu/random_model.h"

#include <cstring>
#include <random>

namespace ite {

ModelConfig TinyRandomConfig(bool qkv_bias) {
  ModelConfig c;
  c.arch = qkv_bias ? ModelArch::kQwen2 : ModelArch::kLlama;
  c.vocab_size = 97;
  c.hidden_size = 32;
  c.intermediate_size = 48;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.max_position = 64;
  c.qkv_bias = qkv_bias;
  return c;
}

Tensor RandomTensor(DType dtype, std::vector<int64_t> shape, std::mt19937* rng, float mean,
                    float stddev) {
  void* p = nullptr;
  Tensor t = AllocTensor(dtype, std::move(shape), &p);
  std::normal_distribution<float> dist(mean, stddev);
  for (int64_t i = 0; i < t.numel(); ++i) {
    float f = dist(*rng);
    if (dtype == DType::kF32) {
      static_cast<float*>(p)[i] = f;
    } else {
      uint32_t bits;
      std::memcpy(&bits, &f, 4);
      static_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(bits >> 16);
    }
  }
  return t;
}

LoadedModel RandomModel(const ModelConfig& c, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  LoadedModel m;
  m.config = c;
  m.format = "test";
  m.weights.token_embedding = RandomTensor(dtype, {c.vocab_size, c.hidden_size}, &rng, 0, 1);
  for (int l = 0; l < c.num_layers; ++l) {
    LayerWeights lw;
    lw.attn_norm = RandomTensor(dtype, {c.hidden_size}, &rng, 1, 0.1f);
    lw.wqkv = RandomTensor(dtype, {c.qkv_dim(), c.hidden_size}, &rng, 0, 0.3f);
    if (c.qkv_bias) lw.bqkv = RandomTensor(dtype, {c.qkv_dim()}, &rng, 0, 0.3f);
    lw.wo = RandomTensor(dtype, {c.hidden_size, c.q_dim()}, &rng, 0, 0.2f);
    lw.ffn_norm = RandomTensor(dtype, {c.hidden_size}, &rng, 1, 0.1f);
    lw.w_gate_up = RandomTensor(dtype, {2 * c.intermediate_size, c.hidden_size}, &rng, 0, 0.2f);
    lw.w_down = RandomTensor(dtype, {c.hidden_size, c.intermediate_size}, &rng, 0, 0.2f);
    m.weights.layers.push_back(lw);
  }
  m.weights.final_norm = RandomTensor(dtype, {c.hidden_size}, &rng, 1, 0.1f);
  m.weights.lm_head = RandomTensor(dtype, {c.vocab_size, c.hidden_size}, &rng, 0, 0.2f);
  return m;
}

}  // namespace ite
