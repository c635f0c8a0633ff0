#include "proto/step_codec.h"

namespace ite {
namespace {

void EncodeSampling(const SamplingParams& p, ite::v1::StepSamplingParams* out) {
  out->set_temperature(p.temperature);
  out->set_top_k(p.top_k);
  out->set_top_p(p.top_p);
  out->set_min_p(p.min_p);
  out->set_repetition_penalty(p.repetition_penalty);
  out->set_presence_penalty(p.presence_penalty);
  out->set_frequency_penalty(p.frequency_penalty);
  out->set_seed(p.seed);
  out->set_has_seed(p.has_seed);
  out->set_top_logprobs(p.top_logprobs);
  out->set_logprobs(p.logprobs);
}

SamplingParams DecodeSampling(const ite::v1::StepSamplingParams& in) {
  SamplingParams p;
  p.temperature = in.temperature();
  p.top_k = in.top_k();
  p.top_p = in.top_p();
  p.min_p = in.min_p();
  p.repetition_penalty = in.repetition_penalty();
  p.presence_penalty = in.presence_penalty();
  p.frequency_penalty = in.frequency_penalty();
  p.seed = in.seed();
  p.has_seed = in.has_seed();
  p.top_logprobs = in.top_logprobs();
  p.logprobs = in.logprobs();
  return p;
}

}  // namespace

void EncodeModelInfo(const ModelInfo& m, ite::v1::WorkerModelConfig* out) {
  out->set_arch(m.arch);
  out->set_name(m.name);
  out->set_vocab_size(m.vocab_size);
  out->set_hidden_size(m.hidden_size);
  out->set_num_layers(m.num_layers);
  out->set_max_position(m.max_position);
  for (int32_t id : m.eos_token_ids) out->add_eos_token_ids(id);
  out->set_image_token_id(m.image_token_id);
  out->set_image_tokens(m.image_tokens);
  out->set_image_size(m.image_size);
}

StatusOr<ModelInfo> DecodeModelInfo(const ite::v1::WorkerModelConfig& in) {
  if (in.arch() != "llama" && in.arch() != "qwen2") {
    return InvalidArgument("WorkerInfo.config.arch: unknown architecture '{}'", in.arch());
  }
  ModelInfo m;
  m.arch = in.arch();
  m.name = in.name();
  m.vocab_size = in.vocab_size();
  m.hidden_size = in.hidden_size();
  m.num_layers = in.num_layers();
  m.max_position = in.max_position();
  m.eos_token_ids.assign(in.eos_token_ids().begin(), in.eos_token_ids().end());
  // A text-only worker leaves these at 0; -1 is the text-only id here.
  m.image_tokens = in.image_tokens();
  m.image_size = in.image_size();
  m.image_token_id = m.image_tokens > 0 ? in.image_token_id() : -1;
  if (m.image_tokens < 0 || m.image_size < 0 ||
      (m.image_tokens > 0 &&
       (m.image_token_id < 0 || m.image_token_id >= m.vocab_size || m.image_size == 0))) {
    return InvalidArgument("WorkerInfo.config: image token {} / {} positions / size {} invalid",
                           in.image_token_id(), m.image_tokens, m.image_size);
  }
  return m;
}

void EncodeWorkerInfo(const WorkerInfo& info, ite::v1::WorkerInfo* out) {
  EncodeModelInfo(info.model, out->mutable_config());
  out->set_block_size(info.block_size);
  out->set_num_blocks(info.num_blocks);
  out->set_device(info.device);
  out->set_model_fingerprint(info.model_fingerprint);
}

StatusOr<WorkerInfo> DecodeWorkerInfo(const ite::v1::WorkerInfo& in) {
  WorkerInfo info;
  ITE_ASSIGN_OR_RETURN(info.model, DecodeModelInfo(in.config()));
  info.block_size = in.block_size();
  info.num_blocks = in.num_blocks();
  info.device = in.device();
  info.model_fingerprint = in.model_fingerprint();
  if (info.block_size <= 0 || info.num_blocks <= 0) {
    return InvalidArgument("WorkerInfo: block_size {} and num_blocks {} must be positive",
                           info.block_size, info.num_blocks);
  }
  return info;
}

void EncodeStepRequest(const StepRequest& r, ite::v1::StepRequest* out) {
  out->set_step_id(r.step_id);
  out->mutable_seqs()->Reserve(static_cast<int>(r.seqs.size()));
  for (const StepSequence& s : r.seqs) {
    ite::v1::StepSequence* o = out->add_seqs();
    o->set_seq_id(s.seq_id);
    o->mutable_new_tokens()->Assign(s.new_tokens.begin(), s.new_tokens.end());
    o->set_start_pos(s.start_pos);
    o->mutable_block_table()->Assign(s.block_table.begin(), s.block_table.end());
    o->set_block_table_offset(s.block_table_offset);
    o->set_sample(s.sample);
    if (s.sampling) EncodeSampling(*s.sampling, o->mutable_sampling());
    o->mutable_prompt_tokens()->Assign(s.prompt_tokens.begin(), s.prompt_tokens.end());
    o->set_generated_tokens(s.generated_tokens);
    for (const StepImage& im : s.images) {
      ite::v1::StepImage* oi = o->add_images();
      oi->set_position(im.position);
      oi->mutable_pixels()->Assign(im.pixels.begin(), im.pixels.end());
    }
  }
  out->mutable_release_seq_ids()->Assign(r.release_seq_ids.begin(), r.release_seq_ids.end());
  for (const auto& [src, dst] : r.copy_blocks) {
    ite::v1::BlockCopy* c = out->add_copy_blocks();
    c->set_src(src);
    c->set_dst(dst);
  }
}

StepRequest DecodeStepRequest(const ite::v1::StepRequest& in) {
  StepRequest r;
  r.step_id = in.step_id();
  r.seqs.reserve(in.seqs_size());
  for (const ite::v1::StepSequence& s : in.seqs()) {
    StepSequence& o = r.seqs.emplace_back();
    o.seq_id = s.seq_id();
    o.new_tokens.assign(s.new_tokens().begin(), s.new_tokens().end());
    o.start_pos = s.start_pos();
    o.block_table.assign(s.block_table().begin(), s.block_table().end());
    o.block_table_offset = s.block_table_offset();
    o.sample = s.sample();
    if (s.has_sampling()) o.sampling = DecodeSampling(s.sampling());
    o.prompt_tokens.assign(s.prompt_tokens().begin(), s.prompt_tokens().end());
    o.generated_tokens = s.generated_tokens();
    for (const ite::v1::StepImage& im : s.images()) {
      StepImage& oi = o.images.emplace_back();
      oi.position = im.position();
      oi.pixels.assign(im.pixels().begin(), im.pixels().end());
    }
  }
  r.release_seq_ids.assign(in.release_seq_ids().begin(), in.release_seq_ids().end());
  for (const ite::v1::BlockCopy& c : in.copy_blocks()) r.copy_blocks.emplace_back(c.src(), c.dst());
  return r;
}

void EncodeStepResult(const StepResult& r, ite::v1::StepResult* out) {
  out->set_step_id(r.step_id);
  out->mutable_outputs()->Reserve(static_cast<int>(r.outputs.size()));
  for (const StepOutput& o : r.outputs) {
    ite::v1::StepOutput* po = out->add_outputs();
    po->set_seq_id(o.seq_id);
    ite::v1::StepSampleResult* s = po->mutable_sample();
    s->set_token(o.sample.token);
    s->set_logprob(o.sample.logprob);
    for (const TokenLogprob& t : o.sample.top) {
      ite::v1::StepTokenLogprob* pt = s->add_top();
      pt->set_token(t.token);
      pt->set_logprob(t.logprob);
    }
  }
  out->set_forward_us(r.forward_us);
  out->set_idle_us(r.idle_us);
}

StepResult DecodeStepResult(const ite::v1::StepResult& in) {
  StepResult r;
  r.step_id = in.step_id();
  r.outputs.reserve(in.outputs_size());
  for (const ite::v1::StepOutput& po : in.outputs()) {
    StepOutput& o = r.outputs.emplace_back();
    o.seq_id = po.seq_id();
    o.sample.token = po.sample().token();
    o.sample.logprob = po.sample().logprob();
    for (const ite::v1::StepTokenLogprob& t : po.sample().top()) {
      o.sample.top.push_back(TokenLogprob{t.token(), t.logprob()});
    }
  }
  r.forward_us = in.forward_us();
  r.idle_us = in.idle_us();
  return r;
}

}  // namespace ite
