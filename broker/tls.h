/* SPDX-License-Identifier: MIT */
/*
 * TLS contexts of the broker: the server side toward the sandbox (certificate
 * chosen per SNI from the cert cache in the ClientHello callback, ALPN
 * http/1.1 only, session tickets) and the client side toward upstreams (full
 * verification against the system store plus --upstream-ca, a session kept per
 * host:port so new upstream connections resume).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H
#include <stddef.h>
#include <openssl/ssl.h>
#include "ca.h"

#define TLS_SNI_MAX 256

/* Returns the context or NULL with a message in err. cc must outlive it. */
SSL_CTX *tls_server_ctx_new(struct certcache *cc, char *err, size_t errlen);
/* Where the ClientHello callback writes the SNI (TLS_SNI_MAX bytes): set before SSL_accept. */
void tls_server_set_sni_buf(SSL *ssl, char *buf);

/* cas: extra trust anchors (PEM files) besides the system store.
 * Returns the context or NULL with a message in err. */
SSL_CTX *tls_client_ctx_new(const char *const *cas, size_t n_cas, char *err, size_t errlen);
/* Prepares an upstream SSL: SNI, hostname check, ALPN, and a saved session for
 * host:port if there is one. Returns 0 or -ENOMEM. */
int tls_client_prepare(SSL *ssl, const char *host, unsigned port);
/* Drops the saved sessions (tests, reload). */
void tls_client_sessions_clear(void);

/* Logs (debug) and clears OpenSSL's error queue; returns a short text of the
 * first error for messages ("" when none). Not thread-safe (static buffer). */
const char *tls_err_text(void);

#endif /* SLUICE_TLS_H */
