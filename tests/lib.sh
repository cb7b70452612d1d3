# SPDX-License-Identifier: MIT
# Shared helpers for the integration tests (bash; sourced). Each test:
#   . "$(dirname "$0")/../lib.sh"; sl_begin NAME; fi_up; ...; sl_pass
# Everything a test creates (namespaces, veths, processes, cgroups, pins) is
# registered for cleanup, which runs on any exit (trap), in reverse order.
# Traffic goes only to loopback and to the fake internet namespace made here.

SL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B=${B:-build}
SLUICE=$SL_ROOT/$B/sluice
SLUICED=$SL_ROOT/$B/sluiced
PY=/usr/bin/python3
SL_CLEANUP=()
SL_NAME=test

sl_log() { printf '[%s] %s\n' "$SL_NAME" "$*" >&2; }
sl_skip() { sl_log "SKIP: $*"; echo "skip: $*"; exit 77; }
sl_fail() { sl_log "FAIL: $*"; exit 1; }
sl_pass() { sl_log "PASS${1:+: $*}"; exit 0; }
sl_ok() { sl_log "ok: $*"; }

sl_defer() { SL_CLEANUP+=("$*"); }

sl_cleanup() {
	local rc=$? i
	trap - EXIT INT TERM
	for ((i = ${#SL_CLEANUP[@]} - 1; i >= 0; i--)); do
		eval "${SL_CLEANUP[$i]}" >/dev/null 2>&1 || true
	done
	if [ "$rc" != 0 ] && [ -n "${T:-}" ] && [ -d "$T" ]; then
		sl_log "kept logs in $T"
	elif [ -n "${T:-}" ]; then
		rm -rf "$T"
	fi
	exit "$rc"
}

# sl_begin NAME: root check, $T scratch dir, cleanup trap, and a private mount
# namespace whose /etc/resolv.conf points at 127.0.0.1 (where nothing answers):
# whatever a test starts (the broker's resolver included) can never send a DNS
# query to the host's real resolver. Names tests use are pinned (--resolve).
sl_begin() {
	SL_NAME=$1
	[ "$(id -u)" = 0 ] || sl_skip "needs root (run make test as root)"
	if [ -z "${SL_PRIVATE_MNTNS:-}" ]; then
		export SL_PRIVATE_MNTNS=1
		exec unshare --mount --propagation private -- bash "$0"
	fi
	T=$(mktemp -d "/tmp/sluice-test-$1.XXXXXX")
	chmod 755 "$T"
	trap sl_cleanup EXIT
	trap 'exit 130' INT TERM
	printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' >"$T/resolv.conf"
	chmod 644 "$T/resolv.conf"
	mount --bind "$T/resolv.conf" /etc/resolv.conf || sl_fail "couldn't isolate /etc/resolv.conf"
	sl_defer "umount /etc/resolv.conf"
	[ -n "${SL_VALGRIND:-}" ] && sl_valgrind_wrap
}

# SL_VALGRIND=DIR (tests/run.sh's valgrind pass): sluiced runs under memcheck,
# one log per process in DIR; sluice run/attach are pointed at it with --broker
# (a test's own --broker, given later on the command line, still wins).
sl_valgrind_wrap() {
	local real_d=$SLUICED real_s=$SLUICE
	cat >"$T/vg-sluiced" <<W
#!/bin/sh
exec valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
	--log-file="$SL_VALGRIND/vg.%p.log" "$real_d" "\$@"
W
	cat >"$T/vg-sluice" <<W
#!/bin/sh
sub=\$1; shift
case "\$sub" in run|attach) exec "$real_s" "\$sub" --broker "$T/vg-sluiced" "\$@" ;; esac
exec "$real_s" "\$sub" "\$@"
W
	chmod 755 "$T/vg-sluiced" "$T/vg-sluice"
	SLUICED=$T/vg-sluiced
	SLUICE=$T/vg-sluice
}

# sl_bg NAME CMD...: start a background process; killed by PID at cleanup.
sl_bg() {
	local name=$1; shift
	"$@" >"$T/$name.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$T/$name.pid"
	sl_defer "sl_kill_pid $pid"
}
sl_kill_pid() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
}

sl_assert_eq() { # expected actual message
	[ "$1" = "$2" ] || sl_fail "$3: expected '$1', got '$2'"
	sl_ok "$3"
}
sl_assert_contains() { # haystack needle message
	case "$1" in *"$2"*) sl_ok "$3" ;; *) sl_fail "$3: '$2' not found in: $(printf '%s' "$1" | head -c 600)" ;; esac
}
sl_assert_not_contains() { # haystack needle message
	case "$1" in *"$2"*) sl_fail "$3: '$2' found in: $(printf '%s' "$1" | head -c 600)" ;; *) sl_ok "$3" ;; esac
}
# sl_wait_for CMD...: retry a command for up to 10 s.
sl_wait_for() {
	local i
	for i in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}

sl_need_bins() {
	local b
	for b in "$@"; do [ -x "$b" ] || sl_fail "$b is not built (run make)"; done
}

# ---- fake internet ----
# fi_up: a network namespace standing for the internet, joined to the host by a
# veth pair. Sets FI_NS, FI_IP4 (10.99.N.2), FI_IP6 (fd99:N::2), FI_HOST4/6 (host
# side), FI_CA (test CA), FI_DIR (server logs). Servers inside:
#   443 HTTPS for api.test, other.test, *.test (cert signed by FI_CA)
#   8443 HTTPS with a certificate from another CA (bad.test): verification must fail
#   80 plain HTTP, 9000 TCP counter, 9001 UDP counter/echo, 53/udp counter (a "foreign resolver")
fi_up() {
	local n
	# A subnet no other test on this machine holds: tests may run at the same
	# time, and two fake internets on one 10.99.N/24 would answer each other's
	# connections. The lock directory is the claim; cleanup releases it.
	for n in $(shuf -i 20-250); do
		ip -4 addr show | grep -q "10\.99\.$n\." && continue
		mkdir "/tmp/sluice-fi-$n.lock" 2>/dev/null || {
			# a lock whose owner is gone is stale
			kill -0 "$(cat "/tmp/sluice-fi-$n.lock/pid" 2>/dev/null)" 2>/dev/null && continue
			rm -rf "/tmp/sluice-fi-$n.lock"; mkdir "/tmp/sluice-fi-$n.lock" 2>/dev/null || continue
		}
		echo $$ >"/tmp/sluice-fi-$n.lock/pid"
		sl_defer "rm -rf /tmp/sluice-fi-$n.lock"
		break
	done
	FI_NS=slfi$$
	FI_HV=slh$$
	FI_IP4=10.99.$n.2; FI_HOST4=10.99.$n.1
	FI_IP6=fd99:$n::2; FI_HOST6=fd99:$n::1
	FI_DIR=$T/fi; mkdir -p "$FI_DIR"
	ip netns add "$FI_NS" || sl_fail "ip netns add failed"
	sl_defer "ip netns del $FI_NS"
	ip link add "$FI_HV" type veth peer name slp$$ || sl_fail "veth"
	sl_defer "ip link del $FI_HV"
	ip link set slp$$ netns "$FI_NS"
	ip addr add "$FI_HOST4/24" dev "$FI_HV"
	ip -6 addr add "$FI_HOST6/64" dev "$FI_HV" nodad
	ip link set "$FI_HV" up
	ip -n "$FI_NS" addr add "$FI_IP4/24" dev slp$$
	ip -n "$FI_NS" -6 addr add "$FI_IP6/64" dev slp$$ nodad
	ip -n "$FI_NS" link set slp$$ up
	ip -n "$FI_NS" link set lo up
	fi_pki
	fi_serve https443 https 443 "$FI_DIR/pki/srv.crt" "$FI_DIR/pki/srv.key"
	fi_serve https8443 https 8443 "$FI_DIR/pki/bad.crt" "$FI_DIR/pki/bad.key"
	fi_serve http80 http 80
	fi_serve tcp9000 tcpcount 9000
	fi_serve udp9001 udpcount 9001
	fi_serve udp53 udpcount 53
	sl_wait_for fi_probe 443 || sl_fail "fake internet HTTPS server did not start: $(cat "$T"/https443.log)"
	sl_wait_for fi_probe 9000 || sl_fail "fake internet TCP server did not start"
	: >"$FI_DIR/conn.443.log"; : >"$FI_DIR/conn.9000.log"
}
# fi_nginx KEEPALIVE: nginx (one worker) in the fake internet on $FI_IP4:4443, TLS with the
# fake internet's server certificate, serving $T/www; KEEPALIVE is its keepalive directives.
# Tests that must measure the broker, not a Python upstream, use it.
fi_nginx() {
	command -v nginx >/dev/null || sl_fail "nginx not found: run make deps (nginx-light)"
	mkdir -p "$T/ngx"
	cat >"$T/ngx/nginx.conf" <<NGX
worker_processes 1; daemon off; pid $T/ngx/nginx.pid; error_log $T/ngx/error.log;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx;
  uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  $1
  server { listen $FI_IP4:4443 ssl; ssl_certificate $FI_DIR/pki/srv.crt;
           ssl_certificate_key $FI_DIR/pki/srv.key; root $T/www; }
}
NGX
	sl_bg nginx ip netns exec "$FI_NS" nginx -c "$T/ngx/nginx.conf"
	sl_wait_for fi_probe 4443 "$FI_IP4" || sl_fail "nginx did not start: $(cat "$T/ngx/error.log" "$T/nginx.log")"
}
fi_serve() { # name mode port [cert key]
	local name=$1; shift
	sl_bg "$name" ip netns exec "$FI_NS" "$PY" "$SL_ROOT/tests/servers/upstream.py" "$@" "$FI_DIR"
}
fi_probe() { # port [address in the fake internet, 127.0.0.1]
	ip netns exec "$FI_NS" "$PY" -c "import socket; socket.create_connection(('${2:-127.0.0.1}', $1), 1)"
}
fi_pki() {
	local d=$FI_DIR/pki
	mkdir -p "$d"
	(
		cd "$d" || exit 1
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
			-days 2 -subj /CN=sluice-test-ca
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=api.test
		printf 'subjectAltName=DNS:api.test,DNS:other.test,DNS:example.test,DNS:evil.test,DNS:*.test,DNS:*.api.test,IP:%s,IP:%s\n' "$FI_IP4" "$FI_IP6" >ext
		openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 2 -extfile ext
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout bad.key -out bad.crt \
			-days 2 -subj /CN=bad.test -addext subjectAltName=DNS:bad.test
	) >"$d/gen.log" 2>&1 || sl_fail "test PKI: $(cat "$d/gen.log")"
	FI_CA=$d/ca.crt
}
# fi_conns PORT: TCP connections the fake internet accepted on PORT.
fi_conns() { [ -f "$FI_DIR/conn.$1.log" ] && wc -l <"$FI_DIR/conn.$1.log" | tr -d ' ' || echo 0; }
# fi_udp_count PORT: datagrams received on PORT (default 9001).
fi_udp_count() { [ -f "$FI_DIR/udp.${1:-9001}.log" ] && wc -l <"$FI_DIR/udp.${1:-9001}.log" | tr -d ' ' || echo 0; }
# fi_requests PORT: the JSON lines of requests the server saw.
fi_requests() { cat "$FI_DIR/req.$1.log" 2>/dev/null; }

# sluice_run ARGS -- CMD...: the CLI with the fake internet's CA and names.
sluice_run() {
	"$SLUICE" run --upstream-ca "$FI_CA" \
		--resolve "api.test:$FI_IP4" --resolve "other.test:$FI_IP4" --resolve "evil.test:$FI_IP4" \
		--resolve "bad.test:$FI_IP4" "$@"
}
