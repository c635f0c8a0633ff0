// A model's fingerprint: a SHA-256 that tells apart two models of the same shape (a fine-tune,
// another quantization run of the same architecture, a file replaced on the volume) without
// reading a whole 16 GB file. A worker reports it (WorkerInfo.model_fingerprint); the scheduler
// takes in only workers whose fingerprint is its own model's, so its tokenizer and prefix cache
// never serve a model they do not belong to.
//
// What goes in (model_fingerprint.cc lays it out byte by byte):
//   - GGUF: every header byte before the tensor data: the metadata (architecture,
//     hyperparameters, the whole tokenizer and chat template) and the tensor directory (names,
//     types, shapes, offsets).
//   - Hugging Face folder: each *.safetensors shard's header (names, dtypes, shapes, offsets,
//     __metadata__), and every *.json, *.jinja and *.model file whole (config, generation
//     config, tokenizer, chat template, shard index). Other files (README.md, .bin) are not
//     read by the loaders and stay out.
//   - Of every tensor's data: four windows of kFingerprintWindowBytes at its start, at 1/3, at
//     2/3 and at its end (a tensor of at most four windows: all of it).
//   - The size and the name (not the path) of every file.
// Why that is enough: another architecture, dtype, quantization type, shape or tensor name
// changes the directory; another checkpoint of the same shape (a fine-tune, another seed or
// quantization run) changes practically every weight, so every window of every tensor differs;
// a config or tokenizer edit changes a file hashed whole. What it cannot see is an edit confined
// to bytes between the windows, such as a single weight poked by hand; a file changed in place
// under a running worker is caught by worker/main/model_file_guard.h instead.
// Cost: the headers, 4 KiB per tensor and the small side files, read with pread (a memory map
// would read ahead around every window): about 3 MB for a model of 700 tensors.
// The same bytes give the same fingerprint on every machine and backend: integers are hashed
// little-endian at fixed widths, files in byte order of their names, and nothing of the path,
// the clock or the host goes in.
//
// Thread safety: a free function over files; any thread.
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace ite {

inline constexpr size_t kFingerprintWindowBytes = 1024;

// 64 lowercase hex digits. `path`: a .gguf file or a Hugging Face folder. NOT_FOUND when the
// folder holds no *.safetensors weights (a scheduler's tokenizer-only copy); INVALID_ARGUMENT
// naming the file for a malformed one; the file's error when it cannot be read.
StatusOr<std::string> ModelFingerprint(const std::string& path);

// The first 16 hex digits, for tables and short log lines; "-" for none. Inline, so that code
// that only shows fingerprints needs no OpenSSL.
inline std::string ShortFingerprint(const std::string& fingerprint) {
  return fingerprint.empty() ? "-" : fingerprint.substr(0, 16);
}

}  // namespace ite
