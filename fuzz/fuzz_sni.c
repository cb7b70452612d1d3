// SPDX-License-Identifier: MIT
/*
 * The ClientHello/SNI path. The broker reads the SNI inside OpenSSL's
 * ClientHello callback (broker/tls.c) with sni_parse_ext (broker/sni.h), then
 * mints or finds a certificate for it. Inputs starting with 0x16 (a TLS
 * handshake record) go to a real server SSL from tls_server_ctx_new through
 * memory BIOs; any other input is the extension body for sni_parse_ext alone.
 * A name that gets through must be one sni_name_valid accepts, lower-case.
 */
#include <ftw.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include "fuzz.h"
#include "ca.h"
#include "sni.h"
#include "tls.h"

static struct ca ca;
static struct certcache *cc;
static SSL_CTX *sctx;
static char cadir[] = "/tmp/sluice-fuzz-sni.XXXXXX";

static int rm_one(const char *p, const struct stat *st, int fl, struct FTW *ftw)
{
	return remove(p);
}

static void cleanup(void)
{
	SSL_CTX_free(sctx);
	certcache_free(cc);
	ca_fini(&ca);
}

static void setup(void)
{
	char err[256];
	int r;

	if (!mkdtemp(cadir))
		fz_die("mkdtemp: %m");
	atexit(cleanup);
	r = ca_load_or_create(&ca, cadir, err, sizeof(err));
	/* The CA is in memory now: no files left behind even when a crash aborts. */
	nftw(cadir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	if (r)
		fz_die("CA: %s", err);
	/* A small cache so that eviction runs too. */
	cc = certcache_new(&ca, 8, 3600);
	if (!cc)
		abort();
	sctx = tls_server_ctx_new(cc, err, sizeof(err));
	if (!sctx)
		fz_die("server ctx: %s", err);
}

static void check_name(const char *name, int n, const char *what)
{
	if ((int)strnlen(name, TLS_SNI_MAX) != n)
		fz_die("%s: length %d but the string is %zu bytes", what, n, strnlen(name, TLS_SNI_MAX));
	if (!sni_name_valid(name, (size_t)n))
		fz_die("%s: '%s' is not a valid name", what, name);
	for (int i = 0; i < n; i++)
		if (name[i] >= 'A' && name[i] <= 'Z')
			fz_die("%s: '%s' is not lower-case", what, name);
	if (n && name[n - 1] == '.')
		fz_die("%s: '%s' keeps the trailing dot", what, name);
}

static void tls_path(const uint8_t *data, size_t size)
{
	char sni[TLS_SNI_MAX];
	SSL *ssl = SSL_new(sctx);
	BIO *in, *out;

	if (!ssl)
		abort();
	in = BIO_new_mem_buf(data, (int)size);
	out = BIO_new(BIO_s_mem());
	if (!in || !out)
		abort();
	/* EOF at the end of the input, not "retry". */
	BIO_set_mem_eof_return(in, 0);
	SSL_set_bio(ssl, in, out);
	tls_server_set_sni_buf(ssl, sni);
	(void)SSL_accept(ssl);
	if (sni[0])
		check_name(sni, (int)strnlen(sni, sizeof(sni)), "TLS ClientHello");
	ERR_clear_error();
	SSL_free(ssl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t outlens[] = { 256, 9, 1 };

	if (!sctx)
		setup();
	if (size && data[0] == 0x16) {
		tls_path(data, size);
		return 0;
	}
	for (size_t i = 0; i < sizeof(outlens) / sizeof(outlens[0]); i++) {
		uint8_t *p = (uint8_t *)fz_dup(data + (size ? 1 : 0), size ? size - 1 : 0);
		char *out = fz_dup("", outlens[i]);
		int r = sni_parse_ext(p, size ? size - 1 : 0, out, outlens[i]);

		if (r > 0) {
			if ((size_t)r >= outlens[i])
				fz_die("name of %d bytes in a %zu-byte buffer", r, outlens[i]);
			check_name(out, r, "sni_parse_ext");
		} else if (r && r != -EINVAL && r != -ENOSPC) {
			fz_die("sni_parse_ext returned %d", r);
		}
		free(out);
		free(p);
	}
	return 0;
}
