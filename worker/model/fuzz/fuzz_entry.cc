#include "worker/model/fuzz/fuzz_entry.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <vector>

#include "common/gguf_reader.h"
#include "common/image/image_decoder.h"
#include "common/image/image_processor.h"
#include "worker/model/config_parser.h"
#include "worker/model/dequantize.h"
#include "worker/model/model_loader.h"
#include "worker/model/safetensors_file.h"

namespace ite::fuzz {

namespace {

// Decoded values are summed into a volatile sink so the reads are not optimised away: the point
// is that every byte the readers promise is valid gets touched under ASan.
volatile float g_sink = 0.0f;

void Decode(GgmlType type, const uint8_t* data, size_t nbytes, int64_t row_len) {
  if (!DequantizeSupported(type) || row_len <= 0 || row_len > (1 << 16)) return;
  if (GgmlRowBytes(type, row_len) > nbytes) return;
  std::vector<float> row(static_cast<size_t>(row_len));
  DequantizeRow(type, data, row.data(), row_len);
  float s = 0.0f;
  for (float v : row) s += v;
  g_sink = g_sink + s;
}

}  // namespace

int FuzzGguf(const uint8_t* data, size_t size) {
  auto file = ParseGgufBuffer(data, size, "fuzz.gguf");
  if (!file.ok()) return 0;
  for (const auto& [key, value] : (*file)->metadata()) {
    (void)(*file)->GetString(key);
    (void)(*file)->GetInt(key);
    (void)(*file)->GetFloat(key);
    (void)(*file)->GetBool(key);
    (void)(*file)->GetStringArray(key);
    (void)(*file)->GetIntArray(key);
    (void)(*file)->GetFloatArray(key);
  }
  for (const GgufTensorInfo& t : (*file)->tensors()) {
    // The last byte of each tensor must be readable, whatever its type.
    if (t.nbytes > 0) g_sink = g_sink + t.data[t.nbytes - 1];
    Decode(t.type, t.data, t.nbytes, t.dims[0]);
  }
  auto model = LoadModelFromGguf(**file, {DType::kBF16, false});
  if (model.ok() && !model->weights.layers.empty()) {
    g_sink = g_sink + static_cast<float>(model->weights.layers[0].wqkv.numel());
  }
  // Stored blocks kept as views (--dtype auto): each row a view points to must lie in the file.
  LoadOptions keep;
  keep.keep_stored = true;
  auto kept = LoadModelFromGguf(**file, keep);
  if (kept.ok()) {
    for (const LayerWeights& l : kept->weights.layers) {
      for (const Tensor* t : {&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down}) {
        if (t->shape.size() != 2 || t->cols() == 0) continue;
        // A mixed matrix's rows differ in length by segment.
        std::vector<RowSegment> segments = {{t->dtype, t->shape[0]}};
        if (t->mixed()) segments = *t->segments;
        int64_t r = 0;
        for (const RowSegment& s : segments) {
          const size_t row_bytes = DTypeRowBytes(s.dtype, t->cols());
          for (int64_t end = r + s.rows; r < end; ++r) g_sink = g_sink + t->row(r)[row_bytes - 1];
        }
      }
    }
  }
  return 0;
}

int FuzzSafetensors(const uint8_t* data, size_t size) {
  auto file = ParseSafetensorsBuffer(data, size, "fuzz.safetensors");
  if (!file.ok()) return 0;
  for (const SafetensorsTensor& t : (*file)->tensors()) {
    const int64_t n = static_cast<int64_t>(t.nbytes / static_cast<size_t>(GgmlTypeSize(t.type)));
    Decode(t.type, t.data, t.nbytes, n);
  }
  return 0;
}

int FuzzHfConfig(const uint8_t* data, size_t size) {
  const char* text = reinterpret_cast<const char*>(data);
  nlohmann::json config = nlohmann::json::parse(text, text + size, nullptr, false);
  if (config.is_discarded()) return 0;
  // The same document doubles as generation_config.json, whose eos_token_id overrides.
  auto c = ConfigFromHfJson(config, config, "fuzz/config.json");
  if (c.ok()) g_sink = g_sink + static_cast<float>(c->qkv_dim());
  return 0;
}

int FuzzImage(const uint8_t* data, size_t size) {
  ImageLimits limits;
  limits.max_pixels = 1 << 20;  // keeps each run fast; the limit check itself is what is fuzzed
  auto image = DecodeImage(std::string_view(reinterpret_cast<const char*>(data), size), "", limits);
  if (!image.ok()) return 0;
  // Padding to a square multiplies the work by the aspect ratio, up to kMaxWorkingPixels; a
  // 12x4096 image took 13 s through the instrumented resize (0.2 s in a release build) and
  // libFuzzer reported a timeout. The bound itself is plain arithmetic, tested in
  // image_processor_test; here the working size stays small so that runs stay fast.
  if (int64_t side = std::max(image->width, image->height); side * side > (int64_t{1} << 22)) {
    return 0;
  }
  ImageProcessorConfig c;
  c.do_pad = true;
  c.shortest_edge = 24;
  c.crop_height = 20;
  c.crop_width = 28;  // wider than the resized short side: the crop pads too
  auto px = PreprocessImage(*image, c);
  if (px.ok() && !px->empty()) g_sink = g_sink + (*px)[px->size() / 2];
  return 0;
}

}  // namespace ite::fuzz
