#include "scheduler/batcher.h"

#include <algorithm>

#include "common/check.h"

namespace ite {

namespace {
int32_t CeilDiv(int32_t a, int32_t b) { return (a + b - 1) / b; }
}  // namespace

Batcher::Batcher(const BatcherOptions& options, const WorkerInfo& info)
    : options_(options),
      block_size_(info.block_size),
      eos_ids_(info.model.eos_token_ids),
      blocks_(info.num_blocks),
      cache_(info.block_size, &blocks_) {
  ITE_CHECK(
      options_.max_batch_tokens > 0 && options_.max_running > 0 && options_.max_inflight_steps > 0,
      "bad batcher options");
}

Batcher::~Batcher() {
  for (auto& [id, seq] : seqs_) {
    if (seq->locked != nullptr) cache_.Unlock(seq->locked);
    seq->locked = nullptr;
    blocks_.Release(&seq->blocks);
  }
}

bool Batcher::UsesCache(const Sequence& seq) const {
  return options_.enable_prefix_cache && seq.request.use_prefix_cache;
}

Batcher::WaitKey Batcher::KeyOf(const Sequence& seq) const {
  return {-int64_t{seq.request.priority}, seq.arrival, seq.seq_id};
}

void Batcher::Enqueue(std::unique_ptr<Sequence> seq) {
  seq->state = Sequence::State::kWaiting;
  waiting_.insert(KeyOf(*seq));
  int64_t id = seq->seq_id;
  seqs_.emplace(id, std::move(seq));
}

int32_t Batcher::PeekCachedPrefix(std::span<const int32_t> tokens) const {
  if (!options_.enable_prefix_cache || tokens.empty()) return 0;
  return cache_.PeekPrefixLength(tokens.first(tokens.size() - 1));
}

bool Batcher::BuildStep(int64_t step_id, StepRequest* request) {
  if (!CanSendStep()) return false;
  request->step_id = step_id;
  request->seqs.reserve(running_.size() + 8);
  int32_t budget = options_.max_batch_tokens;
  // Decodes first (one token each: they keep every running stream moving), then prefill chunks.
  std::vector<Sequence*> order = running_;  // preemption edits running_
  for (int pass = 0; pass < 2 && budget > 0; ++pass) {
    for (Sequence* seq : order) {
      if (budget <= 0) break;
      if (seq->state != Sequence::State::kRunning || seq->last_step == step_id) continue;
      bool decode = seq->known() - seq->num_scheduled <= 1;
      if (decode != (pass == 0)) continue;
      ScheduleChunk(seq, &budget, request, /*may_preempt=*/true);
    }
  }
  // At most one decode per token of budget runs, so every running sequence decodes every step.
  const int32_t max_running = std::min(options_.max_running, options_.max_batch_tokens);
  while (!waiting_.empty() && budget > 0 && static_cast<int32_t>(running_.size()) < max_running) {
    Sequence* seq = seqs_.at(std::get<2>(*waiting_.begin())).get();
    if (!Admit(seq, &budget, request)) break;
  }
  if (request->seqs.empty() && (pending_releases_.empty() || !inflight_.empty())) {
    ITE_DCHECK(request->copy_blocks.empty(), "copies without sequences");
    return false;
  }
  request->release_seq_ids = std::move(pending_releases_);
  pending_releases_.clear();
  InflightStep record{step_id, {}, 0};
  record.seqs.reserve(request->seqs.size());
  for (const StepSequence& s : request->seqs) {
    int32_t n = s.new_tokens.empty() ? 1 : static_cast<int32_t>(s.new_tokens.size());
    const Sequence& seq = *seqs_.at(s.seq_id);
    // Prompt chunks are offered to the cache as they complete (long prompts become shareable
    // early); generated tokens only when the sequence ends or is preempted.
    record.seqs.push_back({s.seq_id, seq.epoch, s.start_pos + n, s.sample,
                           !s.new_tokens.empty() && s.start_pos < seq.num_prompt});
    if (s.sample) ++record.num_sampled;
  }
  inflight_.push_back(std::move(record));
  return true;
}

// Image positions hold cache keys (negative) in the scheduler's tokens; the worker gets the
// model's image token there.
void Batcher::ModelTokens(const GenerationRequest& request, std::vector<int32_t>* tokens) {
  if (request.images.empty()) return;
  for (int32_t& t : *tokens)
    if (t < 0) t = request.image_token_id;
}

bool Batcher::ScheduleChunk(Sequence* seq, int32_t* budget, StepRequest* request,
                            bool may_preempt) {
  const int32_t start = seq->num_scheduled;
  const int32_t known_left = seq->known() - start;
  const bool feed_sampled = known_left <= 0;  // the worker feeds its last sampled token
  if (feed_sampled && seq->inflight_samples == 0) return false;
  const int32_t n = feed_sampled ? 1 : std::min(known_left, *budget);
  const int32_t end = start + n;
  const bool sample = feed_sampled || end == seq->known();
  // Enough tokens already requested: wait for the results (and the finish they bring).
  if (sample && seq->generated() + seq->inflight_samples >= seq->request.max_tokens) return false;

  const int32_t first_block = start / block_size_;
  const bool cow =
      first_block < seq->blocks.size() && blocks_.ref_count(seq->blocks[first_block]) > 1;
  const int32_t new_blocks = std::max(0, CeilDiv(end, block_size_) - seq->blocks.size());
  if (!EnsureFree(new_blocks + (cow ? 1 : 0), seq, request->step_id, may_preempt)) return false;
  if (cow) {
    ITE_CHECK(blocks_.MakeWritable(&seq->blocks, first_block, &request->copy_blocks));
    seq->blocks_sent = std::min(seq->blocks_sent, first_block);  // that entry changed
  }
  ITE_CHECK(blocks_.Append(&seq->blocks, new_blocks));

  StepSequence s;
  s.seq_id = seq->seq_id;
  s.start_pos = start;
  if (!feed_sampled) {
    s.new_tokens.assign(seq->tokens.begin() + start, seq->tokens.begin() + end);
    ModelTokens(seq->request, &s.new_tokens);
  }
  // Only the entries the worker does not hold yet: a decode step inside a block sends none.
  s.block_table_offset = seq->joined ? seq->blocks_sent : 0;
  s.block_table.assign(seq->blocks.ids().begin() + s.block_table_offset, seq->blocks.ids().end());
  seq->blocks_sent = seq->blocks.size();
  s.sample = sample;
  if (!seq->joined) {
    ITE_CHECK(!feed_sampled, "seq {} would join without tokens", seq->seq_id);
    s.sampling = seq->request.sampling;
    s.prompt_tokens = seq->tokens;
    ModelTokens(seq->request, &s.prompt_tokens);
    s.generated_tokens = seq->generated();
    for (const PromptImage& im : seq->request.images) s.images.push_back({im.position, *im.pixels});
    seq->joined = true;
  }
  request->seqs.push_back(std::move(s));
  seq->num_scheduled = end;
  if (sample) ++seq->inflight_samples;
  seq->last_step = request->step_id;
  *budget -= n;
  return true;
}

bool Batcher::EnsureFree(int32_t blocks_needed, Sequence* keep, int64_t step_id, bool may_preempt) {
  if (blocks_.num_free() >= blocks_needed) return true;
  cache_.Evict(blocks_needed - blocks_.num_free());
  while (may_preempt && blocks_.num_free() < blocks_needed) {
    // Victim: the least important running sequence not already in this step.
    Sequence* victim = nullptr;
    for (Sequence* s : running_) {
      if (s == keep || s->last_step == step_id) continue;
      if (victim == nullptr || KeyOf(*s) > KeyOf(*victim)) victim = s;
    }
    if (victim == nullptr || KeyOf(*victim) < KeyOf(*keep)) {
      // Everyone else is more important (or already committed to this step): yield ourselves.
      if (keep->state == Sequence::State::kRunning && keep->last_step != step_id) {
        Preempt(keep);
      }
      return false;
    }
    Preempt(victim);
    if (blocks_.num_free() < blocks_needed) cache_.Evict(blocks_needed - blocks_.num_free());
  }
  return blocks_.num_free() >= blocks_needed;
}

void Batcher::MatchPrefix(Sequence* seq, std::vector<BlockCopy>* copies) {
  // Leave at least one token to run: its logits give the first sampled token.
  std::span<const int32_t> tokens(seq->tokens.data(), seq->tokens.size() - 1);
  RadixCache::Match m = cache_.MatchPrefix(tokens);
  blocks_.AppendShared(&seq->blocks, m.blocks);
  if (m.node != cache_.root()) {
    cache_.Lock(m.node);
    seq->locked = m.node;
  }
  int32_t matched = static_cast<int32_t>(m.blocks.size()) * block_size_;
  if (m.partial_tokens > 0 && blocks_.num_free() > 0) {
    // The cached block diverges part-way: start from a private copy of it.
    blocks_.AppendShared(&seq->blocks, std::span<const int32_t>(&m.partial_block, 1));
    ITE_CHECK(blocks_.MakeWritable(&seq->blocks, seq->blocks.size() - 1, copies));
    matched += m.partial_tokens;
  }
  seq->num_scheduled = matched;
  seq->num_computed = matched;
}

bool Batcher::ShareParentPrompt(Sequence* seq) {
  auto it = seqs_.find(seq->fork_parent);
  if (it == seqs_.end()) return false;
  const Sequence& parent = *it->second;
  // All but the last prompt token: its logits give the fork its own first token.
  const int32_t shared = seq->num_prompt - 1;
  if (parent.state != Sequence::State::kRunning || shared <= 0 ||
      parent.num_computed < shared || parent.num_prompt != seq->num_prompt ||
      !std::equal(seq->tokens.begin(), seq->tokens.begin() + seq->num_prompt,
                  parent.tokens.begin())) {
    return false;
  }
  // The block holding the last shared positions goes on being written by both: the first
  // write of either copies it (ScheduleChunk's copy-on-write).
  blocks_.AppendShared(&seq->blocks, std::span<const int32_t>(parent.blocks.ids().data(),
                                                              CeilDiv(shared, block_size_)));
  if (parent.locked != nullptr) {
    cache_.Lock(parent.locked);
    seq->locked = parent.locked;
  }
  seq->num_scheduled = shared;
  seq->num_computed = shared;
  return true;
}

bool Batcher::Admit(Sequence* seq, int32_t* budget, StepRequest* request) {
  ITE_DCHECK(seq->blocks.empty() && seq->num_scheduled == 0, "admitting a sequence with KV");
  std::vector<BlockCopy> copies;
  if (seq->fork_parent >= 0 && ShareParentPrompt(seq)) {
    // Shared once: a preempted fork starts again from the cache like any request.
    seq->fork_parent = -1;
  } else if (UsesCache(*seq)) {
    MatchPrefix(seq, &copies);
  }
  const int32_t matched = seq->num_scheduled;
  waiting_.erase(KeyOf(*seq));
  seq->state = Sequence::State::kRunning;
  running_.push_back(seq);
  // Copies go first: the chunk may add its own copy-on-write, which must follow them.
  size_t copies_at = request->copy_blocks.size();
  request->copy_blocks.insert(request->copy_blocks.end(), copies.begin(), copies.end());
  if (!ScheduleChunk(seq, budget, request, /*may_preempt=*/false)) {
    request->copy_blocks.resize(copies_at);
    RemoveFromRunning(seq);
    DropKv(seq, /*cache=*/false);
    seq->state = Sequence::State::kWaiting;
    waiting_.insert(KeyOf(*seq));
    return false;
  }
  if (seq->cached_tokens < 0) seq->cached_tokens = std::min(seq->num_prompt, matched);
  return true;
}

void Batcher::CacheComputed(Sequence* seq) {
  int32_t computed = std::min(seq->num_computed, seq->known());
  int32_t full = computed / block_size_;
  if (full <= seq->cached_blocks) return;  // nothing new since the last insert
  seq->cached_blocks = full;
  RadixCache::Node* node =
      cache_.Insert(std::span<const int32_t>(seq->tokens.data(), full * block_size_),
                    std::span<const int32_t>(seq->blocks.ids().data(), full));
  if (node == seq->locked || node == cache_.root()) return;
  cache_.Lock(node);
  if (seq->locked != nullptr) cache_.Unlock(seq->locked);
  seq->locked = node;
}

void Batcher::DropKv(Sequence* seq, bool cache) {
  if (cache && UsesCache(*seq)) CacheComputed(seq);
  if (seq->locked != nullptr) cache_.Unlock(seq->locked);
  seq->locked = nullptr;
  blocks_.Release(&seq->blocks);
  seq->num_scheduled = 0;
  seq->num_computed = 0;
  seq->cached_blocks = 0;
}

void Batcher::Preempt(Sequence* seq) {
  DropKv(seq, /*cache=*/true);
  seq->inflight_samples = 0;
  ++seq->epoch;
  seq->joined = false;
  seq->blocks_sent = 0;
  RemoveFromRunning(seq);
  seq->state = Sequence::State::kWaiting;
  waiting_.insert(KeyOf(*seq));
  ++preemptions_;
}

void Batcher::RemoveFromRunning(Sequence* seq) {
  auto it = std::find(running_.begin(), running_.end(), seq);
  ITE_CHECK(it != running_.end(), "seq {} is not running", seq->seq_id);
  running_.erase(it);
}

Status Batcher::OnStepResult(const StepResult& result, std::vector<OutEvent>* events) {
  if (inflight_.empty() || inflight_.front().step_id != result.step_id) {
    return Internal("result for step {} but the oldest step in flight is {}", result.step_id,
                    inflight_.empty() ? -1 : inflight_.front().step_id);
  }
  InflightStep record = std::move(inflight_.front());
  inflight_.pop_front();
  if (result.outputs.size() != record.num_sampled) {
    return Internal("step {}: {} outputs for {} sampled sequences", result.step_id,
                    result.outputs.size(), record.num_sampled);
  }
  size_t next_output = 0;
  for (const InflightSeq& entry : record.seqs) {
    const StepOutput* out = nullptr;
    if (entry.sample) {
      out = &result.outputs[next_output++];
      if (out->seq_id != entry.seq_id) {
        return Internal("step {}: output {} is for seq {}, expected {}", result.step_id,
                        next_output - 1, out->seq_id, entry.seq_id);
      }
    }
    auto it = seqs_.find(entry.seq_id);
    if (it == seqs_.end()) continue;  // finished or cancelled meanwhile: a wasted token
    Sequence* seq = it->second.get();
    if (seq->epoch != entry.epoch) continue;  // preempted since: recomputed from known tokens
    seq->num_computed = std::max(seq->num_computed, entry.end);
    // Long prompts become shareable chunk by chunk, not only when the request ends.
    if (entry.prefill && UsesCache(*seq)) CacheComputed(seq);
    if (out != nullptr) {
      --seq->inflight_samples;
      OnToken(seq, out->sample, events);
    }
  }
  return Status::Ok();
}

void Batcher::OnToken(Sequence* seq, const SampleResult& sample, std::vector<OutEvent>* events) {
  const int32_t token = sample.token;
  seq->tokens.push_back(token);
  GenerationEvent ev;
  ev.tokens.push_back(token);
  if (seq->request.sampling.logprobs || seq->request.sampling.top_logprobs > 0) {
    ev.samples.push_back(sample);
  }
  const GenerationRequest& req = seq->request;
  FinishReason reason = FinishReason::kNone;
  const bool may_stop = seq->generated() >= req.min_tokens;
  bool stop_id =
      may_stop &&
      ((!req.ignore_eos && std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end()) ||
       std::find(req.stop_token_ids.begin(), req.stop_token_ids.end(), token) !=
           req.stop_token_ids.end());
  if (!stop_id) {
    StopChecker::Result r = may_stop ? seq->stop.Push(token) : seq->stop.PushNoStop(token);
    ev.text = std::move(r.text);
    if (r.stopped) reason = FinishReason::kStop;
  } else {
    reason = FinishReason::kStop;
  }
  if (reason == FinishReason::kNone && seq->generated() >= req.max_tokens) {
    reason = FinishReason::kLength;
  }
  if (reason == FinishReason::kNone) {
    events->push_back({seq->on_event, std::string(), std::move(ev)});
    return;
  }
  if (stop_id || reason == FinishReason::kLength) ev.text += seq->stop.Flush().text;
  Finish(seq, reason, Status::Ok(), std::move(ev), events);
}

void Batcher::Finish(Sequence* seq, FinishReason reason, Status error, GenerationEvent event,
                     std::vector<OutEvent>* events) {
  event.finish = reason;
  event.error = std::move(error);
  event.usage.prompt_tokens = seq->num_prompt;
  event.usage.cached_tokens = std::max(0, seq->cached_tokens);
  event.usage.completion_tokens = seq->generated();
  events->push_back({seq->on_event, seq->request.request_id, std::move(event)});
  if (seq->state == Sequence::State::kRunning) {
    RemoveFromRunning(seq);
  } else {
    waiting_.erase(KeyOf(*seq));
  }
  DropKv(seq, /*cache=*/reason != FinishReason::kError);
  if (seq->last_step >= 0) pending_releases_.push_back(seq->seq_id);
  seqs_.erase(seq->seq_id);
}

bool Batcher::Cancel(int64_t seq_id, std::vector<OutEvent>* events) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return false;
  Finish(it->second.get(), FinishReason::kCancelled, Status::Ok(), GenerationEvent(), events);
  return true;
}

void Batcher::CancelAll(std::vector<OutEvent>* events) {
  std::vector<int64_t> ids;
  for (const auto& [id, seq] : seqs_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (int64_t id : ids) Cancel(id, events);
}

std::vector<std::unique_ptr<Sequence>> Batcher::Fail(const Status& error,
                                                     std::vector<OutEvent>* events) {
  std::vector<std::unique_ptr<Sequence>> reroute;
  std::vector<int64_t> ids;
  for (const auto& [id, seq] : seqs_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (int64_t id : ids) {
    Sequence* seq = seqs_.at(id).get();
    // Nothing streamed yet (queued, or admitted with its prefill or first token still in
    // flight): the client has seen nothing, so the request can start over on another worker.
    constexpr int32_t kMaxMoves = 2;
    const bool ran = seq->state == Sequence::State::kRunning;
    if (seq->generated() == 0 && (!ran || seq->moves_after_failure < kMaxMoves)) {
      if (ran) {
        ++seq->moves_after_failure;
        RemoveFromRunning(seq);
        seq->state = Sequence::State::kWaiting;
      } else {
        waiting_.erase(KeyOf(*seq));
      }
      DropKv(seq, /*cache=*/false);
      seq->inflight_samples = 0;
      seq->joined = false;
      seq->blocks_sent = 0;
      seq->last_step = -1;
      seq->cached_tokens = -1;
      ++seq->epoch;
      reroute.push_back(std::move(seqs_.at(id)));
      seqs_.erase(id);
    } else {
      Finish(seq, FinishReason::kError, error, GenerationEvent(), events);
    }
  }
  inflight_.clear();
  pending_releases_.clear();
  cache_.Clear();
  ITE_CHECK(blocks_.num_free() == blocks_.num_blocks(), "{} blocks leaked after a failure",
            blocks_.num_used());
  return reroute;
}

void Batcher::FillStats(WorkerStats* stats) const {
  stats->num_blocks = blocks_.num_blocks();
  stats->free_blocks = blocks_.num_free();
  // A cached block that a sequence has locked counts as used: what is evictable is what only
  // the cache holds.
  stats->cached_blocks = cache_.evictable_blocks();
  stats->used_blocks = blocks_.num_used() - stats->cached_blocks;
  stats->cached_tokens = cache_.cached_tokens();
  stats->running = num_running();
  stats->waiting = num_waiting();
  stats->preemptions = preemptions_;
}

Status Batcher::CheckConsistency() const {
  std::vector<const BlockTable*> tables;
  for (const auto& [id, seq] : seqs_) tables.push_back(&seq->blocks);
  ITE_RETURN_IF_ERROR(cache_.CheckInvariants());
  return blocks_.CheckConsistency(tables, cache_.HeldBlocks());
}

}  // namespace ite
