// Flag parsing as every ite-* main does it: --help prints and exits 0, a bad flag prints CLI11's
// message (naming the flag) and exits 2, the usage-error code every binary documents.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>

namespace ite {

inline constexpr int kExitUsageError = 2;

// Parses argv; returns the exit code when main should stop at once (help shown, usage error).
inline std::optional<int> ParseFlagsOrExit(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitUsageError;
  }
  return std::nullopt;
}

}  // namespace ite
