// A host tensor: dtype, shape and a pointer kept alive by `owner` (a memory map or a buffer).
// Row-major, contiguous. Weight matrices use the Hugging Face nn.Linear layout [out, in].
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ite {

enum class DType { kF32, kF16, kBF16 };

size_t DTypeSize(DType dtype);
const char* DTypeName(DType dtype);

struct Tensor {
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::shared_ptr<const void> owner;  // keeps `data` valid

  bool empty() const { return data == nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return shape.empty() ? 0 : n;
  }
  size_t nbytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data); }
  std::string ShapeString() const;
};

// A tensor owning a fresh buffer of `shape` elements of `dtype`; returns a writable pointer.
Tensor AllocTensor(DType dtype, std::vector<int64_t> shape, void** writable);

}  // namespace ite
