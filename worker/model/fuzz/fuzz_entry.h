// Entry points shared by the libFuzzer targets (gguf_fuzz.cc, safetensors_fuzz.cc) and the
// seed-corpus ctest, so the normal build runs exactly what the fuzzers run.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ite::fuzz {

// Parses `data` as GGUF; when it parses, reads every metadata value, decodes the first row of
// every convertible tensor and runs the whole model build. Returns 0 (libFuzzer convention).
int FuzzGguf(const uint8_t* data, size_t size);

// Parses `data` as safetensors; when it parses, decodes every tensor's bytes.
int FuzzSafetensors(const uint8_t* data, size_t size);

// Parses `data` as a Hugging Face config.json and derives a ModelConfig from it.
int FuzzHfConfig(const uint8_t* data, size_t size);

// Decodes `data` as an image (PNG, JPEG, GIF) under small limits; when it decodes, runs the
// LLaVA preprocessing (pad, resize, crop, normalise) on it.
int FuzzImage(const uint8_t* data, size_t size);

}  // namespace ite::fuzz
