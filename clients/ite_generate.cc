// ite-generate: offline generation on the CPU backend or one GPU, streaming text to stdout.
//
//   ite-generate --model PATH (--prompt TEXT | --chat --prompt TEXT) [--max-tokens N]
//       [--temperature T] [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R]
//       [--seed S] [--threads N] [--output text|ids] [--system TEXT] [--device cpu|cuda]
//       [--dtype auto|f32|bf16|f16|q8_0] [--kv-dtype f32|bf16]
//       [--image FILE]...
//
// --image (LLaVA models, repeatable): a raw prompt names each image's place with `<image>`; a
// --chat prompt puts the images before the text of the user message, as the template says.
// The tokenizer and chat template come from the same GGUF file, or from the HF folder's
// tokenizer.json / tokenizer_config.json (--tokenizer overrides). A raw prompt is encoded with
// the tokenizer's special tokens (BOS exactly when its config adds one); a chat prompt is the
// rendered template encoded without them, as transformers' apply_chat_template does.
// Exit codes: 0 ok, 1 runtime error (bad model, tokenizer, template), 2 bad command line.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>

#include "common/cli_parse.h"
#include "scheduler/chat/chat_template.h"
#include "scheduler/image_intake.h"
#include "scheduler/tokenizer/tokenizer.h"
#include "worker/backend/cpu/cpu_backend.h"
#if ITE_HAVE_CUDA_BACKEND
#include "worker/backend/cuda/cuda_backend.h"
#endif
#include "worker/engine/generator.h"
#include "worker/model/describe_model.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"

namespace {

struct Args {
  std::string model;
  std::string tokenizer;
  std::string prompt;
  std::string system;
  bool chat = false;
  int max_tokens = 256;
  ite::SamplingParams sampling;
  int64_t seed = -1;
  int threads = 0;
  std::string output = "text";
  std::string dtype = "auto";
  std::string kv_dtype = "f32";
  std::string device = "cpu";
  std::vector<std::string> images;
};

int Fail(const std::string& what, const ite::Status& status) {
  std::fprintf(stderr, "ite-generate: %s: %s\n", what.c_str(), status.ToString().c_str());
  return 1;
}

bool IsGguf(const std::string& path) { return std::filesystem::path(path).extension() == ".gguf"; }

int Run(const Args& args) {
  ite::SamplingParams params = args.sampling;
  if (args.seed >= 0) {
    params.seed = static_cast<uint64_t>(args.seed);
    params.has_seed = true;
  }
  if (ite::Status s = params.Validate(); !s.ok()) {
    std::fprintf(stderr, "ite-generate: %s\n", s.message().c_str());
    return 2;
  }

  const std::string tok_path = args.tokenizer.empty() ? args.model : args.tokenizer;
  auto tokenizer = ite::Tokenizer::FromFile(tok_path);
  if (!tokenizer.ok()) return Fail("tokenizer " + tok_path, tokenizer.status());
  const ite::Tokenizer& tok = **tokenizer;

  auto load = ite::LoadOptionsForDType(args.dtype, args.device);
  if (!load.ok()) {
    std::fprintf(stderr, "ite-generate: %s\n", load.status().ToString().c_str());
    return 2;
  }
  const auto load_start = std::chrono::steady_clock::now();
  auto model = ite::LoadModel(args.model, *load);
  if (!model.ok()) return Fail("model " + args.model, model.status());
  std::fprintf(stderr, "ite-generate: loaded %s in %.3f s; --dtype %s: %s\n", args.model.c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count(),
               args.dtype.c_str(), ite::DescribeWeights(model->weights).c_str());

  // The images, decoded and preprocessed as the model folder's image processor says.
  std::vector<ite::ImageIntake::Prepared> images;
  std::optional<ite::ImageIntake> intake;
  if (!args.images.empty()) {
    auto made = ite::ImageIntake::Create(args.model, ite::DescribeModel(model->config), {});
    if (!made.ok()) return Fail("--image", made.status());
    intake = std::move(made).value();
    for (const std::string& path : args.images) {
      std::ifstream in(path, std::ios::binary);
      if (!in) return Fail("--image " + path, ite::NotFound("cannot read the file"));
      const std::string bytes((std::istreambuf_iterator<char>(in)), {});
      auto image = intake->Prepare(bytes, "", path);
      if (!image.ok()) return Fail("--image", image.status());
      images.push_back(std::move(image).value());
    }
  }

  std::vector<int32_t> prompt;
  if (args.chat) {
    auto tmpl = IsGguf(tok_path) ? ite::ChatTemplate::FromGguf(tok_path)
                                 : ite::ChatTemplate::FromTokenizerConfig(tok_path);
    if (!tmpl.ok()) return Fail("chat template of " + tok_path, tmpl.status());
    nlohmann::ordered_json messages = nlohmann::ordered_json::array();
    if (!args.system.empty()) messages.push_back({{"role", "system"}, {"content", args.system}});
    if (images.empty()) {
      messages.push_back({{"role", "user"}, {"content", args.prompt}});
    } else {
      nlohmann::ordered_json content = nlohmann::ordered_json::array();
      for (size_t i = 0; i < images.size(); ++i) content.push_back({{"type", "image"}});
      content.push_back({{"type", "text"}, {"text", args.prompt}});
      messages.push_back({{"role", "user"}, {"content", content}});
    }
    auto text = tmpl->Render(messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return Fail("chat template", text.status());
    prompt = tok.Encode(*text, /*add_special_tokens=*/false);
  } else {
    prompt = tok.Encode(args.prompt, /*add_special_tokens=*/true);
  }
  if (prompt.empty()) {
    std::fprintf(stderr, "ite-generate: the prompt encodes to no tokens\n");
    return 2;
  }
  std::vector<ite::StepImage> step_images;
  if (intake) {
    auto placed = intake->Expand(&prompt, images);
    if (!placed.ok()) return Fail("--image", placed.status());
    for (int32_t& t : prompt)
      if (t < 0) t = intake->image_token_id();  // no prefix cache here: the keys are not needed
    for (const ite::PromptImage& im : *placed) step_images.push_back({im.position, *im.pixels});
  }

  std::vector<int32_t> stop_ids = tok.eos_ids();
  for (int32_t id : model->config.eos_token_ids)
    if (std::find(stop_ids.begin(), stop_ids.end(), id) == stop_ids.end()) stop_ids.push_back(id);

  // A KV pool just big enough for this one sequence.
  ite::KvCacheOptions kv;
  kv.block_size = 16;
  int64_t positions =
      std::min<int64_t>(prompt.size() + args.max_tokens, model->config.max_position);
  kv.num_blocks = static_cast<int32_t>((positions + kv.block_size - 1) / kv.block_size);
  kv.cpu_bf16 = args.kv_dtype == "bf16";
  int threads = args.threads > 0
                    ? args.threads
                    : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  ite::StatusOr<std::unique_ptr<ite::Backend>> backend =
      ite::Unimplemented("--device {}: cpu or cuda", args.device);
  if (args.device == "cpu") {
    backend = ite::CreateCpuBackend(std::move(model).value(), kv, threads);
  } else if (args.device == "cuda") {
#if ITE_HAVE_CUDA_BACKEND
    ite::CudaBackendOptions cuda;
    cuda.kv = kv;
    cuda.max_seqs = 1;
    cuda.max_step_tokens = 512;  // the Generator's prefill chunk
    backend = ite::CreateCudaBackend(std::move(model).value(), cuda);
#else
    backend = ite::Unimplemented("--device cuda: this ite-generate was built without CUDA");
#endif
  }
  if (!backend.ok()) return Fail("backend", backend.status());

  ite::Generator generator(backend->get());
  ite::GenerateOptions options;
  options.max_new_tokens = args.max_tokens;
  options.stop_ids = stop_ids;
  options.images = {std::move(step_images)};
  const bool text = args.output == "text";
  ite::IncrementalDecoder decoder(tok, /*skip_special_tokens=*/true);
  auto result =
      generator.Generate(prompt, params, options, [&](int, const ite::SampleResult& sample) {
        if (text) {
          std::string piece = decoder.Push(sample.token);
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
        return true;
      });
  if (!result.ok()) return Fail("generate", result.status());
  if (text) {
    std::string rest = decoder.Flush();
    std::fwrite(rest.data(), 1, rest.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);  // before the stats line on stderr
  } else {
    std::printf("%s\n", nlohmann::json(result->tokens).dump().c_str());
    std::fflush(stdout);
  }
  size_t n = result->tokens.size();
  std::fprintf(stderr,
               "[%zu prompt tokens in %.2f s (%.1f tok/s); %zu generated, %.1f tok/s decode; "
               "finish: %s]\n",
               prompt.size(), result->prefill_us / 1e6,
               prompt.size() / std::max(1e-9, result->prefill_us / 1e6), n,
               n > 1 ? (n - 1) / std::max(1e-9, result->decode_us / 1e6) : 0.0,
               result->finish_reason.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate text with the CPU backend"};
  Args args;
  app.add_option("--model", args.model, "HF folder or .gguf file")->required();
  app.add_option("--tokenizer", args.tokenizer,
                 "tokenizer.json / tokenizer.model / .gguf / HF folder (default: --model)");
  app.add_option("--prompt", args.prompt, "prompt text (the user message with --chat)")->required();
  app.add_flag("--chat", args.chat, "wrap the prompt in the model's chat template");
  app.add_option("--system", args.system, "system message (with --chat)");
  app.add_option("--max-tokens", args.max_tokens, "tokens to generate at most")
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--temperature", args.sampling.temperature, "0 = greedy");
  app.add_option("--top-k", args.sampling.top_k, "0 = off");
  app.add_option("--top-p", args.sampling.top_p, "1 = off");
  app.add_option("--min-p", args.sampling.min_p, "0 = off");
  app.add_option("--repetition-penalty", args.sampling.repetition_penalty, "1 = off");
  app.add_option("--presence-penalty", args.sampling.presence_penalty, "0 = off");
  app.add_option("--frequency-penalty", args.sampling.frequency_penalty, "0 = off");
  app.add_option("--seed", args.seed, "RNG seed (default: random)")->check(CLI::NonNegativeNumber);
  app.add_option("--threads", args.threads, "CPU threads (default: all cores)");
  app.add_option("--output", args.output, "text (streamed) or ids (one JSON array)")
      ->check(CLI::IsMember({"text", "ids"}));
  app.add_option("--device", args.device, "cpu or cuda")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_option("--image", args.images, "image file for a LLaVA model (repeatable)");
  app.add_option("--dtype", args.dtype,
                 "weights: auto (CPU: as stored, block formats included; CUDA: bf16), f32 (CPU "
                 "reference), bf16, f16 (CUDA), q8_0 (CPU: every matrix re-quantized to Q8_0)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "f32", "bf16", "f16", "q8_0"}));
  app.add_option("--kv-dtype", args.kv_dtype, "CPU KV cache: f32 or bf16 (half the memory)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
  if (std::optional<int> rc = ite::ParseFlagsOrExit(app, argc, argv)) return *rc;
  if (!args.system.empty() && !args.chat) {
    std::fprintf(stderr, "ite-generate: --system needs --chat\n");
    return 2;
  }
  return Run(args);
}
