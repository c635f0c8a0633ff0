// Test-only: builds GGUF files in memory so reader and loader tests (and the fuzz seed corpus)
// can make well-formed files and then break them on purpose.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

namespace ite::testing {

class GgufTestWriter {
 public:
  // GGUF metadata value type tags.
  enum Type : uint32_t {
    kU8 = 0,
    kI8 = 1,
    kU16 = 2,
    kI16 = 3,
    kU32 = 4,
    kI32 = 5,
    kF32 = 6,
    kBool = 7,
    kString = 8,
    kArray = 9,
    kU64 = 10,
    kI64 = 11,
    kF64 = 12,
  };

  void SetVersion(uint32_t v) { version_ = v; }
  void SetAlignment(uint64_t a) { alignment_ = a; }  // layout only; add the key separately

  void AddU32(const std::string& key, uint32_t v) { Kv(key, kU32, Pod(v)); }
  void AddI32(const std::string& key, int32_t v) { Kv(key, kI32, Pod(v)); }
  void AddU64(const std::string& key, uint64_t v) { Kv(key, kU64, Pod(v)); }
  void AddF32(const std::string& key, float v) { Kv(key, kF32, Pod(v)); }
  void AddBool(const std::string& key, bool v) { Kv(key, kBool, Pod(uint8_t{v})); }
  void AddString(const std::string& key, const std::string& v) { Kv(key, kString, Str(v)); }
  void AddStringArray(const std::string& key, const std::vector<std::string>& v) {
    std::string body = Pod(uint32_t{kString}) + Pod(uint64_t{v.size()});
    for (const auto& s : v) body += Str(s);
    Kv(key, kArray, body);
  }
  void AddI32Array(const std::string& key, const std::vector<int32_t>& v) {
    std::string body = Pod(uint32_t{kI32}) + Pod(uint64_t{v.size()});
    for (int32_t x : v) body += Pod(x);
    Kv(key, kArray, body);
  }
  void AddF32Array(const std::string& key, const std::vector<float>& v) {
    std::string body = Pod(uint32_t{kF32}) + Pod(uint64_t{v.size()});
    for (float x : v) body += Pod(x);
    Kv(key, kArray, body);
  }
  // Any value encoding, for malformed-input tests.
  void AddRaw(const std::string& key, uint32_t type, const std::string& body) {
    Kv(key, type, body);
  }

  // dims ne0 first. `offset_override` replaces the computed data offset (for broken files).
  void AddTensor(const std::string& name, uint32_t ggml_type, std::vector<uint64_t> dims,
                 std::string bytes, int64_t offset_override = -1) {
    tensors_.push_back({name, ggml_type, std::move(dims), std::move(bytes), offset_override});
  }

  std::string Build() const {
    std::string out = Pod(uint32_t{0x46554747}) + Pod(version_) + Pod(uint64_t{tensors_.size()}) +
                      Pod(uint64_t{kv_count_}) + kvs_;
    uint64_t offset = 0;
    std::string data;
    for (const auto& t : tensors_) {
      out += Str(t.name) + Pod(uint32_t(t.dims.size()));
      for (uint64_t d : t.dims) out += Pod(d);
      out += Pod(t.type);
      out += Pod(t.offset_override >= 0 ? uint64_t(t.offset_override) : offset);
      data += t.bytes;
      offset += t.bytes.size();
      while (offset % alignment_ != 0) {
        data.push_back('\0');
        ++offset;
      }
    }
    while (out.size() % alignment_ != 0) out.push_back('\0');
    return out + data;
  }

  template <typename T>
  static std::string Pod(T v) {
    std::string s(sizeof(T), '\0');
    std::memcpy(s.data(), &v, sizeof(T));
    return s;
  }
  static std::string Str(const std::string& s) { return Pod(uint64_t{s.size()}) + s; }

  // Float values as raw F32 tensor bytes.
  static std::string F32Bytes(const std::vector<float>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  }

  static void WriteFile(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary).write(bytes.data(), std::streamsize(bytes.size()));
  }

 private:
  struct TensorSpec {
    std::string name;
    uint32_t type;
    std::vector<uint64_t> dims;
    std::string bytes;
    int64_t offset_override;
  };
  void Kv(const std::string& key, uint32_t type, const std::string& body) {
    kvs_ += Str(key) + Pod(type) + body;
    ++kv_count_;
  }

  uint32_t version_ = 3;
  uint64_t alignment_ = 32;
  std::string kvs_;
  uint64_t kv_count_ = 0;
  std::vector<TensorSpec> tensors_;
};

}  // namespace ite::testing
