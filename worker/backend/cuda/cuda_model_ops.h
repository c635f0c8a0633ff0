// ModelOps on one GPU: bf16 (or fp16) weights and activations, fp32 accumulation, the kernels of
// kernels/ and cuBLASLt GEMMs, all enqueued on one stream. Weights are uploaded once (a tied LM
// head shares the embedding's copy); scratch activations are allocated once for the largest
// step, so a captured CUDA graph keeps its addresses. The paged KV pool is one allocation:
// per layer a K plane and a V plane of [num_blocks, block_size, num_kv_heads, head_dim].
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include "ite/kernels/attention.h"
#include "ite/kernels/decoder_stack.h"
#include "ite/kernels/gemm.h"
#include "ite/kernels/kernel_types.h"
#include "ite/kernels/norm.h"
#include "worker/backend/cuda/cuda_memory.h"
#include "worker/backend/step_plan.h"
#include "worker/model/model_config.h"
#include "worker/model/model_ops.h"
#include "worker/parallel/communicator.h"

namespace ite {
// The device view of the step Model::Forward runs next: pointers into the backend's device copy
// of the step layout.
struct DeviceStep {
  int32_t num_rows = 0;
  int32_t num_seqs = 0;
  int32_t num_logit_rows = 0;
  int32_t* tokens = nullptr;              // [num_rows], fed before the forward
  const int32_t* positions = nullptr;     // [num_rows]
  const int32_t* kv_slots = nullptr;      // [num_rows]
  const int32_t* cu_seqlens = nullptr;    // [num_seqs + 1]
  const int32_t* kv_lens = nullptr;       // [num_seqs]
  const int32_t* block_tables = nullptr;  // [num_seqs, max_blocks]
  const int32_t* logit_rows = nullptr;    // [num_logit_rows]; null: every token row, in order
  int32_t max_blocks = 0;
  int32_t max_q_len = 0;
  bool decode = false;     // one token per sequence: split-KV flash-decoding
  int32_t num_splits = 1;  // for decode
};

// Block-table tokens up to which a one-sequence decode takes DecodeAttentionOut: that kernel
// splits a kv head's context over one cluster (16 blocks at most), where the separate attention
// kernel splits long contexts further, so past the block tables a graph is captured with at
// start-up the separate kernels are kept.
constexpr int32_t kAttentionOutMaxContext = 1024;

struct CudaOpsOptions {
  kernels::DType dtype = kernels::DType::kBF16;
  int32_t max_rows = 8192;            // token rows of the largest step
  int32_t max_seqs = 256;             // sequences of the largest step
  int32_t max_logit_rows = 256;       // rows of logits one step may compute
  int32_t max_splits = 128;           // decode splits the workspace is sized for
  int64_t expected_weight_bytes = 0;  // for the loading progress log (0: no progress lines)
  // A row's result independent of the other rows of its step: one GEMM algorithm per weight
  // (kernels/gemm.h), and every step's attention through the prefill kernel, whose per-query
  // arithmetic does not depend on the other queries (the decode kernel's splits follow the
  // batch, and a decode in a mixed step would take the other kernel).
  bool batch_invariant = false;
  // A one-token decode step's layers as one persistent kernel (kernels/decoder_stack.h) where
  // the device and the model take it and ITE_DECODER_STACK=1 asks for it (experimental: slower
  // than the five kernels a layer today); off: five kernels a layer.
  bool fused_decoder_stack = true;
  // A one-sequence decode step's attention, O product and residual add as one kernel
  // (kernels/attention.h, DecodeAttentionOut) where the device and the model take it, up to
  // kAttentionOutMaxContext tokens of block table, and ITE_ATTENTION_OUT=1 asks for it
  // (experimental: slower than the two kernels it replaces today, docs/perf.md).
  bool attention_out = true;
  // The tensor-parallel group (device buffers, this ops' stream) when the config is a shard;
  // must outlive the ops.
  Communicator* comm = nullptr;
};

class CudaModelOps final : public ModelOps {
 public:
  static StatusOr<std::unique_ptr<CudaModelOps>> Create(const ModelConfig& config,
                                                        const CudaOpsOptions& options,
                                                        cudaStream_t stream);
  ~CudaModelOps() override;

  // Bytes of one KV block over all layers (K and V).
  int64_t kv_block_bytes(int32_t block_size) const;
  Status InitKv(int32_t block_size, int32_t num_blocks);
  int32_t block_size() const { return block_size_; }
  int32_t num_blocks() const { return num_blocks_; }
  // Whole-block copies, src[i] -> dst[i] (device arrays), every layer, K and V.
  Status CopyBlocks(const int32_t* src, const int32_t* dst, int32_t pairs);

  void SetStep(const DeviceStep& step) { step_ = step; }
  // Rows Embedding takes from image features (device memory) instead of the table; `embeds`
  // (the backend's StepPlan::embeds) must outlive the ops.
  void SetEmbeds(const std::vector<EmbedRun>* embeds) { embeds_ = embeds; }
  // fp32 logits [max_logit_rows, vocab] on the device (LmHead's output).
  float* logits() const { return logits_.as<float>(); }
  int64_t weight_bytes() const { return weight_bytes_; }
  const CudaOpsOptions& options() const { return options_; }

  StatusOr<OpWeight> LoadMatrix(const Tensor& w, const Tensor& bias,
                                const std::string& name) override;
  StatusOr<OpWeight> LoadVector(const Tensor& v, const std::string& name) override;
  StatusOr<OpWeight> LoadTable(const Tensor& table, const std::string& name) override;
  StatusOr<OpWeight> LoadNormedMatrix(const Tensor& norm, const Tensor& w, const Tensor& bias,
                                      const std::string& name) override;

  int32_t num_tokens() const override { return step_.num_rows; }
  int32_t num_logit_rows() const override { return step_.num_logit_rows; }
  Activation Buffer(ActBuffer which, int32_t rows, int32_t cols) override;

  Status Embedding(const OpWeight& table, Activation out) override;
  Status Linear(Activation x, const OpWeight& w, Activation out) override;
  Status LinearAdd(Activation x, const OpWeight& w, Activation residual) override;
  Status NormLinearRopeKv(int32_t layer, Activation x, const OpWeight& w, float eps,
                          Activation qkv) override;
  Status Attention(int32_t layer, Activation qkv, Activation out) override;
  Status AttentionLinearAdd(int32_t layer, Activation qkv, const OpWeight& o, Activation attn,
                            Activation residual) override;
  Status NormLinearSiluMul(Activation x, const OpWeight& w, float eps, Activation out) override;
  Status NormLogitRows(Activation x, const OpWeight& w, float eps, Activation out) override;
  Status LmHead(Activation x, const OpWeight& w) override;
  StatusOr<bool> DecoderStack(Activation x, const std::vector<DecoderLayerWeights>& layers,
                              float eps) override;
  // cuda_model_ops_parallel.cc
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
  CudaModelOps(const ModelConfig& config, const CudaOpsOptions& options, cudaStream_t stream);
  Status Init();
  StatusOr<const void*> Upload(const Tensor& t, const std::string& name);
  kernels::PagedKvCache LayerKv(int32_t layer) const;
  kernels::DecodeAttentionArgs DecodeArgs(int32_t layer, Activation qkv, Activation out) const;
  kernels::RopeKvWriteArgs RopeArgs(int32_t layer) const;
  kernels::GemmArgs Args(Activation x, const OpWeight& w, void* out) const;
  // The model's shapes as the fused decoder stack takes them (no pointers).
  kernels::DecoderStackArgs StackShape() const;
  // RmsNorm(x) * w.norm into the kNormed buffer: the unfused path of the Norm* operators.
  StatusOr<Activation> NormedApart(Activation x, const OpWeight& w, float eps);
  Status InitParallel();  // cuda_model_ops_parallel.cc

  ModelConfig config_;
  CudaOpsOptions options_;
  cudaStream_t stream_;
  std::unique_ptr<kernels::GemmRunner> gemm_;
  std::vector<DeviceBuffer> weights_;
  std::unordered_map<const void*, const void*> uploaded_;  // host data -> device copy
  int64_t weight_bytes_ = 0;
  int64_t uploaded_bytes_ = 0;  // progress logging
  int64_t next_progress_ = 0;
  DeviceBuffer inv_freq_;
  DeviceBuffer buffers_[static_cast<int>(ActBuffer::kCount)];
  size_t buffer_elems_[static_cast<int>(ActBuffer::kCount)] = {};
  DeviceBuffer logits_;
  DeviceBuffer decode_workspace_;
  // One-row products that normalise x copy it into shared memory first (GemmArgs::shared_x).
  bool shared_x_ = false;
  kernels::DecodeAttentionOutPlan attention_out_;  // splits 0: not taken
  DeviceBuffer attention_out_workspace_;           // its partial sums and counters (zeroed once)
  DeviceBuffer stack_workspace_;  // the fused decoder stack's (zeroed once); none: not taken
  DeviceBuffer kv_pool_;
  int32_t block_size_ = 0;
  int32_t num_blocks_ = 0;
  int64_t kv_plane_bytes_ = 0;
  DeviceStep step_;
  const std::vector<EmbedRun>* embeds_ = nullptr;
  DeviceBuffer vision_staging_;  // fp32 [num_positions, patch_dim]: UploadRows' host copy
  DeviceBuffer shard_logits_;    // fp32 [max_logit_rows, lm_head_rows]: LmHeadShard's own columns
  DeviceBuffer shard_partial_;   // [max_rows, hidden]: LinearAllReduceAdd's product before the sum
};

}  // namespace ite
