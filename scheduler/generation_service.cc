#include "scheduler/generation_service.h"

#include <grpcpp/impl/codegen/proto_utils.h>

#include "common/check.h"
#include "common/logging.h"
#include "proto/grpc_status.h"
#include "proto/request_parser.h"
#include "scheduler/generate_stream.h"
#include "scheduler/generation_codec.h"
#include "scheduler/tokenizer/tokenizer.h"

namespace ite {
namespace {

grpc::Status NotYet() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the scheduler is starting: no worker has answered yet");
}

template <typename M>
grpc::Status ToBytes(const M& message, grpc::ByteBuffer* out) {
  bool own = false;
  return grpc::SerializationTraits<M>::Serialize(message, out, &own);
}

// Ends a unary call with `status`; the handlers below do their (short) work on gRPC's thread.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* context, const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::Status DoTokenize(const GenerationService::Backend& b,
                        const ite::v1::TokenizeRequest& request, grpc::ByteBuffer* out) {
  StatusOr<TokenizeOutput> tokens =
      b.intake->Tokenize(PromptInputFromProto(request), request.return_tokens());
  if (!tokens.ok()) return ToGrpcStatus(tokens.status());
  ite::v1::TokenizeResponse response;
  response.mutable_token_ids()->Assign(tokens->token_ids.begin(), tokens->token_ids.end());
  for (std::string& t : tokens->tokens) response.add_tokens(std::move(t));
  response.set_rendered_prompt(tokens->rendered_prompt);
  return ToBytes(response, out);
}

grpc::Status DoModelInfo(const GenerationService::Backend& b, grpc::ByteBuffer* out) {
  const Scheduler& scheduler = b.intake->scheduler();
  const ite::ModelInfo& c = scheduler.model_info();
  ite::v1::ModelInfoResponse response;
  response.set_model_name(b.intake->options().model_name);
  response.set_architecture(c.arch);
  response.set_vocab_size(b.intake->options().vocab_size);
  response.set_max_context(scheduler.max_context());
  response.set_bos_token_id(b.intake->tokenizer().bos_id());
  for (int32_t id : b.intake->tokenizer().eos_ids()) response.add_eos_token_ids(id);
  response.set_has_chat_template(b.intake->has_chat_template());
  response.set_num_workers(static_cast<int32_t>(b.worker_addresses.size()));
  response.set_num_layers(c.num_layers);
  response.set_hidden_size(c.hidden_size);
  response.set_block_size(b.block_size);
  return ToBytes(response, out);
}

grpc::Status DoStats(const GenerationService::Backend& b, grpc::ByteBuffer* out) {
  SchedulerStats s = b.intake->scheduler().Stats();
  ite::v1::StatsResponse response;
  for (size_t i = 0; i < s.workers.size(); ++i) {
    const WorkerStats& w = s.workers[i];
    ite::v1::WorkerStats* o = response.add_workers();
    o->set_index(static_cast<int32_t>(i));
    o->set_address(i < b.worker_addresses.size() ? b.worker_addresses[i] : "");
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
    o->set_model_fingerprint(w.model_fingerprint);
    o->set_refused_model_fingerprint(w.refused_fingerprint);
  }
  response.set_running(s.running);
  response.set_waiting(s.waiting);
  response.set_finished_requests(s.finished_requests);
  response.set_generated_tokens(b.intake->generated_tokens());
  response.set_steps(s.steps);
  response.set_model_fingerprint(s.model_fingerprint);
  response.set_preemptions(s.preemptions);
  response.set_loop_cpu_us(s.loop_cpu_us);
  return ToBytes(response, out);
}

}  // namespace

GenerationService::~GenerationService() { delete backend_.load(); }

void GenerationService::Attach(Backend backend) {
  const Backend* old = backend_.exchange(new Backend(std::move(backend)));
  ITE_CHECK(old == nullptr, "GenerationService::Attach called twice");
}

grpc::ServerWriteReactor<grpc::ByteBuffer>* GenerationService::Generate(
    grpc::CallbackServerContext*, const grpc::ByteBuffer* bytes) {
  ite::v1::GenerateRequest request;
  if (Status parsed = ParseRequestMessage(*bytes, &request); !parsed.ok()) {
    return GenerateStream::Refuse(ToGrpcStatus(parsed));
  }
  const Backend* b = backend_.load();
  if (b == nullptr) return GenerateStream::Refuse(NotYet());
  StatusOr<std::vector<std::unique_ptr<GenerationSession>>> sessions =
      b->intake->Submit(GenerateInputFromProto(request));
  if (!sessions.ok()) return GenerateStream::Refuse(ToGrpcStatus(sessions.status()));
  return GenerateStream::Start(std::move(sessions->front()));
}

grpc::ServerUnaryReactor* GenerationService::Tokenize(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request,
                                                      grpc::ByteBuffer* response) {
  ite::v1::TokenizeRequest parsed;
  if (Status st = ParseRequestMessage(*request, &parsed); !st.ok()) {
    return Done(context, ToGrpcStatus(st));
  }
  const Backend* b = backend_.load();
  return Done(context, b == nullptr ? NotYet() : DoTokenize(*b, parsed, response));
}

grpc::ServerUnaryReactor* GenerationService::ModelInfo(grpc::CallbackServerContext* context,
                                                       const grpc::ByteBuffer* request,
                                                       grpc::ByteBuffer* response) {
  ite::v1::ModelInfoRequest parsed;
  if (Status st = ParseRequestMessage(*request, &parsed); !st.ok()) {
    return Done(context, ToGrpcStatus(st));
  }
  const Backend* b = backend_.load();
  return Done(context, b == nullptr ? NotYet() : DoModelInfo(*b, response));
}

grpc::ServerUnaryReactor* GenerationService::Stats(grpc::CallbackServerContext* context,
                                                   const grpc::ByteBuffer* request,
                                                   grpc::ByteBuffer* response) {
  ite::v1::StatsRequest parsed;
  if (Status st = ParseRequestMessage(*request, &parsed); !st.ok()) {
    return Done(context, ToGrpcStatus(st));
  }
  const Backend* b = backend_.load();
  return Done(context, b == nullptr ? NotYet() : DoStats(*b, response));
}

}  // namespace ite
