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
#include "ite/kernels/rope.h"

namespace ite::kernels {

// What the product does with its results. Only kStore and kAccumulate run at every m; the
// others (and rms_norm_x) exist for the weight-streaming kernel of 1-4 rows, where they save a
// kernel each (see GemmRunner::Fuses): a decode step is a chain of short kernels.
enum class GemmEpilogue : uint8_t {
  kStore,       // out = x w^T (+ bias)
  kAccumulate,  // out += x w^T (+ bias), out in the input dtype (the residual stream)
  // w = [gate; up], [2 i, k]: out [m, i] = silu(x gate^T) * (x up^T)
  kSiluMul,
  // w = Wqkv: out = qkv [m, n] with RoPE applied to Q and K, and K and V of each row written
  // to the paged cache at its slot, as RopeKvWrite does (`rope` gives positions, slots, cache)
  kRopeKv,
};

// Products of up to this many rows run as weight-streaming kernels (kernels/gemv.cu); at one row,
// x in shared memory (GemmArgs::shared_x) is taken while k floats fit kGemvSharedXBytes: the
// 48 KB a block gets without asking, less 1 KB for the kernel's own shared arrays.
constexpr int32_t kGemvMaxRows = 4;
constexpr int64_t kGemvSharedXBytes = (48 << 10) - (1 << 10);

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
  GemmEpilogue epilogue = GemmEpilogue::kStore;
  // Each row of x is replaced by RmsNorm(x) * norm_weight (rms over its k values, + eps)
  // before the product, as kernels::RmsNorm would write it but without rounding it to dtype.
  bool rms_norm_x = false;
  const void* norm_weight = nullptr;  // [k]
  float eps = 0.0f;
  const RopeKvWriteArgs* rope = nullptr;  // kRopeKv; its qkv and num_tokens are not read
  // Products of one row: x copied into shared memory (as fp32, normalised) before the product,
  // where k floats fit kGemvSharedXBytes (other products ignore it); its results differ from the
  // other way only by the rounding of the rms. For long k this is faster for the normalised
  // products and the LM head; the CUDA ops take it for those where every k of the model is long,
  // and not for the residual-adding ones, which were faster reading x from global memory
  // (docs/perf.md).
  bool shared_x = false;
  // Products of 1-4 rows: at most this many blocks a multiprocessor, each block then taking
  // several groups of output units in turn (0: one block per group, the default). Every capped
  // grid measured was slower (docs/perf.md); kept for measuring, and the results are the same
  // bits either way.
  int32_t max_blocks_per_sm = 0;
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

  // out = x @ w^T (+ bias), with args' epilogue.
  Status Run(const GemmArgs& args, cudaStream_t stream);

  // Whether Run takes `args` with their fused work (kSiluMul, kRopeKv, rms_norm_x): products of
  // 1-4 rows outside batch-invariant mode. Otherwise the caller runs that work apart.
  bool Fuses(const GemmArgs& args) const;

  // Number of distinct shapes whose plan is cached (for tests and logs).
  size_t cached_plans() const;

 private:
  struct Impl;
  explicit GemmRunner(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ite::kernels
