// Batcher: the continuous batching policy for ONE worker (the Scheduler runs one per worker).
//
// Owns the worker's BlockManager and RadixCache, its waiting queue (priority, then FCFS) and its
// running set. BuildStep fills a StepRequest under a token budget: running sequences whose next
// input is one token (decodes) first, then prefill chunks of running sequences, then new
// admissions, each with the blocks it needs; when blocks run out it evicts unused cached prefixes
// and then preempts the newest, lowest-priority running sequence (its KV is recomputed later,
// mostly from the prefix cache). Up to `max_inflight_steps` steps may be outstanding: a decode
// does not need the previous step's token, the worker feeds it.
//
// Thread safety: none; the scheduler loop thread owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/protocol/step.h"
#include "scheduler/block_manager.h"
#include "scheduler/radix_cache.h"
#include "scheduler/scheduler.h"
#include "scheduler/sequence.h"

namespace ite {

struct BatcherOptions {
  int32_t max_batch_tokens = 2048;
  int32_t max_running = 256;
  int32_t max_inflight_steps = 2;
  bool enable_prefix_cache = true;
};

// An event to deliver once the loop has released its state; `request_id` is set so the loop can
// forget finished requests.
struct OutEvent {
  std::shared_ptr<EventCallback> callback;
  std::string request_id;
  GenerationEvent event;
};

class Batcher {
 public:
  Batcher(const BatcherOptions& options, const WorkerInfo& info);
  ~Batcher();

  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  void Enqueue(std::unique_ptr<Sequence> seq);

  bool CanSendStep() const { return static_cast<int32_t>(inflight_.size()) < max_inflight(); }
  // Fills `request` (its seqs empty on entry) with the next step; false when nothing can run.
  // A step that only releases finished sequences is built only when none is in flight.
  bool BuildStep(int64_t step_id, StepRequest* request);

  // The result of the oldest step in flight. An Internal error means the worker answered out of
  // order or about sequences it was not asked about: the caller treats it as a worker failure.
  Status OnStepResult(const StepResult& result, std::vector<OutEvent>* events);

  // Ends the sequence now (blocks freed) with a final kCancelled event. False if unknown here.
  bool Cancel(int64_t seq_id, std::vector<OutEvent>* events);

  // The worker failed: sequences that already streamed tokens end with kError and `error`;
  // those that produced nothing yet (waiting, or running with their prefill or first token in
  // flight, the latter at most twice per sequence) are returned so the caller can route them
  // elsewhere. Leaves the batcher empty with every block free.
  std::vector<std::unique_ptr<Sequence>> Fail(const Status& error, std::vector<OutEvent>* events);

  // Drain on shutdown: cancels everything (final kCancelled events).
  void CancelAll(std::vector<OutEvent>* events);

  int32_t PeekCachedPrefix(std::span<const int32_t> tokens) const;
  bool Has(int64_t seq_id) const { return seqs_.count(seq_id) != 0; }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t num_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t load() const { return num_running() + num_waiting(); }
  int32_t num_inflight() const { return static_cast<int32_t>(inflight_.size()); }
  int64_t preemptions() const { return preemptions_; }
  void FillStats(WorkerStats* stats) const;
  // Debug / tests: block accounting against every holder.
  Status CheckConsistency() const;

 private:
  struct InflightSeq {
    int64_t seq_id;
    uint32_t epoch;
    int32_t end;  // KV positions written once the step has run
    bool sample;
    bool prefill;  // ran known tokens (worth offering to the prefix cache)
  };
  struct InflightStep {
    int64_t step_id;
    std::vector<InflightSeq> seqs;
    size_t num_sampled;
  };
  // (-priority, arrival, seq_id); the negation in 64 bits, as -INT32_MIN has no int32_t.
  using WaitKey = std::tuple<int64_t, uint64_t, int64_t>;

  int32_t max_inflight() const { return options_.max_inflight_steps; }
  bool UsesCache(const Sequence& seq) const;
  WaitKey KeyOf(const Sequence& seq) const;
  static void ModelTokens(const GenerationRequest& request, std::vector<int32_t>* tokens);
  // Adds the sequence's next chunk (up to `budget` tokens) to the step; false if it cannot run.
  bool ScheduleChunk(Sequence* seq, int32_t* budget, StepRequest* request, bool may_preempt);
  // Makes room for `blocks_needed` more blocks: evicts cached prefixes, then (if allowed)
  // preempts running sequences other than `keep`. False if it could not.
  bool EnsureFree(int32_t blocks_needed, Sequence* keep, int64_t step_id, bool may_preempt);
  bool Admit(Sequence* seq, int32_t* budget, StepRequest* request);
  void MatchPrefix(Sequence* seq, std::vector<BlockCopy>* copies);
  // Starts a fork from its running parent's prompt blocks; false when the parent cannot serve.
  bool ShareParentPrompt(Sequence* seq);
  void CacheComputed(Sequence* seq);  // inserts the sequence's computed full blocks
  // Back to "nothing computed": optionally caches the computed blocks, unlocks, frees.
  void DropKv(Sequence* seq, bool cache);
  void Preempt(Sequence* seq);
  void OnToken(Sequence* seq, const SampleResult& sample, std::vector<OutEvent>* events);
  // Ends a sequence with a final event (already holding its last tokens, if any).
  void Finish(Sequence* seq, FinishReason reason, Status error, GenerationEvent event,
              std::vector<OutEvent>* events);
  void RemoveFromRunning(Sequence* seq);

  BatcherOptions options_;
  int32_t block_size_;
  std::vector<int32_t> eos_ids_;
  BlockManager blocks_;
  RadixCache cache_;
  std::unordered_map<int64_t, std::unique_ptr<Sequence>> seqs_;
  std::set<WaitKey> waiting_;
  std::vector<Sequence*> running_;  // admission order
  std::deque<InflightStep> inflight_;
  std::vector<int64_t> pending_releases_;
  int64_t preemptions_ = 0;
};

}  // namespace ite
