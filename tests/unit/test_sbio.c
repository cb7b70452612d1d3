// SPDX-License-Identifier: MIT
/* The broker's socket BIO (tls_set_fd): records collected and sent in one
 * send() by tls_flush, a single record sent at once in direct mode, a full
 * socket leaving bytes pending (never lost), and tls_read_drained telling a
 * short read from a full one. Real sockets (a socketpair), real TLS. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "ca.h"
#include "tls.h"

static char dir[64];
static struct ca ca;
static struct certcache *cc;
static SSL_CTX *sctx, *cctx;

static int setup(void **state)
{
	char err[512], cadir[128];

	strcpy(dir, "/tmp/sluice-sbio.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	if (ca_load_or_create(&ca, cadir, err, sizeof(err)))
		return -1;
	cc = certcache_new(&ca, 16, 3600);
	sctx = tls_server_ctx_new(cc, err, sizeof(err));
	cctx = SSL_CTX_new(TLS_client_method());
	X509_STORE_add_cert(SSL_CTX_get_cert_store(cctx), ca.cert);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_PEER, NULL);
	return sctx && cctx ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	SSL_CTX_free(cctx);
	SSL_CTX_free(sctx);
	certcache_free(cc);
	ca_fini(&ca);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

static int peek_pending(int fd);

struct ends {
	int fd[2];         /* [0] broker side (sbio), [1] client side (OpenSSL's socket BIO) */
	SSL *s, *c;
	char sni[TLS_SNI_MAX];
};

static void ends_open(struct ends *e)
{
	int i, rc_c = 0, rc_s = 0;

	assert_int_equal(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, e->fd));
	e->s = SSL_new(sctx);
	e->c = SSL_new(cctx);
	assert_int_equal(0, tls_set_fd(e->s, e->fd[0]));
	tls_server_set_sni_buf(e->s, e->sni);
	SSL_set_accept_state(e->s);
	SSL_set_fd(e->c, e->fd[1]);
	SSL_set_mode(e->c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_set_tlsext_host_name(e->c, "api.test");
	SSL_set_connect_state(e->c);
	for (i = 0; i < 200 && (rc_c != 1 || rc_s != 1); i++) {
		if (rc_c != 1)
			rc_c = SSL_do_handshake(e->c);
		if (rc_s != 1) {
			tls_set_readable(e->s, false); /* as an EPOLLIN would */
			rc_s = SSL_do_handshake(e->s);
			/* The flight waits in the BIO until flushed. */
			assert_true(tls_flush(e->s) == 0);
		}
	}
	assert_int_equal(1, rc_c);
	assert_int_equal(1, rc_s);
	assert_string_equal("api.test", e->sni);
	assert_int_equal(0, (int)tls_pending_out(e->s));
	/* The client takes the session ticket, so the socket is empty before each test. */
	{
		char b;
		size_t k;

		assert_int_equal(0, SSL_read_ex(e->c, &b, 1, &k));
		assert_int_equal(SSL_ERROR_WANT_READ, SSL_get_error(e->c, 0));
		assert_false(peek_pending(e->fd[1]));
	}
}

static void ends_close(struct ends *e)
{
	SSL_free(e->s);
	SSL_free(e->c);
	close(e->fd[0]);
	close(e->fd[1]);
}

/* SSL_write until all is taken (the contexts use partial writes: one record per call). */
static size_t write_all(SSL *s, const char *p, size_t n)
{
	size_t put = 0, k;

	while (put < n) {
		k = 0;
		if (SSL_write_ex(s, p + put, n - put, &k) != 1)
			break;
		put += k;
	}
	return put;
}

static int peek_pending(int fd)
{
	char b;

	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
}

/* Reads n plaintext bytes on the client side, flushing the broker side in between. */
static void client_read_all(struct ends *e, char *out, size_t n)
{
	size_t got = 0, k;
	int spins;

	for (spins = 0; got < n && spins < 100000; spins++) {
		tls_flush(e->s);
		if (SSL_read_ex(e->c, out + got, n - got, &k) == 1)
			got += k;
	}
	assert_int_equal(n, got);
}

static void fill(char *p, size_t n, unsigned seed)
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] = (char)(seed * 31 + i * 7 + (i >> 9));
}

static void test_collects_then_one_flush(void **state)
{
	struct ends e;
	size_t n = 100 * 1024, put = 0;
	char *src = malloc(n), *dst = malloc(n);

	ends_open(&e);
	fill(src, n, 1);
	put = write_all(e.s, src, n);
	assert_int_equal(n, put);
	/* Seven records, all still in the BIO: nothing reached the socket. */
	assert_true(tls_pending_out(e.s) > n);
	assert_false(peek_pending(e.fd[1]));
	assert_int_equal(0, tls_flush(e.s));
	assert_int_equal(0, (int)tls_pending_out(e.s));
	assert_true(peek_pending(e.fd[1]));
	client_read_all(&e, dst, n);
	assert_memory_equal(src, dst, n);
	ends_close(&e);
	free(src);
	free(dst);
}

static void test_direct_sends_at_once(void **state)
{
	struct ends e;
	char src[1000], dst[1000];
	size_t put = 0;

	ends_open(&e);
	fill(src, sizeof(src), 2);
	tls_write_direct(e.s, true);
	assert_int_equal(1, SSL_write_ex(e.s, src, sizeof(src), &put));
	tls_write_direct(e.s, false);
	assert_int_equal(0, (int)tls_pending_out(e.s));
	assert_true(peek_pending(e.fd[1]));
	client_read_all(&e, dst, sizeof(dst));
	assert_memory_equal(src, dst, sizeof(dst));
	ends_close(&e);
}

static void test_full_socket_keeps_bytes(void **state)
{
	struct ends e;
	size_t n = 1024 * 1024, put = 0;
	char *src = malloc(n), *dst = malloc(n);
	int small = 4096;

	ends_open(&e);
	setsockopt(e.fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	fill(src, n, 3);
	/* Direct mode too: what the socket does not take is queued, not lost. */
	tls_write_direct(e.s, true);
	put = write_all(e.s, src, n);
	tls_write_direct(e.s, false);
	assert_int_equal(n, put);
	assert_int_equal(-EAGAIN, tls_flush(e.s));
	assert_true(tls_pending_out(e.s) > 0);
	client_read_all(&e, dst, n);
	assert_memory_equal(src, dst, n);
	assert_int_equal(0, tls_flush(e.s));
	ends_close(&e);
	free(src);
	free(dst);
}

static void test_read_drained(void **state)
{
	struct ends e;
	size_t n = 256 * 1024, put = 0, got = 0;
	char *src = malloc(n), buf[512];

	ends_open(&e);
	fill(src, n, 4);
	/* A short request: one recv() empties the socket. */
	assert_int_equal(1, SSL_write_ex(e.c, src, 100, &put));
	tls_set_readable(e.s, false);
	assert_int_equal(1, SSL_read_ex(e.s, buf, sizeof(buf), &got));
	assert_int_equal(100, got);
	assert_true(tls_read_drained(e.s));
	/* A big upload: the read buffer fills before the socket empties. */
	for (put = 0; put < n;) {
		size_t k = 0;

		if (SSL_write_ex(e.c, src + put, n - put, &k) != 1)
			break;
		put += k;
	}
	assert_true(put > 64 * 1024);
	tls_set_readable(e.s, false);
	assert_int_equal(1, SSL_read_ex(e.s, buf, sizeof(buf), &got));
	assert_false(tls_read_drained(e.s));
	ends_close(&e);
	free(src);
}

/* After a read that emptied the socket, the BIO makes no recv() until the
 * socket is said to be readable again (the next EPOLLIN): bytes that arrived
 * meanwhile wait for it; after a hang-up every read goes to the socket. */
static void test_drained_waits_for_readable(void **state)
{
	struct ends e;
	size_t got = 0, put = 0;
	char buf[512];
	int rc;

	ends_open(&e);
	assert_int_equal(1, SSL_write_ex(e.c, "first", 5, &put));
	tls_set_readable(e.s, false);
	assert_int_equal(1, SSL_read_ex(e.s, buf, sizeof(buf), &got));
	assert_int_equal(5, got);
	assert_true(tls_read_drained(e.s));
	/* Bytes arrive; no event yet: the BIO does not look. */
	assert_int_equal(1, SSL_write_ex(e.c, "second", 6, &put));
	rc = SSL_read_ex(e.s, buf, sizeof(buf), &got);
	assert_int_equal(0, rc);
	assert_int_equal(SSL_ERROR_WANT_READ, SSL_get_error(e.s, rc));
	assert_true(peek_pending(e.fd[0]));        /* still in the socket, untouched */
	tls_set_readable(e.s, false);
	assert_int_equal(1, SSL_read_ex(e.s, buf, sizeof(buf), &got));
	assert_int_equal(6, got);
	assert_memory_equal(buf, "second", 6);
	/* The peer closes: after the hang-up event the EOF is read, and read again. */
	shutdown(e.fd[1], SHUT_WR);
	tls_set_readable(e.s, true);
	rc = SSL_read_ex(e.s, buf, sizeof(buf), &got);
	assert_int_equal(0, rc);
	assert_int_not_equal(SSL_ERROR_WANT_READ, SSL_get_error(e.s, rc));
	ERR_clear_error();
	ends_close(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_collects_then_one_flush),
		cmocka_unit_test(test_direct_sends_at_once),
		cmocka_unit_test(test_full_socket_keeps_bytes),
		cmocka_unit_test(test_read_drained),
		cmocka_unit_test(test_drained_waits_for_readable),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
