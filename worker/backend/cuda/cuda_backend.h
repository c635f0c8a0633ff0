// The CUDA backend: a model on one GPU (bf16 or fp16), its paged KV pool, sampling on the
// device, CUDA graphs for decode steps, and steps pipelined behind each other.
//
// The step inputs are laid out once in pinned memory and copied in one transfer (StepLayout);
// the sampled tokens stay in a device array that the next decode step reads, and only the ids
// come back to the host, asynchronously. A decode step (one token per sequence, no penalties,
// no logprobs) replays a CUDA graph captured for its batch padded to the next size of a ladder
// (1, 2, 4, ... max) and its block tables padded to a power of two; other steps run eagerly.
#pragma once

#include <memory>

#include "common/status.h"
#include "worker/backend/backend.h"
#include "worker/model/model_loader.h"
#include "worker/parallel/communicator.h"

namespace ite {

struct CudaBackendOptions {
  int device = 0;     // CUDA device ordinal
  KvCacheOptions kv;  // block_size; num_blocks, or max_kv_bytes when num_blocks is 0
  // > 0: the KV pool takes what brings the GPU's memory use to this fraction of its total
  // (weights, activations and other processes counted), unless kv.num_blocks is set.
  double gpu_memory_utilization = 0.0;
  int32_t max_step_tokens = 8192;  // token rows one step may carry
  int32_t max_seqs = 256;          // sequences one step may carry
  bool enforce_eager = false;      // no CUDA graphs
  // A request's tokens independent of the batch it runs in (CudaOpsOptions::batch_invariant),
  // at some cost in speed.
  bool batch_invariant = false;
  // Decode at batch 1 through one persistent kernel for all layers where ITE_DECODER_STACK=1
  // asks for it (CudaOpsOptions; experimental, slower today).
  bool fused_decoder_stack = true;
  int32_t max_graph_batch = 256;  // largest decode batch replayed from a graph
  // The tensor-parallel group, for a model loaded as a shard (LoadOptions::tp_size > 1); must
  // outlive the backend. Every rank runs the same steps; a group whose collectives cannot be
  // captured (the in-process one of the tests) runs without graphs.
  Communicator* comm = nullptr;
};

// `model` must be loaded with LoadOptions::dtype kBF16 or kF16 (the activation dtype). Fails
// with a clear Status when no GPU is usable, the weights do not fit (bytes needed and free),
// the KV options give no block, or an architecture feature has no kernel (head_dim not 64/128).
StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(LoadedModel model,
                                                     const CudaBackendOptions& options);

// CUDA devices visible to this process (0 when there is no driver or device).
int CudaDeviceCount();

}  // namespace ite
