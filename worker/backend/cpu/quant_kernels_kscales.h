// The eight 6-bit (scale, min) pairs of a Q4_K / Q5_K super-block, one per 32 elements, as they
// are packed in its 12 scale bytes: pairs 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7
// (mins); pairs 4-7 take their low 4 bits from the nibbles of bytes 8-11 and their top 2 bits
// from the spare high bits of bytes 0-3 / 4-7. Decoded here four at a time in 32-bit words
// rather than pair by pair, since every kernel decodes them once per super-block and row.
//
// Included by the scalar and the vector kernels, each compiled for its own instruction set; the
// function has internal linkage so the copies never meet at link time.
#pragma once

#include <cstdint>
#include <cstring>

namespace ite::cpu {
namespace {

struct KScaleMins {
  uint64_t scales;  // byte k: sub-block k's scale, 0..63
  uint64_t mins;    // byte k: sub-block k's min, 0..63
};

inline KScaleMins UnpackKScales(const uint8_t* packed) {
  uint32_t a, b, c;
  std::memcpy(&a, packed, 4);
  std::memcpy(&b, packed + 4, 4);
  std::memcpy(&c, packed + 8, 4);
  // (a >> 2) & 0x30 puts each byte's bits 6-7 at bits 4-5; what crosses from the next byte
  // lands in bits 6-7 and is masked off.
  const uint32_t scales_lo = a & 0x3F3F3F3Fu;
  const uint32_t scales_hi = (c & 0x0F0F0F0Fu) | ((a >> 2) & 0x30303030u);
  const uint32_t mins_lo = b & 0x3F3F3F3Fu;
  const uint32_t mins_hi = ((c >> 4) & 0x0F0F0F0Fu) | ((b >> 2) & 0x30303030u);
  return {scales_lo | static_cast<uint64_t>(scales_hi) << 32,
          mins_lo | static_cast<uint64_t>(mins_hi) << 32};
}

inline int KByte(uint64_t packed, int k) { return static_cast<int>((packed >> (8 * k)) & 0xFF); }

}  // namespace
}  // namespace ite::cpu
