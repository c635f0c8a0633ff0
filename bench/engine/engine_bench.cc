// engine_bench: the CUDA backend on a real-architecture model folder, driven the way the worker
// drives it (two steps in flight, decode tokens fed on the device), printing one JSON line per
// result for bench/engine/collect_results.py to join with the transformers peers:
//   decode_bs1       one request, prompt 128 -> 256 new tokens: ms per decode step
//   throughput_N     N requests, prompt 128 -> 512 new tokens: output tok/s, prefill included
//   prefill_BxL      B prompts of L tokens, prefill only: ms and TFLOP/s
//   greedy           --greedy-prompts F: greedy continuations of F's prompts (all in one batch)
// Output lengths are forced (no EOS check). Usage:
//   engine_bench --model DIR --name llama-3.2-1b [--workloads decode_bs1,throughput_64]
//                [--new N] [--greedy-prompts F --greedy-out F --greedy-new 64] [--eager]
//                [--batch-invariant]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "common/logging.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"

namespace ite {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Run {
  double prefill_s = 0, decode_s = 0;
  int64_t decode_steps = 0;
  int64_t device_idle_us = 0;                // GPU idle between consecutive decode steps, summed
  std::vector<std::vector<int32_t>> tokens;  // generated, per prompt
};

// Prefills every prompt (whole prompts packed into steps of at most max_step_tokens), then
// decodes all of them together for new_tokens - 1 steps, keeping two steps in flight.
StatusOr<Run> Generate(Backend& b, const std::vector<std::vector<int32_t>>& prompts,
                       int32_t new_tokens, int32_t max_step_tokens) {
  const int32_t bs = b.block_size();
  std::vector<std::vector<int32_t>> tables(prompts.size());
  int32_t next = 0;
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const int32_t need = (static_cast<int32_t>(prompts[i].size()) + new_tokens + bs - 1) / bs;
    if (next + need > b.num_blocks())
      return ResourceExhausted("bench: {} blocks are not enough", b.num_blocks());
    for (int32_t k = 0; k < need; ++k) tables[i].push_back(next++);
    ITE_RETURN_IF_ERROR(b.AddSequence(static_cast<int64_t>(i), greedy, prompts[i], 0));
  }
  Run run;
  run.tokens.resize(prompts.size());
  const auto t0 = Clock::now();
  for (size_t i = 0; i < prompts.size();) {
    ForwardBatch step;
    int32_t rows = 0;
    std::vector<size_t> ids;
    while (i < prompts.size() &&
           (ids.empty() || rows + static_cast<int32_t>(prompts[i].size()) <= max_step_tokens)) {
      SequenceChunk c;
      c.seq_id = static_cast<int64_t>(i);
      c.tokens = prompts[i];
      c.block_table = tables[i];
      step.chunks.push_back(c);
      rows += static_cast<int32_t>(prompts[i].size());
      ids.push_back(i++);
    }
    ITE_ASSIGN_OR_RETURN(ForwardOutput out, b.Run(step));
    for (size_t k = 0; k < ids.size(); ++k) run.tokens[ids[k]].push_back(out.samples[k].token);
  }
  run.prefill_s = Seconds(t0);
  const auto t1 = Clock::now();
  auto decode_step = [&](int32_t k) {
    ForwardBatch step;
    for (size_t i = 0; i < prompts.size(); ++i) {
      SequenceChunk c;
      c.seq_id = static_cast<int64_t>(i);
      c.start_pos = static_cast<int32_t>(prompts[i].size()) + k;
      c.block_table = tables[i];
      step.chunks.push_back(c);
    }
    return step;
  };
  const int32_t steps = new_tokens - 1;
  if (steps > 0) ITE_RETURN_IF_ERROR(b.Submit(decode_step(0)));
  for (int32_t k = 0; k < steps; ++k) {
    if (k + 1 < steps) ITE_RETURN_IF_ERROR(b.Submit(decode_step(k + 1)));
    ITE_ASSIGN_OR_RETURN(ForwardOutput out, b.Collect());
    for (size_t i = 0; i < prompts.size(); ++i) run.tokens[i].push_back(out.samples[i].token);
    if (k > 0) run.device_idle_us += out.device_idle_us;
  }
  run.decode_s = Seconds(t1);
  run.decode_steps = steps;
  for (size_t i = 0; i < prompts.size(); ++i) b.ReleaseSequence(static_cast<int64_t>(i));
  return run;
}

std::vector<std::vector<int32_t>> RandomPrompts(int n, int len, int32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> p(n, std::vector<int32_t>(len));
  for (auto& v : p)
    for (int32_t& t : v) t = std::uniform_int_distribution<int32_t>(0, vocab - 1)(rng);
  return p;
}

// Last-row logits of each prompt (one prefill each) on the CUDA backend and on the CPU backend
// (bf16 weights, fp32 activations): where the two disagree, which one transformers agrees with
// (greedy runs) says which backend is wrong.
int CheckAgainstCpu(Backend& cuda, const std::string& dir,
                    const std::vector<std::vector<int32_t>>& prompts, int threads) {
  LoadOptions lo;
  lo.dtype = DType::kBF16;
  auto model = LoadModel(dir, lo);
  KvCacheOptions kv;
  kv.block_size = cuda.block_size();
  kv.num_blocks = 64;
  auto cpu = model.ok() ? CreateCpuBackend(std::move(model).value(), kv, threads)
                        : StatusOr<std::unique_ptr<Backend>>(model.status());
  if (!cpu.ok()) {
    std::fprintf(stderr, "cpu check: %s\n", cpu.status().ToString().c_str());
    return 1;
  }
  std::vector<int32_t> table(64);
  for (int i = 0; i < 64; ++i) table[i] = i;
  for (const auto& p : prompts) {
    if (p.size() > 300) continue;  // the CPU takes seconds per hundred tokens of a 1B model
    ForwardBatch b;
    b.chunks.push_back(LogitsChunk(p, 0, table, LogitsMode::kLast));
    std::vector<float> a, c;
    Status s1 = ForwardLogits(cuda, b, &a), s2 = ForwardLogits(**cpu, b, &c);
    if (!s1.ok() || !s2.ok()) {
      std::fprintf(stderr, "cpu check: %s %s\n", s1.ToString().c_str(), s2.ToString().c_str());
      return 1;
    }
    float worst = 0, top = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      worst = std::max(worst, std::fabs(a[i] - c[i]));
      top = std::max(top, std::fabs(c[i]));
    }
    const auto am = std::max_element(a.begin(), a.end()) - a.begin();
    const auto cm = std::max_element(c.begin(), c.end()) - c.begin();
    std::printf(
        "{\"name\":\"cpu_check\",\"prompt_len\":%zu,\"max_abs_diff\":%.4f,"
        "\"max_abs_logit\":%.3f,\"cuda_argmax\":%ld,\"cpu_argmax\":%ld}\n",
        p.size(), worst, top, static_cast<long>(am), static_cast<long>(cm));
  }
  return 0;
}

int Main(int argc, char** argv) {
  std::string model_dir, name, workloads = "decode_bs1,throughput_64,throughput_256";
  std::string greedy_prompts, greedy_out;
  int32_t greedy_new = 64, new_decode = 256, new_throughput = 512, prompt_len = 128;
  double util = 0.85;
  bool eager = false, batch_invariant = false;
  int cpu_check_threads = 0;
  CLI::App app{"engine_bench: the CUDA backend on a model folder, JSON lines on stdout"};
  app.add_option("--model", model_dir)->required();
  app.add_option("--name", name)->required();
  app.add_option("--workloads", workloads);
  app.add_option("--decode-new", new_decode);
  app.add_option("--throughput-new", new_throughput);
  app.add_option("--prompt-len", prompt_len);
  app.add_option("--gpu-memory-utilization", util);
  app.add_option("--greedy-prompts", greedy_prompts);
  app.add_option("--greedy-out", greedy_out);
  app.add_option("--greedy-new", greedy_new);
  app.add_flag("--eager", eager);
  app.add_flag("--batch-invariant", batch_invariant);
  app.add_option("--cpu-check", cpu_check_threads,
                 "with --greedy-prompts: compare last-row logits with the CPU backend (threads)");
  CLI11_PARSE(app, argc, argv);
  InitLogging("engine_bench", false);

  LoadOptions lo;
  lo.dtype = DType::kBF16;
  const auto t0 = Clock::now();
  auto model = LoadModel(model_dir, lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig config = model->config;
  const int64_t weight_bytes = WeightBytes(model->weights);
  CudaBackendOptions o;
  o.gpu_memory_utilization = util;
  o.enforce_eager = eager;
  o.batch_invariant = batch_invariant;
  o.max_step_tokens = 8192;
  o.max_seqs = 256;
  auto backend = CreateCudaBackend(std::move(model).value(), o);
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  Backend& b = **backend;
  const double load_s = Seconds(t0);
  auto emit = [&](nlohmann::json j) {
    j["model"] = name;
    j["weight_bytes"] = weight_bytes;
    if (batch_invariant) j["batch_invariant"] = true;
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };
  emit({{"name", "load"}, {"value", load_s}, {"unit", "s"}});
  // K and V bytes of one token over all layers.
  const int64_t kv_token_bytes = int64_t{2} * config.num_layers * config.kv_dim() * 2;

  if (!greedy_prompts.empty()) {
    std::ifstream in(greedy_prompts);
    auto prompts = nlohmann::json::parse(in).get<std::vector<std::vector<int32_t>>>();
    if (cpu_check_threads > 0) return CheckAgainstCpu(b, model_dir, prompts, cpu_check_threads);
    auto run = Generate(b, prompts, greedy_new, o.max_step_tokens);
    if (!run.ok()) {
      std::fprintf(stderr, "greedy: %s\n", run.status().ToString().c_str());
      return 1;
    }
    nlohmann::json out;
    out["model"] = name;
    out["engine"] = "ite-infer CUDA backend, bf16, all prompts in one batch";
    for (size_t i = 0; i < prompts.size(); ++i)
      out["prompts"].push_back({{"prompt", prompts[i]}, {"tokens", run->tokens[i]}});
    std::ofstream(greedy_out) << out.dump();
    // The same prompts one at a time: batch invariance on the real architecture.
    nlohmann::json single = out;
    single["engine"] = "ite-infer CUDA backend, bf16, one prompt at a time";
    int same = 0;
    for (size_t i = 0; i < prompts.size(); ++i) {
      auto one = Generate(b, {prompts[i]}, greedy_new, o.max_step_tokens);
      if (!one.ok()) return 1;
      single["prompts"][i]["tokens"] = one->tokens[0];
      same += one->tokens[0] == run->tokens[i];
    }
    std::ofstream(greedy_out + ".single.json") << single.dump();
    emit({{"name", "greedy_batch_invariance"}, {"value", same}, {"of", prompts.size()}});
    // Each of the first prompts inside a batch of 7 and of 64 other requests of mixed lengths
    // (16 to 600 tokens), against the same prompt alone.
    std::vector<std::vector<int32_t>> others;
    for (int j = 0; j < 64; ++j)
      others.push_back(RandomPrompts(1, 16 + (j * 37) % 585, config.vocab_size, 100 + j)[0]);
    const size_t checks = std::min<size_t>(prompts.size(), 4);
    for (size_t company : {7, 64}) {
      int kept = 0;
      for (size_t i = 0; i < checks; ++i) {
        std::vector<std::vector<int32_t>> batch = {prompts[i]};
        batch.insert(batch.end(), others.begin(), others.begin() + company);
        auto mixed = Generate(b, batch, greedy_new, o.max_step_tokens);
        if (!mixed.ok()) {
          std::fprintf(stderr, "greedy: %s\n", mixed.status().ToString().c_str());
          return 1;
        }
        kept += mixed->tokens[0] == single["prompts"][i]["tokens"].get<std::vector<int32_t>>();
      }
      emit({{"name", "greedy_batch_invariance_with_" + std::to_string(company)},
            {"value", kept},
            {"of", checks},
            {"batch_invariant_mode", batch_invariant}});
    }
  }

  std::stringstream list(workloads);
  for (std::string w; std::getline(list, w, ',');) {
    if (w.empty()) continue;
    int batch = 0, len = prompt_len, new_tokens = 0;
    bool prefill_only = false;
    if (w == "decode_bs1") {
      batch = 1;
      new_tokens = new_decode;
    } else if (w.rfind("throughput_", 0) == 0) {
      batch = std::stoi(w.substr(11));
      new_tokens = new_throughput;
    } else if (w.rfind("prefill_", 0) == 0) {
      const size_t x = w.find('x');
      batch = std::stoi(w.substr(8, x - 8));
      len = std::stoi(w.substr(x + 1));
      new_tokens = 1;
      prefill_only = true;
    } else {
      std::fprintf(stderr, "unknown workload %s\n", w.c_str());
      return 2;
    }
    auto prompts = RandomPrompts(batch, len, config.vocab_size, 7);
    // One warm-up at the same shapes (first-use graph captures, cuBLASLt plans), then the run.
    auto warm = Generate(b, prompts, std::min(new_tokens, 8), o.max_step_tokens);
    auto run = warm.ok() ? Generate(b, prompts, new_tokens, o.max_step_tokens) : warm;
    if (!run.ok()) {
      emit({{"name", w}, {"error", run.status().ToString()}});
      continue;
    }
    nlohmann::json j = {{"name", w},
                        {"batch", batch},
                        {"prompt_len", len},
                        {"new_tokens", new_tokens},
                        {"prefill_s", run->prefill_s},
                        {"decode_s", run->decode_s},
                        {"gpu_idle_fraction",
                         run->decode_s > 0 ? 1e-6 * run->device_idle_us / run->decode_s : 0.0}};
    if (w == "decode_bs1") {
      j["value"] = 1e3 * run->decode_s / run->decode_steps;
      j["unit"] = "ms/step";
      j["kv_bytes"] = kv_token_bytes * (len + new_tokens / 2);  // mean context read per step
    } else if (prefill_only) {
      // 2 flops per layer weight per token, the LM head on each prompt's last token, and
      // causal attention (QK^T and PV over half the square).
      const double h = config.hidden_size, inter = config.intermediate_size;
      const double layer_params =
          h * config.qkv_dim() + double(config.q_dim()) * h + 3.0 * h * inter;
      const double tokens = double(batch) * len;
      const double flops =
          2.0 * layer_params * config.num_layers * tokens + 2.0 * h * config.vocab_size * batch +
          2.0 * 2.0 * batch * (double(len) * len / 2) * config.q_dim() * config.num_layers;
      j["value"] = 1e3 * run->prefill_s;
      j["unit"] = "ms";
      j["tflops"] = flops / run->prefill_s / 1e12;
    } else {
      j["value"] = double(batch) * new_tokens / (run->prefill_s + run->decode_s);
      j["unit"] = "tok/s";
      j["decode_ms_per_step"] = 1e3 * run->decode_s / run->decode_steps;
    }
    emit(j);
  }
  return 0;
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
