#include "common/image/image_processor.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace ite {
namespace {

using json = nlohmann::json;

constexpr int32_t kMaxSide = 1 << 14;

// Planar 8-bit image [3, h, w], the layout the processor works in until it normalises.
struct Planar {
  int32_t w = 0, h = 0;
  std::vector<uint8_t> p;
  uint8_t& at(int c, int32_t y, int32_t x) { return p[(static_cast<size_t>(c) * h + y) * w + x]; }
};

Planar ToPlanar(const RgbImage& im) {
  Planar out{im.width, im.height, std::vector<uint8_t>(im.rgb.size())};
  const size_t n = static_cast<size_t>(im.width) * im.height;
  for (size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c) out.p[c * n + i] = im.rgb[i * 3 + c];
  return out;
}

// A copy on a (w, h) canvas filled with `fill`, the source placed at (left, top).
Planar Place(Planar& src, int32_t w, int32_t h, int32_t left, int32_t top,
             const std::array<uint8_t, 3>& fill) {
  Planar out{w, h, std::vector<uint8_t>(static_cast<size_t>(3) * w * h)};
  for (int c = 0; c < 3; ++c) {
    std::fill(out.p.begin() + static_cast<size_t>(c) * w * h,
              out.p.begin() + static_cast<size_t>(c + 1) * w * h, fill[c]);
    for (int32_t y = 0; y < src.h; ++y) {
      const int32_t oy = y + top;
      if (oy < 0 || oy >= h) continue;
      for (int32_t x = 0; x < src.w; ++x) {
        const int32_t ox = x + left;
        if (ox >= 0 && ox < w) out.at(c, oy, ox) = src.at(c, y, x);
      }
    }
  }
  return out;
}

// Keys' cubic with a = -0.5, the antialiasing filter of torch (and PIL) bicubic.
double Cubic(double x) {
  constexpr double a = -0.5;
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
  return 0.0;
}

// The taps of one axis as torch computes them for 8-bit antialiased resizing (the PIL-style
// integer path that torchvision takes for uint8 on the CPU): each output index's weights in
// double, normalised, then scaled to int16 by 2^precision, the largest precision that keeps
// the largest weight of the whole axis below 2^15.
struct Taps {
  std::vector<int64_t> min;
  std::vector<std::vector<int32_t>> w;
  int precision = 0;
};

Taps ComputeTaps(int32_t in, int32_t out) {
  const double scale = static_cast<double>(in) / out;
  const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  std::vector<std::vector<double>> weights(static_cast<size_t>(out));
  Taps taps;
  taps.min.resize(static_cast<size_t>(out));
  double wt_max = 0.0;
  for (int32_t i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    const int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    const int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in);
    taps.min[i] = lo;
    std::vector<double>& w = weights[i];
    double total = 0.0;
    for (int64_t j = 0; j < hi - lo; ++j) {
      w.push_back(Cubic((static_cast<double>(j + lo) - center + 0.5) * invscale));
      total += w.back();
    }
    if (total != 0.0)
      for (double& x : w) x /= total;
    for (double x : w) wt_max = std::max(wt_max, x);
  }
  int precision = 0;
  for (; precision < 22; ++precision) {
    const int next = static_cast<int>(0.5 + wt_max * (1 << (precision + 1)));
    if (next >= (1 << 15)) break;
  }
  taps.precision = precision;
  taps.w.resize(static_cast<size_t>(out));
  for (int32_t i = 0; i < out; ++i) {
    for (double x : weights[i]) {
      const double v = x * (1 << precision);
      taps.w[i].push_back(static_cast<int16_t>(v < 0 ? v - 0.5 : v + 0.5));
    }
  }
  return taps;
}

uint8_t Clip8(int64_t acc, int precision) {
  return static_cast<uint8_t>(std::clamp<int64_t>(acc >> precision, 0, 255));
}

// torch interpolate(bicubic, antialias=True) on a uint8 image, as torchvision calls it: along
// the width, then along the height, each pass rounding back to 8 bits.
Planar Resize(const Planar& src, int32_t out_w, int32_t out_h) {
  Planar cur = src;
  if (out_w != cur.w) {
    const Taps t = ComputeTaps(cur.w, out_w);
    Planar next{out_w, cur.h, std::vector<uint8_t>(static_cast<size_t>(3) * cur.h * out_w)};
    for (int32_t row = 0; row < 3 * cur.h; ++row) {
      const uint8_t* in = &cur.p[static_cast<size_t>(row) * cur.w];
      for (int32_t x = 0; x < out_w; ++x) {
        int64_t acc = int64_t{1} << (t.precision - 1);
        for (size_t j = 0; j < t.w[x].size(); ++j) acc += int64_t{in[t.min[x] + j]} * t.w[x][j];
        next.p[static_cast<size_t>(row) * out_w + x] = Clip8(acc, t.precision);
      }
    }
    cur = std::move(next);
  }
  if (out_h != cur.h) {
    const Taps t = ComputeTaps(cur.h, out_h);
    Planar next{cur.w, out_h, std::vector<uint8_t>(static_cast<size_t>(3) * out_h * cur.w)};
    std::vector<int64_t> acc(static_cast<size_t>(cur.w));
    for (int c = 0; c < 3; ++c) {
      for (int32_t y = 0; y < out_h; ++y) {
        std::fill(acc.begin(), acc.end(), int64_t{1} << (t.precision - 1));
        for (size_t j = 0; j < t.w[y].size(); ++j) {
          const uint8_t* in = &cur.p[(static_cast<size_t>(c) * cur.h + t.min[y] + j) * cur.w];
          for (int32_t x = 0; x < cur.w; ++x) acc[x] += int64_t{in[x]} * t.w[y][j];
        }
        for (int32_t x = 0; x < cur.w; ++x) next.at(c, y, x) = Clip8(acc[x], t.precision);
      }
    }
    cur = std::move(next);
  }
  return cur;
}

StatusOr<bool> Bool(const json& j, const char* key, const std::string& path, bool fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) return InvalidArgument("{}: '{}' is not a bool", path, key);
  return it->get<bool>();
}

StatusOr<int32_t> Side(const json& j, const char* key, const std::string& path) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() <= 0 ||
      it->get<int64_t>() > kMaxSide)
    return InvalidArgument("{}: '{}' is not a size in [1, {}]", path, key, kMaxSide);
  return static_cast<int32_t>(it->get<int64_t>());
}

StatusOr<std::array<double, 3>> Triple(const json& j, const char* key, const std::string& path,
                                       const std::array<double, 3>& fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  std::array<double, 3> v{};
  if (it->is_number()) {
    v.fill(it->get<double>());
  } else if (it->is_array() && it->size() == 3) {
    for (int i = 0; i < 3; ++i) {
      if (!(*it)[i].is_number()) return InvalidArgument("{}: '{}' holds a non-number", path, key);
      v[i] = (*it)[i].get<double>();
    }
  } else {
    return InvalidArgument("{}: '{}' is not a number or a list of 3", path, key);
  }
  for (double x : v)
    if (!std::isfinite(x)) return InvalidArgument("{}: '{}' is not finite", path, key);
  return v;
}

}  // namespace

StatusOr<ImageProcessorConfig> ImageProcessorConfigFromJson(const json& root,
                                                            const std::string& path) {
  const json& j = root.contains("image_processor") ? root["image_processor"] : root;
  if (!j.is_object())
    return InvalidArgument("{}: image processor settings are not an object", path);
  ImageProcessorConfig c;
  ITE_ASSIGN_OR_RETURN(c.do_pad, Bool(j, "do_pad", path, false));
  ITE_ASSIGN_OR_RETURN(c.do_resize, Bool(j, "do_resize", path, true));
  ITE_ASSIGN_OR_RETURN(c.do_center_crop, Bool(j, "do_center_crop", path, true));
  ITE_ASSIGN_OR_RETURN(c.do_rescale, Bool(j, "do_rescale", path, true));
  ITE_ASSIGN_OR_RETURN(c.do_normalize, Bool(j, "do_normalize", path, true));
  if (auto it = j.find("do_convert_rgb"); it != j.end() && it->is_boolean() && !it->get<bool>())
    return Unimplemented("{}: do_convert_rgb false is not supported (images are decoded to RGB)",
                         path);
  if (auto it = j.find("resample");
      it != j.end() && !it->is_null() && (!it->is_number_integer() || it->get<int64_t>() != 3))
    return Unimplemented("{}: resample {} is not supported (3, bicubic, is)", path, it->dump());
  if (c.do_resize) {
    auto size = j.find("size");
    if (size == j.end() || !size->is_object())
      return InvalidArgument("{}: missing object 'size'", path);
    if (size->contains("shortest_edge")) {
      if (size->contains("longest_edge") && !(*size)["longest_edge"].is_null())
        return Unimplemented("{}: size.longest_edge is not supported", path);
      ITE_ASSIGN_OR_RETURN(c.shortest_edge, Side(*size, "shortest_edge", path + " size"));
    } else {
      ITE_ASSIGN_OR_RETURN(c.resize_height, Side(*size, "height", path + " size"));
      ITE_ASSIGN_OR_RETURN(c.resize_width, Side(*size, "width", path + " size"));
    }
  }
  if (c.do_center_crop) {
    auto crop = j.find("crop_size");
    if (crop == j.end() || !crop->is_object())
      return InvalidArgument("{}: missing object 'crop_size'", path);
    ITE_ASSIGN_OR_RETURN(c.crop_height, Side(*crop, "height", path + " crop_size"));
    ITE_ASSIGN_OR_RETURN(c.crop_width, Side(*crop, "width", path + " crop_size"));
  } else if (c.resize_height == 0) {
    return Unimplemented(
        "{}: without a centre crop the output size must be fixed (size.height, "
        "size.width)",
        path);
  }
  if (auto it = j.find("rescale_factor"); it != j.end() && !it->is_null()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()))
      return InvalidArgument("{}: 'rescale_factor' is not a number", path);
    c.rescale_factor = it->get<double>();
  }
  ITE_ASSIGN_OR_RETURN(c.mean, Triple(j, "image_mean", path, c.mean));
  ITE_ASSIGN_OR_RETURN(c.std, Triple(j, "image_std", path, c.std));
  for (double s : c.std)
    if (c.do_normalize && s == 0.0) return InvalidArgument("{}: 'image_std' holds 0", path);
  if (c.do_normalize && c.rescale_factor == 0.0)
    return InvalidArgument("{}: 'rescale_factor' is 0", path);
  return c;
}

StatusOr<ImageProcessorConfig> LoadImageProcessorConfig(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* name : {"processor_config.json", "preprocessor_config.json"}) {
    const fs::path p = fs::path(dir) / name;
    if (!fs::exists(p, ec)) continue;
    std::ifstream in(p, std::ios::binary);
    std::stringstream buf;
    buf << in.rdbuf();
    json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return InvalidArgument("{}: not valid JSON", p.string());
    if (std::string(name) == "processor_config.json" && !j.contains("image_processor")) continue;
    return ImageProcessorConfigFromJson(j, p.string());
  }
  return NotFound(
      "{}: no image processor settings (processor_config.json with "
      "'image_processor', or preprocessor_config.json)",
      dir);
}

StatusOr<std::vector<float>> PreprocessImage(const RgbImage& image, const ImageProcessorConfig& c) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != size_t{3} * image.width * image.height)
    return InvalidArgument("image of {}x{} pixels holds {} bytes", image.width, image.height,
                           image.rgb.size());
  Planar im = ToPlanar(image);
  if (c.do_pad && im.w != im.h) {
    // transformers fills with int(mean * 255) per channel.
    std::array<uint8_t, 3> fill{};
    for (int i = 0; i < 3; ++i)
      fill[i] = static_cast<uint8_t>(std::clamp(static_cast<int>(c.mean[i] * 255), 0, 255));
    const int32_t side = std::max(im.w, im.h);
    if (int64_t{side} * side > kMaxWorkingPixels)
      return InvalidArgument(
          "image of {}x{} pixels: its aspect ratio is too extreme to pad to a "
          "square",
          image.width, image.height);
    im = Place(im, side, side, (side - im.w) / 2, (side - im.h) / 2, fill);
  }
  if (c.do_resize) {
    int32_t out_w = c.resize_width, out_h = c.resize_height;
    if (c.shortest_edge > 0) {
      // get_resize_output_image_size(default_to_square=False): the long side truncated.
      const int32_t shorter = std::min(im.w, im.h), longer = std::max(im.w, im.h);
      const double long_out_d = static_cast<double>(c.shortest_edge) * longer / shorter;
      if (long_out_d * c.shortest_edge > kMaxWorkingPixels)
        return InvalidArgument(
            "image of {}x{} pixels: its aspect ratio is too extreme to resize "
            "to a shorter side of {}",
            image.width, image.height, c.shortest_edge);
      const auto long_out = static_cast<int32_t>(long_out_d);
      out_w = im.w <= im.h ? c.shortest_edge : long_out;
      out_h = im.w <= im.h ? long_out : c.shortest_edge;
    }
    if (out_w != im.w || out_h != im.h) im = Resize(im, out_w, out_h);
  }
  if (c.do_center_crop) {
    // A crop larger than the image pads with zeros first, split as torchvision does.
    int32_t left = 0, top = 0;
    if (c.crop_width > im.w || c.crop_height > im.h) {
      const int32_t pw = std::max(im.w, c.crop_width), ph = std::max(im.h, c.crop_height);
      if (int64_t{pw} * ph > kMaxWorkingPixels)
        return InvalidArgument("image of {}x{} pixels: too large to pad to the {}x{} crop",
                               image.width, image.height, c.crop_width, c.crop_height);
      im = Place(im, pw, ph, (pw - im.w) / 2, (ph - im.h) / 2, {0, 0, 0});
    }
    top = static_cast<int32_t>((im.h - c.crop_height) / 2.0);
    left = static_cast<int32_t>((im.w - c.crop_width) / 2.0);
    im = Place(im, c.crop_width, c.crop_height, -left, -top, {0, 0, 0});
  }
  // Rescale and normalise fused as transformers does: (x - mean / r) / (std / r), in float32.
  std::vector<float> out(im.p.size());
  const size_t plane = static_cast<size_t>(im.w) * im.h;
  for (int ch = 0; ch < 3; ++ch) {
    const float inv_r = static_cast<float>(1.0 / c.rescale_factor);
    const float mean = static_cast<float>(c.mean[ch]) * inv_r;
    const float sd = static_cast<float>(c.std[ch]) * inv_r;
    const auto r = static_cast<float>(c.rescale_factor);
    for (size_t i = ch * plane; i < (ch + 1) * plane; ++i) {
      const float x = im.p[i];
      if (c.do_normalize && c.do_rescale) {
        out[i] = (x - mean) / sd;
      } else if (c.do_normalize) {
        out[i] = (x - static_cast<float>(c.mean[ch])) / static_cast<float>(c.std[ch]);
      } else if (c.do_rescale) {
        out[i] = x * r;
      } else {
        out[i] = x;
      }
    }
  }
  return out;
}

}  // namespace ite
