// GPT-2's reversible byte <-> printable-character map used by byte-level BPE vocabularies:
// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ite {

class ByteLevelMap {
 public:
  static const ByteLevelMap& Get();

  // UTF-8 of the character that stands for `byte`.
  const std::string& Encode(uint8_t byte) const { return byte_to_utf8_[byte]; }
  // Maps every byte of `bytes` to its character.
  std::string EncodeAll(std::string_view bytes) const;
  // The byte a character stands for, if it is one of the 256.
  std::optional<uint8_t> Decode(char32_t cp) const;
  // Maps a vocab string back to bytes; nullopt if any character is outside the map.
  std::optional<std::string> DecodeAll(std::string_view text) const;

 private:
  ByteLevelMap();
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 512> cp_to_byte_;  // every mapped code point is < 0x144
};

}  // namespace ite
