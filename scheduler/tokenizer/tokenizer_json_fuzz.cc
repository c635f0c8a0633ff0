// Fuzz target for tokenizer.json parsing and the pipeline built from it.
//
// With -DITE_FUZZ=ON (clang, -fsanitize=fuzzer) this is a libFuzzer binary. In a normal build it
// is a replay tool: every file named on the command line (or found in a named folder) goes through
// the same LLVMFuzzerTestOneInput, so ctest exercises the harness on the seed corpus.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "scheduler/tokenizer/bpe_tokenizer.h"
#include "scheduler/tokenizer/tokenizer_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto spec = ite::ParseTokenizerJson(input, "fuzz.json");
  if (!spec.ok()) return 0;
  auto tok = ite::BpeTokenizer::Create(std::move(spec).value());
  if (!tok.ok()) return 0;
  // Run the pipeline on fixed text and on the raw input (arbitrary, possibly invalid, UTF-8).
  const std::string_view texts[] = {"Hello  world! It's 123 \xF0\x9F\x98\x80 <s>\n",
                                    input.substr(0, 512)};
  for (std::string_view text : texts) {
    for (bool special : {false, true}) {
      const std::vector<int32_t> ids = (*tok)->Encode(text, special);
      (void)(*tok)->Decode(ids, special);
    }
  }
  return 0;
}

#ifndef ITE_LIBFUZZER
namespace {

int RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    return 1;
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string data = ss.str();
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int failures = 0;
  int files = 0;
  for (int i = 1; i < argc; ++i) {
    const std::filesystem::path arg(argv[i]);
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (!entry.is_regular_file()) continue;
        failures += RunFile(entry.path());
        ++files;
      }
    } else {
      failures += RunFile(arg);
      ++files;
    }
  }
  std::printf("replayed %d inputs, %d unreadable\n", files, failures);
  return files > 0 && failures == 0 ? 0 : 1;
}
#endif
