// The security flags as every ite binary spells them, so that ite-serve can pass them on
// unchanged: --tls-cert/--tls-key/--tls-ca and, on the public side, --api-key/--api-key-file.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "proto/grpc_security.h"

namespace ite {

inline void AddTlsFlags(CLI::App& app, TlsFiles* tls, const std::string& ca_help) {
  app.add_option("--tls-cert", tls->cert, "TLS: this process's certificate chain (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", tls->key, "TLS: the private key of --tls-cert (PEM)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-ca", tls->ca, ca_help)->check(CLI::ExistingFile);
}

struct ApiKeyFlags {
  std::vector<std::string> keys;
  std::vector<std::string> files;
};

// Keys given on the command line show in `ps`; --api-key-file (or the environment variable
// ITE_API_KEY for one key) keeps them out of it.
inline void AddApiKeyFlags(CLI::App& app, ApiKeyFlags* flags) {
  app.add_option("--api-key", flags->keys,
                 "a key clients must send as 'Authorization: Bearer KEY' (repeat for several; "
                 "also $ITE_API_KEY); the health service stays open")
      ->envname("ITE_API_KEY");
  app.add_option("--api-key-file", flags->files,
                 "file of keys, one per line ('#' comments and blank lines skipped); repeatable")
      ->check(CLI::ExistingFile);
}

}  // namespace ite
