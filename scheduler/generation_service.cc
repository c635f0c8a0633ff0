#include "scheduler/generation_service.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "common/logging.h"
#include "proto/grpc_status.h"

namespace ite {
namespace {

ite::v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return ite::v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return ite::v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
      return ite::v1::FINISH_REASON_CANCELLED;
    default:
      return ite::v1::FINISH_REASON_UNSPECIFIED;
  }
}

// Runs `f` (which returns a StatusOr) so that no exception from third-party code (JSON, the
// template engine) crosses the gRPC edge: it becomes INTERNAL with the exception's text.
template <typename F>
auto NoThrow(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return Internal("unexpected exception: {}", e.what());
  }
}

// Events of one request, handed from the scheduler thread to the call's handler thread. The
// scheduler callback only copies and notifies, so it stays cheap.
struct EventQueue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<GenerationEvent> events;
  bool finished = false;

  void Push(const GenerationEvent& e) {
    {
      std::lock_guard<std::mutex> lock(mu);
      events.push_back(e);
      if (e.finish != FinishReason::kNone) finished = true;
    }
    cv.notify_one();
  }
};

}  // namespace

GenerationService::GenerationService(Scheduler* scheduler,
                                     std::shared_ptr<const Tokenizer> tokenizer,
                                     std::unique_ptr<RequestBuilder> builder,
                                     std::vector<std::string> worker_addresses, int32_t block_size)
    : scheduler_(scheduler),
      tokenizer_(std::move(tokenizer)),
      builder_(std::move(builder)),
      worker_addresses_(std::move(worker_addresses)),
      block_size_(block_size) {}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const ite::v1::GenerateRequest* request,
                                         grpc::ServerWriter<ite::v1::GenerateResponse>* writer) {
  if (!accepting_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down");
  }
  StatusOr<GenerationRequest> built = NoThrow([&] { return builder_->Build(*request); });
  if (!built.ok()) return ToGrpcStatus(built.status());
  GenerationRequest gen = std::move(built).value();
  gen.request_id = request->request_id().empty() ? fmt::format("req-{}", next_request_id_++)
                                                 : request->request_id();
  const std::string request_id = gen.request_id;
  const bool want_logprobs = gen.sampling.logprobs;

  auto queue = std::make_shared<EventQueue>();
  Status submitted = scheduler_->Submit(
      std::move(gen), [queue](const GenerationEvent& event) { queue->Push(event); });
  if (!submitted.ok()) return ToGrpcStatus(submitted);

  bool first = true;
  bool cancelled = false;
  int32_t completion_tokens = 0;
  ite::v1::GenerateResponse chunk;
  while (true) {
    GenerationEvent event;
    {
      std::unique_lock<std::mutex> lock(queue->mu);
      // Wake every 50 ms to notice a client that went away (the sync API has no callback).
      while (queue->events.empty()) {
        if (!cancelled && context->IsCancelled()) break;
        queue->cv.wait_for(lock, std::chrono::milliseconds(50));
      }
      if (queue->events.empty()) {
        lock.unlock();
        cancelled = true;
        ITE_LOG_DEBUG("request {}: client went away, cancelling", request_id);
        scheduler_->Cancel(request_id);
        continue;  // the final kCancelled event follows
      }
      event = std::move(queue->events.front());
      queue->events.pop_front();
    }
    completion_tokens += static_cast<int32_t>(event.tokens.size());
    if (event.finish == FinishReason::kError) {
      ITE_LOG_WARN("request {} failed: {}", request_id, event.error.ToString());
      Status err = event.error.ok() ? Internal("request failed without a status") : event.error;
      return ToGrpcStatus(err);
    }
    if (cancelled) {
      if (event.finish != FinishReason::kNone) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
      }
      continue;
    }
    chunk.Clear();
    if (first) chunk.set_request_id(request_id);
    first = false;
    chunk.set_text(event.text);
    chunk.mutable_token_ids()->Assign(event.tokens.begin(), event.tokens.end());
    if (want_logprobs) {
      for (const SampleResult& s : event.samples) {
        ite::v1::PositionLogprobs* p = chunk.add_logprobs();
        p->mutable_sampled()->set_token_id(s.token);
        p->mutable_sampled()->set_logprob(s.logprob);
        p->mutable_sampled()->set_text(tokenizer_->Decode(std::span(&s.token, 1), false));
        for (const TokenLogprob& t : s.top) {
          ite::v1::TokenLogprob* pt = p->add_top();
          pt->set_token_id(t.token);
          pt->set_logprob(t.logprob);
          pt->set_text(tokenizer_->Decode(std::span(&t.token, 1), false));
        }
      }
    }
    if (event.finish != FinishReason::kNone) {
      chunk.set_finish_reason(ToProto(event.finish));
      chunk.mutable_usage()->set_prompt_tokens(event.usage.prompt_tokens);
      chunk.mutable_usage()->set_cached_tokens(event.usage.cached_tokens);
      chunk.mutable_usage()->set_completion_tokens(event.usage.completion_tokens);
      generated_tokens_ += event.usage.completion_tokens;
    }
    bool last = event.finish != FinishReason::kNone;
    // Skip empty chunks (a stop found on a token whose text was held back), except the last.
    if (!last && chunk.text().empty() && chunk.token_ids_size() == 0) continue;
    if (!writer->Write(chunk)) {
      if (last) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
      cancelled = true;
      scheduler_->Cancel(request_id);
      continue;
    }
    if (last) return grpc::Status::OK;
  }
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext*,
                                         const ite::v1::TokenizeRequest* request,
                                         ite::v1::TokenizeResponse* response) {
  bool add_special = request->has_add_special_tokens() ? request->add_special_tokens() : true;
  std::string rendered;
  StatusOr<std::vector<int32_t>> tokens = NoThrow([&] {
    return builder_->PromptTokens(request->has_chat() ? &request->chat() : nullptr,
                                  request->has_text() ? &request->text() : nullptr, nullptr,
                                  add_special, &rendered);
  });
  if (!tokens.ok()) return ToGrpcStatus(tokens.status());
  response->mutable_token_ids()->Assign(tokens->begin(), tokens->end());
  if (request->return_tokens()) {
    for (int32_t id : *tokens) response->add_tokens(tokenizer_->IdToToken(id));
  }
  response->set_rendered_prompt(rendered);
  return grpc::Status::OK;
}

grpc::Status GenerationService::ModelInfo(grpc::ServerContext*, const ite::v1::ModelInfoRequest*,
                                          ite::v1::ModelInfoResponse* response) {
  const ite::ModelInfo& c = scheduler_->model_info();  // qualified: this method is ModelInfo too
  response->set_model_name(builder_->options().model_name);
  response->set_architecture(c.arch);
  response->set_vocab_size(builder_->options().vocab_size);
  response->set_max_context(scheduler_->max_context());
  response->set_bos_token_id(tokenizer_->bos_id());
  for (int32_t id : tokenizer_->eos_ids()) response->add_eos_token_ids(id);
  response->set_has_chat_template(builder_->has_chat_template());
  response->set_num_workers(static_cast<int32_t>(worker_addresses_.size()));
  response->set_num_layers(c.num_layers);
  response->set_hidden_size(c.hidden_size);
  response->set_block_size(block_size_);
  return grpc::Status::OK;
}

grpc::Status GenerationService::Stats(grpc::ServerContext*, const ite::v1::StatsRequest*,
                                      ite::v1::StatsResponse* response) {
  SchedulerStats s = scheduler_->Stats();
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const WorkerStats& w = s.workers[i];
    ite::v1::WorkerStats* o = response->add_workers();
    o->set_index(static_cast<int32_t>(i));
    o->set_address(i < worker_addresses_.size() ? worker_addresses_[i] : "");
    o->set_healthy(w.up);
    o->set_total_blocks(w.num_blocks);
    o->set_free_blocks(w.free_blocks);
    o->set_used_blocks(w.used_blocks);
    o->set_cached_blocks(w.cached_blocks);
    o->set_running(w.running);
    o->set_waiting(w.waiting);
    o->set_device(w.device);
    o->set_cached_tokens(w.cached_tokens);
    o->set_steps(w.steps);
    o->set_preemptions(w.preemptions);
    o->set_worker_forward_us(w.worker_forward_us);
    o->set_worker_idle_us(w.worker_idle_us);
  }
  response->set_running(s.running);
  response->set_waiting(s.waiting);
  response->set_finished_requests(s.finished_requests);
  response->set_generated_tokens(generated_tokens_.load());
  response->set_steps(s.steps);
  response->set_preemptions(s.preemptions);
  response->set_loop_cpu_us(s.loop_cpu_us);
  return grpc::Status::OK;
}

}  // namespace ite
