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
// Floor: the chain's bytes at the copy bandwidth of one kernel reading the same bytes.
// Output: a JSON line per (mode, S) with the chain time, the time per kernel above the floor and
// how many of the last kernel's outputs came out wrong (an input read before it was written);
// the exit status is 1 if any did.
//
//   dependency_bench [--kernels N] [--reps R]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/pdl.cuh"

namespace {

#define CHECK(x)                                                                         \
  do {                                                                                   \
    cudaError_t e_ = (x);                                                                \
    if (e_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

constexpr int kThreads = 256;
constexpr int kLoads = 4;                                  // 16-byte weight loads a thread
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

template <int kMode>
__global__ void __launch_bounds__(kThreads) Step(Link l) {
  if constexpr (kMode != kPlain) ite::kernels::LetDependentsStart();
  const uint4* w = l.w + int64_t{blockIdx.x} * (kSlice / 16) + threadIdx.x;
  uint4 v[kLoads];
#pragma unroll
  for (int i = 0; i < kLoads; ++i) {
    const uint4* p = w + i * kThreads;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v[i].x), "=r"(v[i].y), "=r"(v[i].z), "=r"(v[i].w)
                 : "l"(p));
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
template <int kMode>
void Launch(const Link& l, unsigned blocks, cudaStream_t s, bool dependent) {
  if (dependent) {
    CHECK(ite::kernels::LaunchDependent(Step<kMode>, dim3(blocks), dim3(kThreads), 0, s, l));
  } else {
    Step<kMode><<<blocks, kThreads, 0, s>>>(l);
    CHECK(cudaGetLastError());
  }
}

float TimeGraph(cudaGraphExec_t g, cudaStream_t s, int reps) {
  for (int i = 0; i < 3; ++i) CHECK(cudaGraphLaunch(g, s));
  cudaEvent_t a, b;
  CHECK(cudaEventCreate(&a));
  CHECK(cudaEventCreate(&b));
  CHECK(cudaEventRecord(a, s));
  for (int i = 0; i < reps; ++i) CHECK(cudaGraphLaunch(g, s));
  CHECK(cudaEventRecord(b, s));
  CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, a, b));
  CHECK(cudaEventDestroy(a));
  CHECK(cudaEventDestroy(b));
  return ms / reps;
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
  cudaStream_t s;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  const std::vector<int64_t> sizes = {int64_t{2} << 20, int64_t{8} << 20, int64_t{32} << 20};
  const int64_t largest = sizes.back();
  const int64_t total = largest * kernels;
  uint4* w = nullptr;
  CHECK(cudaMalloc(&w, total));
  // Each 16-byte piece's four words xor to 1, so every output is 1 when its inputs were 1 and
  // smaller when an input was read before it was written (the graph zeroes the outputs first).
  Fill<<<prop.multiProcessorCount * 8, 512, 0, s>>>(w, total / 16);
  const unsigned max_blocks = static_cast<unsigned>(largest / kSlice);
  float* ys = nullptr;
  unsigned* done = nullptr;
  CHECK(cudaMalloc(&ys, sizeof(float) * max_blocks * (kernels + 1)));
  CHECK(cudaMemset(ys, 0, sizeof(float) * max_blocks * (kernels + 1)));
  // Counters, then flags, one 128-byte line each.
  const size_t sync_bytes = sizeof(unsigned) * kLine * 2 * kernels;
  CHECK(cudaMalloc(&done, sync_bytes));
  unsigned* flags = done + int64_t{kLine} * kernels;

  // Copy bandwidth: read + write of 1 GiB, counted as bytes read + written.
  {
    const int64_t n = std::min(int64_t{1} << 30, total) / 16;
    uint4* dst = nullptr;
    CHECK(cudaMalloc(&dst, n * 16));
    Copy<<<prop.multiProcessorCount * 8, 512, 0, s>>>(w, dst, n);
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a));
    CHECK(cudaEventCreate(&b));
    CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < 10; ++i) Copy<<<prop.multiProcessorCount * 8, 512, 0, s>>>(w, dst, n);
    CHECK(cudaEventRecord(b, s));
    CHECK(cudaEventSynchronize(b));
    float ms = 0;
    CHECK(cudaEventElapsedTime(&ms, a, b));
    const double gbs = 2.0 * n * 16 * 10 / (ms * 1e-3) / 1e9;
    std::printf("{\"name\": \"copy_bandwidth\", \"card\": \"%s\", \"value\": %.1f, \"unit\": \"GB/s\"}\n",
                prop.name, gbs);
    CHECK(cudaFree(dst));
    CHECK(cudaEventDestroy(a));
    CHECK(cudaEventDestroy(b));

    for (const int64_t size : sizes) {
      const unsigned blocks = static_cast<unsigned>(size / kSlice);
      for (int mode = kPlain; mode <= kFlag; ++mode) {
        cudaGraph_t graph;
        CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        CHECK(cudaMemsetAsync(done, 0, sync_bytes, s));
        CHECK(cudaMemsetAsync(ys + max_blocks, 0, sizeof(float) * max_blocks * kernels, s));
        for (int k = 0; k < kernels; ++k) {
          Link l{};
          l.w = w + int64_t{k} * (size / 16);
          l.x = k == 0 ? nullptr : ys + int64_t{k} * max_blocks;
          l.x_len = k == 0 ? 0 : static_cast<int32_t>(blocks);
          l.y = ys + int64_t{k + 1} * max_blocks;
          l.prev_done = k == 0 ? nullptr : done + int64_t{kLine} * (k - 1);
          l.prev_flag = k == 0 ? nullptr : flags + int64_t{kLine} * (k - 1);
          l.flag = flags + int64_t{kLine} * k;
          l.prev_blocks = blocks;
          l.done = done + int64_t{kLine} * k;
          const bool dependent = k > 0 && mode != kPlain;
          if (mode == kPlain) Launch<kPlain>(l, blocks, s, false);
          if (mode == kPdl) Launch<kPdl>(l, blocks, s, dependent);
          if (mode == kCounter) Launch<kCounter>(l, blocks, s, dependent);
          if (mode == kFlag) Launch<kFlag>(l, blocks, s, dependent);
        }
        CHECK(cudaStreamEndCapture(s, &graph));
        cudaGraphExec_t exec;
        CHECK(cudaGraphInstantiate(&exec, graph, 0));
        const float ms = TimeGraph(exec, s, reps);
        std::vector<float> last(blocks);
        CHECK(cudaMemcpy(last.data(), ys + int64_t{kernels} * max_blocks, sizeof(float) * blocks,
                         cudaMemcpyDeviceToHost));
        int wrong = 0;
        for (const float v : last) wrong += v != 1.0f;
        const double floor_ms = double(size) * kernels / (gbs * 1e9) * 1e3;
        std::printf(
            "{\"name\": \"dependency\", \"mode\": \"%s\", \"weight_mb\": %lld, \"blocks\": %u, "
            "\"kernels\": %d, \"chain_ms\": %.4f, \"floor_ms\": %.4f, "
            "\"us_per_kernel_over_floor\": %.3f, \"wrong_outputs\": %d}\n",
            kModeName[mode], static_cast<long long>(size >> 20), blocks, kernels, ms, floor_ms,
            (ms - floor_ms) * 1e3 / kernels, wrong);
        if (wrong) status = 1;
        std::fflush(stdout);
        CHECK(cudaGraphExecDestroy(exec));
        CHECK(cudaGraphDestroy(graph));
      }
    }
  }
  CHECK(cudaStreamSynchronize(s));
  CHECK(cudaFree(w));
  CHECK(cudaFree(ys));
  CHECK(cudaFree(done));
  return status;
}
