// The CPU backend: the reference implementation of the forward pass (fp32 activations and
// accumulation) over F32 weights, or BF16 weights widened on load (half the memory traffic).
// Weights are used where the loader put them (often straight from the file's memory map); the
// paged KV pool is allocated once at creation. Multi-threaded over a pool of `num_threads`.
#pragma once

#include <memory>

#include "common/status.h"
#include "worker/backend/backend.h"
#include "worker/model/model_loader.h"
#include "worker/parallel/communicator.h"

namespace ite {

// Fails with a Status naming the tensor when a weight is missing or mis-shaped for
// model.config, or when the KV options do not give at least one block.
// num_threads < 1 means one thread. Like every Backend, used from one thread at a time.
// A tensor-parallel shard (model loaded with LoadOptions::tp_size > 1) needs `comm`, the group's
// communicator for this rank (host buffers), which must outlive the backend.
StatusOr<std::unique_ptr<Backend>> CreateCpuBackend(LoadedModel model, const KvCacheOptions& kv,
                                                    int num_threads, Communicator* comm = nullptr);

}  // namespace ite
