#include "common/image/image_decoder.h"

#include <climits>
#include <cstdint>
#include <cstring>

// stb_image (Debian libstb-dev), compiled here with only the decoders we accept and its
// functions kept private to this file.
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_GIF
#define STBI_NO_STDIO
#define STBI_NO_HDR
#define STBI_NO_LINEAR
#define STBI_FAILURE_USERMSG
// stb checks each dimension against this before it allocates; the pixel-count limit is
// checked by us from the header first.
#define STBI_MAX_DIMENSIONS (1 << 16)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#ifdef ITE_HAVE_WEBP
// libwebp (Debian libwebp-dev), when the build found it.
#include <webp/decode.h>
#endif

namespace ite {

std::string SniffImageType(std::string_view b) {
  auto starts = [&](std::string_view magic) { return b.substr(0, magic.size()) == magic; };
  if (starts("\x89PNG\r\n\x1a\n")) return "image/png";
  if (starts("\xff\xd8\xff")) return "image/jpeg";
  if (starts("GIF87a") || starts("GIF89a")) return "image/gif";
  // A RIFF container (4-byte tag, 4-byte length) whose form type is WEBP.
  if (starts("RIFF") && b.size() >= 12 && b.substr(8, 4) == "WEBP") return "image/webp";
  return "";
}

#ifdef ITE_HAVE_WEBP
constexpr bool kWebp = true;
#else
constexpr bool kWebp = false;
#endif

bool IsSupportedImageType(std::string_view m) {
  return m == "image/png" || m == "image/jpeg" || m == "image/jpg" || m == "image/gif" ||
         (kWebp && m == "image/webp");
}

const char* SupportedImageTypes() {
  return kWebp ? "image/png, image/jpeg, image/gif, image/webp"
               : "image/png, image/jpeg, image/gif";
}

namespace {

// stb decodes a JPEG cut short as if the missing data were zeros. A whole file ends with the
// EOI marker (FF D9), possibly followed by a little padding; entropy-coded data cannot hold it
// (a data FF is always followed by 00 or a restart marker), so its absence near the end means
// the file was cut.
bool HasJpegEnd(std::string_view b) {
  const size_t from = b.size() > 4096 ? b.size() - 4096 : 2;
  for (size_t i = b.size() - 1; i > from; --i) {
    if (static_cast<uint8_t>(b[i - 1]) == 0xff && static_cast<uint8_t>(b[i]) == 0xd9) return true;
  }
  return false;
}

#ifdef ITE_HAVE_WEBP
const char* WebpStatusText(VP8StatusCode st) {
  switch (st) {
    case VP8_STATUS_NOT_ENOUGH_DATA:
      return "truncated";
    case VP8_STATUS_UNSUPPORTED_FEATURE:
      return "uses a feature libwebp does not decode";
    case VP8_STATUS_OUT_OF_MEMORY:
      return "too large to decode";
    default:
      return "corrupt";
  }
}

// A still WebP (lossy or lossless, alpha dropped as PIL's convert("RGB") drops it), with the
// pixel limit checked from the header before anything is decoded.
StatusOr<RgbImage> DecodeWebp(std::string_view bytes, const ImageLimits& limits) {
  const auto* data = reinterpret_cast<const uint8_t*>(bytes.data());
  WebPBitstreamFeatures f;
  const VP8StatusCode head = WebPGetFeatures(data, bytes.size(), &f);
  if (head != VP8_STATUS_OK)
    return InvalidArgument("image/webp image header is {}", WebpStatusText(head));
  if (f.has_animation)
    return InvalidArgument("image/webp image is animated; only still WebP images are supported");
  if (f.width <= 0 || f.height <= 0)
    return InvalidArgument("image/webp image has size {}x{}", f.width, f.height);
  if (int64_t{f.width} * f.height > limits.max_pixels)
    return InvalidArgument("image/webp image is {}x{} pixels, more than the limit of {}", f.width,
                           f.height, limits.max_pixels);
  RgbImage out;
  out.width = f.width;
  out.height = f.height;
  out.rgb.resize(static_cast<size_t>(f.width) * f.height * 3);
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) return Internal("libwebp: version mismatch");
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out.rgb.data();
  config.output.u.RGBA.stride = f.width * 3;
  config.output.u.RGBA.size = out.rgb.size();
  const VP8StatusCode st = WebPDecode(data, bytes.size(), &config);
  WebPFreeDecBuffer(&config.output);  // external memory: frees nothing of ours
  if (st != VP8_STATUS_OK) return InvalidArgument("image/webp image is {}", WebpStatusText(st));
  return out;
}
#endif

// Checks the Huffman tables of a DHT segment's body (class/id, 16 counts, the symbols, repeated)
// and marks those it defines.
Status ReadHuffmanTables(std::string_view dht, bool (&defined)[2][4]) {
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(dht[i]); };
  size_t t = 0;
  while (t < dht.size()) {
    if (t + 17 > dht.size()) return InvalidArgument("jpeg image is corrupt: short Huffman table");
    const uint8_t table_class = u8(t) >> 4, id = u8(t) & 15;
    if (table_class <= 1 && id <= 3) defined[table_class][id] = true;  // stb refuses others
    size_t codes = 0;
    for (size_t k = 1; k <= 16; ++k) codes += u8(t + k);
    if (codes > 256)
      return InvalidArgument("jpeg image is corrupt: a Huffman table of {} codes (max 256)", codes);
    t += 17 + codes;
  }
  if (t != dht.size()) return InvalidArgument("jpeg image is corrupt: Huffman table past its end");
  return Status::Ok();
}

// The Huffman tables a scan (its SOS segment's body) decodes with, as stb uses them, must be
// defined: a sequential scan uses both tables of each component; a progressive one only the DC
// table in a first DC scan and only the AC table in an AC scan.
Status CheckScanTables(std::string_view sos, const bool (&defined)[2][4], bool progressive) {
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(sos[i]); };
  const size_t n = sos.empty() ? 0 : u8(0);
  if (sos.size() < 1 + 2 * n + 3)
    return InvalidArgument("jpeg image is corrupt: short scan header");
  const uint8_t spectral_start = u8(1 + 2 * n);
  const uint8_t approx_high = u8(3 + 2 * n) >> 4;
  const bool uses_dc = !progressive || (spectral_start == 0 && approx_high == 0);
  const bool uses_ac = !progressive || spectral_start != 0;
  for (size_t c = 0; c < n; ++c) {
    const uint8_t dc = u8(2 + 2 * c) >> 4, ac = u8(2 + 2 * c) & 15;
    if (dc > 3 || ac > 3) continue;  // stb refuses these itself
    if (uses_dc && !defined[0][dc])
      return InvalidArgument("jpeg image is corrupt: a scan uses DC Huffman table {}, not defined",
                             dc);
    if (uses_ac && !defined[1][ac])
      return InvalidArgument("jpeg image is corrupt: a scan uses AC Huffman table {}, not defined",
                             ac);
  }
  return Status::Ok();
}

// stb_image 2.27 (Debian 12's) trusts two things about Huffman tables that a corrupt JPEG can
// break, both found by image_fuzz under UBSan:
// - a DHT segment declaring more than 256 codes makes it write past its 257-entry size table;
// - a scan that decodes with a table no DHT segment has defined reads the uninitialised table
//   (stb does not zero its decoder state) and indexes it with garbage.
// Later stb versions reject both. So the marker segments are checked here before stb sees the
// file: the entropy-coded data after each SOS is skipped up to the next marker (an FF not
// followed by 00 or a restart marker D0-D7).
Status CheckJpegHuffmanTables(std::string_view b) {
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(b[i]); };
  bool defined[2][4] = {};  // [DC, AC][table id]
  uint8_t frame = 0;        // the first SOF marker: stb decodes by it
  size_t i = 2;             // after SOI
  while (i + 4 <= b.size()) {
    if (u8(i) != 0xff) return InvalidArgument("jpeg image is corrupt: no marker at byte {}", i);
    const uint8_t marker = u8(i + 1);
    if (marker == 0xff) {  // fill byte
      ++i;
      continue;
    }
    if (marker == 0xd9) return Status::Ok();  // EOI
    // TEM and the restart markers have no length field.
    if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    const size_t len = (size_t{u8(i + 2)} << 8) | u8(i + 3);
    if (len < 2 || i + 2 + len > b.size()) {
      return InvalidArgument("jpeg image is corrupt: segment at byte {} runs past the end", i);
    }
    // stb takes only baseline, extended and progressive frames (C0-C2) and refuses the others.
    if (frame == 0 && marker >= 0xc0 && marker <= 0xc2) frame = marker;
    const std::string_view body = b.substr(i + 4, len - 2);
    if (marker == 0xc4) ITE_RETURN_IF_ERROR(ReadHuffmanTables(body, defined));
    if (marker == 0xda) ITE_RETURN_IF_ERROR(CheckScanTables(body, defined, frame == 0xc2));
    i += 2 + len;
    if (marker == 0xda) {  // SOS: skip the entropy-coded data
      while (i + 1 < b.size() &&
             !(u8(i) == 0xff && u8(i + 1) != 0x00 && !(u8(i + 1) >= 0xd0 && u8(i + 1) <= 0xd7))) {
        ++i;
      }
    }
  }
  return Status::Ok();  // HasJpegEnd has checked that the file is whole
}

// stb_image 2.27 grows its IDAT buffer to a chunk's declared length before it reads the chunk,
// so a few bytes claiming a 1 GiB chunk make it allocate 2 GiB (found by image_fuzz). A PNG is a
// run of chunks (4-byte length, type, data, CRC) ending with IEND; each must fit in the file,
// which bounds every IDAT allocation by the file's size.
Status CheckPngChunks(std::string_view b) {
  auto be32 = [&](size_t i) {
    uint32_t v = 0;
    for (size_t k = 0; k < 4; ++k) v = (v << 8) | static_cast<uint8_t>(b[i + k]);
    return v;
  };
  size_t i = 8;  // after the signature
  while (i + 8 <= b.size()) {
    const uint32_t len = be32(i);
    const std::string_view type = b.substr(i + 4, 4);
    if (len > b.size() - i - 8 || b.size() - i - 8 - len < 4) {
      return InvalidArgument(
          "png image is corrupt or truncated: its chunk at byte {} declares {} bytes, the file "
          "has {} after it",
          i, len, b.size() - i - 8);
    }
    if (type == "IEND") return Status::Ok();
    i += 12 + size_t{len};
  }
  return InvalidArgument("png image is truncated (no IEND chunk)");
}

}  // namespace

StatusOr<RgbImage> DecodeImage(std::string_view bytes, std::string_view mime_type,
                               const ImageLimits& limits) {
  if (bytes.empty()) return InvalidArgument("image is empty");
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes)
    return InvalidArgument("image is {} bytes, more than the limit of {}", bytes.size(),
                           limits.max_bytes);
  if (bytes.size() > static_cast<size_t>(INT_MAX))
    return InvalidArgument("image is {} bytes, too large to decode", bytes.size());
  const std::string type = SniffImageType(bytes);
  if (type.empty())
    return InvalidArgument("image data is not {} (unrecognised signature)",
                           kWebp ? "PNG, JPEG, GIF or WebP" : "PNG, JPEG or GIF");
  std::string_view declared = mime_type;
  if (declared == "image/jpg") declared = "image/jpeg";
  if (!declared.empty() && declared != type)
    return InvalidArgument("image declared as {} holds {} data", mime_type, type);
  if (type == "image/webp") {
#ifdef ITE_HAVE_WEBP
    return DecodeWebp(bytes, limits);
#else
    return InvalidArgument("image/webp images are not supported by this build (no libwebp)");
#endif
  }

  if (type == "image/jpeg" && !HasJpegEnd(bytes))
    return InvalidArgument("jpeg image is truncated (no end-of-image marker)");
  if (type == "image/jpeg") ITE_RETURN_IF_ERROR(CheckJpegHuffmanTables(bytes));
  const auto* data = reinterpret_cast<const stbi_uc*>(bytes.data());
  const int len = static_cast<int>(bytes.size());
  int w = 0, h = 0, comp = 0;
  if (!stbi_info_from_memory(data, len, &w, &h, &comp))
    return InvalidArgument("{} image header is corrupt: {}", type, stbi_failure_reason());
  if (w <= 0 || h <= 0) return InvalidArgument("{} image has size {}x{}", type, w, h);
  if (int64_t{w} * h > limits.max_pixels)
    return InvalidArgument("{} image is {}x{} pixels, more than the limit of {}", type, w, h,
                           limits.max_pixels);
  if (type == "image/png") ITE_RETURN_IF_ERROR(CheckPngChunks(bytes));
  int dw = 0, dh = 0;
  stbi_uc* pixels = stbi_load_from_memory(data, len, &dw, &dh, &comp, 3);
  if (pixels == nullptr)
    return InvalidArgument("{} image is corrupt or truncated: {}", type, stbi_failure_reason());
  RgbImage out;
  if (dw != w || dh != h) {
    stbi_image_free(pixels);
    return InvalidArgument("{} image decodes to {}x{}, its header says {}x{}", type, dw, dh, w, h);
  }
  out.width = w;
  out.height = h;
  out.rgb.assign(pixels, pixels + static_cast<size_t>(w) * h * 3);
  stbi_image_free(pixels);
  return out;
}

}  // namespace ite
