// The gRPC target of `ite-client bench`: streamed ite.v1.Generation/Generate calls, prompts as
// token ids (exact lengths) or text.
#include <fmt/format.h>

#include "clients/bench_target.h"
#include "clients/client_common.h"

namespace ite::client {
namespace {

class GrpcBenchTarget : public BenchTarget {
 public:
  GrpcBenchTarget(std::string addr, int32_t timeout_ms)
      : addr_(std::move(addr)), timeout_ms_(timeout_ms) {}

  grpc::Status Prepare(BenchModel* model) override {
    grpc::Status status;
    auto channel = Connect(addr_, std::chrono::milliseconds(timeout_ms_), &status);
    if (!channel) return status;
    stub_ = ite::v1::Generation::NewStub(channel);
    grpc::ClientContext ctx;
    ite::v1::ModelInfoResponse info;
    status = stub_->ModelInfo(&ctx, ite::v1::ModelInfoRequest(), &info);
    if (!status.ok()) return status;
    model->vocab_size = info.vocab_size();
    const int64_t block_size = info.block_size() > 0 ? info.block_size() : 16;
    grpc::ClientContext stats_ctx;
    stats_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    ite::v1::StatsResponse stats;
    if (stub_->Stats(&stats_ctx, ite::v1::StatsRequest(), &stats).ok()) {
      for (const auto& w : stats.workers()) model->kv_pool_tokens += w.total_blocks() * block_size;
    }
    return grpc::Status::OK;
  }

  BenchCallResult Run(const BenchCall& call, const std::function<void(int)>& on_tokens,
                      CallCanceller* canceller) override {
    ite::v1::GenerateRequest req;
    req.set_request_id(call.request_id);
    if (call.prompt_text != nullptr) {
      req.set_prompt(*call.prompt_text);
    } else {
      req.mutable_prompt_token_ids()->mutable_ids()->Assign(call.prompt_ids->begin(),
                                                            call.prompt_ids->end());
    }
    req.set_max_tokens(call.max_tokens);
    req.set_ignore_eos(call.ignore_eos);
    req.mutable_sampling()->set_temperature(call.temperature);
    req.mutable_sampling()->set_seed(call.seed);

    BenchCallResult r;
    grpc::ClientContext ctx;
    canceller->Set([&ctx] { ctx.TryCancel(); });
    r.status = StreamGenerate(*stub_, req, &ctx, [&](const ite::v1::GenerateResponse& chunk) {
      if (chunk.token_ids_size() > 0) on_tokens(chunk.token_ids_size());
      if (chunk.finish_reason() != ite::v1::FINISH_REASON_UNSPECIFIED) {
        r.prompt_tokens = chunk.usage().prompt_tokens();
        r.completion_tokens = chunk.usage().completion_tokens();
      }
    });
    canceller->Set([] {});  // ctx ends with this call
    return r;
  }

  const std::string& address() const override { return addr_; }

 private:
  std::string addr_;
  int32_t timeout_ms_;
  std::unique_ptr<ite::v1::Generation::Stub> stub_;
};

}  // namespace

std::unique_ptr<BenchTarget> MakeGrpcBenchTarget(const std::string& addr, int32_t timeout_ms) {
  return std::make_unique<GrpcBenchTarget>(addr, timeout_ms);
}

}  // namespace ite::client
