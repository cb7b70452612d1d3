/* SPDX-License-Identifier: MIT */
/*
 * sluiced internals: the broker (one per worker thread) and its connections.
 * Process model, lifecycle and memory per connection: see docs/architecture.md
 * and the comments on struct conn.
 */
#ifndef SLUICE_BROKER_H
#define SLUICE_BROKER_H
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <linux/types.h>
#include "buf.h"
#include "ca.h"
#include "common_kern_user.h"
#include "ev.h"
#include "hx.h"
#include "policy.h"
#include "resolve.h"
#include "tls.h"

#define BROKER_MAX_LIST 64

struct broker_cfg {
	char listen_addr[64];          /* "127.0.0.1" */
	uint16_t listen_port;          /* 0 = the kernel picks */
	int ready_fd;                  /* -1 = none */
	const char *policy_file;
	const char *allow[BROKER_MAX_LIST];       size_t n_allow;
	const char *upstream_ca[BROKER_MAX_LIST]; size_t n_upstream_ca;
	const char *resolve[BROKER_MAX_LIST];     size_t n_resolve;
	const char *ca_dir, *run_dir, *audit, *pin_root, *sandbox;
	unsigned workers;
	bool origdst_fixed_set;        /* test aid: every connection "came from" origdst_fixed */
	uint64_t sandbox_cgid;         /* --cgroup-id: records of other sandboxes are refused (0: any) */
	struct sluice_orig_dst origdst_fixed;
	unsigned max_conns;
	uint32_t handshake_ms, header_ms, idle_ms, io_ms, pool_idle_ms;
	size_t max_header_bytes, max_headers;
	size_t pool_max;
	uint32_t drain_ms;
};

struct upconn;
struct rawtcp;

/* A connection from the sandbox, with its upstream side. Owned by the broker's
 * conn list; freed only in conn_free() from the close list before sleep. */
struct side {
	struct ev_io io;               /* fd and the callback; fd -1 when closed */
	SSL *ssl;                      /* NULL on plain TCP */
	bool rd_blocked;               /* last read said EAGAIN / WANT_*: wait for an event */
	bool wr_blocked;               /* last write said EAGAIN / WANT_* */
	bool eof;                      /* peer closed its write side */
	bool hup;                      /* EPOLLRDHUP/HUP/ERR seen: read to EAGAIN (a short read proves nothing) */
	bool out_armed;                /* EPOLLOUT is in the fd's epoll events */
	bool out_held;                 /* BIO bytes (a TLS 1.3 ticket) wait for the next write */
	struct ev_loop *loop;          /* where io is registered */
};

enum conn_state { CS_PEEK, CS_HANDSHAKE, CS_HTTP, CS_CLOSING };
enum up_state { US_NONE, US_RESOLVING, US_CONNECTING, US_HANDSHAKE, US_READY };
enum timer_kind { TK_NONE, TK_HANDSHAKE, TK_HEADER, TK_IDLE, TK_IO, TK_FIRST };

#define CONN_MAGIC 0x736c6363u

struct conn {
	uint32_t magic;                /* CONN_MAGIC while alive: checked when recovered from a void * */
	struct broker *b;
	struct conn *prev, *next;      /* the broker's list of live connections */
	struct conn *next_close;       /* close list, drained before sleep */
	struct conn *next_run;         /* run list: work left when conn_run yielded */
	struct side cl, up;            /* client (sandbox) and upstream */
	struct buf cin;                /* decrypted client bytes hx has not consumed yet */
	struct buf cout;               /* bytes to the client */
	struct buf uout;               /* bytes to the upstream (or tunnel bytes) */
	struct buf replay;             /* request bytes sent on a reused upstream, until its answer starts */
	struct hx *hx;                 /* NULL until the protocol is known; NULL for raw TCP */
	struct rawtcp *raw;            /* a proto: tcp rule allows the destination: set at accept,
	                                * kept only if the connection becomes a raw tunnel */
	struct ev_tnode timer;
	struct ev_tnode trim;          /* idle a while: give back TLS and buffer memory */
	enum timer_kind tk;            /* which list timer is on */
	enum conn_state st;
	enum up_state ust;
	struct rs_job *rjob;           /* pending name lookup, cancelled on close */
	struct rs_result addrs;        /* candidates for the upstream, tried in order */
	size_t addr_i;
	uint16_t port;                 /* original destination port */
	struct sluice_orig_dst od;     /* who connected, and where to */
	char sni[TLS_SNI_MAX];         /* from the ClientHello; "" on plain HTTP */
	char up_host[256];             /* upstream name being dialled / connected */
	char close_reason[160];        /* why conn_close was called (copied: may come from a stack buffer) */
	bool tls;                      /* client side is TLS */
	bool over;                     /* accepted over --max-conns: every request gets 503 */
	bool tunnel;                   /* after an upgrade: raw bytes both ways */
	uint64_t tun_in, tun_out;      /* tunnel bytes from / to the sandbox, for the audit line */
	uint64_t idle_seq;             /* hx_requests() when the idle timer was armed */
	size_t uout_mark;              /* uout's length before the last hx_on_client: older bytes belong to the last upstream */
	bool hx_paused;                /* request in flight: hx took part of cin, waits for RESUME */
	bool client_eof_fed;           /* hx_on_client_eof was called */
	bool up_eof_fed;
	bool want_close;               /* flush cout, then close */
	bool abort;                    /* the response was cut short: close without close_notify, with a reset */
	bool up_no_reuse;              /* hx said UPSTREAM_DONE */
	bool up_internal;              /* dialled an internal address (a rule named the host) */
	bool closing;
	bool queued;                   /* on the run list */
	bool up_used;                  /* the upstream connection already carried an exchange (pool, keep-alive) */
	bool replay_ok;                /* replay holds all of this request sent so far: retry possible */
	bool retried;                  /* this request was retried once already */
	bool skip_pool;                /* next dial: a fresh connection, not a pooled one */
	bool rq_sent;                  /* request head passed on (or upstream opened): not a header phase */
};

struct broker {
	struct broker_cfg *cfg;
	struct ev_loop loop;
	struct ev_io lis[2], udp[2], sig, resio;
	SSL_CTX *srv_ctx, *cli_ctx;
	struct ca *ca;
	struct certcache *cc;
	struct resolver *res;
	int orig_fd;                   /* pinned SLUICE_MAP_ORIG, -1 until a sandbox exists */
	/* Looks up (and deletes) the original destination of an accepted fd: 0 or
	 * -errno. peer, local: its addresses when known, NULL asks the socket. */
	int (*origdst_take)(struct broker *b, int fd, const struct sockaddr_storage *peer,
			    const struct sockaddr_storage *local, struct sluice_orig_dst *out);
	/* The address each listener is bound to, when it is one address (not a
	 * wildcard): every connection it accepts has that local end. */
	struct sockaddr_storage lis_local[2];
	bool lis_local_ok[2];
	int audit_fd;                  /* set with audit_set_fd() */
	bool audit_fifo;               /* audit_fd is a pipe: lines go in PIPE_BUF chunks */
	struct buf audit_buf;          /* lines written before sleep, one write() per wake-up */
	struct ev_tlist t_handshake, t_header, t_idle, t_io, t_pool, t_trim;
	struct ev_tlist t_first;       /* raw-TCP-allowed connection silent this long: server speaks first */
	struct conn conns;             /* sentinel of the live list */
	struct conn *close_list;
	struct conn *run_list;         /* connections that yielded with work left (fairness) */
	size_t n_conns;
	size_t n_over;                 /* of them, over --max-conns: answered 503 (accept_one) */
	struct upconn *pool;           /* idle upstream connections, most recent first */
	struct upconn *pool_dead;      /* closed ones, freed before sleep (events may still point at them) */
	size_t n_pool;
	struct hx_limits limits;
	char scratch[16384 + 64];      /* upstream reads land here before hx */
	bool draining;
	uint64_t drain_deadline;
	uint16_t port, dns_port;
	unsigned long n_accepted, n_refused;
	uint64_t refused_warned_ms;     /* warn_refused: last line */
	unsigned long refused_quiet;   /* refusals since, not logged one by one */
	unsigned dns_inflight;         /* DNS queries waiting for a lookup (worker 0) */
};

/* Policy in force (shared by workers; swapped on SIGHUP). */
struct policy *broker_policy_get(void *ctx);
void broker_policy_set(struct policy *p);  /* takes the reference */

/* conn.c */
int broker_init(struct broker *b, struct broker_cfg *cfg, struct ca *ca, int lis4, int lis6);
void broker_accept_cb(struct ev_io *io, uint32_t events);
void broker_before_sleep(void *ctx);
void broker_drain(struct broker *b);
void broker_fini(struct broker *b);

/* audit.c */
void audit_record(struct broker *b, const struct conn *c, const struct hx_audit *rec);
void audit_flush(struct broker *b);
void audit_set_fd(struct broker *b, int fd);
bool audit_ok(void);  /* false: neither the audit log nor stderr takes lines: refuse requests */
/* How many bytes of p[0..n) go in one write() to a pipe so that no line is
 * split between writes of two workers: whole lines, at most PIPE_BUF bytes
 * (a single longer line alone). */
size_t audit_pipe_chunk(const char *p, size_t n);
/* Start of the line holding byte done of p (0 if in the first line). */
size_t audit_resume_at(const char *p, size_t done);
/* Writes a JSON string (quoted, escaped) of n bytes into out. */
int audit_json_str(struct buf *out, const char *s, size_t n);

/* dns.c */
void dns_udp_cb(struct ev_io *io, uint32_t events);   /* udp[0] */
void dns_udp6_cb(struct ev_io *io, uint32_t events);  /* udp[1] */
#define DNS_SEEN_NAME 254
/* Names this broker's DNS answered with addr (family AF_INET/AF_INET6, IPv4 in
 * addr[0..3]) whose TTL has not run out: copies up to max into names, returns
 * how many. For raw TCP, which knows only the address. */
/* The resolver answered name with addr (kept for raw TCP, newest first). */
void dns_seen_note(const char *name, int family, const uint8_t *addr);
size_t dns_names_for(int family, const uint8_t *addr, char (*names)[DNS_SEEN_NAME], size_t max);
void dns_seen_free(void);  /* at exit: frees the table */

#endif /* SLUICE_BROKER_H */
