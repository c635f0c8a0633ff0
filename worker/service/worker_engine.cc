#include "worker/service/worker_engine.h"

#include <algorithm>
#include <unordered_set>

#include "common/check.h"
#include "worker/model/describe_model.h"
#include "worker/sampling/sampler.h"

namespace ite {

struct WorkerEngine::SeqState {
  bool has_token = false;            // sampled a token the next decode can feed
  int32_t kv_len = 0;                // positions written so far, as the scheduler described them
  std::vector<int32_t> block_table;  // as the steps so far have described it
  // Tokens it joined with (prompt, plus what it had generated before a preemption): rows
  // before this position are prefill, the rest decode, whether or not the scheduler sends the
  // sampled token back itself (it does when it already knows it).
  int32_t joined_tokens = 0;
};

namespace {
int64_t MicrosBetween(std::chrono::steady_clock::time_point a,
                      std::chrono::steady_clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count();
}
}  // namespace

WorkerEngine::WorkerEngine(std::unique_ptr<Backend> backend, std::string device,
                           std::string model_fingerprint)
    : backend_(std::move(backend)),
      device_(std::move(device)),
      model_fingerprint_(std::move(model_fingerprint)) {
  ITE_CHECK(backend_ != nullptr, "WorkerEngine needs a backend");
}

WorkerEngine::~WorkerEngine() = default;

WorkerInfo WorkerEngine::Info() const {
  WorkerInfo info;
  info.model = DescribeModel(backend_->config());
  info.block_size = backend_->block_size();
  info.num_blocks = backend_->num_blocks();
  info.device = device_;
  info.model_fingerprint = model_fingerprint_;
  return info;
}

Status WorkerEngine::Clear() {
  // Steps still in flight (a stream that is being torn down) are collected as usual; their
  // sequences are simply gone afterwards.
  std::lock_guard<std::mutex> lock(mu_);
  seqs_.clear();
  backend_->ClearSequences();
  metrics_.OnCleared();
  return Status::Ok();
}

int64_t WorkerEngine::num_sequences() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(seqs_.size());
}

std::string WorkerEngine::RenderMetrics() const {
  WorkerMetricsSnapshot snap;
  snap.kv_blocks_total = backend_->num_blocks();
  {
    std::lock_guard<std::mutex> lock(mu_);
    snap.sequences = static_cast<int64_t>(seqs_.size());
    snap.pending_steps = static_cast<int32_t>(pending_.size());
    std::vector<bool> named(static_cast<size_t>(std::max(0, snap.kv_blocks_total)), false);
    for (const auto& [id, state] : seqs_) {
      for (int32_t b : state->block_table) {
        if (b >= 0 && static_cast<size_t>(b) < named.size() && !named[b]) {
          named[b] = true;
          ++snap.kv_blocks_used;
        }
      }
    }
  }
  return metrics_.Render(snap);
}

int32_t WorkerEngine::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int32_t>(pending_.size());
}

// Everything is checked before any state changes, so a rejected step leaves the worker as it was.
Status WorkerEngine::Validate(const StepRequest& request) const {
  const int32_t num_blocks = backend_->num_blocks();
  const int32_t block_size = backend_->block_size();
  const int32_t vocab = backend_->config().vocab_size;
  const int32_t max_pos = backend_->config().max_position;
  for (size_t i = 0; i < request.copy_blocks.size(); ++i) {
    auto [src, dst] = request.copy_blocks[i];
    if (src < 0 || src >= num_blocks || dst < 0 || dst >= num_blocks) {
      return InvalidArgument("step {}: copy_blocks[{}] ({} -> {}) outside [0, {})", request.step_id,
                             i, src, dst, num_blocks);
    }
  }
  std::unordered_set<int64_t> released(request.release_seq_ids.begin(),
                                       request.release_seq_ids.end());
  std::unordered_set<int64_t> seen;
  for (const StepSequence& s : request.seqs) {
    if (!seen.insert(s.seq_id).second) {
      return InvalidArgument("step {}: seq {} appears twice", request.step_id, s.seq_id);
    }
    auto it = seqs_.find(s.seq_id);
    bool known = it != seqs_.end() && released.count(s.seq_id) == 0;
    if (s.sampling.has_value()) {
      Status valid = s.sampling->Validate();
      if (!valid.ok()) {
        return InvalidArgument("step {}: seq {}: {}", request.step_id, s.seq_id, valid.message());
      }
      for (int32_t t : s.prompt_tokens) {
        if (t < 0 || t >= vocab) {
          return InvalidArgument("step {}: seq {}: prompt token {} outside the vocabulary [0, {})",
                                 request.step_id, s.seq_id, t, vocab);
        }
      }
      if (s.generated_tokens < 0 ||
          s.generated_tokens > static_cast<int64_t>(s.prompt_tokens.size())) {
        return InvalidArgument("step {}: seq {}: generated_tokens {} of {} context tokens",
                               request.step_id, s.seq_id, s.generated_tokens,
                               s.prompt_tokens.size());
      }
    } else if (!known) {
      return InvalidArgument("step {}: unknown seq {} (no sampling params to join with)",
                             request.step_id, s.seq_id);
    }
    if (s.start_pos < 0) {
      return InvalidArgument("step {}: seq {}: start_pos {}", request.step_id, s.seq_id,
                             s.start_pos);
    }
    int32_t n = static_cast<int32_t>(s.new_tokens.size());
    if (n == 0) {  // decode: feeds the last sampled token
      if (s.sampling.has_value() || !known || !it->second->has_token) {
        return InvalidArgument("step {}: decode of seq {} which has no sampled token",
                               request.step_id, s.seq_id);
      }
      if (s.start_pos != it->second->kv_len) {
        return InvalidArgument("step {}: decode of seq {} at position {}, but it has {} tokens",
                               request.step_id, s.seq_id, s.start_pos, it->second->kv_len);
      }
      if (!s.sample) {
        return InvalidArgument("step {}: decode of seq {} with sample=false", request.step_id,
                               s.seq_id);
      }
      n = 1;
    }
    for (int32_t t : s.new_tokens) {
      if (t < 0 || t >= vocab) {
        return InvalidArgument("step {}: seq {}: token {} outside the vocabulary [0, {})",
                               request.step_id, s.seq_id, t, vocab);
      }
    }
    int64_t end = int64_t{s.start_pos} + n;
    if (end > max_pos) {
      return InvalidArgument("step {}: seq {} reaches position {} past the context {}",
                             request.step_id, s.seq_id, end, max_pos);
    }
    // The table after this step: the first block_table_offset entries the worker holds, then
    // the ones sent. A joining sequence has none yet.
    const int64_t held = s.sampling.has_value() || !known ? 0 : it->second->block_table.size();
    if (s.block_table_offset < 0 || s.block_table_offset > held) {
      return InvalidArgument(
          "step {}: seq {}: block_table_offset {} but the worker holds {} blocks", request.step_id,
          s.seq_id, s.block_table_offset, held);
    }
    const int64_t table_size = int64_t{s.block_table_offset} + int64_t(s.block_table.size());
    int64_t needed = (end + block_size - 1) / block_size;
    if (table_size < needed) {
      return InvalidArgument("step {}: seq {}: {} blocks cannot hold {} tokens", request.step_id,
                             s.seq_id, table_size, end);
    }
    for (int32_t b : s.block_table) {
      if (b < 0 || b >= num_blocks) {
        return InvalidArgument("step {}: seq {}: block id {} outside [0, {})", request.step_id,
                               s.seq_id, b, num_blocks);
      }
    }
  }
  return Status::Ok();
}

Status WorkerEngine::Submit(const StepRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status valid = Validate(request); !valid.ok()) {
    metrics_.OnRejected();
    return valid;
  }
  for (int64_t id : request.release_seq_ids) {
    seqs_.erase(id);
    backend_->ReleaseSequence(id);
  }
  if (!request.copy_blocks.empty()) {
    std::vector<int32_t> src, dst;
    for (auto [a, b] : request.copy_blocks) {
      src.push_back(a);
      dst.push_back(b);
    }
    ITE_RETURN_IF_ERROR(backend_->CopyBlocks(src, dst));
  }

  Pending pending;
  pending.step_id = request.step_id;
  pending.submitted = std::chrono::steady_clock::now();
  batch_.chunks.clear();
  WorkerMetrics::Rows rows;
  for (const StepSequence& s : request.seqs) {
    std::unique_ptr<SeqState>& state = seqs_[s.seq_id];
    if (s.sampling.has_value()) {
      state = std::make_unique<SeqState>();
      state->joined_tokens = static_cast<int32_t>(s.prompt_tokens.size());
      ITE_RETURN_IF_ERROR(
          backend_->AddSequence(s.seq_id, *s.sampling, s.prompt_tokens, s.generated_tokens));
      ITE_RETURN_IF_ERROR(backend_->SetSequenceImages(s.seq_id, s.images, s.prompt_tokens));
    }
    state->block_table.resize(s.block_table_offset);
    state->block_table.insert(state->block_table.end(), s.block_table.begin(), s.block_table.end());
    SequenceChunk chunk;
    chunk.seq_id = s.seq_id;
    chunk.tokens = s.new_tokens;  // empty: a decode, fed by the backend
    chunk.start_pos = s.start_pos;
    chunk.block_table = state->block_table;
    chunk.sample = s.sample;
    batch_.chunks.push_back(chunk);
    const int32_t prefill_end = std::clamp(state->joined_tokens, s.start_pos,
                                           s.start_pos + chunk.num_tokens());
    rows.prefill += prefill_end - s.start_pos;
    rows.decode += s.start_pos + chunk.num_tokens() - prefill_end;
    state->kv_len = s.start_pos + chunk.num_tokens();
    state->has_token = s.sample;  // a mid-prefill chunk: the next step must bring tokens
    if (s.sample) pending.sampled_seq_ids.push_back(s.seq_id);
  }
  // A step of releases and copies alone has no backend step to collect.
  pending.forward = !batch_.chunks.empty();
  pending.sequences = static_cast<int32_t>(batch_.chunks.size());
  if (pending.forward) ITE_RETURN_IF_ERROR(backend_->Submit(batch_));
  metrics_.OnSubmitted(request, rows);
  pending_.push_back(std::move(pending));
  return Status::Ok();
}

StatusOr<StepResult> WorkerEngine::Collect() {
  Pending pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (pending_.empty()) return FailedPrecondition("Collect without a submitted step");
    pending = std::move(pending_.front());
    pending_.pop_front();
  }
  StepResult result;
  result.step_id = pending.step_id;
  if (!pending.forward) return result;
  ITE_ASSIGN_OR_RETURN(ForwardOutput out, backend_->Collect());
  if (out.samples.size() != pending.sampled_seq_ids.size()) {
    return Internal("step {}: backend sampled {} tokens for {} sequences", pending.step_id,
                    out.samples.size(), pending.sampled_seq_ids.size());
  }
  result.outputs.reserve(out.samples.size());
  for (size_t i = 0; i < out.samples.size(); ++i) {
    result.outputs.push_back({pending.sampled_seq_ids[i], std::move(out.samples[i])});
  }
  result.forward_us = MicrosBetween(pending.submitted, std::chrono::steady_clock::now());
  result.idle_us = out.device_idle_us;
  metrics_.OnCollected(result, pending.sequences);
  return result;
}

StatusOr<StepResult> WorkerEngine::Step(const StepRequest& request) {
  ITE_RETURN_IF_ERROR(Submit(request));
  return Collect();
}

}  // namespace ite
