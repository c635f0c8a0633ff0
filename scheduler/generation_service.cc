#include "scheduler/generation_service.h"

#include <chrono>

#include "common/logging.h"
#include "proto/grpc_status.h"
#include "scheduler/generation_codec.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {

GenerationService::GenerationService(RequestIntake* intake,
                                     std::vector<std::string> worker_addresses, int32_t block_size)
    : intake_(intake), worker_addresses_(std::move(worker_addresses)), block_size_(block_size) {}

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const ite::v1::GenerateRequest* request,
                                         grpc::ServerWriter<ite::v1::GenerateResponse>* writer) {
  StatusOr<std::vector<std::unique_ptr<GenerationSession>>> sessions =
      intake_->Submit(GenerateInputFromProto(*request));
  if (!sessions.ok()) return ToGrpcStatus(sessions.status());
  GenerationSession& session = *sessions->front();
  bool first = true;
  ite::v1::GenerateResponse out;
  while (true) {
    // Wake every 50 ms to notice a client that went away (the sync API has no callback).
    std::optional<GenerationChunk> chunk = session.Next(std::chrono::milliseconds(50));
    if (!chunk.has_value()) {
      if (!context->IsCancelled()) continue;
      ITE_LOG_DEBUG("request {}: client went away, cancelling", session.request_id());
      session.Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
    }
    if (chunk->finish == FinishReason::kError) {
      ITE_LOG_WARN("request {} failed: {}", session.request_id(), chunk->error.ToString());
      return ToGrpcStatus(chunk->error);
    }
    ChunkToProto(*chunk, first ? session.request_id() : std::string(), &out);
    first = false;
    const bool last = chunk->finish != FinishReason::kNone;
    if (!writer->Write(out)) {
      session.Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    }
    if (last) return grpc::Status::OK;
  }
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext*,
                                         const ite::v1::TokenizeRequest* request,
                                         ite::v1::TokenizeResponse* response) {
  StatusOr<TokenizeOutput> out =
      intake_->Tokenize(PromptInputFromProto(*request), request->return_tokens());
  if (!out.ok()) return ToGrpcStatus(out.status());
  response->mutable_token_ids()->Assign(out->token_ids.begin(), out->token_ids.end());
  for (std::string& t : out->tokens) response->add_tokens(std::move(t));
  response->set_rendered_prompt(out->rendered_prompt);
  return grpc::Status::OK;
}

grpc::Status GenerationService::ModelInfo(grpc::ServerContext*, const ite::v1::ModelInfoRequest*,
                                          ite::v1::ModelInfoResponse* response) {
  const Scheduler& scheduler = intake_->scheduler();
  const ite::ModelInfo& c = scheduler.model_info();  // qualified: this method is ModelInfo too
  response->set_model_name(intake_->options().model_name);
  response->set_architecture(c.arch);
  response->set_vocab_size(intake_->options().vocab_size);
  response->set_max_context(scheduler.max_context());
  response->set_bos_token_id(intake_->tokenizer().bos_id());
  for (int32_t id : intake_->tokenizer().eos_ids()) response->add_eos_token_ids(id);
  response->set_has_chat_template(intake_->has_chat_template());
  response->set_num_workers(static_cast<int32_t>(worker_addresses_.size()));
  response->set_num_layers(c.num_layers);
  response->set_hidden_size(c.hidden_size);
  response->set_block_size(block_size_);
  return grpc::Status::OK;
}

grpc::Status GenerationService::Stats(grpc::ServerContext*, const ite::v1::StatsRequest*,
                                      ite::v1::StatsResponse* response) {
  SchedulerStats s = intake_->scheduler().Stats();
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
  response->set_generated_tokens(intake_->generated_tokens());
  response->set_steps(s.steps);
  response->set_preemptions(s.preemptions);
  response->set_loop_cpu_us(s.loop_cpu_us);
  return grpc::Status::OK;
}

}  // namespace ite
