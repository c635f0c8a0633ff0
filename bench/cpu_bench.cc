// cpu_bench: load time, prefill and decode throughput and peak RSS of the CPU backend on a real
// model (SmolLM2-135M-Instruct by default). Prints a table and writes/updates a JSON file keyed
// by "<dtype>/<threads>t" so several runs (f32, bf16, thread counts) land in one file.
//
//   cpu_bench [--model PATH] [--dtype auto|f32|bf16|q8_0] [--threads N] [--prompt-len 128]
//             [--decode-tokens 64] [--batch 4] [--isa best|avx512-vnni|avx-vnni|avx2|scalar]
//             [--json bench/results/cpu.json]
// --isa caps the quantized kernels' instruction set (to compare them on one CPU); JSON rows of
// a capped run are keyed "<dtype>/<threads>t/<isa>".
#include <sys/resource.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/quant_kernels.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"

namespace {

double Seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of the whole process: with --threads 1 a measure of the kernels' cost that
// contention from other processes on the machine does not inflate as much as wall time.
double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double PeakRssMb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // ru_maxrss is in KiB on Linux
}

int Argmax(std::span<const float> v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"CPU backend benchmark"};
  const char* env_model = std::getenv("ITE_MODEL_GGUF");
  std::string model_path = env_model ? env_model : "models/SmolLM2-135M-Instruct.Q4_1.gguf";
  std::string dtype = "f32";
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int prompt_len = 128, decode_tokens = 64, batch = 4;
  std::string json_path;
  app.add_option("--model", model_path, "HF folder or .gguf");
  std::string isa = "best";
  app.add_option("--dtype", dtype,
                 "weights: auto (as stored: block formats), f32, bf16, q8_0 (re-quantized)")
      ->check(CLI::IsMember({"auto", "f32", "bf16", "q8_0"}));
  app.add_option("--isa", isa, "quantized kernels: best, or a narrower set this CPU runs");
  app.add_option("--threads", threads)->check(CLI::Range(1, 256));
  app.add_option("--prompt-len", prompt_len)->check(CLI::Range(1, 4096));
  app.add_option("--decode-tokens", decode_tokens)->check(CLI::Range(2, 4096));
  app.add_option("--batch", batch, "sequences for the batched decode row")
      ->check(CLI::Range(1, 64));
  app.add_option("--json", json_path, "JSON file to update with the results");
  CLI11_PARSE(app, argc, argv);
  if (isa != "best") {
    ite::cpu::QuantIsa limit;
    if (!ite::cpu::QuantIsaFromName(isa.c_str(), &limit) || !ite::cpu::QuantIsaSupported(limit)) {
      std::fprintf(stderr, "cpu_bench: --isa %s: not a set this CPU runs\n", isa.c_str());
      return 2;
    }
    ite::cpu::SetQuantIsaLimit(limit);
  }
  const std::string isa_used = ite::cpu::QuantIsaName(ite::cpu::BestQuantIsa());

  double t0 = Seconds();
  auto load = ite::LoadOptionsForDType(dtype, "cpu");
  if (!load.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", load.status().ToString().c_str());
    return 2;
  }
  auto model = ite::LoadModel(model_path, *load);
  if (!model.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", model.status().ToString().c_str());
    return 1;
  }
  const ite::ModelConfig config = model->config;
  const std::string weights = ite::DescribeWeights(model->weights);
  ite::KvCacheOptions kv;
  kv.block_size = 16;
  int per_seq = (prompt_len + decode_tokens + kv.block_size - 1) / kv.block_size;
  kv.num_blocks = per_seq * (batch + 1);
  auto created = ite::CreateCpuBackend(std::move(model).value(), kv, threads);
  if (!created.ok()) {
    std::fprintf(stderr, "cpu_bench: %s\n", created.status().ToString().c_str());
    return 1;
  }
  ite::Backend& backend = **created;
  const double load_s = Seconds() - t0;
  const int vocab = config.vocab_size;

  std::mt19937 rng(1);
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  auto table_of = [&](int seq) {
    std::vector<int32_t> t(per_seq);
    for (int i = 0; i < per_seq; ++i) t[i] = seq * per_seq + i;
    return t;
  };

  // Prefill: one chunk of prompt_len tokens, best of 3.
  std::vector<int32_t> prompt(prompt_len);
  for (int32_t& t : prompt) t = tok(rng);
  std::vector<int32_t> table0 = table_of(0);
  std::vector<float> logits;
  double prefill_s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    ite::ForwardBatch b;
    b.chunks.push_back(ite::LogitsChunk(prompt, 0, table0, ite::LogitsMode::kLast));
    double s = Seconds();
    if (ite::Status st = ite::ForwardLogits(backend, b, &logits); !st.ok()) {
      std::fprintf(stderr, "cpu_bench: %s\n", st.ToString().c_str());
      return 1;
    }
    prefill_s = std::min(prefill_s, Seconds() - s);
  }

  // Decode, batch 1: greedy tokens fed back one at a time after the prompt.
  std::vector<int32_t> seq = prompt;
  seq.push_back(Argmax(logits));
  double d0 = Seconds();
  double c0 = CpuSeconds();
  for (int i = 0; i < decode_tokens; ++i) {
    ite::ForwardBatch b;
    int32_t pos = static_cast<int32_t>(seq.size()) - 1;
    b.chunks.push_back(ite::LogitsChunk(std::span<const int32_t>(seq).subspan(pos, 1), pos, table0,
                                        ite::LogitsMode::kLast));
    if (ite::Status st = ite::ForwardLogits(backend, b, &logits); !st.ok()) {
      std::fprintf(stderr, "cpu_bench: %s\n", st.ToString().c_str());
      return 1;
    }
    seq.push_back(Argmax(logits));
  }
  const double decode_s = Seconds() - d0;
  const double decode_cpu_s = CpuSeconds() - c0;

  // Decode, `batch` sequences per Forward (after a short prompt each).
  std::vector<std::vector<int32_t>> seqs(batch);
  std::vector<std::vector<int32_t>> tables(batch);
  for (int s = 0; s < batch; ++s) {
    tables[s] = table_of(s + 1);
    for (int i = 0; i < 16; ++i) seqs[s].push_back(tok(rng));
    ite::ForwardBatch b;
    b.chunks.push_back(ite::LogitsChunk(seqs[s], 0, tables[s], ite::LogitsMode::kLast));
    if (!ite::ForwardLogits(backend, b, &logits).ok()) return 1;
    seqs[s].push_back(Argmax(logits));
  }
  const int batch_steps = std::min(decode_tokens, 32);
  double b0 = Seconds();
  for (int i = 0; i < batch_steps; ++i) {
    ite::ForwardBatch b;
    for (int s = 0; s < batch; ++s) {
      int32_t pos = static_cast<int32_t>(seqs[s].size()) - 1;
      b.chunks.push_back(ite::LogitsChunk(std::span<const int32_t>(seqs[s]).subspan(pos, 1), pos,
                                          tables[s], ite::LogitsMode::kLast));
    }
    if (!ite::ForwardLogits(backend, b, &logits).ok()) return 1;
    for (int s = 0; s < batch; ++s)
      seqs[s].push_back(Argmax(std::span<const float>(logits).subspan(s * vocab, vocab)));
  }
  const double batch_s = Seconds() - b0;

  nlohmann::json r = {
      {"model", std::filesystem::path(model_path).filename().string()},
      {"dtype", dtype},
      {"threads", threads},
      {"load_s", load_s},
      {"prefill_tokens", prompt_len},
      {"prefill_tok_per_s", prompt_len / prefill_s},
      {"decode_tokens", decode_tokens},
      {"decode_tok_per_s", decode_tokens / decode_s},
      {"decode_ms_per_token", 1e3 * decode_s / decode_tokens},
      {"decode_cpu_ms_per_token", 1e3 * decode_cpu_s / decode_tokens},
      {"batch", batch},
      {"batch_decode_tok_per_s", batch * batch_steps / batch_s},
      {"peak_rss_mb", PeakRssMb()},
      {"weights", weights},
      {"quant_isa", isa_used},
  };
  std::printf("%-28s %s\n", "model", r["model"].get<std::string>().c_str());
  std::printf("%-28s %s (%s), %d threads\n", "weights", dtype.c_str(), weights.c_str(), threads);
  std::printf("%-28s %s\n", "quantized kernels", isa_used.c_str());
  std::printf("%-28s %.2f s\n", "load (file -> backend)", load_s);
  std::printf("%-28s %.1f tok/s (%d tokens)\n", "prefill", prompt_len / prefill_s, prompt_len);
  std::printf("%-28s %.1f tok/s (%.1f ms/token)\n", "decode, batch 1", decode_tokens / decode_s,
              1e3 * decode_s / decode_tokens);
  std::printf("%-28s %.1f ms/token\n", "decode CPU time, batch 1",
              1e3 * decode_cpu_s / decode_tokens);
  std::printf("%-28s %.1f tok/s\n", ("decode, batch " + std::to_string(batch)).c_str(),
              batch * batch_steps / batch_s);
  std::printf("%-28s %.0f MB\n", "peak RSS", PeakRssMb());

  if (!json_path.empty()) {
    nlohmann::json all = nlohmann::json::object();
    if (std::ifstream in(json_path); in.good()) {
      try {
        all = nlohmann::json::parse(in);
      } catch (const nlohmann::json::exception&) {
        all = nlohmann::json::object();
      }
    }
    all[dtype + "/" + std::to_string(threads) + "t" + (isa == "best" ? "" : "/" + isa)] = r;
    std::filesystem::path p(json_path);
    if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
    std::ofstream(json_path) << all.dump(1) << "\n";
  }
  return 0;
}
