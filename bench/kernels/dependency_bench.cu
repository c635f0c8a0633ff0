// What one dependency between consecutive kernels of a decode step costs on this card, and
// whether a dependency carried by a counter in memory costs less than a grid-wide one.
//
// A chain of N kernels, each streaming its own weight (S bytes, so the chain reads N x S from
// HBM) and reading the previous kernel's output (one float per block) after its dependency, as
// a decode step's products do. Every kernel loads its weight piece before the dependency (it is
// constant), so what is left at each boundary is the dependency itself. Three ways:
//   plain    ordinary launches: a kernel starts once the previous one has drained
//   pdl      programmatic dependent launch, griddepcontrol.wait before reading the input (the
//            engine's decode path, kernels/pdl.cuh)
//   counter  programmatic dependent launch, but no griddepcontrol.wait: each block of a kernel
//            adds one to that kernel's counter after its store (release), and a block of the
//            next kernel spins (acquire) until the counter holds the previous grid's block
//            count. A block is placed only after every block of the kernel before has started,
//            so the spin always ends.
//   flag     as counter, but the waiting blocks poll a flag that the last block to add to the
//            counter sets, so they do not contend with the adds.
// All three run as one CUDA graph per chain (counters zeroed by a memset node at its start).
//
// Then whether the memory left idle at the boundaries can be filled from a parallel branch of
// the graph: beside the pdl chain, a small high-priority kernel started when kernel k has
// finished asks L2 for the first part of kernel k+2's weight (while kernel k+1 streams its own),
// so that kernel k+2 finds it there. Three ways of asking (prefetch.global.L2::evict_last per
// line; cp.async.bulk.prefetch.L2 per 16 KB; loads at evict_last priority whose values are
// dropped), half or all of the weight, with the chain's own loads at normal or evict_first L2
// priority. And "hot": every kernel of the chain reads the same weight, so it stays in L2 (what
// a kernel whose weight all came from L2 would take).
// Floor: the chain's bytes at the copy bandwidth of one kernel reading the same bytes.
// Output: a JSON line per (mode, S) with the chain time, the time per kernel above the floor and
// how many of the last kernel's outputs came out wrong (an input read before it was written);
// the exit status is 1 if any did.
//
//   dependency_bench [--kernels N] [--reps R]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/pdl.cuh"

namespace {

#define CHECK(x)                                                                              \
  do {                                                                                        \
    cudaError_t e_ = (x);                                                                     \
    if (e_ != cudaSuccess) {                                                                  \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

constexpr int kThreads = 256;
constexpr int kLoads = 4;                                    // 16-byte weight loads a thread
constexpr int64_t kSlice = int64_t{kThreads} * kLoads * 16;  // weight bytes a block

enum Mode { kPlain = 0, kPdl = 1, kCounter = 2, kFlag = 3 };
const char* const kModeName[] = {"plain", "pdl", "counter", "flag"};
constexpr int kLine = 32;  // words between counters: each in its own 128-byte line

struct Link {
  const uint4* w;
  const float* x;  // the previous kernel's outputs, x_len of them
  float* y;        // one per block
  int32_t x_len;
  const unsigned* prev_done;  // counter mode: the previous kernel's blocks finished
  unsigned prev_blocks;
  unsigned* done;
  const unsigned* prev_flag;  // flag mode: set by the previous kernel's last block
  unsigned* flag;
};

__device__ __forceinline__ unsigned LoadAcquire(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ uint64_t L2Policy(bool evict_first) {
  uint64_t policy;
  if (evict_first) {
    asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(policy));
  } else {
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
  }
  return policy;
}

__device__ __forceinline__ uint4 LoadWithPolicy(const uint4* p, uint64_t policy) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::cache_hint.v4.u32 {%0, %1, %2, %3}, [%4], %5;"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p), "l"(policy));
  return v;
}

template <int kMode, bool kEvictFirst = false>
__global__ void __launch_bounds__(kThreads) Step(Link l) {
  if constexpr (kMode != kPlain) ite::kernels::LetDependentsStart();
  const uint4* w = l.w + int64_t{blockIdx.x} * (kSlice / 16) + threadIdx.x;
  uint4 v[kLoads];
  [[maybe_unused]] uint64_t policy = 0;
  if constexpr (kEvictFirst) policy = L2Policy(true);
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const uint4* p = w + i * kThreads;
    if constexpr (kEvictFirst) {
      v[i] = LoadWithPolicy(p, policy);
    } else {
      asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                   : "=r"(v[i].x), "=r"(v[i].y), "=r"(v[i].z), "=r"(v[i].w)
                   : "l"(p));
    }
  }
  if constexpr (kMode == kPdl) {
    ite::kernels::WaitForPrerequisites();
  } else if constexpr (kMode == kCounter) {
    if (l.prev_done != nullptr && threadIdx.x == 0) {
      while (LoadAcquire(l.prev_done) < l.prev_blocks) __nanosleep(32);
    }
    __syncthreads();
  } else if constexpr (kMode == kFlag) {
    if (l.prev_flag != nullptr && threadIdx.x == 0) {
      while (LoadAcquire(l.prev_flag) == 0) __nanosleep(20);
    }
    __syncthreads();
  }
  float acc = 0.0f;
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const float xv = l.x_len > 0 ? __ldcg(l.x + (threadIdx.x * kLoads + i) % l.x_len) : 1.0f;
    acc += xv * static_cast<float>((v[i].x ^ v[i].y ^ v[i].z ^ v[i].w) & 0xff);  // 1 here
  }
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  __shared__ float part[kThreads / 32];
  if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0.0f;
    for (int i = 0; i < kThreads / 32; ++i) s += part[i];
    l.y[blockIdx.x] = s / (kThreads * kLoads);  // 1 when every input read was 1
    if constexpr (kMode == kCounter) {
      __threadfence();
      asm volatile("red.release.gpu.global.add.u32 [%0], 1;" ::"l"(l.done) : "memory");
    } else if constexpr (kMode == kFlag) {
      // The block's store is ordered before the add (release), and the last block's add sees
      // every other block's (acquire), so its release of the flag publishes all the stores;
      // the waiting blocks poll a line that only this one store writes.
      unsigned old;
      asm volatile("atom.acq_rel.gpu.global.add.u32 %0, [%1], 1;"
                   : "=r"(old)
                   : "l"(l.done)
                   : "memory");
      if (old == gridDim.x - 1)
        asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(l.flag), "r"(1u) : "memory");
    }
  }
}

enum Ask { kAskLine = 0, kAskBulk = 1, kAskLoad = 2 };
const char* const kAskName[] = {"line", "bulk", "load"};

// Asks L2 for bytes (a multiple of 16 KB) from p, spread over the grid; nothing it does is
// needed for a correct result (sink is written only if a loaded word is impossible).
template <int kAsk>
__global__ void AskL2(const char* p, int64_t bytes, unsigned* sink) {
  const int64_t threads = int64_t{gridDim.x} * blockDim.x;
  const int64_t t = int64_t{blockIdx.x} * blockDim.x + threadIdx.x;
  if constexpr (kAsk == kAskLine) {
    for (int64_t off = t * 128; off < bytes; off += threads * 128)
      asm volatile("prefetch.global.L2::evict_last [%0];" ::"l"(p + off));
  } else if constexpr (kAsk == kAskBulk) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int64_t kPiece = 16 << 10;
    for (int64_t off = t * kPiece; off < bytes; off += threads * kPiece)
      asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p + off),
                   "r"(static_cast<unsigned>(kPiece))
                   : "memory");
#endif
  } else {
    const uint64_t policy = L2Policy(false);
    const uint4* q = reinterpret_cast<const uint4*>(p);
    unsigned x = 0;
    for (int64_t i = t; i < bytes / 16; i += threads) {
      const uint4 v = LoadWithPolicy(q + i, policy);
      x ^= v.x ^ v.w;
    }
    if (x == 0xdeadbeefu) *sink = x;
  }
}

template <int kAsk>
void LaunchAsk(const char* p, int64_t bytes, unsigned* sink, int blocks, int priority,
               cudaStream_t s) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(blocks);
  config.blockDim = dim3(64);
  config.stream = s;
  cudaLaunchAttribute attribute{};
  attribute.id = cudaLaunchAttributePriority;
  attribute.val.priority = priority;
  config.attrs = &attribute;
  config.numAttrs = 1;
  CHECK(cudaLaunchKernelEx(&config, AskL2<kAsk>, p, bytes, sink));
}

__global__ void Fill(uint4* w, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    w[i] = make_uint4(0x5a5a5a5bu, 0x5a5a5a5au, 0x0f0f0f0fu, 0x0f0f0f0fu);
}

__global__ void Copy(const uint4* src, uint4* dst, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x)
    dst[i] = src[i];
}

// The first kernel of a chain, and every kernel in plain mode, waits for what came before it
// in the stream; the others are dependent launches (kernels/pdl.cuh, so ITE_NO_PDL=1 turns
// them into ordinary ones too).
template <int kMode, bool kEvictFirst = false>
void Launch(const Link& l, unsigned blocks, cudaStream_t s, bool dependent) {
  if (dependent) {
    CHECK(ite::kernels::LaunchDependent(Step<kMode, kEvictFirst>, dim3(blocks), dim3(kThreads), 0,
                                        s, l));
  } else {
    Step<kMode, kEvictFirst><<<blocks, kThreads, 0, s>>>(l);
    CHECK(cudaGetLastError());
  }
}

// Milliseconds that what enqueue() puts on s takes, between two events.
template <typename F>
float ElapsedMs(cudaStream_t s, F&& enqueue) {
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a, s));
  enqueue();
  CHECK(cudaEventRecord(b, s));
  CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return ms;
}

float TimeGraph(cudaGraphExec_t g, cudaStream_t s, int reps) {
  for (int i = 0; i < 3; ++i) CHECK(cudaGraphLaunch(g, s));
  const float ms = ElapsedMs(s, [&] {
    for (int i = 0; i < reps; ++i) CHECK(cudaGraphLaunch(g, s));
  });
  return ms / reps;
}

// One chain as one graph: its kernels (mode, demand loads at evict_first or not), and where
// ask >= 0 the parallel branch asking L2 for `fraction` of kernel k+2's weight once kernel k
// has finished. hot: every kernel reads the first weight.
struct Chain {
  int mode = kPdl;
  bool evict_first = false;
  int ask = -1;
  double fraction = 0;
  bool hot = false;
};

struct Buffers {
  uint4* w;
  float* ys;
  unsigned* done;
  unsigned* flags;
  size_t sync_bytes;
  unsigned max_blocks;
  int kernels;
  int sms;
  int priority;
  cudaStream_t s;
  cudaStream_t side;
};

void Capture(const Buffers& b, const Chain& c, int64_t size, cudaGraph_t* graph) {
  const unsigned blocks = static_cast<unsigned>(size / kSlice);
  const int64_t ask_bytes = static_cast<int64_t>(size * c.fraction) / kSlice * kSlice;
  std::vector<cudaEvent_t> events(b.kernels + 1);
  for (auto& e : events) CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  CHECK(cudaStreamBeginCapture(b.s, cudaStreamCaptureModeThreadLocal));
  CHECK(cudaMemsetAsync(b.done, 0, b.sync_bytes, b.s));
  CHECK(cudaMemsetAsync(b.ys + b.max_blocks, 0, sizeof(float) * b.max_blocks * b.kernels, b.s));
  const auto weight = [&](int k) {
    return reinterpret_cast<const char*>(b.w + (c.hot ? 0 : int64_t{k} * (size / 16)));
  };
  const auto ask = [&](int k) {
    if (c.ask < 0 || k >= b.kernels || ask_bytes == 0) return;
    unsigned* sink = b.flags + int64_t{kLine} * b.kernels - 1;
    if (c.ask == kAskLine)
      LaunchAsk<kAskLine>(weight(k), ask_bytes, sink, b.sms, b.priority, b.side);
    if (c.ask == kAskBulk)
      LaunchAsk<kAskBulk>(weight(k), ask_bytes, sink, b.sms, b.priority, b.side);
    if (c.ask == kAskLoad)
      LaunchAsk<kAskLoad>(weight(k), ask_bytes, sink, b.sms, b.priority, b.side);
  };
  if (c.ask >= 0) {
    CHECK(cudaEventRecord(events[b.kernels], b.s));
    CHECK(cudaStreamWaitEvent(b.side, events[b.kernels], 0));
    ask(1);
  }
  for (int k = 0; k < b.kernels; ++k) {
    Link l{};
    l.w = reinterpret_cast<const uint4*>(weight(k));
    l.x = k == 0 ? nullptr : b.ys + int64_t{k} * b.max_blocks;
    l.x_len = k == 0 ? 0 : static_cast<int32_t>(blocks);
    l.y = b.ys + int64_t{k + 1} * b.max_blocks;
    l.prev_done = k == 0 ? nullptr : b.done + int64_t{kLine} * (k - 1);
    l.prev_flag = k == 0 ? nullptr : b.flags + int64_t{kLine} * (k - 1);
    l.flag = b.flags + int64_t{kLine} * k;
    l.prev_blocks = blocks;
    l.done = b.done + int64_t{kLine} * k;
    const bool dependent = k > 0 && c.mode != kPlain;
    if (c.mode == kPlain) Launch<kPlain>(l, blocks, b.s, false);
    if (c.mode == kPdl && !c.evict_first) Launch<kPdl>(l, blocks, b.s, dependent);
    if (c.mode == kPdl && c.evict_first) Launch<kPdl, true>(l, blocks, b.s, dependent);
    if (c.mode == kCounter) Launch<kCounter>(l, blocks, b.s, dependent);
    if (c.mode == kFlag) Launch<kFlag>(l, blocks, b.s, dependent);
    if (c.ask >= 0 && k + 2 < b.kernels) {
      CHECK(cudaEventRecord(events[k], b.s));
      CHECK(cudaStreamWaitEvent(b.side, events[k], 0));
      ask(k + 2);
    }
  }
  if (c.ask >= 0) {  // join the branch back
    CHECK(cudaEventRecord(events[b.kernels], b.side));
    CHECK(cudaStreamWaitEvent(b.s, events[b.kernels], 0));
  }
  CHECK(cudaStreamEndCapture(b.s, graph));
  for (auto& e : events) CHECK(cudaEventDestroy(e));
}

// Runs the chain; prints its JSON line; returns how many of the last kernel's outputs were wrong.
int Measure(const Buffers& b, const Chain& c, int64_t size, double gbs, int reps) {
  const unsigned blocks = static_cast<unsigned>(size / kSlice);
  cudaGraph_t graph;
  Capture(b, c, size, &graph);
  cudaGraphExec_t exec;
  CHECK(cudaGraphInstantiate(&exec, graph, 0));
  const float ms = TimeGraph(exec, b.s, reps);
  std::vector<float> last(blocks);
  CHECK(cudaMemcpy(last.data(), b.ys + int64_t{b.kernels} * b.max_blocks, sizeof(float) * blocks,
                   cudaMemcpyDeviceToHost));
  int wrong = 0;
  for (const float v : last) wrong += v != 1.0f;
  const double floor_ms = double(size) * b.kernels / (gbs * 1e9) * 1e3;
  std::printf(
      "{\"name\": \"dependency\", \"mode\": \"%s\", \"l2_ask\": \"%s\", \"ask_fraction\": %.2f, "
      "\"demand\": \"%s\", \"hot\": %s, \"weight_mb\": %lld, \"blocks\": %u, \"kernels\": %d, "
      "\"chain_ms\": %.4f, \"floor_ms\": %.4f, \"us_per_kernel_over_floor\": %.3f, "
      "\"wrong_outputs\": %d}\n",
      kModeName[c.mode], c.ask < 0 ? "none" : kAskName[c.ask], c.fraction,
      c.evict_first ? "evict_first" : "normal", c.hot ? "true" : "false",
      static_cast<long long>(size >> 20), blocks, b.kernels, ms, floor_ms,
      (ms - floor_ms) * 1e3 / b.kernels, wrong);
  std::fflush(stdout);
  CHECK(cudaGraphExecDestroy(exec));
  CHECK(cudaGraphDestroy(graph));
  return wrong;
}

double CopyBandwidth(const uint4* w, int64_t total, int sms, cudaStream_t s) {
  const int64_t n = std::min(int64_t{1} << 30, total) / 16;
  uint4* dst = nullptr;
  CHECK(cudaMalloc(&dst, n * 16));
  Copy<<<sms * 8, 512, 0, s>>>(w, dst, n);
  const float ms = ElapsedMs(s, [&] {
    for (int i = 0; i < 10; ++i) Copy<<<sms * 8, 512, 0, s>>>(w, dst, n);
  });
  CHECK(cudaFree(dst));
  return 2.0 * n * 16 * 10 / (ms * 1e-3) / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  int kernels = 80, reps = 50, status = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--kernels")) kernels = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[i + 1]);
  }
  cudaDeviceProp prop{};
  CHECK(cudaGetDeviceProperties(&prop, 0));
  Buffers b{};
  b.kernels = kernels;
  b.sms = prop.multiProcessorCount;
  int least = 0;
  CHECK(cudaDeviceGetStreamPriorityRange(&least, &b.priority));
  CHECK(cudaStreamCreateWithFlags(&b.s, cudaStreamNonBlocking));
  CHECK(cudaStreamCreateWithFlags(&b.side, cudaStreamNonBlocking));

  const std::vector<int64_t> sizes = {int64_t{2} << 20, int64_t{8} << 20, int64_t{32} << 20};
  const int64_t largest = sizes.back();
  const int64_t total = largest * kernels;
  CHECK(cudaMalloc(&b.w, total));
  // Each 16-byte piece's four words xor to 1, so every output is 1 when its inputs were 1 and
  // smaller when an input was read before it was written (the graph zeroes the outputs first).
  Fill<<<b.sms * 8, 512, 0, b.s>>>(b.w, total / 16);
  b.max_blocks = static_cast<unsigned>(largest / kSlice);
  CHECK(cudaMalloc(&b.ys, sizeof(float) * b.max_blocks * (kernels + 1)));
  CHECK(cudaMemset(b.ys, 0, sizeof(float) * b.max_blocks * (kernels + 1)));
  // Counters, then flags, one 128-byte line each (the L2 asks' sink is the last word).
  b.sync_bytes = sizeof(unsigned) * kLine * 2 * kernels;
  CHECK(cudaMalloc(&b.done, b.sync_bytes));
  b.flags = b.done + int64_t{kLine} * kernels;

  // Copy bandwidth: read + write of 1 GiB, counted as bytes read + written.
  const double gbs = CopyBandwidth(b.w, total, b.sms, b.s);
  std::printf(
      "{\"name\": \"copy_bandwidth\", \"card\": \"%s\", \"value\": %.1f, \"unit\": \"GB/s\"}\n",
      prop.name, gbs);
  for (const int64_t size : sizes) {
    for (int mode = kPlain; mode <= kFlag; ++mode) {
      Chain c;
      c.mode = mode;
      status |= Measure(b, c, size, gbs, reps) != 0;
    }
  }
  for (const int64_t size : {sizes[1], sizes[2]}) {
    Chain hot;
    hot.hot = true;
    status |= Measure(b, hot, size, gbs, reps) != 0;
    for (const bool evict_first : {false, true}) {
      Chain c;
      c.evict_first = evict_first;
      if (evict_first) status |= Measure(b, c, size, gbs, reps) != 0;
      for (int ask = kAskLine; ask <= kAskLoad; ++ask) {
        for (const double fraction : {0.5, 1.0}) {
          c.ask = ask;
          c.fraction = fraction;
          status |= Measure(b, c, size, gbs, reps) != 0;
        }
      }
    }
  }
  CHECK(cudaStreamSynchronize(b.s));
  CHECK(cudaFree(b.w));
  CHECK(cudaFree(b.ys));
  CHECK(cudaFree(b.done));
  return status;
}
