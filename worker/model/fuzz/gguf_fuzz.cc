// libFuzzer target for the GGUF reader and the GGUF model build (built with -DITE_FUZZ=ON).
#include "worker/model/fuzz/fuzz_entry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return ite::fuzz::FuzzGguf(data, size);
}
