#include "common/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cctype>
#include <fstream>

namespace ite {
namespace {

constexpr size_t kMaxKeyBytes = 4096;

// Why `key` cannot be a key, or "" when it can. Says nothing of the key's content.
std::string KeyProblem(std::string_view key) {
  if (key.empty()) return "an empty key";
  if (key.size() > kMaxKeyBytes) return fmt::format("a key longer than {} bytes", kMaxKeyBytes);
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return "a key must be printable ASCII without spaces";
  }
  return "";
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

ApiKeys::Digest ApiKeys::Hash(std::string_view key) {
  Digest d;
  SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), d.data());
  return d;
}

StatusOr<ApiKeys> ApiKeys::Load(const std::vector<std::string>& keys,
                                const std::vector<std::string>& files) {
  ApiKeys out;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (std::string why = KeyProblem(keys[i]); !why.empty()) {
      return InvalidArgument("--api-key (number {}): {}", i + 1, why);
    }
    out.digests_.push_back(Hash(keys[i]));
  }
  for (const std::string& file : files) {
    std::ifstream in(file);
    if (!in) return InvalidArgument("--api-key-file {}: cannot be read", file);
    size_t from_file = 0;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
      std::string_view key = Trim(line);
      if (key.empty() || key.front() == '#') continue;
      if (std::string why = KeyProblem(key); !why.empty()) {
        return InvalidArgument("--api-key-file {} line {}: {}", file, number, why);
      }
      out.digests_.push_back(Hash(key));
      ++from_file;
    }
    if (in.bad()) return InvalidArgument("--api-key-file {}: read error", file);
    // An empty file would silently leave the server open; say so instead.
    if (from_file == 0) return InvalidArgument("--api-key-file {}: no key in it", file);
  }
  return out;
}

bool ApiKeys::Allows(std::string_view key) const {
  if (digests_.empty()) return true;
  const Digest candidate = Hash(key);
  // No early exit: the time taken does not tell which key (if any) matched.
  bool match = false;
  for (const Digest& d : digests_) {
    match |= CRYPTO_memcmp(d.data(), candidate.data(), d.size()) == 0;
  }
  return match;
}

bool ApiKeys::AllowsAuthorization(std::string_view header) const {
  if (digests_.empty()) return true;
  std::string_view token = BearerToken(header);
  return !token.empty() && Allows(token);
}

std::string_view BearerToken(std::string_view header) {
  header = Trim(header);
  constexpr std::string_view kScheme = "bearer";
  if (header.size() <= kScheme.size()) return {};
  for (size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != kScheme[i]) return {};
  }
  if (header[kScheme.size()] != ' ') return {};
  return Trim(header.substr(kScheme.size() + 1));
}

}  // namespace ite
