// SPDX-License-Identifier: MIT
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include "ca.h"
#include "log.h"

#define CA_VALID_SECS (10L * 365 * 24 * 3600)

static const char *ossl_err(void)
{
	static __thread char msg[256];  /* workers mint at the same time */
	unsigned long e = ERR_get_error();

	if (!e)
		return "unknown OpenSSL error";
	ERR_error_string_n(e, msg, sizeof(msg));
	ERR_clear_error();
	return msg;
}

/* mkdir -p with mode for the last component. */
static int mkdir_p(const char *dir, mode_t mode)
{
	char tmp[4096];
	size_t i, n = strlen(dir);

	if (n == 0 || n >= sizeof(tmp))
		return -ENAMETOOLONG;
	memcpy(tmp, dir, n + 1);
	for (i = 1; i < n; i++) {
		if (tmp[i] != '/')
			continue;
		tmp[i] = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -errno;
		tmp[i] = '/';
	}
	if (mkdir(tmp, mode) && errno != EEXIST)
		return -errno;
	return 0;
}

static int add_ext(X509 *issuer, X509 *subj, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx(&ctx, issuer, subj, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(subj, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

static int set_serial(X509 *x)
{
	unsigned char raw[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	raw[0] &= 0x7f; /* positive */
	raw[0] |= 0x01; /* non-zero, fixed length */
	bn = BN_bin2bn(raw, sizeof(raw), NULL);
	if (!bn)
		return -ENOMEM;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

static X509 *make_ca_cert(EVP_PKEY *key)
{
	X509 *x = X509_new();
	X509_NAME *nm;
	char cn[64];

	if (!x)
		return NULL;
	snprintf(cn, sizeof(cn), "sluice local CA %08lx", (unsigned long)time(NULL));
	nm = X509_get_subject_name(x);
	if (!X509_set_version(x, 2) || set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), CA_VALID_SECS) ||
	    !X509_set_pubkey(x, key) ||
	    !X509_NAME_add_entry_by_txt(nm, "O", MBSTRING_ASC, (const unsigned char *)"sluice", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_set_issuer_name(x, nm) ||
	    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") ||
	    add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign") ||
	    add_ext(x, x, NID_subject_key_identifier, "hash") ||
	    !X509_sign(x, key, EVP_sha256())) {
		X509_free(x);
		return NULL;
	}
	return x;
}

/* Writes key (or cert) at fd's offset 0 and cuts the file to that length. */
static int write_pem_fd(int fd, EVP_PKEY *key, X509 *cert, bool sync)
{
	FILE *f;
	int ok;

	f = fdopen(fd, "w");
	if (!f) {
		close(fd);
		return -errno;
	}
	ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)
		 : PEM_write_X509(f, cert);
	ok = ok && !fflush(f) && ftell(f) >= 0 && !ftruncate(fd, ftell(f)) && (!sync || !fsync(fd));
	if (fclose(f) || !ok)
		return -EIO;
	return 0;
}

static int write_pem_file(const char *path, mode_t mode, X509 *cert)
{
	int fd;

	/* No O_TRUNC and no rename: the run dir's ca.crt is bind-mounted into
	 * running sandboxes (the same inode), and a restarting broker that
	 * emptied or replaced it would fail their TLS. The same bytes are written
	 * over themselves, then the file is cut to their length. */
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	fchmod(fd, mode);
	return write_pem_fd(fd, NULL, cert, false);
}

/* Written beside, synced, then moved in place: a crash leaves no file or the
 * whole new one, never a cut key that would stop every later start. excl:
 * fail with -EEXIST rather than replace a file that is already there. */
static int write_pem_atomic(const char *path, mode_t mode, EVP_PKEY *key, X509 *cert, bool excl)
{
	char tmp[4200];
	int fd, rc;

	/* Any such file left by a crashed broker is gone: remove_stale_tmp(). */
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	fchmod(fd, mode);
	rc = write_pem_fd(fd, key, cert, true);
	if (!rc && excl && link(tmp, path)) {
		rc = -errno;
		/* A filesystem without hard links (vfat, some FUSE): the CA
		 * directory's lock already keeps other brokers out. */
		if ((rc == -EPERM || rc == -EOPNOTSUPP || rc == -ENOSYS) && access(path, F_OK))
			rc = rename(tmp, path) ? -errno : 0;
	} else if (!rc && !excl && rename(tmp, path)) {
		rc = -errno;
	}
	unlink(tmp); /* gone after a rename; after a link, the second name */
	return rc;
}

/* The name entries of a new CA reach the disk with the directory. */
static void sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
}

/* Temporary files of a broker killed while it wrote a CA (they may hold a
 * whole private key): under the CA lock, any there is stale. */
static void remove_stale_tmp(const char *ca_dir)
{
	DIR *d = opendir(ca_dir);
	struct dirent *de;
	char p[4200];

	while (d && (de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if ((!strncmp(de->d_name, "ca.key.", 7) || !strncmp(de->d_name, "ca.crt.", 7)) &&
		    n > 4 && !strcmp(de->d_name + n - 4, ".tmp")) {
			snprintf(p, sizeof(p), "%s/%s", ca_dir, de->d_name);
			unlink(p);
		}
	}
	if (d)
		closedir(d);
}

static int load_or_create_locked(struct ca *ca, const char *ca_dir, const char *kpath,
				 const char *cpath, char *err, size_t errlen);

int ca_load_or_create(struct ca *ca, const char *ca_dir, char *err, size_t errlen)
{
	char kpath[4096], cpath[4096], lpath[4096];
	struct stat st;
	int rc, lfd;

	memset(ca, 0, sizeof(*ca));
	rc = mkdir_p(ca_dir, 0700);
	if (rc) {
		snprintf(err, errlen, "Couldn't create the CA directory %s: %s", ca_dir, strerror(-rc));
		return rc;
	}
	/* The sandbox runs as some user; the CA key must stay out of its reach. */
	if (stat(ca_dir, &st) == 0 && (st.st_mode & 077) && chmod(ca_dir, 0700)) {
		rc = -errno;
		snprintf(err, errlen, "Couldn't make %s private (chmod 0700): %s", ca_dir, strerror(errno));
		return rc;
	}
	snprintf(kpath, sizeof(kpath), "%s/ca.key", ca_dir);
	snprintf(cpath, sizeof(cpath), "%s/ca.crt", ca_dir);
	/* Brokers of two sandboxes starting at once share the CA directory: one
	 * creates the CA while the other waits, then reads the whole files. */
	snprintf(lpath, sizeof(lpath), "%s/.lock", ca_dir);
	lfd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lfd < 0 || flock(lfd, LOCK_EX)) {
		rc = -errno;
		snprintf(err, errlen, "Couldn't lock the CA directory (%s): %s", lpath, strerror(errno));
		if (lfd >= 0)
			close(lfd);
		return rc;
	}
	remove_stale_tmp(ca_dir);
	rc = load_or_create_locked(ca, ca_dir, kpath, cpath, err, errlen);
	close(lfd); /* releases the lock */
	return rc;
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf; (void)size; (void)rwflag; (void)u;
	return -1;
}

/* A CA that cannot sign leaves clients accept: said at start, not as a
 * verification error in every sandboxed client. An hour of margin. */
static int ca_cert_usable(X509 *cert, const char *cpath, const char *ca_dir, char *err, size_t errlen)
{
	time_t soon = time(NULL) + 3600;
	const char *why = NULL;

	if (X509_check_ca(cert) != 1)
		why = "is not a CA certificate (basicConstraints CA:TRUE with keyCertSign)";
	else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
		why = "is not valid yet";
	else if (X509_cmp_time(X509_get0_notAfter(cert), &soon) < 0)
		why = "has expired or expires within the hour";
	if (!why)
		return 0;
	snprintf(err, errlen, "The CA certificate %s %s; move %s away to create a new CA", cpath, why, ca_dir);
	return -EINVAL;
}

static int load_or_create_locked(struct ca *ca, const char *ca_dir, const char *kpath,
				 const char *cpath, char *err, size_t errlen)
{
	struct stat st;
	FILE *f;
	int rc;

	f = fopen(kpath, "re");
	if (f) {
		/* A key others could read may have been copied: every leaf it
		 * signs would be forgeable. Not repaired silently. */
		if (fstat(fileno(f), &st) == 0 && ((st.st_mode & 077) || st.st_uid != geteuid())) {
			snprintf(err, errlen, "The CA key %s is %s (mode %04o, owner uid %u): it may have been "
				 "copied; move %s away to create a new CA, or chmod 600 and chown it if you know "
				 "it was not", kpath, (st.st_mode & 077) ? "readable or writable by others"
				 : "owned by another user", (unsigned)(st.st_mode & 07777), (unsigned)st.st_uid,
				 ca_dir);
			fclose(f);
			return -EPERM;
		}
		/* An encrypted key: fail, never prompt on the terminal. */
		ca->key = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
		fclose(f);
		f = fopen(cpath, "re");
		if (f) {
			ca->cert = PEM_read_X509(f, NULL, NULL, NULL);
			fclose(f);
		}
		if (!ca->key || !ca->cert || X509_check_private_key(ca->cert, ca->key) != 1) {
			snprintf(err, errlen, "The CA in %s is unreadable (or its key is encrypted) or its key "
				 "and cert do not match (%s); move %s away to create a new CA", ca_dir, ossl_err(),
				 ca_dir);
			ca_fini(ca);
			return -EINVAL;
		}
		rc = ca_cert_usable(ca->cert, cpath, ca_dir, err, errlen);
		if (rc) {
			ca_fini(ca);
			return rc;
		}
	} else if (errno == ENOENT) {
		ca->key = EVP_EC_gen("P-256");
		ca->cert = ca->key ? make_ca_cert(ca->key) : NULL;
		if (!ca->cert) {
			snprintf(err, errlen, "Couldn't create the CA: %s", ossl_err());
			ca_fini(ca);
			return -EIO;
		}
		/* The key last: its presence is what says a CA exists here. */
		rc = write_pem_atomic(cpath, 0644, NULL, ca->cert, false);
		if (!rc)
			rc = write_pem_atomic(kpath, 0600, ca->key, NULL, true);
		if (rc) {
			snprintf(err, errlen, "Couldn't write the CA to %s: %s", ca_dir, strerror(-rc));
			ca_fini(ca);
			return rc;
		}
		sync_dir(ca_dir);
		pr_info("created a new CA in %s", ca_dir);
	} else {
		rc = -errno;
		snprintf(err, errlen, "Couldn't open %s: %s", kpath, strerror(errno));
		return rc;
	}
	ca->leaf_key = EVP_EC_gen("P-256");
	if (!ca->leaf_key) {
		snprintf(err, errlen, "Couldn't generate the leaf key: %s", ossl_err());
		ca_fini(ca);
		return -EIO;
	}
	return 0;
}

int ca_publish(const struct ca *ca, const char *run_dir, const char *system_roots,
	       char *err, size_t errlen)
{
	char path[4096], tmp[4096], chunk[16384];
	FILE *out, *in;
	size_t n;
	int rc;

	rc = mkdir_p(run_dir, 0755);
	if (rc) {
		snprintf(err, errlen, "Couldn't create the run directory %s: %s", run_dir, strerror(-rc));
		return rc;
	}
	chmod(run_dir, 0755);
	snprintf(path, sizeof(path), "%s/ca.crt", run_dir);
	rc = write_pem_file(path, 0644, ca->cert);
	if (rc) {
		snprintf(err, errlen, "Couldn't write %s: %s", path, strerror(-rc));
		return rc;
	}
	/* The bundle is written beside and renamed, so a client never reads half of it. */
	snprintf(path, sizeof(path), "%s/ca-bundle.pem", run_dir);
	/* pid-suffixed: several brokers may share one run dir */
	snprintf(tmp, sizeof(tmp), "%s/.ca-bundle.pem.%d.tmp", run_dir, (int)getpid());
	out = fopen(tmp, "we");
	if (!out) {
		rc = -errno;
		snprintf(err, errlen, "Couldn't write %s: %s", tmp, strerror(errno));
		return rc;
	}
	fchmod(fileno(out), 0644);
	in = system_roots ? fopen(system_roots, "re") : NULL;
	if (in) {
		while ((n = fread(chunk, 1, sizeof(chunk), in)) > 0)
			fwrite(chunk, 1, n, out);
		fclose(in);
	} else if (system_roots) {
		pr_warn("no system roots at %s: the bundle holds only the sluice CA", system_roots);
	}
	fputc('\n', out);
	PEM_write_X509(out, ca->cert);
	if (fclose(out) || rename(tmp, path)) {
		rc = -errno;
		snprintf(err, errlen, "Couldn't write %s: %s", path, strerror(errno));
		unlink(tmp);
		return rc;
	}
	return 0;
}

void ca_fini(struct ca *ca)
{
	EVP_PKEY_free(ca->key);
	X509_free(ca->cert);
	EVP_PKEY_free(ca->leaf_key);
	memset(ca, 0, sizeof(*ca));
}

/* A certificate built field by field is DER-encoded again for every
 * handshake that sends it (i2d_X509, 2.4% of a full handshake); one decoded
 * from DER keeps its encoding, and sending it is a copy. Takes x. */
static X509 *der_cached(X509 *x, const char *name)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *y = NULL;
	int n = i2d_X509(x, &der);

	if (n > 0) {
		p = der;
		y = d2i_X509(NULL, &p, n);
	}
	OPENSSL_free(der);
	X509_free(x);
	if (!y)
		pr_warn("Couldn't mint a certificate for %s: %s", name, ossl_err());
	return y;
}

X509 *ca_mint(const struct ca *ca, const char *name, long valid_secs)
{
	X509 *x = X509_new();
	char san[300];
	X509_NAME *nm;

	if (!x)
		return NULL;
	nm = X509_get_subject_name(x);
	/* Without a CN the subject is empty, and then the SAN must be critical
	 * (RFC 5280 4.2.1.6): strict verifiers (Python 3.13's default context)
	 * refuse the leaf otherwise. */
	snprintf(san, sizeof(san), "%sDNS:%s", strlen(name) <= 64 ? "" : "critical,", name);
	if (!X509_set_version(x, 2) || set_serial(x) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
	    !X509_gmtime_adj(X509_getm_notAfter(x), valid_secs) ||
	    /* never past the CA: a leaf outliving its issuer does not verify */
	    (ASN1_TIME_compare(X509_get0_notAfter(ca->cert), X509_get0_notAfter(x)) < 0 &&
	     !X509_set1_notAfter(x, X509_get0_notAfter(ca->cert))) ||
	    !X509_set_pubkey(x, ca->leaf_key) ||
	    /* CN is at most 64 bytes; clients match on the SAN anyway. */
	    (strlen(name) <= 64 &&
	     !X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0)) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    add_ext(ca->cert, x, NID_basic_constraints, "critical,CA:FALSE") ||
	    add_ext(ca->cert, x, NID_key_usage, "critical,digitalSignature") ||
	    add_ext(ca->cert, x, NID_ext_key_usage, "serverAuth") ||
	    add_ext(ca->cert, x, NID_subject_alt_name, san) ||
	    add_ext(ca->cert, x, NID_authority_key_identifier, "keyid") ||
	    !X509_sign(x, ca->key, EVP_sha256())) {
		pr_warn("Couldn't mint a certificate for %s: %s", name, ossl_err());
		X509_free(x);
		return NULL;
	}
	return der_cached(x, name);
}

/* ---- LRU cache ---- */

struct cc_entry {
	struct cc_entry *hnext;        /* hash chain */
	struct cc_entry *prev, *next;  /* LRU list, most recent first */
	X509 *cert;
	time_t renew_at;
	char name[];
};

/*
 * One cache for all workers (a name is minted once, and the memory is not
 * multiplied by the worker count), under a mutex held only for the lookup:
 * a miss signs outside it. What a caller gets is borrowed "until its next
 * certcache_get": another worker may evict the entry meanwhile, so each thread
 * keeps a reference on the last certificate it was handed (held), dropped at
 * its next call or by certcache_thread_done().
 */
static __thread X509 *held;

struct certcache {
	pthread_mutex_t lock;
	const struct ca *ca;
	size_t cap, n, nbuckets;
	long valid_secs;
	unsigned long mints;
	struct cc_entry lru;           /* sentinel */
	struct cc_entry **buckets;
};

static size_t name_hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
	return h;
}

struct certcache *certcache_new(const struct ca *ca, size_t cap, long valid_secs)
{
	struct certcache *cc = calloc(1, sizeof(*cc));

	if (!cc)
		return NULL;
	cc->ca = ca;
	cc->cap = cap ? cap : 1;
	cc->valid_secs = valid_secs;
	cc->nbuckets = 16;
	while (cc->nbuckets < cc->cap * 2)
		cc->nbuckets *= 2;
	cc->buckets = calloc(cc->nbuckets, sizeof(*cc->buckets));
	if (!cc->buckets) {
		free(cc);
		return NULL;
	}
	cc->lru.prev = cc->lru.next = &cc->lru;
	pthread_mutex_init(&cc->lock, NULL);
	return cc;
}

static void lru_unlink(struct cc_entry *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
}

static void lru_push_front(struct certcache *cc, struct cc_entry *e)
{
	e->next = cc->lru.next;
	e->prev = &cc->lru;
	cc->lru.next->prev = e;
	cc->lru.next = e;
}

static void entry_remove(struct certcache *cc, struct cc_entry *e)
{
	struct cc_entry **pp = &cc->buckets[name_hash(e->name) & (cc->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	lru_unlink(e);
	X509_free(e->cert);
	free(e);
	cc->n--;
}

void certcache_free(struct certcache *cc)
{
	if (!cc)
		return;
	while (cc->lru.next != &cc->lru)
		entry_remove(cc, cc->lru.next);
	certcache_thread_done();
	pthread_mutex_destroy(&cc->lock);
	free(cc->buckets);
	free(cc);
}

/* Caller holds cc->lock. The entry for name, NULL on a miss (an entry
 * due for renewal is dropped). */
static struct cc_entry *cc_find(struct certcache *cc, size_t b, const char *name, time_t now)
{
	struct cc_entry *e;

	for (e = cc->buckets[b]; e; e = e->hnext) {
		if (strcmp(e->name, name))
			continue;
		if (now >= e->renew_at) {
			entry_remove(cc, e);
			return NULL;
		}
		lru_unlink(e);
		lru_push_front(cc, e);
		return e;
	}
	return NULL;
}

/* Returns x with a reference the calling thread holds until its next call. */
static X509 *hold(X509 *x)
{
	X509_free(held);
	held = x;
	return x;
}

X509 *certcache_get(struct certcache *cc, const char *name)
{
	size_t b = name_hash(name) & (cc->nbuckets - 1), len;
	time_t now = time(NULL);
	struct cc_entry *e, *ne;
	X509 *x;

	pthread_mutex_lock(&cc->lock);
	e = cc_find(cc, b, name, now);
	if (e) {
		x = e->cert;
		X509_up_ref(x);
		pthread_mutex_unlock(&cc->lock);
		return hold(x);
	}
	pthread_mutex_unlock(&cc->lock);

	/* A signature takes a while: the other workers go on meanwhile. */
	x = ca_mint(cc->ca, name, cc->valid_secs);
	if (!x)
		return NULL;
	len = strlen(name);
	ne = malloc(sizeof(*ne) + len + 1);
	if (!ne) {
		X509_free(x);
		return NULL;
	}
	memcpy(ne->name, name, len + 1);
	ne->cert = x;
	ne->renew_at = now + cc->valid_secs - cc->valid_secs / 10;

	pthread_mutex_lock(&cc->lock);
	cc->mints++;
	e = cc_find(cc, b, name, now);
	if (e) {
		/* another worker minted it first: one entry per name */
		free(ne);
		X509_free(x);
		x = e->cert;
	} else {
		if (cc->n >= cc->cap)
			entry_remove(cc, cc->lru.prev);
		ne->hnext = cc->buckets[b];
		cc->buckets[b] = ne;
		lru_push_front(cc, ne);
		cc->n++;
	}
	X509_up_ref(x);
	pthread_mutex_unlock(&cc->lock);
	return hold(x);
}

void certcache_thread_done(void)
{
	X509_free(held);
	held = NULL;
}

/* The lock is not part of the value: taking it does not change the cache. */
size_t certcache_size(const struct certcache *cc)
{
	pthread_mutex_t *l = (pthread_mutex_t *)&cc->lock;
	size_t n;

	pthread_mutex_lock(l);
	n = cc->n;
	pthread_mutex_unlock(l);
	return n;
}

unsigned long certcache_mints(const struct certcache *cc)
{
	pthread_mutex_t *l = (pthread_mutex_t *)&cc->lock;
	unsigned long n;

	pthread_mutex_lock(l);
	n = cc->mints;
	pthread_mutex_unlock(l);
	return n;
}

const struct ca *certcache_ca(const struct certcache *cc) { return cc->ca; }
