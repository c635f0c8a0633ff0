#include "scheduler/generate_stream.h"

#include <chrono>
#include <optional>

#include "common/logging.h"
#include "proto/grpc_status.h"
#include "scheduler/generation_codec.h"

namespace ite {
namespace {

// Ends its call at once; deletes itself when gRPC is done with it.
class RefusedStream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit RefusedStream(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream::Refuse(const grpc::Status& status) {
  return new RefusedStream(status);
}

GenerateStream::GenerateStream(std::unique_ptr<GenerationSession> session)
    : session_(std::move(session)) {}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerateStream::Start(
    std::unique_ptr<GenerationSession> session) {
  std::shared_ptr<GenerateStream> stream(new GenerateStream(std::move(session)));
  stream->self_ = stream;
  stream->session_->SetWaker(stream);
  // Events that arrived before the waker was set announce nothing: look for them now. gRPC keeps
  // a write or Finish made before the reactor is returned until the call is bound.
  stream->Pump();
  return stream.get();
}

void GenerateStream::Pump() {
  grpc::Status status;
  bool finish = false;  // what this call does once the lock is released: Finish, or a write
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_ || writing_ || session_ == nullptr) return;
    if (cancelled_) {
      // A finished request's id may already name a new request: cancel only our own.
      if (!session_->finished()) {
        ITE_LOG_DEBUG("request {}: client went away, cancelling", session_->request_id());
        session_->Cancel();
      }
      status = grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
      finish = true;
    } else if (last_written_) {
      finish = true;
    } else {
      std::optional<GenerationChunk> chunk = session_->Next(std::chrono::milliseconds(0));
      if (!chunk.has_value()) return;  // the next event wakes us
      if (chunk->finish == FinishReason::kError) {
        ITE_LOG_WARN("request {} failed: {}", session_->request_id(), chunk->error.ToString());
        status = ToGrpcStatus(chunk->error);
        finish = true;
      } else {
        ite::v1::GenerateResponse response;
        ChunkToProto(*chunk, first_ ? session_->request_id() : std::string(), &response);
        first_ = false;
        out_.Clear();
        bool own = false;
        grpc::Status serialized = grpc::SerializationTraits<ite::v1::GenerateResponse>::Serialize(
            response, &out_, &own);
        if (!serialized.ok()) {
          session_->Cancel();
          status = grpc::Status(grpc::StatusCode::INTERNAL,
                                "cannot serialize a response: " + serialized.error_message());
          finish = true;
        } else {
          last_written_ = chunk->finish != FinishReason::kNone;
          writing_ = true;
        }
      }
    }
    finished_ = finish;
  }
  // Outside the lock: gRPC may run a reaction (OnWriteDone, OnDone) on this thread.
  if (finish) {
    Finish(status);
  } else {
    StartWrite(&out_);
  }
}

void GenerateStream::OnWriteDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok && !last_written_) cancelled_ = true;
  }
  Pump();
}

void GenerateStream::OnCancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
  }
  Pump();
}

void GenerateStream::OnDone() {
  std::shared_ptr<GenerateStream> keep;
  {
    std::lock_guard<std::mutex> lock(mu_);
    session_.reset();  // cancels an unfinished generation
    keep = std::move(self_);
  }
  // `keep` may be the last owner (a waker holds another for the length of its call): this is
  // destroyed on return, and nothing after touches it.
}

}  // namespace ite
