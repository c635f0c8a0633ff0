#include "worker/model/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cstdlib>
#include <iterator>
#include <new>

namespace ite {

namespace {

// Each DType beside the ggml type it is stored as.
struct DTypeInfo {
  DType dtype;
  GgmlType ggml;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, GgmlType::F32},   {DType::kF16, GgmlType::F16},   {DType::kBF16, GgmlType::BF16},
    {DType::kQ4_0, GgmlType::Q4_0}, {DType::kQ4_1, GgmlType::Q4_1}, {DType::kQ5_0, GgmlType::Q5_0},
    {DType::kQ5_1, GgmlType::Q5_1}, {DType::kQ8_0, GgmlType::Q8_0}, {DType::kQ4_K, GgmlType::Q4_K},
    {DType::kQ5_K, GgmlType::Q5_K}, {DType::kQ6_K, GgmlType::Q6_K},
};

constexpr bool InEnumOrder() {
  for (int i = 0; i < static_cast<int>(std::size(kDTypes)); ++i) {
    if (static_cast<int>(kDTypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(InEnumOrder(), "kDTypes is indexed by DType");

}  // namespace

bool DTypeFromGgml(GgmlType type, DType* dtype) {
  for (const DTypeInfo& d : kDTypes) {
    if (d.ggml == type) {
      *dtype = d.dtype;
      return true;
    }
  }
  return false;
}

GgmlType DTypeGgml(DType dtype) { return kDTypes[static_cast<int>(dtype)].ggml; }

bool DTypeQuantized(DType dtype) { return DTypeBlockSize(dtype) > 1; }
int64_t DTypeBlockSize(DType dtype) { return GgmlBlockSize(DTypeGgml(dtype)); }
size_t DTypeBlockBytes(DType dtype) { return static_cast<size_t>(GgmlTypeSize(DTypeGgml(dtype))); }
size_t DTypeSize(DType dtype) { return DTypeQuantized(dtype) ? 0 : DTypeBlockBytes(dtype); }

size_t DTypeRowBytes(DType dtype, int64_t cols) {
  return static_cast<size_t>(cols / DTypeBlockSize(dtype)) * DTypeBlockBytes(dtype);
}

const char* DTypeName(DType dtype) { return GgmlTypeName(DTypeGgml(dtype)); }

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
