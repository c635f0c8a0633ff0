#include "common/gguf_reader.h"

#include <cstring>
#include <limits>
#include <type_traits>

namespace ite {

namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint64_t kMaxDims = 4;             // GGML_MAX_DIMS
constexpr size_t kDefaultAlignment = 32;

// GGUF metadata value types.
enum class ValueType : uint32_t {
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

// Smallest encoded size of one value of `type`, so array counts can be bounded by the bytes left
// before anything is allocated. 0 for unknown types.
size_t MinValueSize(uint32_t type) {
  switch (static_cast<ValueType>(type)) {
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kBool:
      return 1;
    case ValueType::kU16:
    case ValueType::kI16:
      return 2;
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kF32:
      return 4;
    case ValueType::kU64:
    case ValueType::kI64:
    case ValueType::kF64:
      return 8;
    case ValueType::kString:
      return 8;  // the length prefix
    case ValueType::kArray:
      return 12;  // element type + count
  }
  return 0;
}

bool MulOverflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}

}  // namespace

const char* GgmlTypeName(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return "F32";
    case GgmlType::F16:
      return "F16";
    case GgmlType::Q4_0:
      return "Q4_0";
    case GgmlType::Q4_1:
      return "Q4_1";
    case GgmlType::Q5_0:
      return "Q5_0";
    case GgmlType::Q5_1:
      return "Q5_1";
    case GgmlType::Q8_0:
      return "Q8_0";
    case GgmlType::Q8_1:
      return "Q8_1";
    case GgmlType::Q2_K:
      return "Q2_K";
    case GgmlType::Q3_K:
      return "Q3_K";
    case GgmlType::Q4_K:
      return "Q4_K";
    case GgmlType::Q5_K:
      return "Q5_K";
    case GgmlType::Q6_K:
      return "Q6_K";
    case GgmlType::Q8_K:
      return "Q8_K";
    case GgmlType::BF16:
      return "BF16";
  }
  return "?";
}

int64_t GgmlBlockSize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
      return 1;
    case GgmlType::Q4_0:
    case GgmlType::Q4_1:
    case GgmlType::Q5_0:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
    case GgmlType::Q8_1:
      return 32;
    case GgmlType::Q2_K:
    case GgmlType::Q3_K:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
    case GgmlType::Q6_K:
    case GgmlType::Q8_K:
      return 256;
  }
  return 0;
}

// Bytes per block, from the ggml block layouts (scales are f16 unless noted).
int64_t GgmlTypeSize(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return 4;
    case GgmlType::F16:
      return 2;
    case GgmlType::BF16:
      return 2;
    case GgmlType::Q4_0:
      return 2 + 16;  // d, 32 nibbles
    case GgmlType::Q4_1:
      return 2 + 2 + 16;  // d, m, 32 nibbles
    case GgmlType::Q5_0:
      return 2 + 4 + 16;  // d, high bits, nibbles
    case GgmlType::Q5_1:
      return 2 + 2 + 4 + 16;  // d, m, high bits, nibbles
    case GgmlType::Q8_0:
      return 2 + 32;  // d, 32 int8
    case GgmlType::Q8_1:
      return 2 + 2 + 32;  // d, s, 32 int8
    case GgmlType::Q2_K:
      return 16 + 64 + 2 + 2;  // scales, 2-bit quants, d, dmin
    case GgmlType::Q3_K:
      return 32 + 64 + 12 + 2;  // hmask, quants, scales, d
    case GgmlType::Q4_K:
      return 2 + 2 + 12 + 128;
    case GgmlType::Q5_K:
      return 2 + 2 + 12 + 32 + 128;
    case GgmlType::Q6_K:
      return 128 + 64 + 16 + 2;
    case GgmlType::Q8_K:
      return 4 + 256 + 32;  // f32 d, int8 quants, int16 block sums
  }
  return 0;
}

bool GgmlTypeKnown(uint32_t raw_type) { return GgmlTypeSize(static_cast<GgmlType>(raw_type)) != 0; }

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;  // bounded at Open
  return n;
}

// Bounds-checked little-endian cursor over the header; every read reports truncation with the
// offset so a broken file is easy to locate.
class GgufParser {
 public:
  GgufParser(const uint8_t* data, size_t size, std::string name)
      : data_(data), size_(size), name_(std::move(name)) {}

  StatusOr<std::unique_ptr<GgufFile>> Parse();

 private:
  template <typename T>
  Status Read(T* out, std::string_view what) {
    static_assert(std::is_trivially_copyable_v<T>);
    if (size_ - pos_ < sizeof(T)) {
      return DataLoss("{}: truncated at offset {} reading {}", name_, pos_, what);
    }
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::Ok();
  }
  Status ReadString(std::string* out, std::string_view what);
  Status ReadValue(uint32_t type, const std::string& key, GgufValue* out);
  Status ReadArray(const std::string& key, GgufArray* out);
  Status ReadScalarInt(uint32_t type, const std::string& key, int64_t* out);
  Status ReadTensorInfo(GgufFile* file, size_t index, uint64_t* offset);

  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string name_;
};

Status GgufParser::ReadString(std::string* out, std::string_view what) {
  uint64_t len = 0;
  ITE_RETURN_IF_ERROR(Read(&len, what));
  if (len > size_ - pos_) {
    return DataLoss("{}: {} has length {} but only {} bytes remain (offset {})", name_, what, len,
                    size_ - pos_, pos_);
  }
  out->assign(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return Status::Ok();
}

Status GgufParser::ReadScalarInt(uint32_t type, const std::string& key, int64_t* out) {
  switch (static_cast<ValueType>(type)) {
#define ITE_GGUF_INT_CASE(tag, ctype)   \
  case ValueType::tag: {                \
    ctype v{};                          \
    ITE_RETURN_IF_ERROR(Read(&v, key)); \
    *out = static_cast<int64_t>(v);     \
    return Status::Ok();                \
  }
    ITE_GGUF_INT_CASE(kU8, uint8_t)
    ITE_GGUF_INT_CASE(kI8, int8_t)
    ITE_GGUF_INT_CASE(kU16, uint16_t)
    ITE_GGUF_INT_CASE(kI16, int16_t)
    ITE_GGUF_INT_CASE(kU32, uint32_t)
    ITE_GGUF_INT_CASE(kI32, int32_t)
    ITE_GGUF_INT_CASE(kI64, int64_t)
#undef ITE_GGUF_INT_CASE
    case ValueType::kU64: {
      uint64_t v{};
      ITE_RETURN_IF_ERROR(Read(&v, key));
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return InvalidArgument("{}: key '{}': u64 value {} does not fit int64", name_, key, v);
      }
      *out = static_cast<int64_t>(v);
      return Status::Ok();
    }
    default:
      return Internal("{}: key '{}': type {} is not an integer", name_, key, type);
  }
}

Status GgufParser::ReadArray(const std::string& key, GgufArray* out) {
  uint32_t elem_type = 0;
  uint64_t count = 0;
  ITE_RETURN_IF_ERROR(Read(&elem_type, key));
  ITE_RETURN_IF_ERROR(Read(&count, key));
  size_t min_size = MinValueSize(elem_type);
  if (min_size == 0) {
    return InvalidArgument("{}: key '{}': unknown array element type {}", name_, key, elem_type);
  }
  if (static_cast<ValueType>(elem_type) == ValueType::kArray) {
    return Unimplemented("{}: key '{}': nested arrays are not supported", name_, key);
  }
  // Every element needs at least min_size bytes, so a larger count cannot be genuine; checking
  // first keeps a forged count from allocating gigabytes.
  if (count > (size_ - pos_) / min_size) {
    return DataLoss("{}: key '{}': array count {} exceeds the {} bytes left in the file", name_,
                    key, count, size_ - pos_);
  }
  size_t n = static_cast<size_t>(count);
  switch (static_cast<ValueType>(elem_type)) {
    case ValueType::kF32: {
      std::vector<double> v(n);
      for (size_t i = 0; i < n; ++i) {
        float f{};
        ITE_RETURN_IF_ERROR(Read(&f, key));
        v[i] = f;
      }
      *out = std::move(v);
      return Status::Ok();
    }
    case ValueType::kF64: {
      std::vector<double> v(n);
      for (size_t i = 0; i < n; ++i) ITE_RETURN_IF_ERROR(Read(&v[i], key));
      *out = std::move(v);
      return Status::Ok();
    }
    case ValueType::kBool: {
      std::vector<bool> v(n);
      for (size_t i = 0; i < n; ++i) {
        uint8_t b{};
        ITE_RETURN_IF_ERROR(Read(&b, key));
        if (b > 1) return InvalidArgument("{}: key '{}': bool value {} is not 0/1", name_, key, b);
        v[i] = b != 0;
      }
      *out = std::move(v);
      return Status::Ok();
    }
    case ValueType::kString: {
      std::vector<std::string> v(n);
      for (size_t i = 0; i < n; ++i) ITE_RETURN_IF_ERROR(ReadString(&v[i], key));
      *out = std::move(v);
      return Status::Ok();
    }
    default: {
      std::vector<int64_t> v(n);
      for (size_t i = 0; i < n; ++i) ITE_RETURN_IF_ERROR(ReadScalarInt(elem_type, key, &v[i]));
      *out = std::move(v);
      return Status::Ok();
    }
  }
}

Status GgufParser::ReadValue(uint32_t type, const std::string& key, GgufValue* out) {
  switch (static_cast<ValueType>(type)) {
    case ValueType::kF32: {
      float f{};
      ITE_RETURN_IF_ERROR(Read(&f, key));
      *out = static_cast<double>(f);
      return Status::Ok();
    }
    case ValueType::kF64: {
      double d{};
      ITE_RETURN_IF_ERROR(Read(&d, key));
      *out = d;
      return Status::Ok();
    }
    case ValueType::kBool: {
      uint8_t b{};
      ITE_RETURN_IF_ERROR(Read(&b, key));
      if (b > 1) return InvalidArgument("{}: key '{}': bool value {} is not 0/1", name_, key, b);
      *out = b != 0;
      return Status::Ok();
    }
    case ValueType::kString: {
      std::string s;
      ITE_RETURN_IF_ERROR(ReadString(&s, key));
      *out = std::move(s);
      return Status::Ok();
    }
    case ValueType::kArray: {
      GgufArray a;
      ITE_RETURN_IF_ERROR(ReadArray(key, &a));
      *out = std::move(a);
      return Status::Ok();
    }
    case ValueType::kU8:
    case ValueType::kI8:
    case ValueType::kU16:
    case ValueType::kI16:
    case ValueType::kU32:
    case ValueType::kI32:
    case ValueType::kU64:
    case ValueType::kI64: {
      int64_t v{};
      ITE_RETURN_IF_ERROR(ReadScalarInt(type, key, &v));
      *out = v;
      return Status::Ok();
    }
  }
  return InvalidArgument("{}: key '{}': unknown value type {}", name_, key, type);
}

Status GgufParser::ReadTensorInfo(GgufFile* file, size_t index, uint64_t* offset) {
  GgufTensorInfo info;
  ITE_RETURN_IF_ERROR(ReadString(&info.name, fmt::format("name of tensor #{}", index)));
  const std::string& tname = info.name;
  uint32_t n_dims = 0;
  ITE_RETURN_IF_ERROR(Read(&n_dims, tname));
  if (n_dims == 0 || n_dims > kMaxDims) {
    return InvalidArgument("{}: tensor '{}': {} dims (must be 1..{})", name_, tname, n_dims,
                           kMaxDims);
  }
  uint64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    uint64_t dim = 0;
    ITE_RETURN_IF_ERROR(Read(&dim, tname));
    if (dim == 0 || MulOverflows(numel, dim, &numel) ||
        numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return InvalidArgument("{}: tensor '{}': dim {} = {} is zero or overflows", name_, tname, d,
                             dim);
    }
    info.dims.push_back(static_cast<int64_t>(dim));
  }
  uint32_t raw_type = 0;
  ITE_RETURN_IF_ERROR(Read(&raw_type, tname));
  if (!GgmlTypeKnown(raw_type)) {
    return Unimplemented("{}: tensor '{}': unsupported ggml type {}", name_, tname, raw_type);
  }
  info.type = static_cast<GgmlType>(raw_type);
  const uint64_t block = static_cast<uint64_t>(GgmlBlockSize(info.type));
  if (static_cast<uint64_t>(info.dims[0]) % block != 0) {
    return InvalidArgument("{}: tensor '{}': ne0 = {} is not a multiple of the {} block size {}",
                           name_, tname, info.dims[0], GgmlTypeName(info.type), block);
  }
  uint64_t nbytes = 0;
  if (MulOverflows(numel / block, static_cast<uint64_t>(GgmlTypeSize(info.type)), &nbytes)) {
    return InvalidArgument("{}: tensor '{}': byte size overflows", name_, tname);
  }
  info.nbytes = static_cast<size_t>(nbytes);
  ITE_RETURN_IF_ERROR(Read(offset, tname));
  if (file->tensor_index_.count(info.name) != 0) {
    return InvalidArgument("{}: tensor '{}' appears twice", name_, tname);
  }
  file->tensor_index_.emplace(info.name, file->tensors_.size());
  file->tensors_.push_back(std::move(info));
  return Status::Ok();
}

StatusOr<std::unique_ptr<GgufFile>> GgufParser::Parse() {
  std::unique_ptr<GgufFile> file(new GgufFile());
  file->path_ = name_;
  uint32_t magic = 0;
  ITE_RETURN_IF_ERROR(Read(&magic, "magic"));
  if (magic != kGgufMagic) {
    return InvalidArgument("{}: not a GGUF file (magic 0x{:08x})", name_, magic);
  }
  ITE_RETURN_IF_ERROR(Read(&file->version_, "version"));
  // Version 1 used 32-bit counts; 2 and 3 share the layout read here (3 only added big-endian
  // files, which carry a byte-swapped version number and so fail this check).
  if (file->version_ != 2 && file->version_ != 3) {
    return Unimplemented("{}: GGUF version {} is not supported (need 2 or 3)", name_,
                         file->version_);
  }
  uint64_t tensor_count = 0, kv_count = 0;
  ITE_RETURN_IF_ERROR(Read(&tensor_count, "tensor count"));
  ITE_RETURN_IF_ERROR(Read(&kv_count, "metadata count"));
  // A key/value needs at least 8 (key length) + 4 (type) + 1 bytes; a tensor info at least
  // 8 + 4 + 8 + 4 + 8. Larger counts cannot fit, whatever the content.
  if (kv_count > (size_ - pos_) / 13) {
    return DataLoss("{}: metadata count {} is larger than the file allows", name_, kv_count);
  }
  if (tensor_count > (size_ - pos_) / 32) {
    return DataLoss("{}: tensor count {} is larger than the file allows", name_, tensor_count);
  }
  for (uint64_t i = 0; i < kv_count; ++i) {
    std::string key;
    ITE_RETURN_IF_ERROR(ReadString(&key, fmt::format("key #{}", i)));
    uint32_t type = 0;
    ITE_RETURN_IF_ERROR(Read(&type, key));
    GgufValue value;
    ITE_RETURN_IF_ERROR(ReadValue(type, key, &value));
    if (!file->metadata_.emplace(key, std::move(value)).second) {
      return InvalidArgument("{}: key '{}' appears twice", name_, key);
    }
  }
  file->alignment_ = kDefaultAlignment;
  if (const GgufValue* a = file->Find("general.alignment")) {
    const int64_t* v = std::get_if<int64_t>(a);
    if (v == nullptr || *v <= 0 || *v > (1 << 30) || (*v & (*v - 1)) != 0) {
      return InvalidArgument("{}: key 'general.alignment' must be a power-of-two integer", name_);
    }
    file->alignment_ = static_cast<size_t>(*v);
  }
  std::vector<uint64_t> offsets(static_cast<size_t>(tensor_count));
  file->tensors_.reserve(static_cast<size_t>(tensor_count));
  for (uint64_t i = 0; i < tensor_count; ++i) {
    ITE_RETURN_IF_ERROR(ReadTensorInfo(file.get(), static_cast<size_t>(i), &offsets[i]));
  }
  // Tensor data starts at the next multiple of the alignment after the header.
  const size_t align = file->alignment_;
  size_t data_start = (pos_ + align - 1) / align * align;
  if (tensor_count > 0 && data_start > size_) {
    return DataLoss("{}: tensor data section starts at {} past the end ({} bytes)", name_,
                    data_start, size_);
  }
  for (size_t i = 0; i < file->tensors_.size(); ++i) {
    GgufTensorInfo& t = file->tensors_[i];
    uint64_t off = offsets[i];
    if (off % align != 0) {
      return InvalidArgument("{}: tensor '{}': offset {} is not a multiple of alignment {}", name_,
                             t.name, off, align);
    }
    size_t avail = size_ - data_start;
    if (off > avail || t.nbytes > avail - off) {
      return DataLoss("{}: tensor '{}': bytes [{}, +{}) lie outside the {}-byte data section",
                      name_, t.name, off, t.nbytes, avail);
    }
    t.data = data_ + data_start + off;
  }
  return file;
}

StatusOr<std::unique_ptr<GgufFile>> ParseGgufBuffer(const uint8_t* data, size_t size,
                                                    const std::string& name) {
  return GgufParser(data, size, name).Parse();
}

StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ITE_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> map, MappedFile::Open(path));
  ITE_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> file,
                       ParseGgufBuffer(map->data(), map->size(), path));
  file->map_ = std::move(map);
  return file;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
template <typename T>
StatusOr<const T*> Typed(const GgufFile& f, std::string_view key, const char* want) {
  const GgufValue* v = f.Find(key);
  if (v == nullptr) return NotFound("{}: metadata key '{}' is missing", f.path(), key);
  const T* p = std::get_if<T>(v);
  if (p == nullptr) return InvalidArgument("{}: metadata key '{}' is not {}", f.path(), key, want);
  return p;
}

template <typename T>
StatusOr<const std::vector<T>*> TypedArray(const GgufFile& f, std::string_view key,
                                           const char* want) {
  ITE_ASSIGN_OR_RETURN(const GgufArray* a, Typed<GgufArray>(f, key, "an array"));
  const std::vector<T>* p = std::get_if<std::vector<T>>(a);
  if (p == nullptr) {
    return InvalidArgument("{}: metadata key '{}' is not an array of {}", f.path(), key, want);
  }
  return p;
}
}  // namespace

StatusOr<std::string> GgufFile::GetString(std::string_view key) const {
  ITE_ASSIGN_OR_RETURN(const std::string* s, Typed<std::string>(*this, key, "a string"));
  return *s;
}

StatusOr<int64_t> GgufFile::GetInt(std::string_view key) const {
  ITE_ASSIGN_OR_RETURN(const int64_t* v, Typed<int64_t>(*this, key, "an integer"));
  return *v;
}

StatusOr<double> GgufFile::GetFloat(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v != nullptr) {
    if (const int64_t* i = std::get_if<int64_t>(v)) return static_cast<double>(*i);
  }
  ITE_ASSIGN_OR_RETURN(const double* d, Typed<double>(*this, key, "a number"));
  return *d;
}

StatusOr<bool> GgufFile::GetBool(std::string_view key) const {
  ITE_ASSIGN_OR_RETURN(const bool* b, Typed<bool>(*this, key, "a bool"));
  return *b;
}

StatusOr<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  ITE_ASSIGN_OR_RETURN(const std::vector<std::string>* a,
                       TypedArray<std::string>(*this, key, "strings"));
  return *a;
}

StatusOr<std::vector<int64_t>> GgufFile::GetIntArray(std::string_view key) const {
  ITE_ASSIGN_OR_RETURN(const std::vector<int64_t>* a, TypedArray<int64_t>(*this, key, "integers"));
  return *a;
}

StatusOr<std::vector<double>> GgufFile::GetFloatArray(std::string_view key) const {
  const GgufValue* v = Find(key);
  if (v != nullptr) {
    if (const GgufArray* a = std::get_if<GgufArray>(v)) {
      if (const auto* ints = std::get_if<std::vector<int64_t>>(a)) {
        return std::vector<double>(ints->begin(), ints->end());
      }
    }
  }
  ITE_ASSIGN_OR_RETURN(const std::vector<double>* a, TypedArray<double>(*this, key, "numbers"));
  return *a;
}

}  // namespace ite
