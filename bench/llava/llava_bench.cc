// llava_bench: a LLaVA-1.5 model folder on the CUDA backend (or the CPU backend with --device
// cpu, a smoke run for the tiny model of tests/data), one JSON line per result on stdout for
// bench/engine/collect_results.py to join with bench/llava/hf_llava_peer.py's lines:
//   llava_vision_encode  one image through the CLIP tower and the projector (VisionModel::Encode:
//                        the host-side patch matrix, its upload, the tower up to the feature
//                        layer, the projector), from preprocessed pixels on the host to the
//                        image's embeddings on the device: ms per image
//   llava_ttft_1image    one request, BOS + the image's positions (576 for LLaVA-1.5) + --text
//                        random text tokens, prefilled in one step (the tower runs on the
//                        stream ahead of it) to the first sampled token on the host: ms
//   llava_ttft_text      the same prompt length with no image (text only): what the image costs
// Each value is the median of --iters timed runs after --warmup untimed ones. The pixels are
// random (speed does not depend on them); preprocessing (decode, resize) is the scheduler's and
// is not timed, as the peer's processor is not. Usage:
//   llava_bench --model DIR --name llava-1.5-7b [--text 32] [--iters 10] [--warmup 2]
//               [--device cuda|cpu] [--threads N]
#include <cuda_runtime.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>

#include "common/logging.h"
#include "worker/backend/cpu/cpu_backend.h"
#include "worker/backend/cpu/cpu_model_ops.h"
#include "worker/backend/cuda/cuda_backend.h"
#include "worker/backend/cuda/cuda_model_ops.h"
#include "worker/model/model.h"
#include "worker/model/model_loader.h"
#include "worker/model/vision_model.h"

namespace ite {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Median of `iters` timings of `run` (ms) after `warmup` untimed calls; the first error ends it.
StatusOr<double> MedianMs(int warmup, int iters, const std::function<Status()>& run) {
  for (int i = 0; i < warmup; ++i) ITE_RETURN_IF_ERROR(run());
  std::vector<double> ms;
  for (int i = 0; i < iters; ++i) {
    const auto t0 = Clock::now();
    ITE_RETURN_IF_ERROR(run());
    ms.push_back(Ms(t0));
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

std::vector<float> RandomPixels(const VisionConfig& v, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> px(size_t{3} * v.image_size * v.image_size);
  for (float& x : px) x = normal(rng);
  return px;
}

// The tower and projector alone, on ops of the backend's kind (not the backend's own: it keeps
// them private), freed before the backend is made so that the two never hold memory together.
struct VisionRig {
  std::unique_ptr<ModelOps> ops;
  std::unique_ptr<VisionModel> vision;
  Activation out;
  std::function<Status()> sync;
  std::function<void()> release;
};

StatusOr<VisionRig> MakeCudaRig(const LoadedModel& model) {
  VisionRig rig;
  cudaStream_t stream = nullptr;
  if (cudaStreamCreate(&stream) != cudaSuccess) return Internal("cudaStreamCreate failed");
  CudaOpsOptions o;
  o.max_rows = 1024;  // the tower's 577 rows at a time
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<CudaModelOps> ops,
                       CudaModelOps::Create(model.config, o, stream));
  rig.ops = std::move(ops);
  const int32_t rows = model.config.vision->image_tokens();
  const int32_t cols = model.config.hidden_size;
  void* out = nullptr;
  if (cudaMalloc(&out, size_t{2} * rows * cols) != cudaSuccess)
    return ResourceExhausted("cudaMalloc of the image embeddings failed");
  rig.out = {out, rows, cols};
  rig.sync = [stream] {
    const cudaError_t e = cudaStreamSynchronize(stream);
    return e == cudaSuccess ? Status::Ok() : Internal("CUDA: {}", cudaGetErrorString(e));
  };
  rig.release = [out, stream] {
    cudaFree(out);
    cudaStreamDestroy(stream);
  };
  return rig;
}

StatusOr<VisionRig> MakeCpuRig(const LoadedModel& model, int threads) {
  VisionRig rig;
  rig.ops = std::make_unique<CpuModelOps>(model.config, threads);
  const int32_t rows = model.config.vision->image_tokens();
  auto out = std::make_shared<std::vector<float>>(size_t{1} * rows * model.config.hidden_size);
  rig.out = {out->data(), rows, model.config.hidden_size};
  rig.sync = [] { return Status::Ok(); };
  rig.release = [out]() mutable { out.reset(); };
  return rig;
}

StatusOr<double> VisionEncodeMs(const LoadedModel& model, const std::string& device, int threads,
                                int warmup, int iters) {
  ITE_ASSIGN_OR_RETURN(VisionRig rig,
                       device == "cpu" ? MakeCpuRig(model, threads) : MakeCudaRig(model));
  ITE_ASSIGN_OR_RETURN(rig.vision,
                       CreateVisionModel(model.config, model.weights.vision, rig.ops.get()));
  const std::vector<float> px = RandomPixels(*model.config.vision, 1);
  StatusOr<double> ms = MedianMs(warmup, iters, [&] {
    ITE_RETURN_IF_ERROR(rig.vision->Encode(rig.ops.get(), px, rig.out));
    return rig.sync();
  });
  rig.vision.reset();
  rig.ops.reset();
  rig.release();
  return ms;
}

// Prefills `prompt` (with `images`, if any) as one new sequence in one step and waits for its
// first sampled token, which is copied to the host; the sequence is released after.
Status FirstToken(Backend& b, const std::vector<int32_t>& prompt,
                  const std::vector<StepImage>& images, int64_t seq_id) {
  std::vector<int32_t> table;
  for (int32_t i = 0; i * b.block_size() < static_cast<int32_t>(prompt.size()) + 1; ++i)
    table.push_back(i);
  SamplingParams greedy;
  greedy.temperature = 0.0f;
  ITE_RETURN_IF_ERROR(b.AddSequence(seq_id, greedy, prompt, 0));
  ITE_RETURN_IF_ERROR(b.SetSequenceImages(seq_id, images, prompt));
  ForwardBatch step;
  SequenceChunk c;
  c.seq_id = seq_id;
  c.tokens = prompt;
  c.block_table = table;
  step.chunks.push_back(c);
  StatusOr<ForwardOutput> out = b.Run(step);
  b.ReleaseSequence(seq_id);
  if (!out.ok()) return out.status();
  if (out->samples.size() != 1) return Internal("expected 1 sampled token");
  return Status::Ok();
}

int Main(int argc, char** argv) {
  std::string model_dir, name, device = "cuda";
  int32_t text_tokens = 32;
  int iters = 10, warmup = 2, threads = 2;
  double util = 0.85;
  CLI::App app{"llava_bench: LLaVA vision tower and one-image TTFT, JSON lines on stdout"};
  app.add_option("--model", model_dir)->required();
  app.add_option("--name", name)->required();
  app.add_option("--text", text_tokens, "text tokens after the image");
  app.add_option("--iters", iters);
  app.add_option("--warmup", warmup);
  app.add_option("--device", device)->check(CLI::IsMember({"cuda", "cpu"}));
  app.add_option("--threads", threads, "CPU backend threads");
  app.add_option("--gpu-memory-utilization", util);
  CLI11_PARSE(app, argc, argv);
  InitLogging("llava_bench", false);
  if (iters < 1 || warmup < 0 || text_tokens < 1) {
    std::fprintf(stderr, "--iters and --text must be >= 1, --warmup >= 0\n");
    return 2;
  }

  LoadOptions lo;
  lo.dtype = device == "cpu" ? DType::kF32 : DType::kBF16;
  const auto t0 = Clock::now();
  auto model = LoadModel(model_dir, lo);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  if (!model->config.vision) {
    std::fprintf(stderr, "%s: not a LLaVA model (no vision tower)\n", model_dir.c_str());
    return 1;
  }
  const double load_s = Ms(t0) / 1e3;
  const ModelConfig config = model->config;
  const VisionConfig& vision = *config.vision;
  const int32_t image_tokens = vision.image_tokens();
  auto emit = [&](nlohmann::json j) {
    j["model"] = name;
    j["device"] = device;
    std::printf("%s\n", j.dump().c_str());
    std::fflush(stdout);
  };
  emit({{"name", "load"}, {"value", load_s}, {"unit", "s"}});

  StatusOr<double> encode = VisionEncodeMs(*model, device, threads, warmup, iters);
  if (encode.ok()) {
    emit({{"name", "llava_vision_encode"},
          {"value", *encode},
          {"unit", "ms"},
          {"batch", 1},
          {"image_tokens", image_tokens},
          {"vision_layers", vision.feature_layers}});
  } else {
    emit({{"name", "llava_vision_encode"}, {"error", encode.status().ToString()}});
  }

  const int32_t prompt_len = 1 + image_tokens + text_tokens;
  auto make_backend = [&]() -> StatusOr<std::unique_ptr<Backend>> {
    if (device == "cpu") {
      KvCacheOptions kv;
      kv.block_size = 16;
      kv.num_blocks = prompt_len / 16 + 2;
      return CreateCpuBackend(std::move(model).value(), kv, threads);
    }
    CudaBackendOptions o;
    o.gpu_memory_utilization = util;
    o.max_step_tokens = std::max(2048, prompt_len);
    o.max_seqs = 16;
    return CreateCudaBackend(std::move(model).value(), o);
  };
  StatusOr<std::unique_ptr<Backend>> backend = make_backend();
  if (!backend.ok()) {
    std::fprintf(stderr, "%s\n", backend.status().ToString().c_str());
    return 1;
  }
  Backend& b = **backend;
  // BOS, the image's positions (each holding the image token, as the scheduler sends them),
  // then text tokens drawn from the ordinary vocabulary (below the image token).
  std::mt19937 rng(7);
  const int32_t draw_below = std::min(config.vocab_size, vision.image_token_id);
  std::vector<int32_t> prompt = {1};
  prompt.insert(prompt.end(), image_tokens, vision.image_token_id);
  for (int32_t i = 0; i < text_tokens; ++i)
    prompt.push_back(std::uniform_int_distribution<int32_t>(3, draw_below - 1)(rng));
  const std::vector<StepImage> images = {{1, RandomPixels(vision, 2)}};
  std::vector<int32_t> text_prompt = prompt;
  for (int32_t i = 1; i <= image_tokens; ++i)
    text_prompt[i] = std::uniform_int_distribution<int32_t>(3, draw_below - 1)(rng);
  const nlohmann::json shape = {{"prompt_len", static_cast<int>(prompt.size())},
                                {"new_tokens", 1},
                                {"batch", 1},
                                {"image_tokens", image_tokens},
                                {"text_tokens", text_tokens}};

  int64_t seq = 0;
  for (const bool with_image : {true, false}) {
    const char* what = with_image ? "llava_ttft_1image" : "llava_ttft_text";
    StatusOr<double> ms = MedianMs(warmup, iters, [&] {
      return with_image ? FirstToken(b, prompt, images, seq++)
                        : FirstToken(b, text_prompt, {}, seq++);
    });
    nlohmann::json j = shape;
    j["name"] = what;
    if (ms.ok()) {
      j["value"] = *ms;
      j["unit"] = "ms";
    } else {
      j["error"] = ms.status().ToString();
    }
    emit(j);
  }
  return 0;
}

}  // namespace
}  // namespace ite

int main(int argc, char** argv) { return ite::Main(argc, argv); }
