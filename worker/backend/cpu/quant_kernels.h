// Dot products of one quantized weight row with one Q8 activation row (quant_blocks.h), one set
// per instruction set, chosen at run time: the scalar reference, AVX2, AVX-VNNI (the same
// code with VPDPBUSD in place of VPMADDUBSW + VPMADDWD, where the CPU has it) and AVX512-VNNI
// (VPDPBUSD on 512-bit vectors, two blocks at a time).
#pragma once

#include <cstdint>

#include "worker/backend/cpu/quant_blocks.h"

namespace ite::cpu {

// In order of preference: each later set is tried first.
enum class QuantIsa { kScalar, kAvx2, kAvxVnni, kAvx512Vnni };
inline constexpr QuantIsa kQuantIsas[] = {QuantIsa::kScalar, QuantIsa::kAvx2, QuantIsa::kAvxVnni,
                                          QuantIsa::kAvx512Vnni};

const char* QuantIsaName(QuantIsa isa);
// The fastest set this CPU runs, at most the limit below.
QuantIsa BestQuantIsa();
// Caps what BestQuantIsa returns (default: the last of kQuantIsas), so a benchmark or test can
// run the whole backend on a narrower set of this CPU. Backends read it when they are created;
// set it before, from one thread.
void SetQuantIsaLimit(QuantIsa limit);
// The set named `name` (as QuantIsaName writes it); false if there is none.
bool QuantIsaFromName(const char* name, QuantIsa* isa);
// Whether this CPU runs `isa`.
bool QuantIsaSupported(QuantIsa isa);

// The kernels compute a tile out[t * out_stride + i] = sum_k W[i, k] x[t, k] for the n rows of
// `rows` (any n >= 1) and every row t of `x` (no bias), reading the weight rows straight from
// their stored blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and the K formats Q4_K, Q5_K, Q6_K, whose
// 256-wide super-blocks the kernels take as 8 Q8 blocks.
struct QuantKernels {
  void (*tile_q4_0)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q4_1)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q5_0)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q5_1)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q8_0)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q4_k)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q5_k)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
  void (*tile_q6_k)(const uint8_t* const* rows, int n, const Q8Rows& x, float* out,
                    int64_t out_stride);
};

// The kernels of `isa`, which must be supported.
const QuantKernels& QuantKernelsFor(QuantIsa isa);

// Per instruction set (quant_kernels_<isa>.cc).
extern const QuantKernels kQuantKernelsScalar;
extern const QuantKernels kQuantKernelsAvx2;
extern const QuantKernels kQuantKernelsAvxVnni;
extern const QuantKernels kQuantKernelsAvx512Vnni;

}  // namespace ite::cpu
