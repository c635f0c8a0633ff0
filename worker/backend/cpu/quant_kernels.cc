#include "worker/backend/cpu/quant_kernels.h"

#include <cpuid.h>

#include <atomic>
#include <cstring>

#include "common/check.h"

namespace ite::cpu {
namespace {

std::atomic<QuantIsa> isa_limit{QuantIsa::kAvx512Vnni};

// CPUID.(EAX=7, ECX=1):EAX bit 4, asked directly: clang 14 (the sanitizer builds') does not know
// "avxvnni" in __builtin_cpu_supports. The OS's support of the YMM state comes with the AVX2 check.
bool CpuHasAvxVnni() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 1, &a, &b, &c, &d) == 0) return false;
  return ((a >> 4) & 1u) != 0;
}

}  // namespace

const char* QuantIsaName(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::kScalar:
      return "scalar";
    case QuantIsa::kAvx2:
      return "avx2";
    case QuantIsa::kAvxVnni:
      return "avx-vnni";
    case QuantIsa::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "?";
}

bool QuantIsaFromName(const char* name, QuantIsa* isa) {
  for (QuantIsa i : kQuantIsas) {
    if (std::strcmp(name, QuantIsaName(i)) == 0) {
      *isa = i;
      return true;
    }
  }
  return false;
}

bool QuantIsaSupported(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::kScalar:
      return true;
    case QuantIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case QuantIsa::kAvxVnni:
      return QuantIsaSupported(QuantIsa::kAvx2) && CpuHasAvxVnni();
    case QuantIsa::kAvx512Vnni:
      // libgcc's checks include the OS saving the 512-bit state (XGETBV).
      return QuantIsaSupported(QuantIsa::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

void SetQuantIsaLimit(QuantIsa limit) { isa_limit.store(limit); }

QuantIsa BestQuantIsa() {
  const QuantIsa limit = isa_limit.load();
  QuantIsa best = QuantIsa::kScalar;
  for (QuantIsa isa : kQuantIsas) {
    if (isa <= limit && QuantIsaSupported(isa)) best = isa;
  }
  return best;
}

const QuantKernels& QuantKernelsFor(QuantIsa isa) {
  ITE_CHECK(QuantIsaSupported(isa), "this CPU does not run the {} kernels", QuantIsaName(isa));
  switch (isa) {
    case QuantIsa::kScalar:
      return kQuantKernelsScalar;
    case QuantIsa::kAvx2:
      return kQuantKernelsAvx2;
    case QuantIsa::kAvxVnni:
      return kQuantKernelsAvxVnni;
    case QuantIsa::kAvx512Vnni:
      return kQuantKernelsAvx512Vnni;
  }
  return kQuantKernelsScalar;
}

}  // namespace ite::cpu
