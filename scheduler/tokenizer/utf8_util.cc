#include "scheduler/tokenizer/utf8_util.h"

namespace ite::utf8 {
namespace {

// Valid range of the second byte for a given lead byte (Unicode table 3-7).
bool SecondByteOk(uint8_t lead, uint8_t b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

int ExpectedLength(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Number of bytes at text[pos] that match a valid character's prefix (<= its expected length).
size_t ValidPrefix(std::string_view text, size_t pos, int* expected) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  *expected = ExpectedLength(lead);
  if (*expected == 0) return 0;
  size_t n = 1;
  while (n < static_cast<size_t>(*expected) && pos + n < text.size()) {
    const auto b = static_cast<uint8_t>(text[pos + n]);
    const bool ok = n == 1 ? SecondByteOk(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t ValidCharLength(std::string_view text, size_t pos) {
  int expected = 0;
  const size_t n = ValidPrefix(text, pos, &expected);
  return expected != 0 && n == static_cast<size_t>(expected) ? n : 0;
}

size_t InvalidRunLength(std::string_view text, size_t pos) {
  int expected = 0;
  const size_t n = ValidPrefix(text, pos, &expected);
  return n == 0 ? 1 : n;
}

bool IsValid(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidCharLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string Sanitize(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidCharLength(text, pos);
    if (n != 0) {
      out.append(text.substr(pos, n));
      pos += n;
    } else {
      Append(out, kReplacement);
      pos += InvalidRunLength(text, pos);
    }
  }
  return out;
}

char32_t Next(std::string_view text, size_t& pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const int n = ExpectedLength(lead);
  if (n <= 1 || pos + n > text.size()) {
    ++pos;
    return n == 1 ? lead : kReplacement;
  }
  char32_t cp = lead & (0xFF >> (n + 1));
  for (int i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  pos += n;
  return cp;
}

void Append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool EndsWithIncompleteChar(std::string_view text) {
  // A character is at most 4 bytes, so only the last 3 can start an unfinished one.
  const size_t first = text.size() >= 3 ? text.size() - 3 : 0;
  for (size_t pos = text.size(); pos-- > first;) {
    const auto b = static_cast<uint8_t>(text[pos]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for its lead
    int expected = 0;
    const size_t n = ValidPrefix(text, pos, &expected);
    return expected > 1 && n == text.size() - pos && n < static_cast<size_t>(expected);
  }
  return false;
}

}  // namespace ite::utf8
