/* SPDX-License-Identifier: MIT */
/*
 * TLS contexts of the broker: the server side toward the sandbox (SNI read in
 * the ClientHello callback, the certificate for it from the cert cache in the
 * certificate callback, which resumed handshakes skip; ALPN http/1.1 only;
 * stateful session tickets) and the client side toward upstreams (full
 * verification against the system store plus --upstream-ca, a session kept per
 * host:port so new upstream connections resume).
 */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H
#include <stdbool.h>
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

/* A socket BIO that reads straight from fd (into OpenSSL's read-ahead buffer)
 * but collects what OpenSSL writes in memory, so that all the records of one
 * SSL_write, or of a handshake flight, leave in a single send() from
 * tls_flush() instead of one write() per 16 KiB record. The BIO owns the
 * pending bytes (they move with the SSL into the upstream pool); it never
 * closes fd. Attaches to ssl as both rbio and wbio. Returns 0 or -ENOMEM. */
int tls_set_fd(SSL *ssl, int fd);
/* Sends what the BIO of ssl holds. Returns 0 when nothing is left, -EAGAIN
 * when the socket is full (bytes remain), or -errno on a socket error. */
int tls_flush(SSL *ssl);
/* on: the next write is one record (at most 16 KiB of plaintext): the BIO
 * sends it straight away when nothing is queued, saving the copy. */
void tls_write_direct(SSL *ssl, bool on);
/* True when the BIO's last recv() emptied the socket (short read or EAGAIN):
 * with edge-triggered epoll, more bytes will come with a new event. */
bool tls_read_drained(SSL *ssl);
/* The socket of ssl became readable (an EPOLLIN, RDHUP, HUP or ERR event;
 * hup: one of the last three): the BIO reads it again. Until then, after a
 * read that emptied the socket, it answers "retry" without a recv() that
 * could only fail with EAGAIN; after a hang-up it always reads. */
void tls_set_readable(SSL *ssl, bool hup);
/* Encrypted bytes waiting in the BIO of ssl for tls_flush(). */
size_t tls_pending_out(SSL *ssl);

/* Logs (debug) and clears OpenSSL's error queue; returns a short text of the
 * first error for messages ("" when none), valid until the calling thread's
 * next call (a per-thread buffer: workers call it at once). */
const char *tls_err_text(void);

#endif /* SLUICE_TLS_H */
