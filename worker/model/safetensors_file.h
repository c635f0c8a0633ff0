// Reader for one .safetensors file: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {..}},
// then the raw tensor bytes. Open() validates the header: JSON syntax, dtypes (F32, F16, BF16;
// others are a clear error), shapes, and that each tensor's byte range lies inside the file and
// has exactly shape * dtype-size bytes. Tensor data stays in the read-only memory map.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/gguf_reader.h"
#include "common/mapped_file.h"
#include "common/status.h"

namespace ite {

struct SafetensorsTensor {
  std::string name;
  GgmlType type = GgmlType::F32;  // F32, F16 or BF16 (ggml numbering, shared with GGUF)
  std::vector<int64_t> shape;     // outermost first, as in PyTorch
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
};

class SafetensorsFile {
 public:
  static StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* FindTensor(std::string_view name) const;
  const std::string& path() const { return path_; }
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }

 private:
  friend StatusOr<std::unique_ptr<SafetensorsFile>> ParseSafetensorsBuffer(const uint8_t*, size_t,
                                                                           const std::string&);
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<MappedFile> map_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
};

// Same validation on an in-memory buffer (fuzz target, tests). `data` must outlive the result.
StatusOr<std::unique_ptr<SafetensorsFile>> ParseSafetensorsBuffer(const uint8_t* data, size_t size,
                                                                  const std::string& name);

}  // namespace ite
