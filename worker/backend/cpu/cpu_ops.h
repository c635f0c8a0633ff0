// Reference operators of the CPU backend, fp32 everywhere (fp32 accumulation). These are the
// ground truth the CUDA kernels are tested against, so each one is written to be obviously right
// first; the hot ones (matmul, attention) are then multi-threaded and vectorisable.
// All tensors are row-major and contiguous; shapes are given on each argument.
// Operators that take a ThreadPool run single-threaded when it is null (the default).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "worker/model/model_config.h"

namespace ite {
class ThreadPool;
}

namespace ite::cpu {

// out[t, :] = table[ids[t], :]. table [vocab, dim]; out [n, dim].
void Embedding(const float* table, int32_t dim, std::span<const int32_t> ids, float* out);

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. x, out [rows, dim]; may alias.
void RmsNorm(const float* x, const float* weight, int32_t rows, int32_t dim, float eps, float* out);

// residual += x; out = RmsNorm(residual). residual, x, out [rows, dim].
void AddRmsNorm(float* residual, const float* x, const float* weight, int32_t rows, int32_t dim,
                float eps, float* out);

// out[M, N] = x[M, K] @ w[N, K]^T (+ bias[N] when not null).
// The weight rows are split among threads; each weight row is read once for all M rows of x.
void MatMul(const float* x, const float* w, const float* bias, int32_t m, int32_t n, int32_t k,
            float* out, ThreadPool* pool = nullptr);

// Same with BF16 weights (the upper half of an fp32), widened to fp32 on load: half the memory
// traffic of MatMul, which is what bounds batch-1 decoding.
void MatMulBf16(const float* x, const uint16_t* w, const float* bias, int32_t m, int32_t n,
                int32_t k, float* out, ThreadPool* pool = nullptr);

// Inverse frequencies [head_dim / 2] for RoPE, with Llama-3 scaling when config asks for it.
std::vector<float> RopeInvFreq(const ModelConfig& config);

// Rotates q [n, num_heads, head_dim] and k [n, num_kv_heads, head_dim] in place, token t at
// positions[t], rotate_half ("neox") layout: pairs (i, i + head_dim/2).
void Rope(float* q, float* k, std::span<const int32_t> positions, int32_t num_heads,
          int32_t num_kv_heads, int32_t head_dim, std::span<const float> inv_freq);

// out[r, i] = silu(gate_up[r, i]) * gate_up[r, inter + i]. gate_up [rows, 2*inter]; out [rows,
// inter].
void SiluMul(const float* gate_up, int32_t rows, int32_t inter, float* out);

// In-place softmax of each row of x [rows, n].
void Softmax(float* x, int32_t rows, int32_t n);

// Paged KV cache of one layer: [num_blocks, block_size, num_kv_heads, head_dim], fp32 in k/v, or
// bf16 (half the memory; written rounded to nearest even, read widened) in k16/v16 when set.
struct PagedKv {
  float* k = nullptr;
  float* v = nullptr;
  int32_t num_blocks = 0;
  int32_t block_size = 0;
  int32_t num_kv_heads = 0;
  int32_t head_dim = 0;
  uint16_t* k16 = nullptr;
  uint16_t* v16 = nullptr;
};

// Writes k, v [n, num_kv_heads, head_dim] of one sequence, token t at position positions[t],
// into the blocks named by block_table (position p -> block_table[p / block_size], slot p % bs).
void KvWrite(const PagedKv& cache, std::span<const int32_t> block_table,
             std::span<const int32_t> positions, const float* k, const float* v);

// Causal attention of one sequence's new tokens over its paged cache, which already holds the
// new tokens' K/V. q [n, num_heads, head_dim], token t at position start_pos + t attends to
// positions [0, start_pos + t]. GQA: query head h reads kv head h / (num_heads / num_kv_heads).
// out [n, num_heads, head_dim]. scale = 1 / sqrt(head_dim).
void PagedAttention(const PagedKv& cache, std::span<const int32_t> block_table, int32_t start_pos,
                    const float* q, int32_t n, int32_t num_heads, float scale, float* out,
                    ThreadPool* pool = nullptr);

}  // namespace ite::cpu
