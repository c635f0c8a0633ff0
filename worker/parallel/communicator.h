// The collective operations that tensor-parallel ranks run together. One Communicator per rank;
// every rank of the group must make the same calls in the same order, with the same counts.
//
// `data` lives where the rank's backend computes: host memory for the CPU backend, device memory
// for the CUDA backend, in which case `stream` is the backend's cudaStream_t and the operation is
// enqueued on it (so an NCCL implementation can be captured inside a CUDA graph). Host
// implementations ignore `stream`. Every rank ends with bitwise identical results, so ranks that
// sample from all-reduced logits draw the same tokens.
//
// Thread safety: one thread per rank at a time.
#pragma once

#include <cstdint>
#include <functional>

#include "common/status.h"
#include "worker/model/model_config.h"
#include "worker/model/tensor.h"

namespace ite {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[i] = sum over ranks of data[i], in place; dtype F32, BF16 or F16.
  virtual Status AllReduceSum(void* data, int64_t count, DType dtype, void* stream) = 0;
  // Rank `root`'s `bytes` bytes at data, copied to every rank's data.
  virtual Status Broadcast(void* data, int64_t bytes, int root, void* stream) = 0;
  // Returns once every rank has called it (host-side; device work already enqueued is not
  // waited for).
  virtual Status Barrier() = 0;
  // Whether AllReduceSum and Broadcast on a stream can be captured into a CUDA graph.
  virtual bool capturable() const { return false; }
  // True once the group is broken for good (a peer failed, the group was aborted): no later
  // collective can succeed, and the ranks' process must be restarted.
  virtual bool failed() const { return false; }
};

// The smallest of every rank's `value` (every rank gets it): each rank in turn broadcasts its
// value from `scratch`, 8 bytes in the memory the communicator works on (device memory for a
// GPU backend, with `stream`); `read` and `write` move the 8 bytes between it and the host.
// For start-up agreements (the KV blocks every rank can hold), not for steps.
StatusOr<int64_t> GroupMin(Communicator* comm, int64_t value, void* scratch, void* stream,
                           const std::function<Status(const void* scratch, int64_t* out)>& read,
                           const std::function<Status(int64_t in, void* scratch)>& write);

// For a backend built from `config`: no communicator for a whole model, and for a shard
// (config.shard.size > 1) the group's communicator of the shard's rank.
Status CheckShardCommunicator(const ModelConfig& config, const Communicator* comm);

}  // namespace ite
