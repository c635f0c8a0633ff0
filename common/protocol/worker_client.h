// WorkerClient: the scheduler's view of one worker process (or one tensor-parallel group).
// Two implementations: in-process over a WorkerEngine (worker/service/in_process_worker_client.h:
// tests, single-process serving) and gRPC (scheduler/grpc_worker_client.h). The batcher is
// written against this interface only, so it is tested without sockets.
#pragma once

#include <functional>
#include <string>

#include "common/protocol/step.h"
#include "common/status.h"

namespace ite {

class WorkerClient {
 public:
  virtual ~WorkerClient() = default;

  virtual StatusOr<WorkerInfo> Info() = 0;

  // Pipelined: the scheduler keeps up to 2 steps in flight per worker. Steps execute in the order
  // they were sent, and `done` is called once per step, in that order, on an internal thread
  // (never inside StepAsync). An error status means the worker failed: the scheduler fails that
  // worker's requests with UNAVAILABLE and marks it down until a later Info() succeeds again.
  virtual void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) = 0;

  virtual Status Health() = 0;

  // Forgets all sequence state on the worker (after a restart or a failure).
  virtual Status Clear() = 0;

  // True when the client knows the worker lost its sequence and KV state since the last
  // successful Clear() without a step failing yet (a worker restarted between steps). The
  // scheduler then stops sending steps to it, has it cleared and starts it afresh, keeping the
  // requests that were only queued.
  virtual bool StateLost() { return false; }

  // Where the worker is, for log lines and errors ("10.0.0.7:50052"); "" when it has no address
  // (in-process, or a discovery slot without a pod).
  virtual std::string address() const { return ""; }
};

}  // namespace ite
