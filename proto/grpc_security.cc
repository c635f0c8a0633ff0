#include "proto/grpc_security.h"

#include <arpa/inet.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include "proto/api_key_auth_processor.h"

namespace ite {
namespace {

// Both or neither: a certificate without its key (or the reverse) is a mistake to report.
Status CheckPair(const TlsFiles& tls) {
  if (tls.cert.empty() != tls.key.empty()) {
    return InvalidArgument("--tls-cert and --tls-key go together (one of them is missing)");
  }
  return Status::Ok();
}

}  // namespace

StatusOr<std::string> ReadPemFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("{} {}: cannot be read", flag, path);
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  if (text.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgument("{} {}: not a PEM file", flag, path);
  }
  return text;
}

bool IsLoopbackHost(const std::string& host) {
  if (host == "localhost" || host == "::1" || host == "[::1]") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return false;
}

StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerSecurityOptions& o) {
  ITE_RETURN_IF_ERROR(CheckPair(o.tls));
  const bool keys = o.api_keys && !o.api_keys->empty();
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (!o.tls.cert.empty()) {
    grpc::SslServerCredentialsOptions ssl;
    ITE_ASSIGN_OR_RETURN(std::string cert, ReadPemFile(o.tls.cert, "--tls-cert"));
    ITE_ASSIGN_OR_RETURN(std::string key, ReadPemFile(o.tls.key, "--tls-key"));
    ssl.pem_key_cert_pairs.push_back({std::move(key), std::move(cert)});
    if (!o.tls.ca.empty()) {
      ITE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(o.tls.ca, "--tls-ca"));
    }
    if (o.require_client_cert) {
      if (o.tls.ca.empty()) {
        return InvalidArgument(
            "client certificates are required, so --tls-ca must name the CA "
            "they are checked against");
      }
      ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    } else if (!o.tls.ca.empty()) {
      // Checked when offered, not required: public clients authenticate with API keys.
      ssl.client_certificate_request = GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    creds = grpc::SslServerCredentials(ssl);
  } else if (!o.tls.ca.empty() || o.require_client_cert) {
    return InvalidArgument(
        "--tls-ca without --tls-cert/--tls-key: a server needs its own "
        "certificate to speak TLS");
  } else if (keys) {
    if (!IsLoopbackHost(o.host)) {
      return InvalidArgument(
          "--api-key on {} without TLS would send keys in plaintext over the "
          "network; add --tls-cert/--tls-key, or listen on 127.0.0.1",
          o.host);
    }
    // Plaintext on the wire like insecure credentials (any gRPC client connects), but a kind
    // gRPC lets an AuthMetadataProcessor check; it accepts loopback connections only.
    creds = grpc::experimental::LocalServerCredentials(LOCAL_TCP);
  } else {
    return grpc::InsecureServerCredentials();
  }
  if (keys) creds->SetAuthMetadataProcessor(std::make_shared<ApiKeyAuthProcessor>(o.api_keys));
  return creds;
}

StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(const TlsFiles& tls) {
  ITE_RETURN_IF_ERROR(CheckPair(tls));
  if (!tls.enabled()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca.empty()) {
    ITE_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPemFile(tls.ca, "--tls-ca"));
  }
  if (!tls.cert.empty()) {
    ITE_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadPemFile(tls.cert, "--tls-cert"));
    ITE_ASSIGN_OR_RETURN(ssl.pem_private_key, ReadPemFile(tls.key, "--tls-key"));
  }
  return grpc::SslCredentials(ssl);
}

StatusOr<std::string> CertificateName(const std::string& cert_file) {
  ITE_ASSIGN_OR_RETURN(std::string pem, ReadPemFile(cert_file, "--tls-cert"));
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = bio ? PEM_read_bio_X509(bio, nullptr, nullptr, nullptr) : nullptr;
  BIO_free(bio);
  if (cert == nullptr) return InvalidArgument("--tls-cert {}: no certificate in it", cert_file);
  std::string name;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans) && name.empty(); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
    if (g->type != GEN_DNS) continue;
    const ASN1_IA5STRING* s = g->d.dNSName;
    name.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), ASN1_STRING_length(s));
  }
  GENERAL_NAMES_free(sans);
  if (name.empty()) {
    char cn[256] = {0};
    if (X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn)) >
        0) {
      name = cn;
    }
  }
  X509_free(cert);
  if (name.empty()) {
    return InvalidArgument("--tls-cert {}: names no host (no DNS subjectAltName or CN)", cert_file);
  }
  return name;
}

}  // namespace ite
