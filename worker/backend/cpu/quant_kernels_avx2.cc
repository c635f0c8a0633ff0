#include "worker/backend/cpu/quant_kernels_x86.h"

namespace ite::cpu {
namespace {

struct Avx2 {
  static __m256i Dot4(__m256i u8, __m256i s8) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1));
  }
};

}  // namespace

const QuantKernels kQuantKernelsAvx2 = MakeKernels<Avx2>();

}  // namespace ite::cpu
