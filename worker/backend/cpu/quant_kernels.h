// Dot products of one quantized weight row with one Q8 activation row (quant_blocks.h), one set
// per instruction set, chosen at run time: the scalar reference, AVX2, and AVX-VNNI (the same
// code with VPDPBUSD in place of VPMADDUBSW + VPMADDWD, where the CPU has it).
#pragma once

#include <cstdint>

#include "worker/backend/cpu/quant_blocks.h"

namespace ite::cpu {

enum class QuantIsa { kScalar, kAvx2, kAvxVnni };

const char* QuantIsaName(QuantIsa isa);
// The fastest set this CPU runs.
QuantIsa BestQuantIsa();
// Whether this CPU runs `isa`.
bool QuantIsaSupported(QuantIsa isa);

// An activation row as the kernels read it: cols / 32 blocks.
struct Q8Row {
  const int8_t* q;
  const float* d;
  const float* s;
};

struct QuantKernels {
  // sum_i w_i x_i over `cols` elements of an unpacked row.
  float (*dot_unpacked)(const UnpackedRow& w, const Q8Row& x, int64_t cols);
  // The same read straight from the stored blocks of Q4_0, Q4_1 and Q8_0 (no unpacking).
  float (*dot_q4_0)(const uint8_t* w, const Q8Row& x, int64_t cols);
  float (*dot_q4_1)(const uint8_t* w, const Q8Row& x, int64_t cols);
  float (*dot_q8_0)(const uint8_t* w, const Q8Row& x, int64_t cols);
};

// The kernels of `isa`, which must be supported.
const QuantKernels& QuantKernelsFor(QuantIsa isa);

// Per instruction set (quant_kernels_<isa>.cc).
extern const QuantKernels kQuantKernelsScalar;
extern const QuantKernels kQuantKernelsAvx2;
extern const QuantKernels kQuantKernelsAvxVnni;

}  // namespace ite::cpu
