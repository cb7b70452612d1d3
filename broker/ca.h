/* SPDX-License-Identifier: MIT */
/*
 * The local CA and the leaf certificates minted from it. The CA key never
 * leaves ca_dir (0700, key 0600); the sandbox only ever sees the public cert
 * written to run_dir. All leaves share one in-memory P-256 key made at start,
 * so a new name costs one signature, and the LRU cache makes a known name cost
 * none.
 */
#ifndef SLUICE_CA_H
#define SLUICE_CA_H
#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

struct ca {
	EVP_PKEY *key;       /* CA private key */
	X509 *cert;          /* CA certificate */
	EVP_PKEY *leaf_key;  /* shared by every minted leaf */
};

/* Loads the CA from ca_dir (ca.key, ca.crt), creating it on first start.
 * Returns 0 or -errno with a message in err. */
int ca_load_or_create(struct ca *ca, const char *ca_dir, char *err, size_t errlen);
/* Writes run_dir/ca.crt and run_dir/ca-bundle.pem (system roots + CA), 0644;
 * run_dir is created 0755. Returns 0 or -errno with a message in err. */
int ca_publish(const struct ca *ca, const char *run_dir, const char *system_roots,
	       char *err, size_t errlen);
void ca_fini(struct ca *ca);

/* Mints a leaf for name (SAN = name, valid_secs from an hour ago). NULL on failure. */
X509 *ca_mint(const struct ca *ca, const char *name, long valid_secs);

struct certcache;
/* A bounded LRU of minted leaves keyed by name. NULL on ENOMEM. */
struct certcache *certcache_new(const struct ca *ca, size_t cap, long valid_secs);
void certcache_free(struct certcache *cc);
/* Returns the cached leaf for name, minting it on a miss or when it is within
 * a tenth of its validity from expiring. The reference is borrowed: valid until
 * the calling thread's next certcache_get (callers hand it to OpenSSL, which
 * takes its own). Safe from several threads at once (one cache for all
 * workers). */
X509 *certcache_get(struct certcache *cc, const char *name);
/* Drops the calling thread's hold on the last leaf it got (a worker thread
 * calls it before it ends; certcache_free does it for its caller). */
void certcache_thread_done(void);
const struct ca *certcache_ca(const struct certcache *cc);
size_t certcache_size(const struct certcache *cc);
/* Counters for tests and stats. */
unsigned long certcache_mints(const struct certcache *cc);

#endif /* SLUICE_CA_H */
