#include "worker/backend/cpu/quant_kernels.h"

#include "common/check.h"

namespace ite::cpu {

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
      return QuantIsaSupported(QuantIsa::kAvx2) && __builtin_cpu_supports("avxvnni");
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
