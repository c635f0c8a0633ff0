#include "worker/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>

#include "common/logging.h"
#include "worker/backend/cuda/cuda_backend_impl.h"

namespace ite {
namespace cuda_backend {
CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  for (auto& [key, exec] : graphs_) cudaGraphExecDestroy(exec);
  for (InFlight& f : in_flight_) {
    GiveEvent(f.start);
    GiveEvent(f.done);
  }
  if (prev_end_ != nullptr) GiveEvent(prev_end_);
  for (cudaEvent_t e : free_events_) cudaEventDestroy(e);
  net_.reset();
  ops_.reset();
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

cudaEvent_t CudaBackend::TakeEvent() {
  if (free_events_.empty()) {
    cudaEvent_t e = nullptr;
    if (cudaEventCreate(&e) != cudaSuccess) return nullptr;
    return e;
  }
  cudaEvent_t e = free_events_.back();
  free_events_.pop_back();
  return e;
}

void CudaBackend::GiveEvent(cudaEvent_t e) {
  if (e != nullptr) free_events_.push_back(e);
}

Status CudaBackend::Init() {
  const auto t0 = std::chrono::steady_clock::now();
  ITE_RETURN_IF_ERROR(ValidateModelConfig(model_.config));
  ITE_RETURN_IF_ERROR(CheckShardCommunicator(model_.config, options_.comm));
  if (model_.config.shard.size > 1 && !options_.comm->capturable()) options_.enforce_eager = true;
  int count = CudaDeviceCount();
  if (options_.device < 0 || options_.device >= count)
    return FailedPrecondition("CUDA backend: device {} requested, {} visible", options_.device,
                              count);
  ITE_CUDA_TRY(cudaSetDevice(options_.device));
  cudaDeviceProp prop{};
  ITE_CUDA_TRY(cudaGetDeviceProperties(&prop, options_.device));
  device_ = fmt::format("cuda:{} {}", options_.device, prop.name);
  num_sms_ = prop.multiProcessorCount;
  ITE_CUDA_TRY(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));

  const DType wdtype = model_.weights.token_embedding.dtype;
  if (wdtype != DType::kBF16 && wdtype != DType::kF16)
    return InvalidArgument("CUDA backend: weights are {}; load the model as bf16 or f16",
                           DTypeName(wdtype));
  const int64_t weight_bytes = WeightBytes(model_.weights);
  size_t free = 0, total = 0;
  ITE_CUDA_TRY(cudaMemGetInfo(&free, &total));
  if (static_cast<int64_t>(free) < weight_bytes + kReserveBytes)
    return ResourceExhausted(
        "CUDA backend: the weights of {} need {} bytes (+{} reserved), {} bytes free on {}",
        model_.config.name, weight_bytes, kReserveBytes, free, device_);

  CudaOpsOptions o;
  o.dtype = wdtype == DType::kF16 ? kernels::DType::kF16 : kernels::DType::kBF16;
  o.max_rows = options_.max_step_tokens;
  o.max_seqs = options_.max_seqs;
  o.max_logit_rows = std::max(options_.max_seqs, 256);
  o.expected_weight_bytes = weight_bytes;
  o.batch_invariant = options_.batch_invariant;
  o.fused_decoder_stack = options_.fused_decoder_stack;
  if (model_.config.shard.size > 1) o.comm = options_.comm;
  ITE_ASSIGN_OR_RETURN(ops_, CudaModelOps::Create(model_.config, o, stream_));
  ITE_ASSIGN_OR_RETURN(net_, CreateModel(model_.config, model_.weights, ops_.get()));
  const VisionConfig* vision = model_.config.vision ? &*model_.config.vision : nullptr;
  if (vision != nullptr) {
    ITE_ASSIGN_OR_RETURN(vision_,
                         CreateVisionModel(model_.config, model_.weights.vision, ops_.get()));
  }
  images_ = std::make_unique<SequenceImages>(vision, size_t{2} * model_.config.hidden_size);
  ops_->SetEmbeds(&plan_.embeds);
  // The host copies (often a memory map) are not needed any more.
  model_.weights = ModelWeights{};
  ITE_LOG_INFO("{}: {:.2f} GB of weights on {} in {:.1f} s", model_.config.name,
               ops_->weight_bytes() / 1e9, device_, ElapsedUs(t0) / 1e6);

  ITE_RETURN_IF_ERROR(InitKv());
  limits_ = {model_.config.vocab_size, model_.config.max_position, ops_->block_size(),
             ops_->num_blocks()};
  const int32_t bs = ops_->block_size();
  max_blocks_ = std::min((model_.config.max_position + bs - 1) / bs, ops_->num_blocks());

  StepSizes max;
  max.rows = options_.max_step_tokens;
  max.seqs = options_.max_seqs;
  max.max_blocks = Pow2((model_.config.max_position + bs - 1) / bs);
  max.logit_rows = o.max_logit_rows;
  max.samples = options_.max_seqs;
  max.penalty_tokens = kMaxPenaltyTokens;
  const size_t plan_bytes = StepLayout::For(max).total;
  ITE_RETURN_IF_ERROR(plan_dev_.Allocate(plan_bytes, "step inputs"));
  for (int i = 0; i < kRing; ++i) {
    ITE_RETURN_IF_ERROR(plan_host_[i].Allocate(plan_bytes, "step inputs"));
    ITE_RETURN_IF_ERROR(tokens_host_[i].Allocate(options_.max_seqs * 4, "sampled tokens"));
  }
  ITE_RETURN_IF_ERROR(last_tokens_.Allocate(kSeqSlots * 4, "last tokens"));
  ITE_CUDA_TRY(cudaMemsetAsync(last_tokens_.get(), 0, kSeqSlots * 4, stream_));
  ITE_RETURN_IF_ERROR(sampled_.Allocate(options_.max_seqs * 4, "sampled tokens"));
  ITE_CUDA_TRY(cudaStreamSynchronize(stream_));

  // The batch ladder graphs are captured for (also what eager decodes pick their splits by).
  const int32_t top = std::min(options_.max_graph_batch, options_.max_seqs);
  for (int32_t b = 1; b < top; b *= 2) ladder_.push_back(b);
  ladder_.push_back(top);
  if (!options_.enforce_eager) ITE_RETURN_IF_ERROR(WarmUpGraphs());
  ITE_LOG_INFO("CUDA backend ready in {:.1f} s", ElapsedUs(t0) / 1e6);
  return Status::Ok();
}

StatusOr<int64_t> CudaBackend::GroupMinBlocks(int64_t blocks) {
  DeviceBuffer scratch;
  ITE_RETURN_IF_ERROR(scratch.Allocate(sizeof(int64_t), "KV agreement"));
  return GroupMin(
      options_.comm, blocks, scratch.get(), stream_,
      [&](const void* dev, int64_t* out) -> Status {
        ITE_CUDA_TRY(cudaMemcpyAsync(out, dev, sizeof(int64_t), cudaMemcpyDeviceToHost, stream_));
        ITE_CUDA_TRY(cudaStreamSynchronize(stream_));
        return Status::Ok();
      },
      [&](int64_t in, void* dev) -> Status {
        ITE_CUDA_TRY(cudaMemcpyAsync(dev, &in, sizeof(int64_t), cudaMemcpyHostToDevice, stream_));
        ITE_CUDA_TRY(cudaStreamSynchronize(stream_));
        return Status::Ok();
      });
}

Status CudaBackend::InitKv() {
  const KvCacheOptions& kv = options_.kv;
  if (kv.block_size <= 0) return InvalidArgument("KV cache: block_size {} <= 0", kv.block_size);
  const int64_t per_block = ops_->kv_block_bytes(kv.block_size);
  size_t free = 0, total = 0;
  ITE_CUDA_TRY(cudaMemGetInfo(&free, &total));
  int64_t blocks = 0;
  std::string how;
  if (kv.num_blocks > 0) {
    blocks = kv.num_blocks;
    how = "--kv-blocks";
  } else if (options_.gpu_memory_utilization > 0) {
    const double used = static_cast<double>(total - free);
    const double budget = options_.gpu_memory_utilization * total - used - kReserveBytes;
    blocks = budget > 0 ? static_cast<int64_t>(budget / per_block) : 0;
    how = fmt::format("--gpu-memory-utilization {}", options_.gpu_memory_utilization);
  } else {
    blocks = kv.max_kv_bytes / per_block;
    how = fmt::format("a KV budget of {} MiB", kv.max_kv_bytes >> 20);
  }
  if (model_.config.shard.size > 1) {
    // The ranks share one block table: every rank takes as many blocks as the tightest holds.
    ITE_ASSIGN_OR_RETURN(blocks, GroupMinBlocks(blocks));
  }
  if (blocks <= 0 || blocks > INT32_MAX)
    return ResourceExhausted("KV cache: {} gives {} blocks of {} bytes ({} bytes free on {})", how,
                             blocks, per_block, free, device_);
  if (blocks * per_block > static_cast<int64_t>(free) - kReserveBytes)
    return ResourceExhausted("KV cache: {} blocks of {} bytes ({}) need {} bytes, {} free on {}",
                             blocks, per_block, how, blocks * per_block, free, device_);
  ITE_RETURN_IF_ERROR(ops_->InitKv(kv.block_size, static_cast<int32_t>(blocks)));
  ITE_LOG_INFO("KV cache: {} blocks of {} tokens, {:.2f} GB ({}; {:.1f} of {:.1f} GB free before)",
               blocks, kv.block_size, blocks * per_block / 1e9, how, free / 1e9, total / 1e9);
  return Status::Ok();
}

Status CudaBackend::CopyBlocks(std::span<const int32_t> src, std::span<const int32_t> dst) {
  std::lock_guard<std::mutex> lock(mu_);
  if (src.size() != dst.size())
    return InvalidArgument("CopyBlocks: {} sources for {} destinations", src.size(), dst.size());
  const int32_t n = static_cast<int32_t>(src.size());
  for (int32_t i = 0; i < n; ++i) {
    if (src[i] < 0 || src[i] >= num_blocks() || dst[i] < 0 || dst[i] >= num_blocks())
      return InvalidArgument("CopyBlocks: pair {} ({} -> {}) outside [0, {})", i, src[i], dst[i],
                             num_blocks());
  }
  if (n == 0) return Status::Ok();
  if (failed_) return Unavailable("{}: the GPU failed earlier; the worker must restart", device_);
  copy_host_.assign(src.begin(), src.end());
  copy_host_.insert(copy_host_.end(), dst.begin(), dst.end());
  if (copy_pairs_.bytes() < copy_host_.size() * 4)
    ITE_RETURN_IF_ERROR(copy_pairs_.Allocate(copy_host_.size() * 4 * 2, "block copy list"));
  // From pageable memory: the call returns once the list is staged, so it may be reused, and
  // the copy is ordered after every step submitted before.
  Status s = [&]() -> Status {
    ITE_CUDA_TRY(cudaMemcpyAsync(copy_pairs_.get(), copy_host_.data(), copy_host_.size() * 4,
                                 cudaMemcpyHostToDevice, stream_));
    return ops_->CopyBlocks(copy_pairs_.as<int32_t>(), copy_pairs_.as<int32_t>() + n, n);
  }();
  if (!s.ok()) failed_ = true;  // past validation, only the device can fail
  return s;
}

Status CudaBackend::Absorb(InFlight* f, bool wait) {
  if (f->absorbed) return Status::Ok();
  if (wait) ITE_CUDA_TRY(cudaEventSynchronize(f->done));
  const int32_t* tokens = tokens_host_[f->ring].as<int32_t>();
  for (size_t i = 0; i < f->samples.size(); ++i)
    seqs_.Absorb(f->samples[i].first, f->samples[i].second, tokens[i]);
  f->absorbed = true;
  return Status::Ok();
}

Status CudaBackend::Submit(const ForwardBatch& batch) {
  if (failed_) return Unavailable("{}: the GPU failed earlier; the worker must restart", device_);
  bool enqueued = false;
  Status s = SubmitStep(batch, &enqueued);
  if (!s.ok() && enqueued) {
    failed_ = true;
    ITE_LOG_ERROR("{}: a step failed on the GPU: {}", device_, s.ToString());
  }
  return s;
}

Status CudaBackend::SubmitStep(const ForwardBatch& batch, bool* enqueued) {
  std::unique_lock<std::mutex> lock(mu_);
  ITE_RETURN_IF_ERROR(PlanStep(batch, limits_, &plan_));
  const int32_t rows = plan_.num_rows();
  const int32_t nseq = static_cast<int32_t>(plan_.chunks.size());
  const int32_t nlogit = static_cast<int32_t>(plan_.logit_rows.size());
  if (rows > options_.max_step_tokens || nseq > options_.max_seqs ||
      nlogit > ops_->options().max_logit_rows)
    return InvalidArgument(
        "step of {} tokens, {} sequences, {} logit rows exceeds the worker's limits ({} tokens "
        "(--max-step-tokens), {} sequences, {} logit rows)",
        rows, nseq, nlogit, options_.max_step_tokens, options_.max_seqs,
        ops_->options().max_logit_rows);

  // What the step needs, and its sequences' checks (before anything changes).
  std::vector<DeviceSequence*> seq_of(nseq, nullptr);
  int32_t samples = 0;
  bool penalties = false, logprobs = false, want_logits = false, greedy = true;
  for (int32_t i = 0; i < nseq; ++i) {
    const PlannedChunk& ch = plan_.chunks[i];
    want_logits = want_logits || ch.logits != LogitsMode::kNone;
    if (!ch.sample) continue;
    DeviceSequence* s = seqs_.Find(ch.seq_id);
    if (s == nullptr) return InvalidArgument("step: seq {} samples but was never added", ch.seq_id);
    if (ch.decode && !s->has_token)
      return InvalidArgument("step: decode of seq {} which has no sampled token", ch.seq_id);
    seq_of[i] = s;
    ++samples;
    penalties = penalties || s->penalties;
    logprobs = logprobs || s->params.logprobs || s->params.top_logprobs > 0;
    greedy = greedy && (s->params.greedy() || s->params.top_k == 1);
  }
  const bool synchronous = logprobs || want_logits;
  // Penalties count every token sampled so far, including those of steps still in flight.
  if (penalties) {
    for (InFlight& f : in_flight_) ITE_RETURN_IF_ERROR(Absorb(&f, /*wait=*/true));
  }
  pen_tokens_.clear();
  pen_counts_.clear();
  std::vector<int32_t> pen_offsets = {0};
  if (penalties) {
    for (int32_t i = 0; i < nseq; ++i) {
      if (seq_of[i] == nullptr) continue;
      if (seq_of[i]->penalties) seqs_.PenaltyList(*seq_of[i], &pen_tokens_, &pen_counts_);
      pen_offsets.push_back(static_cast<int32_t>(pen_tokens_.size()));
    }
    if (pen_tokens_.size() > static_cast<size_t>(kMaxPenaltyTokens))
      return InvalidArgument("step: {} penalty tokens, more than {}", pen_tokens_.size(),
                             kMaxPenaltyTokens);
  }

  // A decode of sampling sequences with nothing to bring back but tokens replays a graph.
  const bool logit_identity = nlogit == rows;
  const bool graph = !options_.enforce_eager && plan_.decode_only && samples == nseq &&
                     !penalties && !synchronous && nseq <= ladder_.back();
  GraphKey key{0, 0, greedy};
  StepSizes sizes;
  if (graph) {
    key.batch = *std::lower_bound(ladder_.begin(), ladder_.end(), nseq);
    key.max_blocks = Pow2(plan_.max_blocks);
    sizes = {key.batch, key.batch, key.max_blocks, 0, key.batch, 0};
  } else {
    sizes = {rows,
             nseq,
             plan_.max_blocks,
             logit_identity ? 0 : nlogit,
             samples,
             static_cast<int32_t>(pen_tokens_.size())};
  }
  const StepLayout l = StepLayout::For(sizes);

  ring_cv_.wait(lock, [&] { return in_flight_.size() < static_cast<size_t>(kRing); });
  int ring = 0;
  while (ring_busy_[ring]) ++ring;
  void* host = plan_host_[ring].get();
  const int32_t bs = ops_->block_size();
  int32_t* tokens = StepLayout::At<int32_t>(host, l.tokens);
  int32_t* positions = StepLayout::At<int32_t>(host, l.positions);
  int32_t* kv_slots = StepLayout::At<int32_t>(host, l.kv_slots);
  int32_t* cu = StepLayout::At<int32_t>(host, l.cu_seqlens);
  int32_t* tables = StepLayout::At<int32_t>(host, l.block_tables);
  for (int32_t i = 0; i < nseq; ++i) {
    const PlannedChunk& ch = plan_.chunks[i];
    cu[i] = ch.row0;
    StepLayout::At<int32_t>(host, l.kv_lens)[i] = ch.kv_len();
    const int32_t need = (ch.kv_len() + bs - 1) / bs;
    std::memcpy(tables + size_t(i) * sizes.max_blocks, ch.block_table.data(), size_t(need) * 4);
    for (int32_t t = 0; t < ch.len; ++t) {
      const int32_t r = ch.row0 + t, pos = ch.start_pos + t;
      tokens[r] = ch.decode ? -(seq_of[i]->slot + 1) : plan_.tokens[r];
      positions[r] = pos;
      kv_slots[r] = ch.block_table[pos / bs] * bs + pos % bs;
    }
  }
  cu[nseq] = rows;
  if (!graph && !logit_identity)
    std::memcpy(StepLayout::At<int32_t>(host, l.logit_rows), plan_.logit_rows.data(),
                size_t(nlogit) * 4);
  InFlight f;
  f.ring = ring;
  f.synchronous = synchronous;
  for (int32_t i = 0, j = 0; i < nseq; ++i) {
    DeviceSequence* s = seq_of[i];
    if (s == nullptr) continue;
    const SamplingParams& p = s->params;
    StepLayout::At<int32_t>(host, l.sample_slots)[j] = s->slot;
    StepLayout::At<float>(host, l.temperature)[j] = p.greedy() ? 0.0f : p.temperature;
    StepLayout::At<int32_t>(host, l.top_k)[j] = p.top_k;
    StepLayout::At<float>(host, l.top_p)[j] = p.top_p;
    StepLayout::At<float>(host, l.min_p)[j] = p.min_p;
    StepLayout::At<uint64_t>(host, l.seeds)[j] = s->seed;
    StepLayout::At<uint64_t>(host, l.steps)[j] = s->drawn;
    if (penalties) {
      StepLayout::At<float>(host, l.repetition)[j] = p.repetition_penalty;
      StepLayout::At<float>(host, l.presence)[j] = p.presence_penalty;
      StepLayout::At<float>(host, l.frequency)[j] = p.frequency_penalty;
    }
    f.samples.push_back({plan_.chunks[i].seq_id, s->epoch});
    ++j;
  }
  if (penalties) {
    std::memcpy(StepLayout::At<int32_t>(host, l.pen_tokens), pen_tokens_.data(),
                pen_tokens_.size() * 4);
    std::memcpy(StepLayout::At<int32_t>(host, l.pen_counts), pen_counts_.data(),
                pen_counts_.size() * 4);
    std::memcpy(StepLayout::At<int32_t>(host, l.pen_offsets), pen_offsets.data(),
                pen_offsets.size() * 4);
  }
  if (graph) FillPadding(key, nseq, host);

  f.start = TakeEvent();
  f.done = TakeEvent();
  if (f.start == nullptr || f.done == nullptr) return Internal("CUDA backend: cudaEventCreate");
  *enqueued = true;
  ITE_CUDA_TRY(cudaEventRecord(f.start, stream_));
  ITE_CUDA_TRY(cudaMemcpyAsync(plan_dev_.get(), host, l.total, cudaMemcpyHostToDevice, stream_));
  float* sample_logits = ops_->logits();
  if (graph) {
    auto it = graphs_.find(key);
    if (it != graphs_.end()) {
      ITE_CUDA_TRY(cudaGraphLaunch(it->second, stream_));
    } else {  // a context or batch not captured yet: run it eagerly, capture it for next time
      const auto t0 = std::chrono::steady_clock::now();
      ITE_RETURN_IF_ERROR(RunModel(View(l, sizes, true, 1, true)));
      ITE_RETURN_IF_ERROR(SampleRows(l, sample_logits, key.batch, key.greedy, false));
      ITE_ASSIGN_OR_RETURN(graphs_[key], Capture(key));
      ITE_LOG_INFO("CUDA graph captured for decode batch {}, {} tokens of context, in {} us",
                   key.batch, key.max_blocks * bs, ElapsedUs(t0));
    }
  } else {
    // Images this step reaches first: the vision tower runs on the stream ahead of the step.
    ITE_RETURN_IF_ERROR(images_->Prepare(
        &plan_, [&](std::span<const float> pixels) -> StatusOr<std::shared_ptr<void>> {
          const int32_t n = model_.config.vision->image_tokens(),
                        hidden = model_.config.hidden_size;
          auto features = std::make_shared<DeviceBuffer>();
          ITE_RETURN_IF_ERROR(features->Allocate(size_t{2} * n * hidden, "image features"));
          ITE_RETURN_IF_ERROR(vision_->Encode(ops_.get(), pixels, {features->get(), n, hidden}));
          return std::shared_ptr<void>(features, features->get());
        }));
    ITE_RETURN_IF_ERROR(
        RunModel(View(l, sizes, plan_.decode_only, plan_.max_q_len, logit_identity)));
    const int32_t vocab = model_.config.vocab_size;
    if (want_logits) {  // raw logits, before any penalty
      if (logits_host_.bytes() < size_t(nlogit) * vocab * 4)
        ITE_RETURN_IF_ERROR(logits_host_.Allocate(size_t(nlogit) * vocab * 4, "logits"));
      ITE_CUDA_TRY(cudaMemcpyAsync(logits_host_.get(), ops_->logits(), size_t(nlogit) * vocab * 4,
                                   cudaMemcpyDeviceToHost, stream_));
    }
    if (samples > 0 && samples != nlogit) {  // sampled rows are not all the logit rows
      if (sample_logits_.bytes() == 0)
        ITE_RETURN_IF_ERROR(
            sample_logits_.Allocate(size_t(options_.max_seqs) * vocab * 4, "sampled logits"));
      sample_logits = sample_logits_.as<float>();
      for (int32_t i = 0, j = 0; i < nseq; ++i) {
        if (seq_of[i] == nullptr) continue;
        const PlannedChunk& ch = plan_.chunks[i];
        ITE_CUDA_TRY(
            cudaMemcpyAsync(sample_logits + size_t(j++) * vocab,
                            ops_->logits() + size_t(ch.logit_row0 + ch.logit_rows - 1) * vocab,
                            size_t(vocab) * 4, cudaMemcpyDeviceToDevice, stream_));
      }
    }
    ITE_RETURN_IF_ERROR(SampleRows(l, sample_logits, samples, greedy, penalties));
  }
  if (samples > 0)
    ITE_CUDA_TRY(cudaMemcpyAsync(tokens_host_[ring].get(), sampled_.get(), size_t(samples) * 4,
                                 cudaMemcpyDeviceToHost, stream_));
  if (logprobs) {
    const size_t bytes = size_t(samples) * model_.config.vocab_size * 4;
    if (probs_host_.bytes() < bytes) ITE_RETURN_IF_ERROR(probs_host_.Allocate(bytes, "logprobs"));
    ITE_CUDA_TRY(
        cudaMemcpyAsync(probs_host_.get(), sample_logits, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  ITE_CUDA_TRY(cudaEventRecord(f.done, stream_));

  for (int32_t i = 0; i < nseq; ++i) {
    if (seq_of[i] != nullptr) {
      seq_of[i]->has_token = true;
      ++seq_of[i]->drawn;
    } else if (DeviceSequence* s = seqs_.Find(plan_.chunks[i].seq_id)) {
      s->has_token = false;  // a prefill chunk: the next step brings tokens
    }
  }
  if (synchronous) {
    ITE_CUDA_TRY(cudaEventSynchronize(f.done));
    ITE_RETURN_IF_ERROR(FinishSynchronous(&f, want_logits, logprobs));
  }
  ring_busy_[ring] = true;
  in_flight_.push_back(std::move(f));
  return Status::Ok();
}

Status CudaBackend::FinishSynchronous(InFlight* f, bool want_logits, bool logprobs) {
  ForwardOutput& out = f->output;
  const int32_t vocab = model_.config.vocab_size;
  const int32_t* tokens = tokens_host_[f->ring].as<int32_t>();
  if (want_logits) {
    const float* all = logits_host_.as<float>();
    for (const PlannedChunk& ch : plan_.chunks) {
      if (ch.logits == LogitsMode::kNone) continue;
      const int32_t first = ch.logits == LogitsMode::kAll ? 0 : ch.logit_rows - 1;
      out.logits.insert(out.logits.end(), all + size_t(ch.logit_row0 + first) * vocab,
                        all + size_t(ch.logit_row0 + ch.logit_rows) * vocab);
    }
  }
  std::vector<float> row;
  for (size_t j = 0; j < f->samples.size(); ++j) {
    SampleResult r;
    r.token = tokens[j];
    const DeviceSequence* s = seqs_.Find(f->samples[j].first);
    if (logprobs && s != nullptr && (s->params.logprobs || s->params.top_logprobs > 0)) {
      // The same definition as the CPU sampler: log-softmax after penalties and temperature.
      const float* src = probs_host_.as<float>() + j * vocab;
      row.assign(src, src + vocab);
      const float t = s->params.temperature;
      if (!s->params.greedy() && t != 1.0f)
        for (float& v : row) v /= t;
      FillLogprobs(row, s->params.top_logprobs, &r, &scratch_);
    }
    out.samples.push_back(std::move(r));
  }
  return Status::Ok();
}

StatusOr<ForwardOutput> CudaBackend::Collect() {
  std::unique_lock<std::mutex> lock(mu_);
  if (in_flight_.empty()) return FailedPrecondition("Collect without a submitted step");
  const cudaEvent_t done = in_flight_.front().done;
  lock.unlock();
  const cudaError_t err = cudaEventSynchronize(done);
  lock.lock();
  InFlight f = std::move(in_flight_.front());
  in_flight_.pop_front();
  ForwardOutput out;
  Status status = CudaCheck(err, "step on the GPU");
  if (!status.ok()) failed_ = true;
  if (status.ok()) status = Absorb(&f, /*wait=*/false);
  if (status.ok()) {
    if (f.synchronous) {
      out = std::move(f.output);
    } else {
      const int32_t* tokens = tokens_host_[f.ring].as<int32_t>();
      out.samples.resize(f.samples.size());
      for (size_t j = 0; j < f.samples.size(); ++j) out.samples[j].token = tokens[j];
    }
    if (prev_end_ != nullptr) {
      float ms = 0.0f;
      if (cudaEventElapsedTime(&ms, prev_end_, f.start) == cudaSuccess && ms > 0.0f)
        out.device_idle_us = static_cast<int64_t>(ms * 1000.0f);
    }
  }
  ring_busy_[f.ring] = false;
  GiveEvent(prev_end_);
  prev_end_ = f.done;
  GiveEvent(f.start);
  ring_cv_.notify_all();
  if (!status.ok()) return status;
  return out;
}

}  // namespace cuda_backend

StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(LoadedModel model,
                                                     const CudaBackendOptions& options) {
  auto backend = std::make_unique<cuda_backend::CudaBackend>(std::move(model), options);
  ITE_RETURN_IF_ERROR(backend->Init());
  return std::unique_ptr<Backend>(std::move(backend));
}

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

}  // namespace ite
