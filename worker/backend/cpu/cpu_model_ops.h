// ModelOps on the host: fp32 activations and accumulation over F32 or BF16 weights (BF16 is
// widened as it is read: half the memory traffic of F32), or weights in ggml block formats
// multiplied as they are stored (quant_matmul.h). The reference the CUDA ops are tested against.
// Weights are used where the loader put them (often the file's memory map); F16 and the norms
// are converted to fp32 once. The paged KV pool (fp32, or bf16 as an option) is allocated once.
#pragma once

#include <memory>
#include <vector>

#include "common/thread_pool.h"
#include "worker/backend/backend.h"
#include "worker/backend/cpu/cpu_ops.h"
#include "worker/backend/cpu/quant_matmul.h"
#include "worker/backend/step_plan.h"
#include "worker/model/model_ops.h"
#include "worker/parallel/communicator.h"

namespace ite {

class CpuModelOps final : public ModelOps {
 public:
  CpuModelOps(const ModelConfig& config, int num_threads);

  // Allocates the KV pool; at least one block or an error.
  Status InitKv(const KvCacheOptions& kv);
  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }

  // The step Model::Forward runs next; `plan` (decode tokens filled in) must outlive it.
  void SetPlan(const StepPlan* plan) { plan_ = plan; }
  // The tensor-parallel group (host buffers) when the config is a shard; must outlive the ops.
  void set_communicator(Communicator* comm) { comm_ = comm; }
  // [num_logit_rows, vocab] after Forward.
  const float* logits() const { return logits_.data(); }

  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst);

  StatusOr<OpWeight> LoadMatrix(const Tensor& w, const Tensor& bias,
                                const std::string& name) override;
  StatusOr<OpWeight> LoadVector(const Tensor& v, const std::string& name) override;
  StatusOr<OpWeight> LoadTable(const Tensor& table, const std::string& name) override;
  StatusOr<OpWeight> LoadNormedMatrix(const Tensor& norm, const Tensor& w, const Tensor& bias,
                                      const std::string& name) override;

  int32_t num_tokens() const override { return plan_->num_rows(); }
  int32_t num_logit_rows() const override { return static_cast<int32_t>(plan_->logit_rows.size()); }
  Activation Buffer(ActBuffer which, int32_t rows, int32_t cols) override;

  Status Embedding(const OpWeight& table, Activation out) override;
  Status Linear(Activation x, const OpWeight& w, Activation out) override;
  Status LinearAdd(Activation x, const OpWeight& w, Activation residual) override;
  Status NormLinearRopeKv(int32_t layer, Activation x, const OpWeight& w, float eps,
                          Activation qkv) override;
  Status Attention(int32_t layer, Activation qkv, Activation out) override;
  Status NormLinearSiluMul(Activation x, const OpWeight& w, float eps, Activation out) override;
  Status NormLogitRows(Activation x, const OpWeight& w, float eps, Activation out) override;
  Status LmHead(Activation x, const OpWeight& w) override;
  Status LinearAllReduceAdd(Activation x, const OpWeight& w, Activation residual) override;
  Status LmHeadShard(Activation x, const OpWeight& w, int32_t vocab_begin, int32_t vocab) override;

  Status UploadRows(const float* host, Activation out) override;
  Status LayerNorm(Activation x, const OpWeight& w, const OpWeight& b, float eps,
                   Activation out) override;
  Status Add(Activation x, Activation y) override;
  Status AddTable(Activation x, const OpWeight& table) override;
  Status Activate(Activation x, ActFn fn) override;
  Status DenseAttention(Activation qkv, int32_t num_heads, Activation out) override;
  Activation Rows(Activation x, int32_t row0, int32_t rows) override;

 private:
  const float* Fp32(const Tensor& t);  // t itself when F32, else a converted copy
  StatusOr<const cpu::QuantMatrix*> Quant(const Tensor& t, const std::string& name);
  cpu::PagedKv LayerKv(int32_t layer);
  // The steps the fused operators are made of, one pass each.
  Activation Normed(Activation x, const OpWeight& w, float eps);  // RmsNorm(x) * w.norm
  void RopeKvWrite(int32_t layer, Activation qkv);

  ModelConfig config_;
  ThreadPool pool_;
  std::vector<float> inv_freq_;
  std::vector<std::unique_ptr<float[]>> owned_;  // converted weights
  // Block-format weights: OpWeight::data of a quantized dtype points to one of these.
  std::vector<std::unique_ptr<cpu::QuantMatrix>> quant_;
  const cpu::QuantKernels* quant_kernels_;
  cpu::QuantScratch quant_scratch_;
  const StepPlan* plan_ = nullptr;

  int32_t block_size_ = 0;
  int32_t num_blocks_ = 0;
  int64_t block_floats_ = 0;  // elements of one block of K (or V) of one layer
  bool kv_bf16_ = false;
  // Per layer: K blocks then V blocks, fp32 or bf16 (kv_bf16_).
  std::unique_ptr<float[]> kv_pool_;
  std::unique_ptr<uint16_t[]> kv_pool16_;

  std::vector<float> buffers_[static_cast<int>(ActBuffer::kCount)];
  std::vector<float> q_, k_, v_;  // RopeKvWrite's split of the fused QKV, Q rotated
  std::vector<float> logits_;
  Communicator* comm_ = nullptr;
  std::vector<float> shard_logits_;  // LmHeadShard: this rank's columns before the gather
};

}  // namespace ite
