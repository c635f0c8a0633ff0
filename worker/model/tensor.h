// A host tensor: dtype, shape and a pointer kept alive by `owner` (a memory map or a buffer).
// Row-major. Weight matrices use the Hugging Face nn.Linear layout [out, in].
//
// Quantized dtypes are ggml's block formats, used as they are stored in a GGUF file: a row of
// `cols` elements is cols / DTypeBlockSize blocks of DTypeBlockBytes bytes. Such a matrix is
// contiguous at `data`, or, when `row_ptrs` is set, row r starts at (*row_ptrs)[r]: that is how a
// matrix fused from several tensors, or with rows permuted, points into the file without a copy.
// A fused matrix whose parts are stored in different block formats (llama.cpp's Q4_K_M files
// mix Q5_0 and Q8_0, or Q4_K and Q6_K, within Q|K|V) keeps each part's format: `segments` lists
// its runs of rows, each in one dtype, and `row_ptrs` points at every row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/gguf_reader.h"

namespace ite {

enum class DType { kF32, kF16, kBF16, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0, kQ4_K, kQ5_K, kQ6_K };

bool DTypeQuantized(DType dtype);
int64_t DTypeBlockSize(DType dtype);  // elements per block: 1 for F32/F16/BF16
size_t DTypeBlockBytes(DType dtype);  // bytes per block
size_t DTypeSize(DType dtype);        // bytes per element of F32/F16/BF16; 0 for block formats
size_t DTypeRowBytes(DType dtype, int64_t cols);  // cols: a multiple of DTypeBlockSize
const char* DTypeName(DType dtype);
// The DType of a stored ggml type, false if it has none.
bool DTypeFromGgml(GgmlType type, DType* dtype);
GgmlType DTypeGgml(DType dtype);

// Rows of one block format within a mixed matrix (Tensor::segments).
struct RowSegment {
  DType dtype = DType::kQ8_0;
  int64_t rows = 0;
};

struct Tensor {
  // A mixed matrix's first segment's: a block format, so code that knows no segments (the CUDA
  // ops) turns the matrix down rather than misreading it.
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  std::shared_ptr<const void> owner;  // keeps `data` (and what row_ptrs point to) valid
  std::shared_ptr<const std::vector<const uint8_t*>> row_ptrs;  // quantized only; may be null
  // Set only for a matrix whose rows are in more than one block format (then row_ptrs is set):
  // consecutive runs, in row order, that add up to shape[0]; adjacent runs differ in dtype.
  std::shared_ptr<const std::vector<RowSegment>> segments;

  bool empty() const { return data == nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return shape.empty() ? 0 : n;
  }
  int64_t cols() const { return shape.empty() ? 0 : shape.back(); }
  bool mixed() const { return segments != nullptr; }
  size_t nbytes() const {
    if (shape.empty() || cols() == 0) return 0;
    if (mixed()) {
      size_t n = 0;
      for (const RowSegment& s : *segments)
        n += static_cast<size_t>(s.rows) * DTypeRowBytes(s.dtype, cols());
      return n;
    }
    return static_cast<size_t>(numel() / cols()) * DTypeRowBytes(dtype, cols());
  }
  // Start of row r of a matrix (any dtype; a mixed one's through row_ptrs).
  const uint8_t* row(int64_t r) const {
    if (row_ptrs) return (*row_ptrs)[static_cast<size_t>(r)];
    return static_cast<const uint8_t*>(data) +
           static_cast<size_t>(r) * DTypeRowBytes(dtype, cols());
  }
  template <typename T>
  const T* as() const {
    return static_cast<const T*>(data);
  }
  std::string ShapeString() const;
};

// A tensor owning a fresh buffer of `shape` elements of `dtype`; returns a writable pointer.
Tensor AllocTensor(DType dtype, std::vector<int64_t> shape, void** writable);

}  // namespace ite
