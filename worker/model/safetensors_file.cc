#include "worker/model/safetensors_file.h"

#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

namespace ite {

namespace {

// The header is JSON text; 100 MB is far beyond any real checkpoint's and stops a forged length
// from making the parser chew through a whole multi-GB file.
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

StatusOr<GgmlType> ParseDtype(const std::string& file, const std::string& name,
                              const std::string& dtype) {
  if (dtype == "F32") return GgmlType::F32;
  if (dtype == "F16") return GgmlType::F16;
  if (dtype == "BF16") return GgmlType::BF16;
  return Unimplemented("{}: tensor '{}': dtype {} is not supported (F32, F16, BF16 are)", file,
                       name, dtype);
}

bool ReadU64(const nlohmann::json& j, uint64_t* out) {
  if (!j.is_number_integer()) return false;
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  int64_t v = j.get<int64_t>();
  if (v < 0) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

}  // namespace

StatusOr<std::unique_ptr<SafetensorsFile>> ParseSafetensorsBuffer(const uint8_t* data, size_t size,
                                                                  const std::string& name) {
  if (size < 8) return DataLoss("{}: too short for a safetensors header ({} bytes)", name, size);
  uint64_t header_len;
  std::memcpy(&header_len, data, 8);
  if (header_len > size - 8 || header_len > kMaxHeaderBytes) {
    return DataLoss("{}: header length {} exceeds the file ({} bytes)", name, header_len, size);
  }
  const char* text = reinterpret_cast<const char*>(data + 8);
  nlohmann::json header = nlohmann::json::parse(text, text + header_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) return InvalidArgument("{}: header is not valid JSON", name);
  if (!header.is_object()) return InvalidArgument("{}: header is not a JSON object", name);

  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = name;
  const uint8_t* body = data + 8 + header_len;
  const uint64_t body_size = size - 8 - header_len;
  for (const auto& [key, entry] : header.items()) {
    if (key == "__metadata__") continue;
    if (!entry.is_object())
      return InvalidArgument("{}: tensor '{}': entry is not an object", name, key);
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string() || shape_it == entry.end() ||
        !shape_it->is_array() || offsets_it == entry.end() || !offsets_it->is_array() ||
        offsets_it->size() != 2) {
      return InvalidArgument("{}: tensor '{}': needs string dtype, array shape, 2 data_offsets",
                             name, key);
    }
    SafetensorsTensor t;
    t.name = key;
    ITE_ASSIGN_OR_RETURN(t.type, ParseDtype(name, key, dtype_it->get<std::string>()));
    uint64_t numel = 1;
    for (const auto& d : *shape_it) {
      uint64_t dim = 0;
      if (!ReadU64(d, &dim) || __builtin_mul_overflow(numel, dim, &numel) ||
          numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / 4)) {
        return InvalidArgument("{}: tensor '{}': bad or overflowing shape {}", name, key,
                               shape_it->dump());
      }
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t begin = 0, end = 0;
    if (!ReadU64((*offsets_it)[0], &begin) || !ReadU64((*offsets_it)[1], &end) || begin > end ||
        end > body_size) {
      return DataLoss("{}: tensor '{}': data_offsets {} outside the {}-byte data section", name,
                      key, offsets_it->dump(), body_size);
    }
    const uint64_t want = numel * static_cast<uint64_t>(GgmlTypeSize(t.type));
    if (end - begin != want) {
      return InvalidArgument("{}: tensor '{}': {} bytes for shape {} of {} (need {})", name, key,
                             end - begin, shape_it->dump(), GgmlTypeName(t.type), want);
    }
    t.data = body + begin;
    t.nbytes = static_cast<size_t>(want);
    file->index_.emplace(t.name, file->tensors_.size());
    file->tensors_.push_back(std::move(t));
  }
  return file;
}

StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ITE_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file,
                       ParseSafetensorsBuffer(map->data(), map->size(), path));
  file->map_ = std::move(map);
  return file;
}

const SafetensorsTensor* SafetensorsFile::FindTensor(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace ite
