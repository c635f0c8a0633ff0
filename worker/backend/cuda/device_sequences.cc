#include "worker/backend/cuda/device_sequences.h"

#include <algorithm>
#include <random>

namespace ite {

DeviceSequences::DeviceSequences(int32_t capacity) {
  for (int32_t i = capacity - 1; i >= 0; --i) free_slots_.push_back(i);
}

Status DeviceSequences::Add(int64_t seq_id, const SamplingParams& params,
                            std::span<const int32_t> context, int32_t generated) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) {
    if (free_slots_.empty())
      return ResourceExhausted("CUDA backend: more than {} live sequences", seqs_.size());
    it = seqs_.emplace(seq_id, DeviceSequence{}).first;
    it->second.slot = free_slots_.back();
    free_slots_.pop_back();
  }
  DeviceSequence& s = it->second;
  const int32_t slot = s.slot;
  s = DeviceSequence{};
  s.slot = slot;
  s.epoch = next_epoch_++;
  s.params = params;
  if (params.has_seed) {
    s.seed = params.seed;
  } else {
    std::random_device rd;
    s.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  generated = std::clamp<int32_t>(generated, 0, static_cast<int32_t>(context.size()));
  s.drawn = static_cast<uint64_t>(generated);
  s.penalties = params.repetition_penalty != 1.0f || params.presence_penalty != 0.0f ||
                params.frequency_penalty != 0.0f;
  if (params.repetition_penalty != 1.0f) s.seen.insert(context.begin(), context.end());
  if (s.penalties) {
    for (int32_t t : context.last(generated)) ++s.generated[t];
  }
  return Status::Ok();
}

void DeviceSequences::Release(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  if (it == seqs_.end()) return;
  free_slots_.push_back(it->second.slot);
  seqs_.erase(it);
}

void DeviceSequences::Clear() {
  for (auto& [id, s] : seqs_) free_slots_.push_back(s.slot);
  seqs_.clear();
}

DeviceSequence* DeviceSequences::Find(int64_t seq_id) {
  auto it = seqs_.find(seq_id);
  return it == seqs_.end() ? nullptr : &it->second;
}

void DeviceSequences::Absorb(int64_t seq_id, uint64_t epoch, int32_t token) {
  DeviceSequence* s = Find(seq_id);
  if (s == nullptr || s->epoch != epoch || !s->penalties) return;
  ++s->generated[token];
  if (s->params.repetition_penalty != 1.0f) s->seen.insert(token);
}

void DeviceSequences::PenaltyList(const DeviceSequence& s, std::vector<int32_t>* tokens,
                                  std::vector<int32_t>* counts) const {
  for (auto [t, n] : s.generated) {
    tokens->push_back(t);
    counts->push_back(n);
  }
  for (int32_t t : s.seen) {
    if (s.generated.count(t) == 0) {
      tokens->push_back(t);
      counts->push_back(0);
    }
  }
}

}  // namespace ite
