// Reader for GGUF files (versions 2 and 3, little-endian): metadata key/values and tensor
// descriptors, with tensor data left in a read-only memory map.
//
// Open() validates the whole header before returning: magic, version, counts bounded by the file
// size, string and array lengths, tensor dims and types, `general.alignment`, and that every
// tensor's bytes lie inside the file. After a successful Open, every `GgufTensorInfo::data`
// points to `nbytes` readable bytes. Errors name the file and the key or tensor at fault.
//
// Thread safety: a GgufFile is immutable after Open; any thread may read it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/mapped_file.h"
#include "common/status.h"

namespace ite {

// Tensor element types (ggml numbering). Values not listed are rejected by Open.
enum class GgmlType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
};

// Name ("Q4_K"), elements per block and bytes per block of a known type; 0 / "?" if unknown.
const char* GgmlTypeName(GgmlType type);
int64_t GgmlBlockSize(GgmlType type);
int64_t GgmlTypeSize(GgmlType type);
bool GgmlTypeKnown(uint32_t raw_type);

using GgufArray = std::variant<std::vector<int64_t>, std::vector<double>, std::vector<std::string>,
                               std::vector<bool>>;
// Integers of every width are widened to int64_t, f32/f64 to double.
using GgufValue = std::variant<int64_t, double, bool, std::string, GgufArray>;

struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<int64_t> dims;  // ne0 first (file order): an [out, in] matrix has dims {in, out}
  const uint8_t* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const;
};

class GgufFile {
 public:
  // Maps and validates `path`. Errors name the file and the offending key/tensor.
  static StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);

  const GgufValue* Find(std::string_view key) const;  // nullptr if absent
  StatusOr<std::string> GetString(std::string_view key) const;
  StatusOr<int64_t> GetInt(std::string_view key) const;
  StatusOr<double> GetFloat(std::string_view key) const;  // accepts ints too
  StatusOr<bool> GetBool(std::string_view key) const;
  StatusOr<std::vector<std::string>> GetStringArray(std::string_view key) const;
  StatusOr<std::vector<int64_t>> GetIntArray(std::string_view key) const;
  StatusOr<std::vector<double>> GetFloatArray(std::string_view key) const;  // accepts ints too

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  // Keeps tensor data valid; share it with tensors that point into the file.
  const std::shared_ptr<MappedFile>& mapping() const { return map_; }
  const std::map<std::string, GgufValue, std::less<>>& metadata() const { return metadata_; }

 private:
  friend class GgufParser;
  GgufFile() = default;

  std::string path_;
  std::shared_ptr<MappedFile> map_;
  uint32_t version_ = 0;
  size_t alignment_ = 32;
  std::map<std::string, GgufValue, std::less<>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Same validation as GgufFile::Open on an in-memory buffer (used by the fuzz target and tests).
// `data` must outlive the returned file; `name` is used in error messages.
StatusOr<std::unique_ptr<GgufFile>> ParseGgufBuffer(const uint8_t* data, size_t size,
                                                    const std::string& name);

}  // namespace ite
