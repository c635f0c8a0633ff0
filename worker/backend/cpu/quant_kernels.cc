#include "worker/backend/cpu/quant_kernels.h"

#include <cpuid.h>

#include "common/check.h"

namespace ite::cpu {
namespace {

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
  }
  return "?";
}

bool QuantIsaSupported(QuantIsa isa) {
  switch (isa) {
    case QuantIsa::kScalar:
      return true;
    case QuantIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case QuantIsa::kAvxVnni:
      return QuantIsaSupported(QuantIsa::kAvx2) && CpuHasAvxVnni();
  }
  return false;
}

QuantIsa BestQuantIsa() {
  for (QuantIsa isa : {QuantIsa::kAvxVnni, QuantIsa::kAvx2}) {
    if (QuantIsaSupported(isa)) return isa;
  }
  return QuantIsa::kScalar;
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
  }
  return kQuantKernelsScalar;
}

}  // namespace ite::cpu
