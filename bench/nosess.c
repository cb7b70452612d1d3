// SPDX-License-Identifier: MIT
/* LD_PRELOAD shim for wrk: forget the TLS session when wrk recycles an SSL object (SSL_clear),
 * so every reconnect does a FULL handshake (wrk otherwise resumes via ticket/PSK). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/ssl.h>
int SSL_clear(SSL *s) {
    static int (*real)(SSL *);
    if (!real) real = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_clear");
    int r = real(s);
    SSL_set_session(s, NULL);
    return r;
}
