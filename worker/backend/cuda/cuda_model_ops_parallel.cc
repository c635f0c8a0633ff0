// The tensor-parallel operators of CudaModelOps, apart from the single-GPU ones: collectives on
// the ops' stream through the group's Communicator (NCCL in the service, so a captured decode
// graph holds them).
#include "worker/backend/cuda/cuda_model_ops.h"

#include "ite/kernels/gemm.h"

namespace ite {

namespace {
DType ActDType(kernels::DType d) { return d == kernels::DType::kF16 ? DType::kF16 : DType::kBF16; }
}  // namespace

Status CudaModelOps::InitParallel() {
  if (config_.shard.size <= 1) return Status::Ok();
  ITE_RETURN_IF_ERROR(CheckShardCommunicator(config_, options_.comm));
  ITE_RETURN_IF_ERROR(shard_partial_.Allocate(
      static_cast<size_t>(options_.max_rows) * config_.hidden_size * 2, "tensor-parallel partial"));
  return shard_logits_.Allocate(
      static_cast<size_t>(options_.max_logit_rows) * config_.shard.lm_head_rows * sizeof(float),
      "tensor-parallel logits");
}

// The product goes to a buffer of its own, is summed over the ranks there, and joins the
// residual after: the single-GPU LinearAdd adds inside the GEMM, which a partial sum cannot.
Status CudaModelOps::LinearAllReduceAdd(Activation x, const OpWeight& w, Activation residual) {
  if (options_.comm == nullptr)
    return FailedPrecondition("LinearAllReduceAdd: no tensor-parallel group");
  if (static_cast<size_t>(x.rows) * w.rows * 2 > shard_partial_.bytes())
    return InvalidArgument("LinearAllReduceAdd: [{}, {}] exceeds the partial buffer", x.rows,
                           w.rows);
  Activation partial{shard_partial_.get(), x.rows, w.rows};
  ITE_RETURN_IF_ERROR(Linear(x, w, partial));
  ITE_RETURN_IF_ERROR(options_.comm->AllReduceSum(
      partial.data, static_cast<int64_t>(x.rows) * w.rows, ActDType(options_.dtype), stream_));
  return Add(residual, partial);
}

// Each rank writes its columns into zeroed logits and one all-reduce of the whole rows gathers
// them: exact (the other ranks add zeros) and the same on every rank, so every rank's sampler
// draws the same tokens. It moves size times the bytes of an all-gather, which for the rows a
// decode step samples is small next to the layers' all-reduces.
Status CudaModelOps::LmHeadShard(Activation x, const OpWeight& w, int32_t vocab_begin,
                                 int32_t vocab) {
  if (options_.comm == nullptr) return FailedPrecondition("LmHeadShard: no tensor-parallel group");
  if (vocab_begin < 0 || vocab_begin + w.rows > vocab || vocab != config_.vocab_size ||
      x.rows > options_.max_logit_rows ||
      static_cast<size_t>(x.rows) * w.rows * sizeof(float) > shard_logits_.bytes())
    return InvalidArgument("LmHeadShard: {} rows of vocabulary [{}, {}) of {}", x.rows, vocab_begin,
                           vocab_begin + w.rows, vocab);
  kernels::GemmArgs g = Args(x, w, shard_logits_.get());
  g.bias = nullptr;
  g.out_f32 = true;
  ITE_RETURN_IF_ERROR(gemm_->Run(g, stream_));
  const size_t row_bytes = static_cast<size_t>(vocab) * sizeof(float);
  ITE_CUDA_TRY(cudaMemsetAsync(logits_.get(), 0, x.rows * row_bytes, stream_));
  ITE_CUDA_TRY(cudaMemcpy2DAsync(logits_.as<float>() + vocab_begin, row_bytes, shard_logits_.get(),
                                 w.rows * sizeof(float), w.rows * sizeof(float), x.rows,
                                 cudaMemcpyDeviceToDevice, stream_));
  return options_.comm->AllReduceSum(logits_.get(), static_cast<int64_t>(x.rows) * vocab,
                                     DType::kF32, stream_);
}

}  // namespace ite
