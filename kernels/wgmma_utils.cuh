// Hopper (sm_90a) warpgroup MMA building blocks: shared-memory matrix descriptors for the
// 128-byte-swizzled layouts, wgmma.mma_async m64nNk16 with fp32 accumulators (A from shared
// memory or from registers), and the fences around it. Only compiled into sm_90a code; the
// callers guard on ITE_SM90A_DEVICE.
//
// Layouts (PTX ISA "matrix descriptor", CUTLASS GMMA canonical layouts), all 16-bit elements:
// a tile is kept as column blocks of 64 elements (128 bytes) per row; inside a block, row r is
// 128 contiguous bytes whose 16-byte chunks are XOR-permuted by r % 8, and 8 rows form one
// 1024-byte swizzle atom (which must start 1024-aligned).
//  * K-major operand (Q and K: the reduction dimension is contiguous): a k16 step inside a
//    column block starts 32 bytes further; SBO = 1024 (next 8 rows), LBO unused.
//  * MN-major operand (V: rows are the reduction dimension, the N dimension contiguous):
//    SBO = 1024 (next 8 reduction rows), LBO = distance between 64-wide column blocks.
// Accumulator fragment of m64nN: warp w of the warpgroup owns rows 16w..16w+15 and holds, per
// n8 tile i, d[i][0..1] = (row g, cols 8i+2t..+1) and d[i][2..3] = (row g+8, same cols), with
// g = lane / 4, t = lane % 4: the mma.sync m16n8 C layout, so attention_common.cuh's softmax
// applies as is. The register A fragment of one k16 step is mma.sync's A fragment too.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define ITE_SM90A_DEVICE 1
#endif

namespace ite::kernels {

// Element offset of 16-byte chunk `chunk` of row `row` in a [rows][cols] tile stored as
// 64-wide, 128-byte-swizzled column blocks (see above).
template <int kRows>
__device__ __forceinline__ int Sw128Offset(int row, int chunk) {
  return (chunk >> 3) * kRows * 64 + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

__device__ __forceinline__ uint64_t Sw128Desc(uint32_t smem_addr, uint32_t lbo_bytes) {
  constexpr uint64_t kSbo = 1024 >> 4;
  return uint64_t{(smem_addr >> 4) & 0x3FFFu} | (uint64_t{(lbo_bytes >> 4) & 0x3FFFu} << 16) |
         (kSbo << 32) | (uint64_t{1} << 62);
}

#ifdef ITE_SM90A_DEVICE

__device__ __forceinline__ void WgmmaFence() {
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgmmaCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void WgmmaWait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Makes this thread's generic-proxy writes to shared memory (cp.async, st.shared) visible to
// the async proxy that wgmma reads through; then a barrier orders them for the other threads.
__device__ __forceinline__ void FenceProxyAsyncShared() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// The accumulator operand lists.
#define ITE_WG_F4(n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define ITE_WG_D8                                                                     \
  ITE_WG_F4(0), ITE_WG_F4(1), ITE_WG_F4(2), ITE_WG_F4(3), ITE_WG_F4(4), ITE_WG_F4(5), \
      ITE_WG_F4(6), ITE_WG_F4(7)
#define ITE_WG_D16                                                                    \
  ITE_WG_D8, ITE_WG_F4(8), ITE_WG_F4(9), ITE_WG_F4(10), ITE_WG_F4(11), ITE_WG_F4(12), \
      ITE_WG_F4(13), ITE_WG_F4(14), ITE_WG_F4(15)
#define ITE_WG_REGS32                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define ITE_WG_REGS64                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
  "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
  "%56, %57, %58, %59, %60, %61, %62, %63}"

template <typename T>
struct WgmmaType;
template <>
struct WgmmaType<__nv_bfloat16> {
  static constexpr const char* kName = "bf16";
};
template <>
struct WgmmaType<__half> {
  static constexpr const char* kName = "f16";
};

// d (+)= A * B, A and B both K-major in shared memory (descriptors), N = 8 * kNTiles.
// accumulate = false overwrites d.
template <typename T, int kNTiles>
__device__ __forceinline__ void WgmmaSS(float (&d)[kNTiles][4], uint64_t desc_a, uint64_t desc_b,
                                        bool accumulate) {
  static_assert(kNTiles == 8 || kNTiles == 16, "N = 64 or 128");
  const int scale_d = accumulate ? 1 : 0;
  if constexpr (std::is_same_v<T, __nv_bfloat16> && kNTiles == 16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " ITE_WG_REGS64
        ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : ITE_WG_D16
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " ITE_WG_REGS32
        ", %32, %33, p, 1, 1, 0, 0;\n}\n"
        : ITE_WG_D8
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
  } else if constexpr (kNTiles == 16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " ITE_WG_REGS64
        ", %64, %65, p, 1, 1, 0, 0;\n}\n"
        : ITE_WG_D16
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " ITE_WG_REGS32
        ", %32, %33, p, 1, 1, 0, 0;\n}\n"
        : ITE_WG_D8
        : "l"(desc_a), "l"(desc_b), "r"(scale_d));
  }
}

// d += A * B with A (one m64k16 step) in registers and B MN-major in shared memory.
template <typename T, int kNTiles>
__device__ __forceinline__ void WgmmaRSTransB(float (&d)[kNTiles][4], const uint32_t (&a)[4],
                                              uint64_t desc_b) {
  static_assert(kNTiles == 8 || kNTiles == 16, "N = 64 or 128");
  if constexpr (std::is_same_v<T, __nv_bfloat16> && kNTiles == 16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " ITE_WG_REGS64
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : ITE_WG_D16
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " ITE_WG_REGS32
        ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : ITE_WG_D8
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
  } else if constexpr (kNTiles == 16) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " ITE_WG_REGS64
        ", {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
        : ITE_WG_D16
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
  } else {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " ITE_WG_REGS32
        ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
        : ITE_WG_D8
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(1));
  }
}

#undef ITE_WG_F4
#undef ITE_WG_D8
#undef ITE_WG_D16
#undef ITE_WG_REGS32
#undef ITE_WG_REGS64

#endif  // ITE_SM90A_DEVICE

}  // namespace ite::kernels
