#include "scheduler/http/image_data_url.h"

#include <algorithm>
#include <cctype>

#include "common/image/image_decoder.h"

namespace ite {
namespace {

// 0-63 for a base64 digit, -1 otherwise.
int Base64Digit(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The start of a URL for messages: enough to recognise it, never megabytes of base64.
std::string Head(std::string_view url) {
  constexpr size_t kShown = 40;
  std::string out(url.substr(0, kShown));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return url.size() > kShown ? out + "..." : out;
}

}  // namespace

bool Base64Decode(std::string_view in, std::string* out, size_t* bad_at) {
  size_t end = in.size();
  // Up to two '=' close the text; one anywhere else is a bad character below.
  size_t pad = 0;
  while (pad < 2 && end > 0 && in[end - 1] == '=') {
    --end;
    ++pad;
  }
  out->clear();
  out->reserve(end / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < end; ++i) {
    const int d = Base64Digit(static_cast<unsigned char>(in[i]));
    if (d < 0) {
      *bad_at = i;
      return false;
    }
    acc = (acc << 6) | static_cast<uint32_t>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out->push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  // Unpadded text may stop after 2 or 3 digits of a group; 1 digit is only 6 bits, no byte.
  if (end % 4 == 1 || (pad > 0 && (end + pad) % 4 != 0)) {
    *bad_at = in.size();
    return false;
  }
  // The bits left over from the last group must be zero (RFC 4648 section 3.5: canonical form).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
    *bad_at = end - 1;
    return false;
  }
  return true;
}

StatusOr<ImageInput> ImageFromDataUrl(std::string_view url, const std::string& what) {
  const size_t colon = url.find(':');
  const std::string scheme = colon == std::string_view::npos ? "" : Lower(url.substr(0, colon + 1));
  if (scheme == "http:" || scheme == "https:") {
    return InvalidArgument(
        "{}: '{}': only data: URLs are accepted (this server does not fetch images from the "
        "network); send the image inline as data:image/png;base64,...",
        what, Head(url));
  }
  if (scheme != "data:") {
    return InvalidArgument(
        "{}: '{}' is not a data: URL; only data:image/...;base64,... URLs are accepted", what,
        Head(url));
  }
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) {
    return InvalidArgument("{}: data: URL without a ',' before its data", what);
  }
  // "data:" [media type] *(";" parameter) [";base64"] "," data
  const std::string_view header = url.substr(5, comma - 5);
  const size_t semi = header.find(';');
  const std::string media = Lower(header.substr(0, semi));
  const std::string_view params =
      semi == std::string_view::npos ? std::string_view() : header.substr(semi);
  const bool base64 = params.size() >= 7 && Lower(params.substr(params.size() - 7)) == ";base64";
  if (!base64) {
    return InvalidArgument("{}: data: URL is not base64 (expected data:{};base64,...)", what,
                           media.empty() ? "image/png" : media);
  }
  if (media.empty()) {
    return InvalidArgument("{}: data: URL names no media type (expected one of {})", what,
                           SupportedImageTypes());
  }
  if (!IsSupportedImageType(media)) {
    return InvalidArgument("{}: unsupported image type '{}' (supported: {})", what, Head(media),
                           SupportedImageTypes());
  }
  const std::string_view data = url.substr(comma + 1);
  if (data.empty()) return InvalidArgument("{}: data: URL holds no data", what);
  ImageInput out;
  out.mime_type = media;
  size_t bad_at = 0;
  if (!Base64Decode(data, &out.data, &bad_at)) {
    if (bad_at >= data.size()) {
      return InvalidArgument("{}: invalid base64 (its length, {} characters, is cut short)", what,
                             data.size());
    }
    const auto c = static_cast<unsigned char>(data[bad_at]);
    return InvalidArgument("{}: invalid base64 at data character {} ({})", what, bad_at,
                           std::isprint(c) ? fmt::format("'{}'", static_cast<char>(c))
                                           : fmt::format("byte 0x{:02x}", c));
  }
  return out;
}

}  // namespace ite
