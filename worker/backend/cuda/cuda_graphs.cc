// The part of a CUDA-backend step that a CUDA graph captures (token feed, model, sampling),
// the capture itself, and the warm-up that captures the decode ladder at start-up.
#include <algorithm>
#include <cstring>

#include "common/env_flag.h"
#include "common/logging.h"
#include "ite/kernels/attention.h"
#include "ite/kernels/sampling.h"
#include "ite/kernels/step_io.h"
#include "worker/backend/cuda/cuda_backend_impl.h"

namespace ite::cuda_backend {

DeviceStep CudaBackend::View(const StepLayout& l, const StepSizes& s, bool decode,
                             int32_t max_q_len, bool logit_identity) {
  void* base = plan_dev_.get();
  DeviceStep d;
  d.num_rows = s.rows;
  d.num_seqs = s.seqs;
  d.num_logit_rows = logit_identity ? s.rows : s.logit_rows;
  d.tokens = StepLayout::At<int32_t>(base, l.tokens);
  d.positions = StepLayout::At<int32_t>(base, l.positions);
  d.kv_slots = StepLayout::At<int32_t>(base, l.kv_slots);
  d.cu_seqlens = StepLayout::At<int32_t>(base, l.cu_seqlens);
  d.kv_lens = StepLayout::At<int32_t>(base, l.kv_lens);
  d.block_tables = StepLayout::At<int32_t>(base, l.block_tables);
  d.logit_rows = logit_identity ? nullptr : StepLayout::At<int32_t>(base, l.logit_rows);
  d.max_blocks = s.max_blocks;
  d.max_q_len = max_q_len;
  d.decode = decode;
  if (decode) {
    // Splits chosen for the batch a graph would pad to, so that eager and graph decodes of the
    // same sequences run the same attention and agree bit for bit.
    const auto pad = std::lower_bound(ladder_.begin(), ladder_.end(), s.seqs);
    const int32_t batch = pad == ladder_.end() ? s.seqs : *pad;
    const ModelConfig& c = model_.config;
    // ITE_DECODE_SPLITS=N in the environment forces N splits (for measuring).
    static const int32_t forced = EnvInt("ITE_DECODE_SPLITS", 0);
    d.num_splits = std::min(
        ops_->options().max_splits,
        forced > 0 ? forced
                   : kernels::DecodeNumSplits(batch, c.num_heads, c.num_kv_heads, c.head_dim,
                                              s.max_blocks * ops_->block_size(), num_sms_));
  }
  return d;
}

Status CudaBackend::RunModel(const DeviceStep& step) {
  ITE_RETURN_IF_ERROR(
      kernels::FeedTokens(step.tokens, last_tokens_.as<int32_t>(), step.num_rows, stream_));
  ops_->SetStep(step);
  return net_->Forward(ops_.get());
}

Status CudaBackend::SampleRows(const StepLayout& l, float* logits, int32_t samples, bool greedy,
                               bool penalties) {
  if (samples == 0) return Status::Ok();
  void* base = plan_dev_.get();
  const int32_t vocab = model_.config.vocab_size;
  if (penalties) {
    kernels::PenaltyArgs p;
    p.logits = logits;
    p.batch = samples;
    p.vocab = vocab;
    p.token_ids = StepLayout::At<int32_t>(base, l.pen_tokens);
    p.output_counts = StepLayout::At<int32_t>(base, l.pen_counts);
    p.offsets = StepLayout::At<int32_t>(base, l.pen_offsets);
    p.repetition = StepLayout::At<float>(base, l.repetition);
    p.presence = StepLayout::At<float>(base, l.presence);
    p.frequency = StepLayout::At<float>(base, l.frequency);
    ITE_RETURN_IF_ERROR(kernels::ApplyPenalties(p, stream_));
  }
  if (greedy) {
    ITE_RETURN_IF_ERROR(
        kernels::Argmax(logits, samples, vocab, sampled_.as<int32_t>(), nullptr, stream_));
  } else {
    kernels::SamplingArgs a;
    a.logits = logits;
    a.batch = samples;
    a.vocab = vocab;
    a.temperature = StepLayout::At<float>(base, l.temperature);
    a.top_k = StepLayout::At<int32_t>(base, l.top_k);
    a.top_p = StepLayout::At<float>(base, l.top_p);
    a.min_p = StepLayout::At<float>(base, l.min_p);
    a.seeds = StepLayout::At<uint64_t>(base, l.seeds);
    a.steps = StepLayout::At<uint64_t>(base, l.steps);
    a.tokens = sampled_.as<int32_t>();
    ITE_RETURN_IF_ERROR(kernels::Sample(a, stream_));
  }
  return kernels::StoreSampledTokens(sampled_.as<int32_t>(),
                                     StepLayout::At<int32_t>(base, l.sample_slots), samples,
                                     last_tokens_.as<int32_t>(), stream_);
}

// Padding rows of a graph batch: token 0 at position 0, no KV write, a one-token context in
// block 0 (zeroed at start-up), no sampled token kept.
void CudaBackend::FillPadding(const GraphKey& key, int32_t from_seq, void* host) {
  StepSizes s{key.batch, key.batch, key.max_blocks, 0, key.batch, 0};
  const StepLayout l = StepLayout::For(s);
  for (int32_t b = from_seq; b < key.batch; ++b) {
    StepLayout::At<int32_t>(host, l.tokens)[b] = 0;
    StepLayout::At<int32_t>(host, l.positions)[b] = 0;
    StepLayout::At<int32_t>(host, l.kv_slots)[b] = -1;
    StepLayout::At<int32_t>(host, l.cu_seqlens)[b + 1] = b + 1;
    StepLayout::At<int32_t>(host, l.kv_lens)[b] = 1;
    std::memset(StepLayout::At<int32_t>(host, l.block_tables) + size_t(b) * key.max_blocks, 0,
                size_t(key.max_blocks) * 4);
    StepLayout::At<int32_t>(host, l.sample_slots)[b] = -1;
    StepLayout::At<float>(host, l.temperature)[b] = 0.0f;
    StepLayout::At<int32_t>(host, l.top_k)[b] = 0;
    StepLayout::At<float>(host, l.top_p)[b] = 1.0f;
    StepLayout::At<float>(host, l.min_p)[b] = 0.0f;
    StepLayout::At<uint64_t>(host, l.seeds)[b] = 0;
    StepLayout::At<uint64_t>(host, l.steps)[b] = 0;
  }
  if (from_seq == 0) StepLayout::At<int32_t>(host, l.cu_seqlens)[0] = 0;
}

StatusOr<cudaGraphExec_t> CudaBackend::Capture(const GraphKey& key) {
  const StepSizes s{key.batch, key.batch, key.max_blocks, 0, key.batch, 0};
  const StepLayout l = StepLayout::For(s);
  const DeviceStep step = View(l, s, /*decode=*/true, 1, /*logit_identity=*/true);
  ITE_CUDA_TRY(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  Status run = RunModel(step);
  if (run.ok()) run = SampleRows(l, ops_->logits(), key.batch, key.greedy, /*penalties=*/false);
  cudaGraph_t graph = nullptr;
  cudaError_t end = cudaStreamEndCapture(stream_, &graph);
  ITE_RETURN_IF_ERROR(run);
  ITE_CUDA_TRY(end);
  cudaGraphExec_t exec = nullptr;
  cudaError_t inst = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  ITE_CUDA_TRY(inst);
  return exec;
}

Status CudaBackend::WarmUpGraphs() {
  const auto t0 = std::chrono::steady_clock::now();
  size_t free_before = 0, free_after = 0, total = 0;
  ITE_CUDA_TRY(cudaMemGetInfo(&free_before, &total));
  // Block tables up to 1k tokens at start-up; longer contexts capture their size on first use.
  const int32_t blocks =
      std::min(Pow2(std::max(1, 1024 / ops_->block_size())), std::max(1, Pow2(max_blocks_)));
  for (int32_t b : ladder_) {
    for (bool greedy : {true, false}) {
      const GraphKey key{b, blocks, greedy};
      // One eager run on padding first: it loads every kernel and plans every GEMM shape.
      FillPadding(key, 0, plan_host_[0].get());
      const StepSizes s{b, b, blocks, 0, b, 0};
      const StepLayout l = StepLayout::For(s);
      ITE_CUDA_TRY(cudaMemcpyAsync(plan_dev_.get(), plan_host_[0].get(), l.total,
                                   cudaMemcpyHostToDevice, stream_));
      ITE_RETURN_IF_ERROR(RunModel(View(l, s, true, 1, true)));
      ITE_RETURN_IF_ERROR(SampleRows(l, ops_->logits(), b, greedy, false));
      ITE_CUDA_TRY(cudaStreamSynchronize(stream_));
      ITE_ASSIGN_OR_RETURN(graphs_[key], Capture(key));
    }
  }
  ITE_CUDA_TRY(cudaStreamSynchronize(stream_));
  ITE_CUDA_TRY(cudaMemGetInfo(&free_after, &total));
  ITE_LOG_INFO(
      "CUDA graphs: {} captured (decode batches {}..{}, {} tokens of context) in {:.2f} "
      "s, {:.1f} MB",
      graphs_.size(), ladder_.front(), ladder_.back(), blocks * ops_->block_size(),
      ElapsedUs(t0) / 1e6,
      (static_cast<double>(free_before) - static_cast<double>(free_after)) / 1e6);
  return Status::Ok();
}

}  // namespace ite::cuda_backend
