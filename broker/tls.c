// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/socket.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include "buf.h"
#include "log.h"
#include "sni.h"
#include "tls.h"

/* OpenSSL's read buffer with read-ahead: exactly four full TLS 1.3 AES-GCM
 * records (16384 + 22 bytes on the wire) after OpenSSL's 3 bytes of alignment:
 * a buffer that ends mid-record costs a second recv() to complete that record. */
#define TLS_READ_BUF (4 * (16384 + 22) + 3)

#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
/* Toward the sandbox: AEAD suites with forward secrecy only, the cheap one first. */
#define TLS12_SERVER_CIPHERS "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305"

static int sni_idx = -1;   /* SSL ex_data: char[TLS_SNI_MAX] for the SNI */
static int skey_idx = -1;  /* SSL ex_data: "host:port" key of an upstream session */
static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

static void idx_init(void)
{
	sni_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

const char *tls_err_text(void)
{
	static __thread char msg[256];
	unsigned long e = ERR_get_error();

	msg[0] = 0;
	if (e)
		ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

/* ---- the socket BIO: direct reads, collected writes ---- */

struct sbio {
	int fd;
	bool direct;    /* one record expected: send it at once, without a copy into tx */
	bool drained;   /* the last recv() was short or said EAGAIN */
	bool hup;       /* peer closed or errored: every read goes to the socket */
	struct buf tx;  /* ciphertext OpenSSL wrote, not yet sent */
};

static BIO_METHOD *sbio_meth;
static int sbio_type;
static pthread_once_t sbio_once = PTHREAD_ONCE_INIT;

static int sbio_read(BIO *bio, char *p, int n)
{
	struct sbio *sb = BIO_get_data(bio);
	ssize_t r;

	BIO_clear_retry_flags(bio);
	/* The last recv() emptied the socket and no EPOLLIN came since (edge-
	 * triggered: bytes arriving after that read always bring one): a recv()
	 * now could only say EAGAIN. Not so after a hang-up: its event may have
	 * come before that read, and the EOF or error is still to be read. */
	if (sb->drained && !sb->hup) {
		BIO_set_retry_read(bio);
		return -1;
	}
	r = recv(sb->fd, p, (size_t)n, 0);
	if (r >= 0) {
		sb->drained = r < n;
		return (int)r;
	}
	if (errno == EAGAIN || errno == EINTR) {
		sb->drained = errno == EAGAIN;
		BIO_set_retry_read(bio);
	}
	return -1;
}

static int sbio_write(BIO *bio, const char *p, int n)
{
	struct sbio *sb = BIO_get_data(bio);

	int total = n;

	BIO_clear_retry_flags(bio);
	if (sb->direct && !buf_len(&sb->tx)) {
		ssize_t r = send(sb->fd, p, (size_t)n, MSG_NOSIGNAL);

		/* A socket error surfaces at the next flush, from the socket itself. */
		if (r > 0) {
			p += r;
			n -= (int)r;
		}
		if (!n)
			return total;
	}
	/* Never blocks: the caller bounds what it encrypts before flushing. */
	if (buf_append(&sb->tx, p, (size_t)n))
		return -1;
	return total;
}

static long sbio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
	struct sbio *sb = BIO_get_data(bio);

	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* tls_flush() sends; a handshake flight is sent after SSL_do_handshake */
	case BIO_C_GET_FD:
		if (ptr)
			*(int *)ptr = sb->fd;
		return sb->fd;
	case BIO_CTRL_WPENDING:
		return (long)buf_len(&sb->tx);
	default:
		return 0;
	}
}

static int sbio_create(BIO *bio)
{
	BIO_set_init(bio, 1);
	return 1;
}

static int sbio_destroy(BIO *bio)
{
	struct sbio *sb = BIO_get_data(bio);

	if (sb) {
		buf_free(&sb->tx);
		free(sb);
		BIO_set_data(bio, NULL);
	}
	return 1;
}

static void sbio_init_meth(void)
{
	BIO_METHOD *m;

	sbio_type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR;
	m = BIO_meth_new(sbio_type, "sluice socket");
	if (!m)
		return;
	if (!BIO_meth_set_read(m, sbio_read) || !BIO_meth_set_write(m, sbio_write) ||
	    !BIO_meth_set_ctrl(m, sbio_ctrl) || !BIO_meth_set_create(m, sbio_create) ||
	    !BIO_meth_set_destroy(m, sbio_destroy)) {
		BIO_meth_free(m);
		return;
	}
	sbio_meth = m;
}

int tls_set_fd(SSL *ssl, int fd)
{
	struct sbio *sb;
	BIO *bio;

	pthread_once(&sbio_once, sbio_init_meth);
	if (!sbio_meth)
		return -ENOMEM;
	sb = calloc(1, sizeof(*sb));
	if (!sb)
		return -ENOMEM;
	bio = BIO_new(sbio_meth);
	if (!bio) {
		free(sb);
		return -ENOMEM;
	}
	sb->fd = fd;
	BIO_set_data(bio, sb);
	SSL_set_bio(ssl, bio, bio); /* one reference, taken by ssl */
	return 0;
}

static struct sbio *sbio_of(SSL *ssl);

void tls_write_direct(SSL *ssl, bool on)
{
	struct sbio *sb = sbio_of(ssl);

	if (sb)
		sb->direct = on;
}

static struct sbio *sbio_of(SSL *ssl)
{
	BIO *bio = SSL_get_wbio(ssl);

	return bio && BIO_method_type(bio) == sbio_type ? BIO_get_data(bio) : NULL;
}

int tls_flush(SSL *ssl)
{
	struct sbio *sb = sbio_of(ssl);
	ssize_t r;

	if (!sb)
		return 0;
	while (buf_len(&sb->tx)) {
		r = send(sb->fd, buf_head(&sb->tx), buf_len(&sb->tx), MSG_NOSIGNAL);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -EAGAIN : -errno;
		}
		buf_consume(&sb->tx, (size_t)r);
	}
	return 0;
}

void tls_set_readable(SSL *ssl, bool hup)
{
	struct sbio *sb = sbio_of(ssl);

	if (sb) {
		sb->drained = false;
		sb->hup |= hup;
	}
}

bool tls_read_drained(SSL *ssl)
{
	struct sbio *sb = sbio_of(ssl);

	return sb && sb->drained;
}

size_t tls_pending_out(SSL *ssl)
{
	struct sbio *sb = sbio_of(ssl);

	return sb ? buf_len(&sb->tx) : 0;
}

/* ---- server side ---- */

static int client_hello_cb(SSL *ssl, int *al, void *arg)
{
	const unsigned char *ext;
	size_t ext_len;
	char *sni = SSL_get_ex_data(ssl, sni_idx);
	char name[TLS_SNI_MAX];
	int n;

	/* Without a name there is no host to check the rules against: refuse. */
	if (!SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len)) {
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	n = sni_parse_ext(ext, ext_len, name, sizeof(name));
	if (n <= 0) {
		*al = n == 0 ? SSL_AD_UNRECOGNIZED_NAME : SSL_AD_DECODE_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (sni)
		memcpy(sni, name, (size_t)n + 1);
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* Called only for handshakes that will send a certificate (OpenSSL skips it
 * when a session is resumed): a resumed connection looks up no leaf and
 * pays for no SSL_use_certificate, whose key check is 1% of a resumption.
 * The name is the one client_hello_cb checked. */
static int cert_cb(SSL *ssl, void *arg)
{
	struct certcache *cc = arg;
	const char *name = SSL_get_ex_data(ssl, sni_idx);
	X509 *leaf;

	if (!name || !name[0])
		return 0;
	leaf = certcache_get(cc, name);
	/* The shared leaf key sits on the context; only the certificate is per name. */
	return leaf && SSL_use_certificate(ssl, leaf) == 1;
}

static int alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
			  const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";

	if (SSL_select_next_proto((unsigned char **)out, outlen, h11, sizeof(h11) - 1, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	/* h2-only client: no ALPN, it then speaks HTTP/1.1 or fails in hx with 400. */
	return SSL_TLSEXT_ERR_NOACK;
}

SSL_CTX *tls_server_ctx_new(struct certcache *cc, char *err, size_t errlen)
{
	static const unsigned char sid_ctx[] = "sluiced";
	SSL_CTX *ctx;

	pthread_once(&idx_once, idx_init);
	ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errlen, "Couldn't create the TLS server context: %s", tls_err_text());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	/* SSL_OP_NO_TICKET: stateful resumption. The ticket a client gets is a
	 * session id into the context's cache, not the session encrypted: no
	 * ASN.1 encoding, AES and HMAC per ticket issued, nor the reverse per
	 * resumption: 7% of a resumed handshake's instructions. The cost is the
	 * cache: about 1 KiB per session, bounded below. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
				 SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
	/* Every byte is encrypted twice by the broker: AES-128-GCM first (the
	 * suite every TLS 1.3 client has; a quarter cheaper than AES-256). */
	if (SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_SERVER_CIPHERS) != 1) {
		snprintf(err, errlen, "Couldn't set the TLS cipher suites: %s", tls_err_text());
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* No SSL_MODE_RELEASE_BUFFERS: it frees and reallocates both record
	 * buffers around every request; conn.c frees them once a connection has
	 * been idle a while (SSL_free_buffers) instead. */
	/* SSL_MODE_NO_AUTO_CHAIN: the leaf goes alone (clients hold the CA), so
	 * no chain is built from a store at each full handshake. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
			      SSL_MODE_NO_AUTO_CHAIN);
	/* The key lives on the context; the per-name leaf is set per connection. */
	if (SSL_CTX_use_PrivateKey(ctx, certcache_ca(cc)->leaf_key) != 1) {
		snprintf(err, errlen, "Couldn't set the leaf key: %s", tls_err_text());
		SSL_CTX_free(ctx);
		return NULL;
	}
	/* Read-ahead: one recv() fills OpenSSL's buffer with as many records as
	 * are queued, instead of a 5-byte header read plus a body read per record. */
	SSL_CTX_set_read_ahead(ctx, 1);
	SSL_CTX_set_client_hello_cb(ctx, client_hello_cb, cc);
	SSL_CTX_set_cert_cb(ctx, cert_cb, cc);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	/* One ticket is enough for a client to resume once per connection. */
	SSL_CTX_set_num_tickets(ctx, 1);
	/* Each connection's ticket replaces its client's previous one: 512 is
	 * room for that many clients (processes, hosts) resuming at once; past
	 * that the oldest sessions go and their clients do a full handshake. */
	SSL_CTX_sess_set_cache_size(ctx, 512);
	return ctx;
}

void tls_server_set_sni_buf(SSL *ssl, char *buf)
{
	buf[0] = 0;
	SSL_set_ex_data(ssl, sni_idx, buf);
}

/* ---- client side: one saved session per host:port ---- */

#define SESS_BUCKETS 256
struct sess_entry {
	struct sess_entry *next;
	SSL_SESSION *sess;
	char key[];
};
static struct sess_entry *sess_tab[SESS_BUCKETS];
static size_t sess_count;
static pthread_mutex_t sess_lock = PTHREAD_MUTEX_INITIALIZER;

static unsigned key_hash(const char *s)
{
	unsigned h = 2166136261u;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 16777619u;
	return h % SESS_BUCKETS;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	const char *key = SSL_get_ex_data(ssl, skey_idx);
	struct sess_entry *e, **pp;
	size_t len;

	if (!key || !SSL_SESSION_is_resumable(sess))
		return 0;
	pthread_mutex_lock(&sess_lock);
	for (pp = &sess_tab[key_hash(key)]; *pp; pp = &(*pp)->next) {
		if (!strcmp((*pp)->key, key)) {
			SSL_SESSION_free((*pp)->sess);
			(*pp)->sess = sess;
			pthread_mutex_unlock(&sess_lock);
			return 1; /* we keep the reference */
		}
	}
	/* Bounded: past the cap, new names simply do full handshakes. */
	if (sess_count >= 4096) {
		pthread_mutex_unlock(&sess_lock);
		return 0;
	}
	len = strlen(key);
	e = malloc(sizeof(*e) + len + 1);
	if (!e) {
		pthread_mutex_unlock(&sess_lock);
		return 0;
	}
	memcpy(e->key, key, len + 1);
	e->sess = sess;
	e->next = NULL;
	*pp = e;
	sess_count++;
	pthread_mutex_unlock(&sess_lock);
	return 1;
}

static void skey_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

void tls_client_sessions_clear(void)
{
	size_t i;

	pthread_mutex_lock(&sess_lock);
	for (i = 0; i < SESS_BUCKETS; i++) {
		while (sess_tab[i]) {
			struct sess_entry *e = sess_tab[i];

			sess_tab[i] = e->next;
			SSL_SESSION_free(e->sess);
			free(e);
		}
	}
	sess_count = 0;
	pthread_mutex_unlock(&sess_lock);
}

static pthread_once_t skey_once = PTHREAD_ONCE_INIT;
static void skey_init(void)
{
	skey_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, skey_free);
}

SSL_CTX *tls_client_ctx_new(const char *const *cas, size_t n_cas, char *err, size_t errlen)
{
	static const unsigned char h11[] = "\x08http/1.1";
	SSL_CTX *ctx;
	size_t i;

	pthread_once(&idx_once, idx_init);
	pthread_once(&skey_once, skey_init);
	ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "Couldn't create the TLS client context: %s", tls_err_text());
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	/* Most servers follow the client's order in TLS 1.3: ask for the cheap suite first. */
	if (SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1) {
		snprintf(err, errlen, "Couldn't set the TLS cipher suites: %s", tls_err_text());
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(ctx, 1);
	/* Upstreams send the bulk: a bigger buffer means fewer recv() calls. */
	SSL_CTX_set_default_read_buffer_len(ctx, TLS_READ_BUF);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	/* The system store by its compiled-in paths, not SSL_CERT_FILE or
	 * SSL_CERT_DIR: the broker inherits its starter's environment, and
	 * trust anchors for upstreams come from the system and --upstream-ca
	 * only. (The directory is read at each verification.) */
	{
		int f = SSL_CTX_load_verify_file(ctx, X509_get_default_cert_file());
		int d = SSL_CTX_load_verify_dir(ctx, X509_get_default_cert_dir());

		if (f != 1 && d != 1)
			pr_warn("Couldn't load the system trust store (%s, %s): %s", X509_get_default_cert_file(),
				X509_get_default_cert_dir(), tls_err_text());
		ERR_clear_error();
	}
	for (i = 0; i < n_cas; i++) {
		if (SSL_CTX_load_verify_locations(ctx, cas[i], NULL) != 1) {
			snprintf(err, errlen, "Couldn't load the upstream CA %s: %s; give a PEM file",
				 cas[i], tls_err_text());
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	SSL_CTX_set_alpn_protos(ctx, h11, sizeof(h11) - 1);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	return ctx;
}

int tls_client_prepare(SSL *ssl, const char *host, unsigned port)
{
	struct sess_entry *e;
	char *key;
	int n;

	n = snprintf(NULL, 0, "%s:%u", host, port);
	key = malloc((size_t)n + 1);
	if (!key)
		return -ENOMEM;
	snprintf(key, (size_t)n + 1, "%s:%u", host, port);
	if (!SSL_set_ex_data(ssl, skey_idx, key)) {
		free(key);
		return -ENOMEM;
	}
	if (SSL_set_tlsext_host_name(ssl, host) != 1 || SSL_set1_host(ssl, host) != 1)
		return -ENOMEM;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	pthread_mutex_lock(&sess_lock);
	for (e = sess_tab[key_hash(key)]; e; e = e->next) {
		if (!strcmp(e->key, key)) {
			SSL_set_session(ssl, e->sess);
			break;
		}
	}
	pthread_mutex_unlock(&sess_lock);
	return 0;
}
