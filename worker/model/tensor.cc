#include "worker/model/tensor.h"

#include <cstdlib>
#include <new>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace ite {

size_t DTypeSize(DType dtype) {
  switch (dtype) {
    case DType::kF32: return 4;
    case DType::kF16: return 2;
    case DType::kBF16: return 2;
  }
  return 0;
}

const char* DTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32: return "F32";
    case DType::kF16: return "F16";
    case DType::kBF16: return "BF16";
  }
  return "?";
}

std::string Tensor::ShapeString() const { return fmt::format("[{}]", fmt::join(shape, ", ")); }

Tensor AllocTensor(DType dtype, std::vector<int64_t> shape, void** writable) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  size_t bytes = t.nbytes();
  // 64-byte alignment for vector loads.
  void* p = std::aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
  if (p == nullptr) throw std::bad_alloc();
  t.owner = std::shared_ptr<const void>(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  t.data = p;
  *writable = p;
  return t;
}

}  // namespace ite
