#include "scheduler/grpc_worker_client.h"

#include <grpcpp/grpcpp.h>

#include "common/logging.h"
#include "proto/grpc_status.h"
#include "proto/ite/v1/worker.grpc.pb.h"
#include "proto/step_codec.h"

namespace ite {

using Clock = std::chrono::steady_clock;

struct GrpcWorkerClient::Rpc {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<ite::v1::Worker::Stub> stub;
};

// One StepStream and the steps written to it whose results have not come back yet.
struct GrpcWorkerClient::Stream {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReaderWriter<ite::v1::StepRequest, ite::v1::StepResult>> rw;
  std::mutex mu;
  std::deque<std::pair<Clock::time_point, Done>> pending;  // guarded by mu, in write order
  bool broken = false;                                     // guarded by mu
  bool timed_out = false;  // guarded by mu: dropped for a step past step_timeout_ms
  // Held around every Write and around marking the stream broken, so no Write runs
  // concurrently with (or after) Finish, which gRPC does not allow.
  std::mutex write_mu;
  std::thread reader;
};

GrpcWorkerClient::GrpcWorkerClient(GrpcWorkerClientOptions options)
    : options_(std::move(options)), rpc_(std::make_unique<Rpc>()) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC's default reconnect backoff grows to 2 minutes; a restarted worker should be found fast.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, options_.max_reconnect_backoff_ms);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  if (!options_.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options_.tls_server_name);
  }
  rpc_->channel = grpc::CreateCustomChannel(
      options_.address,
      options_.credentials ? options_.credentials : grpc::InsecureChannelCredentials(), args);
  rpc_->stub = ite::v1::Worker::NewStub(rpc_->channel);
  sender_ = std::thread([this] { SenderLoop(); });
}

GrpcWorkerClient::~GrpcWorkerClient() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  sender_.join();
}

StatusOr<WorkerInfo> GrpcWorkerClient::Info() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options_.rpc_timeout_ms));
  ite::v1::WorkerInfo reply;
  grpc::Status s = rpc_->stub->Info(&ctx, ite::v1::WorkerInfoRequest(), &reply);
  if (!s.ok()) {
    return Unavailable("worker {}: Info failed: {}", options_.address, s.error_message());
  }
  return DecodeWorkerInfo(reply);
}

Status GrpcWorkerClient::Health() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options_.health_timeout_ms));
  ite::v1::WorkerHealthResponse reply;
  grpc::Status s = rpc_->stub->Health(&ctx, ite::v1::WorkerHealthRequest(), &reply);
  if (!s.ok()) {
    return Unavailable("worker {}: Health failed: {}", options_.address, s.error_message());
  }
  return Status::Ok();
}

Status GrpcWorkerClient::Clear() {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options_.rpc_timeout_ms));
  ite::v1::WorkerClearResponse reply;
  grpc::Status s = rpc_->stub->Clear(&ctx, ite::v1::WorkerClearRequest(), &reply);
  if (!s.ok()) {
    Status st = FromGrpcStatus(s);
    return Status(st.code(),
                  fmt::format("worker {}: Clear failed: {}", options_.address, st.message()));
  }
  state_lost_ = false;
  return Status::Ok();
}

void GrpcWorkerClient::StepAsync(StepRequest request, Done done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    outbox_.emplace_back(std::move(request), std::move(done));
  }
  cv_.notify_all();
}

void GrpcWorkerClient::OpenStream() {
  if (stream_ && stream_->reader.joinable()) {
    // Make sure the old stream is over: its pending steps fail before the new stream's results.
    stream_->context.TryCancel();
    stream_->reader.join();
  }
  stream_ = std::make_unique<Stream>();
  stream_->rw = rpc_->stub->StepStream(&stream_->context);
  Stream* s = stream_.get();
  s->reader = std::thread([this, s] { ReaderLoop(s); });
}

void GrpcWorkerClient::ReaderLoop(Stream* s) {
  ite::v1::StepResult reply;
  while (s->rw->Read(&reply)) {
    Done done;
    {
      std::lock_guard<std::mutex> lock(s->mu);
      if (s->pending.empty()) {
        // A result without a request: the protocol is broken; drop the stream.
        ITE_LOG_ERROR("worker {}: step result {} without a pending step", options_.address,
                      reply.step_id());
        s->context.TryCancel();
        break;
      }
      done = std::move(s->pending.front().second);
      s->pending.pop_front();
    }
    done(DecodeStepResult(reply));
  }
  // Read failing means the call is over, so a Write in progress returns at once; fence off
  // further writes before Finish. (No TryCancel here: it would mask the real status.)
  {
    std::lock_guard<std::mutex> wlock(s->write_mu);
    std::lock_guard<std::mutex> lock(s->mu);
    s->broken = true;
  }
  grpc::Status status = s->rw->Finish();
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Ours to end only on shutdown; any other end may have taken the worker's state with it.
    if (!stopping_) state_lost_ = true;
  }
  std::deque<std::pair<Clock::time_point, Done>> failed;
  bool timed_out = false;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    failed.swap(s->pending);
    timed_out = s->timed_out;
  }
  if (!failed.empty() && timed_out) {
    // We cancelled the call ourselves: say why, not "Cancelled".
    std::string msg = fmt::format(
        "worker {}: step timeout: a step was not answered within {} ms "
        "(--step-timeout-ms); the worker is stuck or too slow",
        options_.address, options_.step_timeout_ms);
    ITE_LOG_WARN("{}; failing {} step(s) in flight", msg, failed.size());
    for (auto& [sent, done] : failed) done(Unavailable("{}", msg));
  } else if (!failed.empty()) {
    Status st = FromGrpcStatus(status);
    std::string msg = fmt::format("worker {}: step stream ended: {} ({})", options_.address,
                                  st.ok() ? "closed" : st.message(), StatusCodeName(st.code()));
    ITE_LOG_WARN("{}; failing {} step(s) in flight", msg, failed.size());
    // The engine's own errors (INVALID_ARGUMENT, ...) keep their code; transport trouble is
    // UNAVAILABLE either way.
    StatusCode code =
        st.ok() || st.code() == StatusCode::kCancelled ? StatusCode::kUnavailable : st.code();
    for (auto& [sent, done] : failed) done(Status(code, msg));
  }
}

void GrpcWorkerClient::SenderLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    // Wake at least once a second to check the oldest step against the deadline.
    cv_.wait_for(lock, std::chrono::seconds(1), [this] { return stopping_ || !outbox_.empty(); });
    if (stream_) {
      std::lock_guard<std::mutex> slock(stream_->mu);
      if (!stream_->pending.empty() && Clock::now() - stream_->pending.front().first >
                                           std::chrono::milliseconds(options_.step_timeout_ms)) {
        ITE_LOG_ERROR("worker {}: step not answered in {} ms, dropping the stream",
                      options_.address, options_.step_timeout_ms);
        stream_->timed_out = true;
        stream_->context.TryCancel();
      }
    }
    if (stopping_) break;
    while (!outbox_.empty()) {
      auto [request, done] = std::move(outbox_.front());
      outbox_.pop_front();
      lock.unlock();
      if (state_lost_) {
        // Fail after every step of the broken stream (joined in OpenStream-like fashion).
        if (stream_ && stream_->reader.joinable()) {
          stream_->context.TryCancel();
          stream_->reader.join();
        }
        done(
            Unavailable("worker {}: connection lost; its sequence state is gone until the "
                        "scheduler clears it",
                        options_.address));
        lock.lock();
        continue;
      }
      bool need_open = !stream_;
      if (stream_) {
        std::lock_guard<std::mutex> slock(stream_->mu);
        need_open = stream_->broken;
      }
      if (need_open) OpenStream();
      ite::v1::StepRequest wire;
      EncodeStepRequest(request, &wire);
      std::unique_lock<std::mutex> wlock(stream_->write_mu);
      {
        std::lock_guard<std::mutex> slock(stream_->mu);
        if (stream_->broken) {
          // Broke since the check: put the step back; the next round opens a fresh stream.
          wlock.unlock();
          lock.lock();
          outbox_.emplace_front(std::move(request), std::move(done));
          continue;
        }
        stream_->pending.emplace_back(Clock::now(), std::move(done));
      }
      // A failed write shows up as a failed Read on the reader thread, which fails the step.
      if (!stream_->rw->Write(wire)) stream_->context.TryCancel();
      wlock.unlock();
      lock.lock();
    }
  }
  lock.unlock();
  if (stream_) {
    stream_->context.TryCancel();
    if (stream_->reader.joinable()) stream_->reader.join();
  }
  // Steps never sent still get their one callback.
  std::deque<std::pair<StepRequest, Done>> unsent;
  {
    std::lock_guard<std::mutex> l(mu_);
    unsent.swap(outbox_);
  }
  for (auto& [request, done] : unsent) {
    done(Unavailable("worker {}: client shut down", options_.address));
  }
}

}  // namespace ite
