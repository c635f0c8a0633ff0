// Transport security for every ite process's gRPC links, from the same three files:
//   --tls-cert / --tls-key  this process's certificate chain and private key (PEM)
//   --tls-ca                the CA (PEM) that certificates of the other side must chain to
// Servers: the public API serves TLS with its certificate (client certificates optional, or
// required with `require_client_cert`); a worker requires a client certificate from the CA, so
// only its scheduler can call it. Clients verify the server against the CA and present their own
// certificate when they have one (mTLS). API keys (common/api_keys.h) are checked by
// ApiKeyAuthProcessor on the public API.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/api_keys.h"
#include "common/status.h"

namespace ite {

struct TlsFiles {
  std::string cert;  // PEM certificate chain
  std::string key;   // PEM private key
  std::string ca;    // PEM CA certificate(s)
  [[nodiscard]] bool enabled() const { return !cert.empty() || !key.empty() || !ca.empty(); }
};

struct ServerSecurityOptions {
  TlsFiles tls;  // none: plaintext
  // Refuse TLS clients without a certificate that chains to tls.ca (a worker's API).
  bool require_client_cert = false;
  // Non-empty: every call except the health service needs one of them as a bearer token.
  std::shared_ptr<const ApiKeys> api_keys;
  // The address the server listens on: API keys over plaintext are refused off loopback, where
  // anyone on the path could read them.
  std::string host = "127.0.0.1";
};

// Server credentials for `o`, or an error naming the flag or file at fault. Without TLS and
// without keys this is plaintext; keys without TLS use gRPC's local credentials, which take
// plaintext clients but only over loopback.
[[nodiscard]] StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& o);

// Channel credentials for a client: plaintext when `tls` is empty, else TLS verifying the
// server against tls.ca (the system's CAs when empty), presenting tls.cert/tls.key if given.
[[nodiscard]] StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& tls);

// The name a certificate is issued to (its first DNS subjectAltName, else its common name), to
// check a server reached by an address the certificate does not name (127.0.0.1, a pod IP).
[[nodiscard]] StatusOr<std::string> CertificateName(const std::string& cert_file);

// Whether `host` is a loopback address or name.
[[nodiscard]] bool IsLoopbackHost(const std::string& host);

// Reads a PEM file, with an error naming `flag` when it is missing, empty or not PEM.
[[nodiscard]] StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag);

}  // namespace ite
