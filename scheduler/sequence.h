// A request as the batcher tracks it: its tokens so far, its KV blocks and where it stands.
//
// Positions and counters (P = prompt length):
//   tokens            prompt + generated tokens known to the scheduler (results received)
//   num_scheduled     KV positions handed to steps sent so far, in flight included
//   num_computed      KV positions written by steps that have come back (<= num_scheduled);
//                     only these are offered to the prefix cache, so a sequence never shares a
//                     block that an earlier step in flight, or its own step, has yet to write
//   inflight_samples  tokens sampled by steps in flight whose results have not come back
// The next position to run is num_scheduled: its token is tokens[num_scheduled] if known,
// otherwise the token an in-flight step is sampling, which the worker feeds itself (a decode
// step with no tokens). Preemption drops the KV and the in-flight samples (epoch + 1) and starts
// again from tokens, so num_scheduled returns to 0.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "scheduler/block_manager.h"
#include "scheduler/radix_cache.h"
#include "scheduler/scheduler.h"
#include "scheduler/stop_checker.h"

namespace ite {

using EventCallback = std::function<void(const GenerationEvent&)>;

struct Sequence {
  enum class State { kWaiting, kRunning };

  int64_t seq_id = 0;    // unique per scheduler; names the sequence on the worker
  uint64_t arrival = 0;  // FCFS order within a priority
  GenerationRequest request;
  std::shared_ptr<EventCallback> on_event;

  std::vector<int32_t> tokens;
  int32_t num_prompt = 0;
  int32_t num_scheduled = 0;
  int32_t num_computed = 0;  // positions whose step has come back: safe to share via the cache
  int32_t inflight_samples = 0;
  uint32_t epoch = 0;  // + 1 on each preemption; stale in-flight outputs are dropped
  // Times it was admitted to a worker that failed before anything streamed, and moved to start
  // over elsewhere (bounded: a worker failing every step must not bounce a request forever).
  int32_t moves_after_failure = 0;
  bool joined = false;  // the worker holds sampler state for this epoch
  // Leading entries of `blocks` the worker already holds as sent (steps send only the rest).
  int32_t blocks_sent = 0;
  State state = State::kWaiting;
  int64_t last_step = -1;  // id of the last step it was put in (never twice in one step)

  BlockTable blocks;
  RadixCache::Node* locked = nullptr;  // prefix-cache node pinned while the blocks are used
  int32_t cached_blocks = 0;           // full blocks offered to the cache so far (this epoch)
  int32_t cached_tokens = -1;          // prompt tokens from the cache at first admission
  int64_t fork_parent = -1;  // seq_id of the request it forks from (GenerationRequest::fork_of)

  StopChecker stop{nullptr, {}};

  int32_t generated() const { return static_cast<int32_t>(tokens.size()) - num_prompt; }
  int32_t known() const { return static_cast<int32_t>(tokens.size()); }
};

}  // namespace ite
