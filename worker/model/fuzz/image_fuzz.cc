// libFuzzer target for the image decoder and the LLaVA preprocessing (built with -DITE_FUZZ=ON).
#include "worker/model/fuzz/fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ite::fuzz::FuzzImage(data, size);
}
