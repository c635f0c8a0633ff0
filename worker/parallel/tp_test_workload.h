// Test-only: one fixed workload for a backend (two sequences prefilled in one batch, then
// decoded together greedily) and a runner of it on N tensor-parallel ranks as N threads, shared
// by the CPU and CUDA tensor-parallel tests.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "worker/backend/backend.h"

namespace ite::testing {

// Every logit row the workload asked for, [rows, vocab], and every sampled token, in order.
struct Trace {
  std::vector<float> logits;
  std::vector<int32_t> tokens;
};

inline constexpr int kWorkloadDecodeSteps = 8;

// Token ids below 64; block ids 0-7 (tables of 4 blocks of at least 4 tokens each).
StatusOr<Trace> RunWorkload(Backend* b);

// make(rank) builds rank's backend and the workload runs on it, on `size` threads at once. A rank
// that fails calls abort() so that no other rank waits for it.
std::vector<StatusOr<Trace>> RunRanks(
    int size, const std::function<StatusOr<std::unique_ptr<Backend>>(int rank)>& make,
    const std::function<void()>& abort);

}  // namespace ite::testing
