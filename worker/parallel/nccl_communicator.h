// The Communicator of a tensor-parallel group across GPUs: one NCCL communicator per rank, one
// GPU per rank. Collectives are enqueued on the caller's stream, so a captured decode graph
// holds them (capturable()).
//
// No hang at start-up: the communicator is created non-blocking and a rank that does not join
// within init_timeout_ms aborts it and fails with Unavailable. NVLink multicast (NVLS) stays
// off unless the environment already says otherwise: NcclCreateId sets NCCL_NVLS_ENABLE=0 when
// unset, because the hosts we run on must not create multicast objects.
#pragma once

#include <array>
#include <memory>

#include "worker/parallel/communicator.h"

namespace ite {

// The bytes that let the ranks of a group find each other: rank 0 creates them, every rank joins
// with the same (the ranks of one process share them in memory).
struct CommId {
  static constexpr size_t kBytes = 128;  // NCCL_UNIQUE_ID_BYTES
  std::array<char, kBytes> bytes{};
};

struct NcclOptions {
  int rank = 0;
  int size = 1;
  int device = 0;  // CUDA device ordinal of this rank
  int64_t init_timeout_ms = 120000;
};

// A fresh id, to hand to every rank. Call it before starting the ranks' threads.
StatusOr<CommId> NcclCreateId();

// Joins the group `id` names as options.rank; returns once every rank has joined.
StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(const CommId& id,
                                                               const NcclOptions& options);

}  // namespace ite
