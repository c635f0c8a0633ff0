// Bearer-token API keys for the public APIs (gRPC `authorization` metadata, HTTP Authorization
// header). Keys come from flags and from a file (one per line; blank lines and lines starting
// with '#' are skipped), are kept only as SHA-256 digests, and are compared in constant time, so
// neither a log line nor a timing difference gives a key away. Messages never quote a key.
//
// Threads: immutable after Load; Allows* from any thread.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace ite {

class ApiKeys {
 public:
  // No key: every caller is allowed (the default, as on loopback before keys existed).
  ApiKeys() = default;

  // `keys` as given on the command line, and the keys of each of `files`. A key must be 1..4096
  // printable ASCII characters without spaces; an unreadable file, an empty file or a bad line is
  // an error naming the file and line (never the key).
  [[nodiscard]] static StatusOr<ApiKeys> Load(const std::vector<std::string>& keys,
                                              const std::vector<std::string>& files);

  [[nodiscard]] bool empty() const { return digests_.empty(); }
  [[nodiscard]] size_t size() const { return digests_.size(); }

  // True when `key` is one of the keys (or there are none). Every stored digest is compared,
  // each in constant time.
  [[nodiscard]] bool Allows(std::string_view key) const;
  // The same for an Authorization header's value: "Bearer KEY" (scheme case-insensitive).
  [[nodiscard]] bool AllowsAuthorization(std::string_view header) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest Hash(std::string_view key);
  std::vector<Digest> digests_;
};

// The key of an Authorization header value "Bearer KEY", or "" when it is not of that form.
std::string_view BearerToken(std::string_view header);

}  // namespace ite
