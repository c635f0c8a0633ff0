#include "worker/engine/generator.h"

#include <algorithm>
#include <chrono>
#include <memory>

namespace ite {
namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Sequence {
  std::vector<int32_t> tokens;  // prompt + generated so far
  size_t prompt_len = 0;
  std::vector<int32_t> blocks;
  GenerateResult result;
  bool done = false;
};

}  // namespace

StatusOr<GenerateResult> Generator::Generate(std::span<const int32_t> prompt,
                                             const SamplingParams& params,
                                             const GenerateOptions& options,
                                             const TokenCallback& on_token) {
  std::vector<std::vector<int32_t>> prompts = {{prompt.begin(), prompt.end()}};
  ITE_ASSIGN_OR_RETURN(std::vector<GenerateResult> results,
                       GenerateBatch(prompts, params, options, on_token));
  return std::move(results[0]);
}

StatusOr<std::vector<GenerateResult>> Generator::GenerateBatch(
    const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params,
    const GenerateOptions& options, const TokenCallback& on_token) {
  ITE_RETURN_IF_ERROR(params.Validate());
  if (prompts.empty()) return InvalidArgument("generate: no prompts");
  if (options.max_new_tokens < 1)
    return InvalidArgument("generate: max_new_tokens {} must be >= 1", options.max_new_tokens);
  if (options.prefill_chunk < 1)
    return InvalidArgument("generate: prefill_chunk {} must be >= 1", options.prefill_chunk);
  const ModelConfig& config = backend_->config();
  const int32_t bs = backend_->block_size();

  // The trivial allocator: every sequence gets the blocks for its longest possible length up
  // front, so nothing can run out half-way.
  std::vector<Sequence> seqs(prompts.size());
  int32_t next_block = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::vector<int32_t>& p = prompts[i];
    if (p.empty()) return InvalidArgument("generate: prompt {} is empty", i);
    if (static_cast<int64_t>(p.size()) > config.max_position)
      return OutOfRange("generate: prompt {} has {} tokens, more than the context of {}", i,
                        p.size(), config.max_position);
    // Positions fed to the model: the prompt and every generated token but the last.
    int64_t fed = std::min<int64_t>(p.size() + options.max_new_tokens - 1, config.max_position);
    int64_t need = (fed + bs - 1) / bs;
    if (next_block + need > backend_->num_blocks())
      return ResourceExhausted("generate: {} prompts need more than the {} KV blocks of {} tokens",
                               prompts.size(), backend_->num_blocks(), bs);
    Sequence& s = seqs[i];
    s.tokens = p;
    s.prompt_len = p.size();
    for (int64_t b = 0; b < need; ++b) s.blocks.push_back(next_block++);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingParams sp = params;
    if (sp.has_seed) sp.seed += i;
    ITE_RETURN_IF_ERROR(backend_->AddSequence(static_cast<int64_t>(i), sp, prompts[i], 0));
    if (i < options.images.size()) {
      ITE_RETURN_IF_ERROR(
          backend_->SetSequenceImages(static_cast<int64_t>(i), options.images[i], prompts[i]));
    }
  }
  // The backend keeps the sequences' sampling state; drop it whatever happens.
  struct Release {
    Backend* backend;
    size_t n;
    ~Release() {
      for (size_t i = 0; i < n; ++i) backend->ReleaseSequence(static_cast<int64_t>(i));
    }
  } release{backend_, prompts.size()};

  auto is_stop = [&](int32_t t) {
    return std::find(options.stop_ids.begin(), options.stop_ids.end(), t) != options.stop_ids.end();
  };
  // Records a sampled token and decides whether the sequence goes on.
  auto record = [&](int index, const SampleResult& sample) {
    Sequence& s = seqs[index];
    s.result.tokens.push_back(sample.token);
    s.result.samples.push_back(sample);
    s.tokens.push_back(sample.token);
    if (on_token && !on_token(index, sample)) {
      s.result.finish_reason = "cancelled";
    } else if (is_stop(sample.token)) {
      s.result.finish_reason = "stop";
    } else if (static_cast<int32_t>(s.result.tokens.size()) >= options.max_new_tokens ||
               static_cast<int64_t>(s.tokens.size()) > config.max_position) {
      s.result.finish_reason = "length";
    } else {
      return;
    }
    s.done = true;
  };

  const int64_t t0 = NowUs();
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence& s = seqs[i];
    for (size_t start = 0; start < s.prompt_len; start += options.prefill_chunk) {
      size_t len = std::min<size_t>(options.prefill_chunk, s.prompt_len - start);
      ForwardBatch batch;
      SequenceChunk chunk;
      chunk.seq_id = static_cast<int64_t>(i);
      chunk.tokens = std::span<const int32_t>(s.tokens).subspan(start, len);
      chunk.start_pos = static_cast<int32_t>(start);
      chunk.block_table = s.blocks;
      chunk.sample = start + len == s.prompt_len;
      batch.chunks.push_back(chunk);
      ITE_ASSIGN_OR_RETURN(ForwardOutput out, backend_->Run(batch));
      if (chunk.sample) record(static_cast<int>(i), out.samples.at(0));
    }
  }
  const int64_t t1 = NowUs();
  for (Sequence& s : seqs) s.result.prefill_us = t1 - t0;

  // Decodes feed each sequence the token the backend sampled for it last.
  std::vector<int> live;
  while (true) {
    live.clear();
    ForwardBatch batch;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Sequence& s = seqs[i];
      if (s.done) continue;
      live.push_back(static_cast<int>(i));
      SequenceChunk chunk;
      chunk.seq_id = static_cast<int64_t>(i);
      chunk.start_pos = static_cast<int32_t>(s.tokens.size()) - 1;
      chunk.block_table = s.blocks;
      batch.chunks.push_back(chunk);
    }
    if (live.empty()) break;
    ITE_ASSIGN_OR_RETURN(ForwardOutput out, backend_->Run(batch));
    for (size_t r = 0; r < live.size(); ++r) record(live[r], out.samples.at(r));
  }
  const int64_t t2 = NowUs();

  std::vector<GenerateResult> results;
  for (Sequence& s : seqs) {
    s.result.decode_us = t2 - t1;
    results.push_back(std::move(s.result));
  }
  return results;
}

}  // namespace ite
