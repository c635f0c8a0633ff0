// Host-side state of the sequences a device-sampling backend serves: each sequence's slot in
// the device array of last sampled tokens, its sampling parameters and seed, how many draws it
// has taken (the counter of the seeded draw), and, for sequences with penalties, the token
// counts the penalty kernel is given. The sampled tokens themselves stay on the device.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "worker/sampling/sampler.h"

namespace ite {

struct DeviceSequence {
  int32_t slot = -1;   // index into the device's last-token array
  uint64_t epoch = 0;  // changes at every (re)join, so a stale step's tokens are not counted
  SamplingParams params;
  uint64_t seed = 0;   // params.seed, or a random one
  uint64_t drawn = 0;  // tokens sampled so far, the draw counter
  bool has_token = false;
  bool penalties = false;                          // repetition, presence or frequency penalty on
  std::unordered_set<int32_t> seen;                // prompt + generated (repetition penalty)
  std::unordered_map<int32_t, int32_t> generated;  // token -> count (presence / frequency)
};

class DeviceSequences {
 public:
  explicit DeviceSequences(int32_t capacity);

  Status Add(int64_t seq_id, const SamplingParams& params, std::span<const int32_t> context,
             int32_t generated);
  void Release(int64_t seq_id);
  void Clear();

  DeviceSequence* Find(int64_t seq_id);
  // Records a token sampled for seq_id in the step taken at `epoch` (penalty counts only).
  void Absorb(int64_t seq_id, uint64_t epoch, int32_t token);

  // The penalty kernel's list for one sequence: distinct tokens and their generated counts.
  void PenaltyList(const DeviceSequence& s, std::vector<int32_t>* tokens,
                   std::vector<int32_t>* counts) const;

 private:
  std::unordered_map<int64_t, DeviceSequence> seqs_;
  std::vector<int32_t> free_slots_;
  uint64_t next_epoch_ = 1;
};

}  // namespace ite
