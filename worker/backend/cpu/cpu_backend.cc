#include "worker/backend/cpu/cpu_backend.h"

#include <deque>
#include <mutex>

#include "worker/backend/cpu/cpu_model_ops.h"
#include "worker/backend/host_sequences.h"
#include "worker/backend/sequence_images.h"
#include "worker/model/model.h"
#include "worker/model/vision_model.h"

namespace ite {
namespace {

// Runs each step to completion inside Submit; Collect hands the outputs back in order.
class CpuBackend final : public Backend {
 public:
  CpuBackend(LoadedModel model, int num_threads)
      : model_(std::move(model)),
        ops_(model_.config, num_threads),
        images_(model_.config.vision ? &*model_.config.vision : nullptr,
                sizeof(float) * model_.config.hidden_size) {}

  Status Init(const KvCacheOptions& kv) {
    ITE_ASSIGN_OR_RETURN(net_, CreateModel(model_.config, model_.weights, &ops_));
    if (model_.config.vision) {
      ITE_ASSIGN_OR_RETURN(vision_, CreateVisionModel(model_.config, model_.weights.vision, &ops_));
    }
    return ops_.InitKv(kv);
  }

  void set_communicator(Communicator* comm) { ops_.set_communicator(comm); }

  const ModelConfig& config() const override { return model_.config; }
  int32_t block_size() const override { return ops_.block_size(); }
  int32_t num_blocks() const override { return ops_.num_blocks(); }
  std::string device() const override { return "cpu"; }

  Status AddSequence(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
                     int32_t generated) override {
    seqs_.Add(seq_id, params, context, generated);
    return Status::Ok();
  }
  Status SetSequenceImages(int64_t seq_id, std::vector<StepImage> images,
                           std::span<const int32_t> context) override {
    return images_.Set(seq_id, std::move(images), context);
  }
  void ReleaseSequence(int64_t seq_id) override {
    seqs_.Release(seq_id);
    images_.Release(seq_id);
  }
  void ClearSequences() override {
    seqs_.Clear();
    images_.Clear();
  }

  Status CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) override {
    return ops_.CopyBlocks(src, dst);
  }

  Status Submit(const ForwardBatch& batch) override {
    const int64_t idle_us = timer_.Begin();
    const PlanLimits limits{model_.config.vocab_size, model_.config.max_position, ops_.block_size(),
                            ops_.num_blocks()};
    ITE_RETURN_IF_ERROR(PlanStep(batch, limits, &plan_));
    ITE_RETURN_IF_ERROR(seqs_.FeedDecodes(&plan_));
    ITE_RETURN_IF_ERROR(images_.Prepare(
        &plan_, [&](std::span<const float> pixels) -> StatusOr<std::shared_ptr<void>> {
          const VisionConfig& v = *model_.config.vision;
          std::shared_ptr<float[]> features(
              new float[static_cast<size_t>(v.image_tokens()) * model_.config.hidden_size]);
          ITE_RETURN_IF_ERROR(vision_->Encode(
              &ops_, pixels, {features.get(), v.image_tokens(), model_.config.hidden_size}));
          return std::shared_ptr<void>(features, features.get());
        }));
    ops_.SetPlan(&plan_);
    ITE_RETURN_IF_ERROR(net_->Forward(&ops_));
    ForwardOutput out;
    out.device_idle_us = idle_us;
    seqs_.SampleChunks(plan_, ops_.logits(), model_.config.vocab_size, &out);
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      done_.push_back(std::move(out));
    }
    timer_.End();
    return Status::Ok();
  }

  StatusOr<ForwardOutput> Collect() override {
    std::lock_guard<std::mutex> lock(done_mu_);
    if (done_.empty()) return FailedPrecondition("Collect without a submitted step");
    ForwardOutput out = std::move(done_.front());
    done_.pop_front();
    return out;
  }

 private:
  LoadedModel model_;  // owns the weights (often the file's memory map) the ops point into
  CpuModelOps ops_;
  std::unique_ptr<Model> net_;
  std::unique_ptr<VisionModel> vision_;  // LLaVA only
  HostSequences seqs_;
  SequenceImages images_;
  StepPlan plan_;
  std::mutex done_mu_;  // Collect may run on another thread than Submit
  std::deque<ForwardOutput> done_;
  HostStepTimer timer_;
};

}  // namespace

StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(LoadedModel model, const KvCacheOptions& kv,
                                                    int num_threads, Communicator* comm) {
  ITE_RETURN_IF_ERROR(ValidateModelConfig(model.config));
  ITE_RETURN_IF_ERROR(CheckShardCommunicator(model.config, comm));
  auto backend = std::make_unique<CpuBackend>(std::move(model), num_threads);
  backend->set_communicator(comm);
  ITE_RETURN_IF_ERROR(backend->Init(kv));
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace ite
