// OpenSSL, for the one trust store handed to every TLS context libcurl creates, and for
// `mxresolvectl check` (certificates, ed25519 signatures).
#ifndef MXRESOLVED_COPENSSL_SHIM_H
#define MXRESOLVED_COPENSSL_SHIM_H
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

// libcurl hands its SSL_CTX over as a void pointer.
static inline void copenssl_ctx_set1_store(void *ssl_ctx, X509_STORE *store) {
    SSL_CTX_set1_cert_store((SSL_CTX *)ssl_ctx, store);
}

#endif
