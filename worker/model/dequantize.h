// Conversions of stored weight encodings to float: IEEE half, bfloat16 and the ggml block
// quantizations (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K), written from the GGML block
// format descriptions. Conversion back from float (to F16/BF16) rounds to nearest even; to Q8_0
// as ggml quantizes (per block of 32: d = max |x| / 127, q = round(x / d) half away from zero).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/gguf_reader.h"

namespace ite {

float HalfToFloat(uint16_t h);
uint16_t FloatToHalf(float f);
float Bf16ToFloat(uint16_t b);
uint16_t FloatToBf16(float f);

// Whether DequantizeRow handles `type`.
bool DequantizeSupported(GgmlType type);

// Bytes that `n` elements of `type` occupy; n must be a multiple of GgmlBlockSize(type).
size_t GgmlRowBytes(GgmlType type, int64_t n);

// Encodes `n` floats (a multiple of 32) at `src` as Q8_0 blocks at `dst`
// (GgmlRowBytes(Q8_0, n) bytes).
void QuantizeRowQ8_0(const float* src, uint8_t* dst, int64_t n);

// Decodes `n` elements (a multiple of the block size) of `type` at `src` into `dst`.
// The caller guarantees GgmlRowBytes(type, n) readable bytes and a supported type.
void DequantizeRow(GgmlType type, const uint8_t* src, float* dst, int64_t n);

}  // namespace ite
