// Internals of the CUDA backend (cuda_backend.h), shared by its two source files:
// cuda_backend.cc (set-up, Submit, Collect) and cuda_graphs.cc (the captured part of a step).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda/cuda_model_ops.h"
#include "worker/backend/cuda/device_sequences.h"
#include "worker/backend/cuda/step_layout.h"
#include "worker/backend/sequence_images.h"
#include "worker/backend/step_plan.h"
#include "worker/model/model.h"
#include "worker/model/vision_model.h"

namespace ite::cuda_backend {

constexpr int kRing = 4;             // steps in flight at most (pinned buffers each)
constexpr int32_t kSeqSlots = 8192;  // live sequences at most
constexpr int32_t kMaxPenaltyTokens = 1 << 20;
constexpr int64_t kReserveBytes = 512ll << 20;  // left free for cuBLAS, graphs and the driver

inline int64_t ElapsedUs(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

// Smallest power of two >= n (n >= 1).
inline int32_t Pow2(int32_t n) {
  int32_t p = 1;
  while (p < n) p *= 2;
  return p;
}

struct GraphKey {
  int32_t batch;
  int32_t max_blocks;
  bool greedy;
  auto operator<=>(const GraphKey&) const = default;
};

// One submitted step, until Collect hands its output back.
struct InFlight {
  int ring = 0;
  cudaEvent_t start = nullptr;
  cudaEvent_t done = nullptr;
  std::vector<std::pair<int64_t, uint64_t>> samples;  // (seq id, epoch) per sampled row
  bool absorbed = false;
  bool synchronous = false;  // logits or logprobs asked for: finished inside Submit
  ForwardOutput output;      // of a synchronous step
};

class CudaBackend final : public Backend {
 public:
  CudaBackend(LoadedModel model, const CudaBackendOptions& options)
      : model_(std::move(model)), options_(options), seqs_(kSeqSlots) {}
  ~CudaBackend() override;

  Status Init();

  const ModelConfig& config() const override { return model_.config; }
  int32_t block_size() const override { return ops_->block_size(); }
  int32_t num_blocks() const override { return ops_->num_blocks(); }
  std::string device() const override { return device_; }

  Status AddSequence(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
                     int32_t generated) override {
    std::lock_guard<std::mutex> lock(mu_);
    return seqs_.Add(seq_id, params, context, generated);
  }
  Status SetSequenceImages(int64_t seq_id, std::vector<StepImage> images,
                           std::span<const int32_t> context) override {
    std::lock_guard<std::mutex> lock(mu_);
    return images_->Set(seq_id, std::move(images), context);
  }
  void ReleaseSequence(int64_t seq_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    seqs_.Release(seq_id);
    images_->Release(seq_id);
  }
  void ClearSequences() override {
    std::lock_guard<std::mutex> lock(mu_);
    seqs_.Clear();
    images_->Clear();
  }
  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) override;
  Status Submit(const ForwardBatch& batch) override;
  bool failed() const override { return failed_.load(); }
  StatusOr<ForwardOutput> Collect() override;

 private:
  Status InitKv();
  // The fewest KV blocks any rank of the tensor-parallel group can hold (start-up only).
  StatusOr<int64_t> GroupMinBlocks(int64_t blocks);
  // Submit's work; `*enqueued` turns true once anything went to the GPU, after which a failure
  // leaves the device in an unknown state.
  Status SubmitStep(const ForwardBatch& batch, bool* enqueued);
  Status WarmUpGraphs();
  DeviceStep View(const StepLayout& l, const StepSizes& s, bool decode, int32_t max_q_len,
                  bool logit_identity);
  // Feeds the tokens, runs the model, samples the `samples` rows of `logits` and stores the
  // sampled tokens; the part of a step a CUDA graph captures.
  // Feeds the step's tokens from the last-token array and runs the model.
  Status RunModel(const DeviceStep& step);
  // Penalties (when asked), then a draw or argmax over `samples` rows of `logits`, and the
  // sampled tokens into the last-token array. RunModel + SampleRows is what a graph captures.
  Status SampleRows(const StepLayout& l, float* logits, int32_t samples, bool greedy,
                    bool penalties);
  StatusOr<cudaGraphExec_t> Capture(const GraphKey& key);
  void FillPadding(const GraphKey& key, int32_t from_seq, void* host);
  Status Absorb(InFlight* f, bool wait);
  cudaEvent_t TakeEvent();
  void GiveEvent(cudaEvent_t e);
  // The output of a step already finished: tokens, requested logits, logprobs from the
  // penalised sampled rows copied to the host.
  Status FinishSynchronous(InFlight* f, bool want_logits, bool logprobs);

  LoadedModel model_;
  CudaBackendOptions options_;
  std::string device_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaModelOps> ops_;
  std::unique_ptr<Model> net_;
  std::unique_ptr<VisionModel> vision_;  // LLaVA only
  PlanLimits limits_;
  int32_t max_blocks_ = 0;  // block-table stride bound: the longest sequence's blocks
  int num_sms_ = 1;

  std::atomic<bool> failed_{false};
  std::mutex mu_;  // everything below; Collect waits for the GPU without it
  std::condition_variable ring_cv_;
  DeviceSequences seqs_;
  std::unique_ptr<SequenceImages> images_;  // features in device memory, [image_tokens, hidden]
  StepPlan plan_;
  std::deque<InFlight> in_flight_;
  bool ring_busy_[kRing] = {};
  PinnedBuffer plan_host_[kRing];
  PinnedBuffer tokens_host_[kRing];  // int32 [max_seqs] sampled tokens per step
  DeviceBuffer plan_dev_;
  DeviceBuffer last_tokens_;    // int32 [kSeqSlots]
  DeviceBuffer sampled_;        // int32 [max_seqs]
  DeviceBuffer sample_logits_;  // fp32 [max_seqs, vocab], when sampled rows are not the logit rows
  DeviceBuffer copy_pairs_;     // int32 src then dst, for CopyBlocks
  std::vector<int32_t> copy_host_;
  std::map<GraphKey, cudaGraphExec_t> graphs_;
  std::vector<int32_t> ladder_;
  std::vector<cudaEvent_t> free_events_;
  cudaEvent_t prev_end_ = nullptr;  // the last collected step's end, for the idle time
  std::vector<int32_t> pen_tokens_, pen_counts_;
  PinnedBuffer logits_host_;  // requested logits rows of a synchronous step
  PinnedBuffer probs_host_;   // penalised sampled rows whose logprobs are asked for
  std::vector<int32_t> scratch_;
};

}  // namespace ite::cuda_backend
