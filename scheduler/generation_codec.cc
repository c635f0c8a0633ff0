#include "scheduler/generation_codec.h"

namespace ite {
namespace {

std::vector<ChatMessage> ChatFromProto(const ite::v1::ChatMessages& chat) {
  std::vector<ChatMessage> out;
  out.reserve(chat.messages_size());
  for (const ite::v1::ChatMessage& m : chat.messages()) {
    if (m.parts_size() == 0) {
      out.push_back(ChatMessage::Text(m.role(), m.content()));
      continue;
    }
    // Content and parts both set: the content comes first, as one more text part.
    ChatMessage message;
    message.role = m.role();
    if (!m.content().empty())
      message.content.push_back({ContentPart::Kind::kText, m.content(), {}});
    for (const ite::v1::ContentPart& part : m.parts()) {
      if (part.has_image()) {
        message.content.push_back(
            {ContentPart::Kind::kImage, {}, {part.image().data(), part.image().mime_type()}});
      } else {
        message.content.push_back({ContentPart::Kind::kText, part.text(), {}});
      }
    }
    out.push_back(std::move(message));
  }
  return out;
}

ite::v1::FinishReason FinishToProto(FinishReason reason) {
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

void LogprobToProto(const ChunkLogprob& in, ite::v1::TokenLogprob* out) {
  out->set_token_id(in.token);
  out->set_logprob(in.logprob);
  out->set_text(in.text);
}

}  // namespace

GenerateInput GenerateInputFromProto(const ite::v1::GenerateRequest& r) {
  GenerateInput in;
  in.request_id = r.request_id();
  in.model = r.model();
  if (r.has_prompt()) in.prompt.text = r.prompt();
  if (r.has_chat()) in.prompt.chat = ChatFromProto(r.chat());
  if (r.has_prompt_token_ids()) {
    in.prompt.token_ids.emplace(r.prompt_token_ids().ids().begin(),
                                r.prompt_token_ids().ids().end());
  }
  if (r.has_add_special_tokens()) in.prompt.add_special_tokens = r.add_special_tokens();
  for (const ite::v1::Image& image : r.images())
    in.prompt.images.push_back({image.data(), image.mime_type()});
  const ite::v1::SamplingParams& s = r.sampling();
  if (s.has_temperature()) in.sampling.temperature = s.temperature();
  // 0 is also "unset" on the wire for top_k and min_p: the model's default applies.
  if (s.top_k() != 0) in.sampling.top_k = s.top_k();
  if (s.has_top_p()) in.sampling.top_p = s.top_p();
  if (s.min_p() != 0.0f) in.sampling.min_p = s.min_p();
  if (s.has_repetition_penalty()) in.sampling.repetition_penalty = s.repetition_penalty();
  in.sampling.presence_penalty = s.presence_penalty();
  in.sampling.frequency_penalty = s.frequency_penalty();
  if (s.has_seed()) in.sampling.seed = s.seed();
  if (r.has_max_tokens()) in.max_tokens = r.max_tokens();
  in.stop.assign(r.stop().begin(), r.stop().end());
  in.stop_token_ids.assign(r.stop_token_ids().begin(), r.stop_token_ids().end());
  in.ignore_eos = r.ignore_eos();
  in.logprobs = r.logprobs();
  in.top_logprobs = r.top_logprobs();
  in.priority = r.priority();
  in.disable_prefix_cache = r.disable_prefix_cache();
  return in;
}

PromptInput PromptInputFromProto(const ite::v1::TokenizeRequest& r) {
  PromptInput in;
  if (r.has_text()) in.text = r.text();
  if (r.has_chat()) in.chat = ChatFromProto(r.chat());
  if (r.has_add_special_tokens()) in.add_special_tokens = r.add_special_tokens();
  for (const ite::v1::Image& image : r.images())
    in.images.push_back({image.data(), image.mime_type()});
  return in;
}

void ChunkToProto(const GenerationChunk& chunk, const std::string& request_id,
                  ite::v1::GenerateResponse* out) {
  out->Clear();
  if (!request_id.empty()) out->set_request_id(request_id);
  out->set_text(chunk.text);
  out->mutable_token_ids()->Assign(chunk.token_ids.begin(), chunk.token_ids.end());
  for (const PositionLogprob& p : chunk.logprobs) {
    ite::v1::PositionLogprobs* o = out->add_logprobs();
    LogprobToProto(p.sampled, o->mutable_sampled());
    for (const ChunkLogprob& t : p.top) LogprobToProto(t, o->add_top());
  }
  if (chunk.finish != FinishReason::kNone) {
    out->set_finish_reason(FinishToProto(chunk.finish));
    out->mutable_usage()->set_prompt_tokens(chunk.usage.prompt_tokens);
    out->mutable_usage()->set_cached_tokens(chunk.usage.cached_tokens);
    out->mutable_usage()->set_completion_tokens(chunk.usage.completion_tokens);
  }
}

}  // namespace ite
