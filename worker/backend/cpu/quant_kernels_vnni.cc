// Compiled with -mavxvnni (worker/CMakeLists.txt); only called where the CPU reports AVX-VNNI.
#include "worker/backend/cpu/quant_kernels_x86.h"

namespace ite::cpu {
namespace {

struct AvxVnni {
  static __m256i Dot4(__m256i u8, __m256i s8) {
    return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), u8, s8);
  }
};

}  // namespace

const QuantKernels kQuantKernelsAvxVnni = MakeKernels<AvxVnni>();

}  // namespace ite::cpu
