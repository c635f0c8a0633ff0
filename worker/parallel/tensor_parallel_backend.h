// A tensor-parallel group behind the Backend seam: N rank backends (each holding its shard and
// its rank's Communicator), driven by one process. Every call goes to every rank at once, and
// the group answers with rank 0's result, so the worker engine and the scheduler see one
// backend with one KV block table.
//
// Why ranks are threads of one process and not processes: each rank gets every step by a
// function call, with nothing serialized or forwarded on the control path, and the group lives
// and dies as a unit (a rank that fails takes the process, hence the whole group, down, and
// the supervisor restarts all of it).
//
// Each rank has two threads, mirroring the Backend contract: one for Submit and the calls
// between steps, one for Collect, so a rank's Submit can wait for a Collect as on one backend.
// Thread safety: that of Backend.
#pragma once

#include <functional>
#include <memory>

#include "worker/backend/backend.h"

namespace ite {

struct TensorParallelOptions {
  int size = 1;
  // Builds rank r's backend, on that rank's thread; all ranks are built at the same time (their
  // start-ups run collectives together).
  std::function<StatusOr<std::unique_ptr<Backend>>(int rank)> make_rank;
  // Called once when a rank fails to start, so that the others stop waiting for it.
  std::function<void()> abort = [] {};
  // The group's own failure (its communicators'), beyond the ranks' backends' failed().
  std::function<bool()> group_failed = [] { return false; };
  // What the ranks use and must outlive them (the group's communicators); released after the
  // last rank's backend.
  std::shared_ptr<void> keep_alive;
};

StatusOr<std::unique_ptr<Backend>> CreateTensorParallelBackend(
    const TensorParallelOptions& options);

}  // namespace ite
