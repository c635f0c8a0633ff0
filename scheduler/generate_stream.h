// One streamed ite.v1.Generation.Generate call on gRPC's callback API: the session's chunks go
// out as they come, with no thread held per call. The scheduler's event wakes the stream (on the
// scheduler thread), which starts a write if none is in flight; the write's completion (on a
// gRPC thread) sends the next chunk that came meanwhile. A client that cancels, disconnects or
// passes its deadline is told at once by OnCancel, and the request is cancelled in the scheduler
// (its KV blocks freed).
//
// Threads: Wake, OnWriteDone and OnCancel may run at once on different threads; every decision
// is taken under one lock, and gRPC is called outside it.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/proto_utils.h>

#include <memory>
#include <mutex>

#include "scheduler/generation_session.h"

namespace ite {

class GenerateStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer>,
                             public GenerationSession::Waker {
 public:
  // The reactor for a call whose request was accepted as `session`. It owns itself until gRPC
  // says it is done with it (OnDone).
  static grpc::ServerWriteReactor<grpc::ByteBuffer>* Start(
      std::unique_ptr<GenerationSession> session);

  // A reactor that only ends the call with `status` (a request refused before any work).
  static grpc::ServerWriteReactor<grpc::ByteBuffer>* Refuse(const grpc::Status& status);

  void Wake() override { Pump(); }
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  explicit GenerateStream(std::unique_ptr<GenerationSession> session);
  // Starts the next write, or ends the call, when nothing is in flight.
  void Pump();

  std::mutex mu_;
  std::unique_ptr<GenerationSession> session_;  // reset in OnDone
  std::shared_ptr<GenerateStream> self_;        // keeps the stream alive until OnDone
  grpc::ByteBuffer out_;                        // the message being written
  bool first_ = true;                           // the first chunk carries the request id
  bool writing_ = false;
  bool last_written_ = false;  // the final chunk went out: Finish(OK) when its write is done
  bool cancelled_ = false;     // by the client, or a write failed
  bool finished_ = false;      // Finish was called: no more operations
};

}  // namespace ite
