// GrpcWorkerClient: WorkerClient over the ite.v1.Worker gRPC service of one ite-worker process.
//
// Steps go over one long-lived StepStream (bidirectional), so several steps can be in flight and
// the worker starts the next one as soon as it finishes the last: the scheduler's round trip is
// hidden. A sender thread writes requests; a reader thread matches results to requests in order
// and runs the `done` callbacks.
//
// Failure: when the stream breaks (worker killed: the socket closes at once; worker hung:
// keepalive or the step deadline notices) every step in flight completes with UNAVAILABLE, in
// order. A stream that breaks while idle (a worker killed between requests, maybe restarted
// already with an empty KV pool) is remembered too: every later step fails with UNAVAILABLE
// until Clear() succeeds, so the scheduler never runs a step against KV blocks the worker lost.
// (The scheduler probes a failed worker with Info and Clear, then takes it back.) Reconnect
// backoff is capped low so a restarted worker is found within about a second.
//
// Threads: every method may be called from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/protocol/worker_client.h"

namespace grpc {
class ChannelCredentials;
}

namespace ite {

struct GrpcWorkerClientOptions {
  std::string address;            // host:port of the ite-worker
  int32_t rpc_timeout_ms = 5000;  // Info, Clear
  // Health: short, as the scheduler's probe asks every worker in turn and a stopped worker
  // answers nothing at all.
  int32_t health_timeout_ms = 1000;
  // A step not answered within this is treated as a hung worker. Generous: a CPU prefill of a
  // full token budget can take seconds.
  int32_t step_timeout_ms = 120000;
  int32_t max_reconnect_backoff_ms = 1000;
  // null: plaintext. TLS credentials (proto/grpc_security.h) carry the scheduler's client
  // certificate, which a worker with TLS requires.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  // Non-empty: the name the worker's certificate must carry, when `address` is one that the
  // certificate does not name (127.0.0.1, a pod IP).
  std::string tls_server_name;
};

class GrpcWorkerClient final : public WorkerClient {
 public:
  explicit GrpcWorkerClient(GrpcWorkerClientOptions options);
  ~GrpcWorkerClient() override;

  GrpcWorkerClient(const GrpcWorkerClient&) = delete;
  GrpcWorkerClient& operator=(const GrpcWorkerClient&) = delete;

  StatusOr<WorkerInfo> Info() override;
  void StepAsync(StepRequest request, std::function<void(StatusOr<StepResult>)> done) override;
  Status Health() override;
  Status Clear() override;
  bool StateLost() override { return state_lost_.load(); }

  std::string address() const override { return options_.address; }

 private:
  struct Stream;
  using Done = std::function<void(StatusOr<StepResult>)>;

  void SenderLoop();
  // Opens a new StepStream (after joining the previous stream's reader, so results of the old
  // stream are all delivered before any of the new one).
  void OpenStream();
  void ReaderLoop(Stream* stream);

  const GrpcWorkerClientOptions options_;
  struct Rpc;  // channel + stub (pimpl keeps gRPC headers out of this header)
  std::unique_ptr<Rpc> rpc_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<StepRequest, Done>> outbox_;  // guarded by mu_
  bool stopping_ = false;                            // guarded by mu_
  // Set when a step stream ends abnormally: the worker's sequence state may be gone. Cleared by
  // a successful Clear().
  std::atomic<bool> state_lost_{false};

  std::unique_ptr<Stream> stream_;  // owned by the sender thread
  std::thread sender_;
};

}  // namespace ite
