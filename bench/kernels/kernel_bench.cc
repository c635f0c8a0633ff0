// kernel_bench: times the CUDA kernels on the device and prints one JSON object per measurement
// (name, shape, value, unit, plus the bytes / flops counted). bench/kernels/collect_results.py
// joins these with the torch peer numbers (sdpa_peer.py) into bench/results/kernels.json.
//
// Timing: CUDA events around `iters` launches after warm-up, median of 5 such trials. Inputs
// are random (never zeros). Where one input set would fit in L2 (50-60 MB), several copies are
// allocated and the launches rotate over them, so the numbers are DRAM numbers.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ite/kernels/activation.h"
#include "ite/kernels/attention.h"
#include "ite/kernels/embedding.h"
#include "ite/kernels/gemm.h"
#include "ite/kernels/norm.h"
#include "ite/kernels/rope.h"
#include "ite/kernels/sampling.h"
#include "ite/kernels/softmax.h"

namespace ite::kernels {
namespace {

#define BENCH_CUDA(expr)                                                                         \
  do {                                                                                           \
    cudaError_t _e = (expr);                                                                     \
    if (_e != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(_e)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

#define BENCH_OK(expr)                                                                          \
  do {                                                                                          \
    Status _s = (expr);                                                                         \
    if (!_s.ok()) {                                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, _s.ToString().c_str()); \
      std::exit(1);                                                                             \
    }                                                                                           \
  } while (0)

struct Buffer {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Buffer(size_t n) : bytes(n) { BENCH_CUDA(cudaMalloc(&p, std::max<size_t>(n, 16))); }
  ~Buffer() { cudaFree(p); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

// Fills a buffer with random 16-bit values in about [-1, 1] (bf16 or f16 bit patterns) or
// random floats, via a host staging copy in chunks.
void FillRandom16(Buffer& b, DType dtype, std::mt19937& rng) {
  const size_t n = b.bytes / 2;
  std::vector<uint16_t> host(std::min<size_t>(n, size_t{1} << 24));
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (uint16_t& h : host) {
    const float f = dist(rng);
    if (dtype == DType::kBF16) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      h = static_cast<uint16_t>(u >> 16);
    } else {
      // Small values only: exponent 14 (0.5..1) with random mantissa and sign.
      h = static_cast<uint16_t>((f < 0 ? 0x8000 : 0) | (14 << 10) | (rng() & 0x3FF));
    }
  }
  for (size_t off = 0; off < n; off += host.size()) {
    const size_t cnt = std::min(host.size(), n - off);
    BENCH_CUDA(cudaMemcpy(b.as<uint16_t>() + off, host.data(), cnt * 2, cudaMemcpyHostToDevice));
  }
}

void FillRandomF32(Buffer& b, std::mt19937& rng, float scale) {
  std::vector<float> host(b.bytes / 4);
  std::normal_distribution<float> dist(0.0f, scale);
  for (float& f : host) f = dist(rng);
  BENCH_CUDA(cudaMemcpy(b.p, host.data(), b.bytes, cudaMemcpyHostToDevice));
}

// Median milliseconds per call of fn(i) (i counts calls, for rotating inputs).
double TimeMs(const std::function<void(int)>& fn, int iters) {
  cudaEvent_t start, stop;
  BENCH_CUDA(cudaEventCreate(&start));
  BENCH_CUDA(cudaEventCreate(&stop));
  int call = 0;
  for (int i = 0; i < std::max(3, iters / 4); ++i) fn(call++);
  BENCH_CUDA(cudaDeviceSynchronize());
  std::vector<double> trials;
  for (int t = 0; t < 5; ++t) {
    BENCH_CUDA(cudaEventRecord(start));
    for (int i = 0; i < iters; ++i) fn(call++);
    BENCH_CUDA(cudaEventRecord(stop));
    BENCH_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    BENCH_CUDA(cudaEventElapsedTime(&ms, start, stop));
    trials.push_back(ms / iters);
  }
  BENCH_CUDA(cudaGetLastError());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(trials.begin(), trials.end());
  return trials[trials.size() / 2];
}

void Emit(const std::string& name, const nlohmann::json& shape, double value,
          const std::string& unit, double ms) {
  nlohmann::json j{{"name", name}, {"shape", shape}, {"value", value}, {"unit", unit}, {"ms", ms}};
  std::printf("%s\n", j.dump().c_str());
  std::fflush(stdout);
}

constexpr size_t kRotateBytes = size_t{256} << 20;  // well past L2 of H100 / H200

double CopyBandwidth() {
  const size_t bytes = size_t{1} << 30;
  Buffer a(bytes), b(bytes);
  BENCH_CUDA(cudaMemset(a.p, 1, bytes));
  const double ms =
      TimeMs([&](int) { cudaMemcpyAsync(b.p, a.p, bytes, cudaMemcpyDeviceToDevice); }, 10);
  const double gbs = 2.0 * bytes / (ms * 1e-3) / 1e9;
  Emit("copy_bandwidth", {{"bytes", bytes}}, gbs, "GB/s", ms);
  return gbs;
}

// Paged cache with `copies` independent block sets, block tables in order within a copy.
struct PagedSetup {
  std::unique_ptr<Buffer> k, v, tables;
  PagedKvCache cache;
  int32_t max_blocks = 0;
  int32_t copies = 1;
  int32_t batch = 0;
};

PagedSetup MakePaged(int32_t batch, int32_t len, int32_t kv_heads, int32_t head_dim,
                     int32_t block_size, DType dtype, std::mt19937& rng) {
  PagedSetup s;
  s.batch = batch;
  s.max_blocks = (len + block_size - 1) / block_size;
  const size_t set_bytes = size_t(batch) * s.max_blocks * block_size * kv_heads * head_dim * 2 * 2;
  s.copies = static_cast<int32_t>(std::clamp<size_t>(kRotateBytes / set_bytes, 1, 32));
  const int32_t blocks = batch * s.max_blocks * s.copies;
  const size_t elems = size_t(blocks) * block_size * kv_heads * head_dim;
  s.k = std::make_unique<Buffer>(elems * 2);
  s.v = std::make_unique<Buffer>(elems * 2);
  FillRandom16(*s.k, dtype, rng);
  FillRandom16(*s.v, dtype, rng);
  // Blocks of a sequence are shuffled (as a real pool hands them out), per copy.
  std::vector<int32_t> tables(static_cast<size_t>(blocks));
  for (int32_t c = 0; c < s.copies; ++c) {
    std::vector<int32_t> ids(size_t(batch) * s.max_blocks);
    for (size_t i = 0; i < ids.size(); ++i) ids[i] = int32_t(c * ids.size() + i);
    std::shuffle(ids.begin(), ids.end(), rng);
    std::copy(ids.begin(), ids.end(), tables.begin() + size_t(c) * ids.size());
  }
  s.tables = std::make_unique<Buffer>(tables.size() * 4);
  BENCH_CUDA(cudaMemcpy(s.tables->p, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
  s.cache = PagedKvCache{s.k->p, s.v->p, dtype, blocks, block_size, kv_heads, head_dim};
  return s;
}

void BenchPrefill(std::mt19937& rng, bool quick) {
  const int32_t heads = 32, kv_heads = 8, block_size = 16;
  for (int32_t hd : {64, 128}) {
    for (int32_t seq : {512, 2048, 8192}) {
      if (quick && seq != 2048) continue;
      const int32_t batch = std::max(1, 16384 / seq);
      PagedSetup s = MakePaged(batch, seq, kv_heads, hd, block_size, DType::kBF16, rng);
      s.copies = 1;  // compute-bound: no rotation needed
      const size_t qn = size_t(batch) * seq * heads * hd;
      Buffer q(qn * 2), out(qn * 2);
      FillRandom16(q, DType::kBF16, rng);
      std::vector<int32_t> cu(batch + 1), lens(batch, seq);
      for (int32_t b = 0; b <= batch; ++b) cu[b] = b * seq;
      Buffer dcu(cu.size() * 4), dlens(lens.size() * 4);
      BENCH_CUDA(cudaMemcpy(dcu.p, cu.data(), cu.size() * 4, cudaMemcpyHostToDevice));
      BENCH_CUDA(cudaMemcpy(dlens.p, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
      PrefillAttentionArgs a;
      a.q = q.p;
      a.out = out.p;
      a.cache = s.cache;
      a.cu_seqlens_q = dcu.as<int32_t>();
      a.kv_lens = dlens.as<int32_t>();
      a.block_tables = s.tables->as<int32_t>();
      a.max_blocks_per_seq = s.max_blocks;
      a.batch = batch;
      a.max_q_len = seq;
      a.num_heads = heads;
      a.scale = 1.0f / std::sqrt(float(hd));
      // Both kernels where the card runs both: the mma.sync one (sm_80+) and the wgmma one
      // (sm_90a), which PrefillKernel::kAuto picks on Hopper.
      std::vector<std::pair<PrefillKernel, const char*>> kernels = {
          {PrefillKernel::kMmaSync, "mma.sync"}};
      if (PrefillWgmmaAvailable()) kernels.push_back({PrefillKernel::kWgmma, "wgmma"});
      for (const auto& [kernel, kernel_name] : kernels) {
        a.kernel = kernel;
        BENCH_OK(PrefillAttention(a, nullptr));
        const double ms =
            TimeMs([&](int) { PrefillAttention(a, nullptr).ok(); }, seq >= 8192 ? 5 : 20);
        // Causal FLOPs as FlashAttention counts them: 4 * S^2 * D * H / 2 per sequence.
        const double flops = 4.0 * batch * double(seq) * seq * hd * heads / 2.0;
        Emit("prefill_attention",
             {{"batch", batch},
              {"seq", seq},
              {"head_dim", hd},
              {"heads", heads},
              {"kv_heads", kv_heads},
              {"dtype", "bf16"},
              {"block_size", block_size},
              {"causal", true},
              {"kernel", kernel_name}},
             flops / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
      }
    }
  }
}

// With `sweep` (from --decode-splits=LIST), every case also runs at each listed split count (up
// to one split per 64 positions), as "decode_attention_splits" entries, to tune DecodeNumSplits.
void BenchDecode(std::mt19937& rng, bool quick, int sms, const std::vector<int32_t>& sweep) {
  const int32_t heads = 32, kv_heads = 8, hd = 128, block_size = 16;
  for (int32_t batch : {1, 16, 64, 256}) {
    for (int32_t ctx : {512, 4096, 16384, 32768}) {
      if (quick && !(batch == 1 || batch == 64)) continue;
      if (size_t(batch) * ctx > size_t{256} * 16384) continue;  // 32 GiB of K+V and up: skip
      PagedSetup s = MakePaged(batch, ctx, kv_heads, hd, block_size, DType::kBF16, rng);
      std::vector<int32_t> lens(batch, ctx);
      Buffer dlens(lens.size() * 4), q(size_t(batch) * heads * hd * 2),
          out(size_t(batch) * heads * hd * 2);
      FillRandom16(q, DType::kBF16, rng);
      BENCH_CUDA(cudaMemcpy(dlens.p, lens.data(), lens.size() * 4, cudaMemcpyHostToDevice));
      auto measure = [&](const char* name, int32_t splits) {
        const size_t ws_bytes = DecodeWorkspaceBytes(batch, heads, hd, splits);
        Buffer ws(ws_bytes);
        DecodeAttentionArgs a;
        a.q = q.p;
        a.out = out.p;
        a.cache = s.cache;
        a.kv_lens = dlens.as<int32_t>();
        a.max_blocks_per_seq = s.max_blocks;
        a.batch = batch;
        a.num_heads = heads;
        a.scale = 1.0f / std::sqrt(float(hd));
        a.num_splits = splits;
        a.workspace = ws.p;
        a.workspace_bytes = ws_bytes;
        const int32_t* tables = s.tables->as<int32_t>();
        const size_t per_copy = size_t(batch) * s.max_blocks;
        auto run = [&](int i) {
          a.block_tables = tables + (i % s.copies) * per_copy;
          DecodeAttention(a, nullptr).ok();
        };
        a.block_tables = tables;
        BENCH_OK(DecodeAttention(a, nullptr));
        const double ms = TimeMs(run, 50);
        const double bytes = 2.0 * batch * double(ctx) * kv_heads * hd * 2;
        Emit(name,
             {{"batch", batch},
              {"ctx", ctx},
              {"head_dim", hd},
              {"heads", heads},
              {"kv_heads", kv_heads},
              {"dtype", "bf16"},
              {"block_size", block_size},
              {"splits", splits}},
             bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
      };
      measure("decode_attention", DecodeNumSplits(batch, heads, kv_heads, hd, ctx, sms));
      for (int32_t splits : sweep) {
        if (splits <= std::max(1, ctx / 64)) measure("decode_attention_splits", splits);
      }
    }
  }
}

// Memory-bound elementwise kernels at prefill-sized inputs (8192 tokens, Llama-3-8B widths).
void BenchElementwise(std::mt19937& rng) {
  const DType dt = DType::kBF16;
  const int32_t tokens = 8192, hidden = 4096, inter = 14336;
  {
    Buffer x(size_t(tokens) * hidden * 2), w(hidden * 2), out(size_t(tokens) * hidden * 2),
        res(size_t(tokens) * hidden * 2);
    FillRandom16(x, dt, rng);
    FillRandom16(w, dt, rng);
    FillRandom16(res, dt, rng);
    RmsNormArgs a{dt, x.p, w.p, out.p, tokens, hidden, 1e-5f};
    double ms = TimeMs([&](int) { RmsNorm(a, nullptr).ok(); }, 20);
    double bytes = 2.0 * x.bytes;
    Emit("rms_norm", {{"rows", tokens}, {"dim", hidden}, {"dtype", "bf16"}},
         bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
    ms = TimeMs([&](int) { AddRmsNorm(a, res.p, nullptr).ok(); }, 20);
    bytes = 4.0 * x.bytes;  // read x and residual, write residual and out
    Emit("add_rms_norm", {{"rows", tokens}, {"dim", hidden}, {"dtype", "bf16"}},
         bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    Buffer gu(size_t(tokens) * 2 * inter * 2), out(size_t(tokens) * inter * 2);
    FillRandom16(gu, dt, rng);
    const double ms =
        TimeMs([&](int) { SiluMul(dt, gu.p, tokens, inter, out.p, nullptr).ok(); }, 20);
    Emit("silu_mul", {{"rows", tokens}, {"inter", inter}, {"dtype", "bf16"}},
         double(gu.bytes + out.bytes) / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    const int32_t heads = 32, kv_heads = 8, hd = 128, block_size = 16;
    const int32_t width = (heads + 2 * kv_heads) * hd;
    Buffer qkv(size_t(tokens) * width * 2), pos(tokens * 4), slots(tokens * 4), freq(hd / 2 * 4);
    FillRandom16(qkv, dt, rng);
    std::vector<int32_t> p(tokens), sl(tokens);
    for (int32_t t = 0; t < tokens; ++t) p[t] = sl[t] = t;
    std::vector<float> f(hd / 2);
    for (int32_t i = 0; i < hd / 2; ++i) f[i] = std::pow(500000.0f, -2.0f * i / hd);
    BENCH_CUDA(cudaMemcpy(pos.p, p.data(), tokens * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(slots.p, sl.data(), tokens * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(freq.p, f.data(), f.size() * 4, cudaMemcpyHostToDevice));
    Buffer kc(size_t(tokens) * kv_heads * hd * 2), vc(size_t(tokens) * kv_heads * hd * 2);
    RopeKvWriteArgs a;
    a.qkv = qkv.p;
    a.positions = pos.as<int32_t>();
    a.slots = slots.as<int32_t>();
    a.inv_freq = freq.as<float>();
    a.num_tokens = tokens;
    a.num_heads = heads;
    a.num_kv_heads = kv_heads;
    a.head_dim = hd;
    a.cache = PagedKvCache{kc.p, vc.p, dt, tokens / block_size, block_size, kv_heads, hd};
    const double ms = TimeMs([&](int) { RopeKvWrite(a, nullptr).ok(); }, 20);
    // Reads q, k, v; writes q back and k, v to the cache.
    const double bytes = 2.0 * qkv.bytes;
    Emit("rope_kv_write",
         {{"tokens", tokens},
          {"heads", heads},
          {"kv_heads", kv_heads},
          {"head_dim", hd},
          {"dtype", "bf16"}},
         bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    const int32_t vocab = 128256;
    Buffer table(size_t(vocab) * hidden * 2), ids(tokens * 4), out(size_t(tokens) * hidden * 2);
    FillRandom16(table, dt, rng);
    std::vector<int32_t> h(tokens);
    for (int32_t& v : h) v = int32_t(rng() % vocab);
    BENCH_CUDA(cudaMemcpy(ids.p, h.data(), tokens * 4, cudaMemcpyHostToDevice));
    const double ms = TimeMs(
        [&](int) {
          Embedding(dt, table.p, vocab, hidden, ids.as<int32_t>(), tokens, out.p, nullptr).ok();
        },
        20);
    Emit("embedding", {{"tokens", tokens}, {"dim", hidden}, {"vocab", vocab}, {"dtype", "bf16"}},
         2.0 * out.bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
  }
  {
    const int32_t rows = 256, vocab = 128256;
    Buffer x(size_t(rows) * vocab * 4), out(size_t(rows) * vocab * 4);
    FillRandomF32(x, rng, 3.0f);
    const double ms = TimeMs(
        [&](int) { Softmax(x.as<float>(), rows, vocab, out.as<float>(), nullptr).ok(); }, 20);
    Emit("softmax", {{"rows", rows}, {"n", vocab}, {"dtype", "f32"}},
         2.0 * x.bytes / (ms * 1e-3) / 1e9, "GB/s", ms);
    // Sampling with top-k 50, top-p 0.9, min-p 0.05 on every row.
    std::vector<float> temp(rows, 0.8f), tp(rows, 0.9f), mp(rows, 0.05f);
    std::vector<int32_t> tk(rows, 50);
    std::vector<uint64_t> seeds(rows), steps(rows, 0);
    for (auto& s : seeds) s = rng();
    Buffer dtemp(rows * 4), dtp(rows * 4), dmp(rows * 4), dtk(rows * 4), ds(rows * 8),
        dst(rows * 8), tok(rows * 4), lp(rows * 4);
    BENCH_CUDA(cudaMemcpy(dtemp.p, temp.data(), rows * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dtp.p, tp.data(), rows * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dmp.p, mp.data(), rows * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dtk.p, tk.data(), rows * 4, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(ds.p, seeds.data(), rows * 8, cudaMemcpyHostToDevice));
    BENCH_CUDA(cudaMemcpy(dst.p, steps.data(), rows * 8, cudaMemcpyHostToDevice));
    SamplingArgs a{x.as<float>(),
                   rows,
                   vocab,
                   dtemp.as<float>(),
                   dtk.as<int32_t>(),
                   dtp.as<float>(),
                   dmp.as<float>(),
                   ds.as<uint64_t>(),
                   dst.as<uint64_t>(),
                   tok.as<int32_t>(),
                   lp.as<float>()};
    double ms2 = TimeMs([&](int) { Sample(a, nullptr).ok(); }, 20);
    Emit("sample_topk_topp_minp", {{"rows", rows}, {"vocab", vocab}}, ms2 * 1e3, "us", ms2);
    ms2 = TimeMs(
        [&](int) {
          Argmax(x.as<float>(), rows, vocab, tok.as<int32_t>(), lp.as<float>(), nullptr).ok();
        },
        20);
    Emit("argmax", {{"rows", rows}, {"vocab", vocab}}, double(x.bytes) / (ms2 * 1e-3) / 1e9, "GB/s",
         ms2);
  }
}

void BenchGemm(std::mt19937& rng) {
  auto runner = GemmRunner::Create();
  BENCH_OK(runner.status());
  struct Shape {
    int32_t m, n, k;
  };
  for (const Shape& s : {Shape{8192, 4096, 4096}, Shape{8192, 28672, 4096}, Shape{64, 6144, 4096},
                         Shape{1, 6144, 4096}}) {
    Buffer x(size_t(s.m) * s.k * 2), w(size_t(s.n) * s.k * 2), out(size_t(s.m) * s.n * 2);
    FillRandom16(x, DType::kBF16, rng);
    FillRandom16(w, DType::kBF16, rng);
    GemmArgs a{DType::kBF16, x.p, w.p, nullptr, out.p, false, s.m, s.n, s.k};
    BENCH_OK((*runner)->Run(a, nullptr));
    const double ms = TimeMs([&](int) { (*runner)->Run(a, nullptr).ok(); }, 20);
    Emit("gemm_bf16", {{"m", s.m}, {"n", s.n}, {"k", s.k}},
         2.0 * s.m * s.n * double(s.k) / (ms * 1e-3) / 1e12, "TFLOP/s", ms);
  }
}

// One-row products of real decoder layers (decode at batch 1), each way the weight-streaming
// kernel can take them: x read by every warp ("cores") or staged in shared memory ("shared_x"),
// and with the grid capped at two blocks a multiprocessor.
// Launches of one product over rotating weight copies are captured in a CUDA graph and replayed, so
// consecutive products overlap through dependent launch as a decode step's do; the time is per
// product.
void BenchGemv(std::mt19937& rng) {
  auto runner = GemmRunner::Create();
  BENCH_OK(runner.status());
  struct Layer {
    const char* model;
    int32_t hidden, heads, kv_heads, head_dim, inter, vocab;
  };
  struct Product {
    const char* name;
    GemmEpilogue epilogue;
    int32_t n, k;
    bool out_f32;
  };
  struct Mode {
    const char* name;
    bool shared_x;
    int32_t max_blocks_per_sm;
  };
  cudaStream_t stream;
  BENCH_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (const Layer& l : {Layer{"llama-3.2-1b", 2048, 32, 8, 64, 8192, 128256},
                         Layer{"qwen2.5-0.5b", 896, 14, 2, 64, 4864, 151936},
                         Layer{"llama-3.1-8b", 4096, 32, 8, 128, 14336, 128256}}) {
    const int32_t q_dim = l.heads * l.head_dim, qkv = q_dim + 2 * l.kv_heads * l.head_dim;
    const int32_t width = std::max({l.hidden, q_dim, l.inter});
    Buffer x(size_t(width) * 2), norm(size_t(width) * 2),
        out(size_t(std::max(qkv, 2 * l.inter)) * 4);
    Buffer pos(4), slots(4), freq(l.head_dim / 2 * 4);
    Buffer kc(size_t(16) * l.kv_heads * l.head_dim * 2), vc(kc.bytes);
    FillRandom16(x, DType::kBF16, rng);
    FillRandom16(norm, DType::kBF16, rng);
    BENCH_CUDA(cudaMemset(pos.p, 0, 4));
    BENCH_CUDA(cudaMemset(slots.p, 0, 4));
    BENCH_CUDA(cudaMemset(freq.p, 0, freq.bytes));
    RopeKvWriteArgs rope;
    rope.positions = pos.as<int32_t>();
    rope.slots = slots.as<int32_t>();
    rope.inv_freq = freq.as<float>();
    rope.num_heads = l.heads;
    rope.num_kv_heads = l.kv_heads;
    rope.head_dim = l.head_dim;
    rope.cache = PagedKvCache{kc.p, vc.p, DType::kBF16, 1, 16, l.kv_heads, l.head_dim};
    for (const Product& pr :
         {Product{"qkv_rope", GemmEpilogue::kRopeKv, qkv, l.hidden, false},
          Product{"o_add", GemmEpilogue::kAccumulate, l.hidden, q_dim, false},
          Product{"gate_up_silu", GemmEpilogue::kSiluMul, 2 * l.inter, l.hidden, false},
          Product{"down_add", GemmEpilogue::kAccumulate, l.hidden, l.inter, false},
          Product{"lm_head", GemmEpilogue::kStore, l.vocab, l.hidden, true}}) {
      const size_t wbytes = size_t(pr.n) * pr.k * 2;
      const int32_t copies = static_cast<int32_t>(std::clamp<size_t>(kRotateBytes / wbytes, 2, 32));
      Buffer w(wbytes * copies);
      FillRandom16(w, DType::kBF16, rng);
      for (const Mode& mode : {Mode{"cores", false, 0}, Mode{"shared_x", true, 0},
                               Mode{"shared_x_2_blocks_per_sm", true, 2}}) {
        GemmArgs a{DType::kBF16, x.p, nullptr, nullptr, out.p, pr.out_f32, 1, pr.n, pr.k};
        a.epilogue = pr.epilogue;
        a.rms_norm_x =
            pr.epilogue == GemmEpilogue::kSiluMul || pr.epilogue == GemmEpilogue::kRopeKv;
        a.norm_weight = a.rms_norm_x ? norm.p : nullptr;
        a.eps = 1e-5f;
        a.rope = pr.epilogue == GemmEpilogue::kRopeKv ? &rope : nullptr;
        a.shared_x = mode.shared_x;
        a.max_blocks_per_sm = mode.max_blocks_per_sm;
        cudaGraph_t graph;
        BENCH_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
        for (int32_t c = 0; c < copies; ++c) {
          a.w = static_cast<const char*>(w.p) + wbytes * c;
          BENCH_OK((*runner)->Run(a, stream));
        }
        BENCH_CUDA(cudaStreamEndCapture(stream, &graph));
        cudaGraphExec_t exec;
        BENCH_CUDA(cudaGraphInstantiate(&exec, graph, 0));
        const double ms = TimeMs([&](int) { cudaGraphLaunch(exec, nullptr); }, 20) / copies;
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        Emit("gemv_" + std::string(pr.name),
             {{"model", l.model}, {"n", pr.n}, {"k", pr.k}, {"mode", mode.name}},
             double(wbytes) / (ms * 1e-3) / 1e9, "GB/s", ms);
      }
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace ite::kernels

int main(int argc, char** argv) {
  bool quick = false;
  std::string only;
  std::vector<int32_t> sweep;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0)
      quick = true;
    else if (std::strncmp(argv[i], "--only=", 7) == 0)
      only = argv[i] + 7;
    else if (std::strncmp(argv[i], "--decode-splits=", 16) == 0) {
      for (const char* c = argv[i] + 16; *c != '\0';) {
        char* end = nullptr;
        const long v = std::strtol(c, &end, 10);
        if (end == c || v < 1 || v > 256) {
          std::fprintf(stderr, "--decode-splits: a comma-separated list of counts in [1, 256]\n");
          return 2;
        }
        sweep.push_back(static_cast<int32_t>(v));
        c = *end == ',' ? end + 1 : end;
      }
    } else {
      std::fprintf(stderr,
                   "usage: %s [--quick] [--only=copy|prefill|decode|elementwise|gemm|gemv] "
                   "[--decode-splits=N,N,...]\n",
                   argv[0]);
      return 2;
    }
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    std::fprintf(stderr, "kernel_bench: no CUDA GPU\n");
    return 1;
  }
  cudaDeviceProp prop{};
  BENCH_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::fprintf(stderr, "device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount,
               prop.l2CacheSize >> 20);
  std::mt19937 rng(42);
  using namespace ite::kernels;
  if (only.empty() || only == "copy") CopyBandwidth();
  if (only.empty() || only == "prefill") BenchPrefill(rng, quick);
  if (only.empty() || only == "decode") BenchDecode(rng, quick, prop.multiProcessorCount, sweep);
  if (only.empty() || only == "elementwise") BenchElementwise(rng);
  if (only.empty() || only == "gemm") BenchGemm(rng);
  if (only.empty() || only == "gemv") BenchGemv(rng);
  return 0;
}
