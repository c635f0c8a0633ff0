// Dense GEMMs through cuBLASLt: bf16/fp16 inputs, fp32 accumulation, with the algorithm and
// its descriptors chosen once per shape and cached. Products of 1-4 rows (decode of small
// batches) run a weight-streaming kernel of our own instead (kernels/gemv.cu).
//
// Batch-invariant mode: cuBLASLt picks its algorithm (tile shape, split-K) by the number of rows,
// so a row's result depends on how many other rows share the product, and a request's output on
// the batch it ran in. With batch_invariant the algorithm is chosen once per weight shape
// (n, k), without any split of k, and used for every m: each output element is then the same
// chain of operations whatever m is. Slower where another m would have picked better.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "ite/kernels/kernel_types.h"

namespace ite::kernels {

struct GemmArgs {
  DType dtype = DType::kBF16;
  const void* x = nullptr;     // [m, k] activations, row-major
  const void* w = nullptr;     // [n, k] weight (nn.Linear layout), row-major
  const void* bias = nullptr;  // [n] or null; only with out_f32 == false
  void* out = nullptr;         // [m, n]: dtype, or fp32 when out_f32 (logits)
  bool out_f32 = false;
  int32_t m = 0;
  int32_t n = 0;
  int32_t k = 0;
};

// Not thread-safe: one runner per stream (a worker has one).
class GemmRunner {
 public:
  // workspace_bytes of device memory are allocated once and offered to every algorithm.
  static StatusOr<std::unique_ptr<GemmRunner>> Create(size_t workspace_bytes = 32u << 20,
                                                      bool batch_invariant = false);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  // out = x @ w^T (+ bias).
  Status Run(const GemmArgs& args, cudaStream_t stream);

  // Number of distinct shapes whose plan is cached (for tests and logs).
  size_t cached_plans() const;

 private:
  struct Impl;
  explicit GemmRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ite::kernels
