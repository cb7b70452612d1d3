// SPDX-License-Identifier: MIT
/* The broker's TLS server context, end to end in memory: SNI picks the minted
 * leaf, no SNI is refused, ALPN is http/1.1 only, a ticket (TLS 1.3) or a
 * session id (TLS 1.2) resumes without a certificate lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include "ca.h"
#include <limits.h>
#include "tls.h"

static char dir[64];
static struct ca ca;
static struct certcache *cc;
static SSL_CTX *sctx;

static int setup(void **state)
{
	char err[512], cadir[128];

	strcpy(dir, "/tmp/sluice-tls.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cadir, sizeof(cadir), "%s/ca", dir);
	if (ca_load_or_create(&ca, cadir, err, sizeof(err)))
		return -1;
	cc = certcache_new(&ca, 16, 3600);
	sctx = tls_server_ctx_new(cc, err, sizeof(err));
	return sctx ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	SSL_CTX_free(sctx);
	certcache_free(cc);
	ca_fini(&ca);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd);
}

/* Runs a handshake between c and s over a BIO pair; returns 1 on success. */
static int pump(SSL *c, SSL *s)
{
	int i, rc_c = 0, rc_s = 0;

	for (i = 0; i < 100 && (rc_c != 1 || rc_s != 1); i++) {
		if (rc_c != 1) {
			rc_c = SSL_do_handshake(c);
			if (rc_c <= 0 && SSL_get_error(c, rc_c) != SSL_ERROR_WANT_READ)
				return 0;
		}
		if (rc_s != 1) {
			rc_s = SSL_do_handshake(s);
			if (rc_s <= 0 && SSL_get_error(s, rc_s) != SSL_ERROR_WANT_READ)
				return 0;
		}
	}
	return rc_c == 1 && rc_s == 1;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca.cert);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
	return ctx;
}

static void pair(SSL_CTX *cctx, SSL **c, SSL **s, char *sni_buf)
{
	BIO *b1, *b2;

	*c = SSL_new(cctx);
	*s = SSL_new(sctx);
	BIO_new_bio_pair(&b1, 0, &b2, 0);
	SSL_set_bio(*c, b1, b1);
	SSL_set_bio(*s, b2, b2);
	SSL_set_connect_state(*c);
	SSL_set_accept_state(*s);
	tls_server_set_sni_buf(*s, sni_buf);
}

static void test_sni_selects_leaf(void **state)
{
	SSL_CTX *cctx = client_ctx();
	char sni[TLS_SNI_MAX];
	const unsigned char *alpn;
	unsigned alpn_len;
	SSL *c, *s;
	X509 *peer;

	pair(cctx, &c, &s, sni);
	SSL_set_tlsext_host_name(c, "API.Test");
	SSL_set1_host(c, "api.test");
	SSL_set_alpn_protos(c, (const unsigned char *)"\x02h2\x08http/1.1", 12);
	assert_int_equal(pump(c, s), 1);
	assert_string_equal(sni, "api.test");
	assert_int_equal(SSL_get_verify_result(c), X509_V_OK); /* chain + hostname */
	peer = SSL_get1_peer_certificate(c);
	assert_int_equal(X509_check_host(peer, "api.test", 0, 0, NULL), 1);
	X509_free(peer);
	SSL_get0_alpn_selected(c, &alpn, &alpn_len);
	assert_int_equal(alpn_len, 8);
	assert_memory_equal(alpn, "http/1.1", 8);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
}

static void test_no_sni_refused(void **state)
{
	SSL_CTX *cctx = client_ctx();
	char sni[TLS_SNI_MAX];
	SSL *c, *s;

	pair(cctx, &c, &s, sni);
	assert_int_equal(pump(c, s), 0);
	assert_string_equal(sni, "");
	ERR_clear_error();
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
}

static void test_h2_only_gets_no_alpn(void **state)
{
	SSL_CTX *cctx = client_ctx();
	char sni[TLS_SNI_MAX];
	const unsigned char *alpn;
	unsigned alpn_len = 99;
	SSL *c, *s;

	pair(cctx, &c, &s, sni);
	SSL_set_tlsext_host_name(c, "api.test");
	SSL_set_alpn_protos(c, (const unsigned char *)"\x02h2", 3);
	assert_int_equal(pump(c, s), 1);
	SSL_get0_alpn_selected(c, &alpn, &alpn_len);
	assert_int_equal(alpn_len, 0);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
}

/* A full handshake, then a resumption of its session, at TLS version v
 * (TLS 1.3: a stateful ticket; TLS 1.2: the session id). */
static void resume_at(int v)
{
	SSL_CTX *cctx = client_ctx();
	char sni[TLS_SNI_MAX], byte;
	SSL_SESSION *sess;
	X509 *peer;
	SSL *c, *s;

	SSL_CTX_set_min_proto_version(cctx, v);
	SSL_CTX_set_max_proto_version(cctx, v);
	SSL_CTX_flush_sessions(sctx, LONG_MAX); /* each version starts with an empty cache */
	pair(cctx, &c, &s, sni);
	SSL_set_tlsext_host_name(c, "api.test");
	assert_int_equal(pump(c, s), 1);
	assert_int_equal(SSL_version(c), v);
	/* The leaf was looked up and set for the full handshake (cert_cb). */
	assert_non_null(SSL_get_certificate(s));
	/* TLS 1.3 tickets arrive after the handshake: let the client read them. */
	SSL_write(s, "x", 1);
	assert_int_equal(SSL_read(c, &byte, 1), 1);
	sess = SSL_get1_session(c);
	assert_non_null(sess);
	assert_int_equal(SSL_SESSION_is_resumable(sess), 1);
	if (v == TLS1_3_VERSION) {
		/* Stateful tickets (SSL_OP_NO_TICKET): the client holds an id into
		 * the server's cache, not the session encrypted (about 200 bytes). */
		const unsigned char *tick;
		size_t tick_len;

		SSL_SESSION_get0_ticket(sess, &tick, &tick_len);
		assert_in_range(tick_len, 1, 64);
	}
	assert_int_equal(SSL_CTX_sess_number(sctx), 1);
	/* An SSL freed unshut marks its session bad, on both sides (the server's
	 * cache drops it); conn_free() always sends the close_notify. */
	SSL_shutdown(c);
	SSL_shutdown(s);
	SSL_free(c);
	SSL_free(s);

	pair(cctx, &c, &s, sni);
	SSL_set_tlsext_host_name(c, "api.test");
	SSL_set_session(c, sess);
	assert_int_equal(pump(c, s), 1);
	assert_int_equal(SSL_session_reused(c), 1);
	assert_string_equal(sni, "api.test");
	/* Resumed: no certificate was looked up or set on the server side, and
	 * the client still knows the one of the first handshake. */
	assert_null(SSL_get_certificate(s));
	peer = SSL_get1_peer_certificate(c);
	assert_non_null(peer);
	assert_int_equal(X509_check_host(peer, "api.test", 0, 0, NULL), 1);
	X509_free(peer);
	SSL_SESSION_free(sess);
	SSL_free(c);
	SSL_free(s);
	SSL_CTX_free(cctx);
}

static void test_ticket_resumes(void **state)
{
	resume_at(TLS1_3_VERSION);
}

static void test_tls12_session_resumes(void **state)
{
	resume_at(TLS1_2_VERSION);
}

/* Toward the upstream: a TLS 1.2 server that resumes by session ticket only
 * (no session cache, as large sites run) resumes sluice's second dial. It
 * would not if the client context turned tickets off. */
static void test_upstream_tls12_ticket_resumes(void **state)
{
	SSL_CTX *uctx, *srv = SSL_CTX_new(TLS_server_method());
	char err[512];
	int round;

	uctx = tls_client_ctx_new(NULL, 0, err, sizeof(err));
	assert_non_null(uctx);
	assert_non_null(srv);
	X509_STORE_add_cert(SSL_CTX_get_cert_store(uctx), ca.cert);
	assert_int_equal(SSL_CTX_use_certificate(srv, certcache_get(cc, "api.test")), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(srv, ca.leaf_key), 1);
	SSL_CTX_set_max_proto_version(srv, TLS1_2_VERSION);
	SSL_CTX_set_session_cache_mode(srv, SSL_SESS_CACHE_OFF);
	for (round = 0; round < 2; round++) {
		BIO *b1, *b2;
		SSL *c = SSL_new(uctx), *s = SSL_new(srv);

		BIO_new_bio_pair(&b1, 0, &b2, 0);
		SSL_set_bio(c, b1, b1);
		SSL_set_bio(s, b2, b2);
		SSL_set_connect_state(c);
		SSL_set_accept_state(s);
		assert_int_equal(tls_client_prepare(c, "api.test", 443), 0);
		assert_int_equal(pump(c, s), 1);
		assert_int_equal(SSL_version(c), TLS1_2_VERSION);
		assert_int_equal(SSL_session_reused(c), round);
		SSL_shutdown(c);
		SSL_shutdown(s);
		SSL_free(c);
		SSL_free(s);
	}
	tls_client_sessions_clear();
	SSL_CTX_free(srv);
	SSL_CTX_free(uctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sni_selects_leaf),
		cmocka_unit_test(test_no_sni_refused),
		cmocka_unit_test(test_h2_only_gets_no_alpn),
		cmocka_unit_test(test_ticket_resumes),
		cmocka_unit_test(test_tls12_session_resumes),
		cmocka_unit_test(test_upstream_tls12_ticket_resumes),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
