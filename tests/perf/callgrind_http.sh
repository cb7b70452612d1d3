#!/bin/bash
# SPDX-License-Identifier: MIT
# Instructions (Ir) sluiced spends per HTTP request, counted by callgrind, not
# timed: the machine is shared, instruction counts are stable. Not part of
# make test (slow under valgrind); run by hand as root:
#   bash tests/perf/callgrind_http.sh [N]      (N keep-alive requests, default 2000)
# The broker runs under callgrind with --origdst-fixed (same HTTP path as
# behind the kernel redirect) toward an nginx in the fake internet namespace.
# Phases, each measured between callgrind_control --zero and --dump:
#   ka:   one TLS connection, N GETs of a 1 KiB file (keep-alive)
#   one:  one TLS connection, 1 GET of the same file
#   big:  one TLS connection, 1 GET of a 10 MiB file
#   conns: M new TLS connections (Python client, each resuming the session the
#         previous one got), one GET of the 1 KiB file each, "Connection: close"
#   fullconns: the same without resumption (a full handshake each)
# Ir/request = (ka - one) / (N - 1): handshakes and setup cancel out.
# Output: per-phase totals and per-function tables in $SL_PERF_OUT (default /tmp/sluice-perf).
. "$(dirname "$0")/../lib.sh"
N=${SL_PERF_N:-${1:-2000}}
export SL_PERF_N=$N  # sl_begin re-executes the script without its arguments
OUT=${SL_PERF_OUT:-/tmp/sluice-perf}
sl_begin perf_callgrind
sl_need_bins "$SLUICED"
command -v valgrind >/dev/null || sl_fail "valgrind not installed"
rm -rf "$OUT"; mkdir -p "$OUT"
fi_up

mkdir -p "$T/www"
head -c 1024 /dev/urandom >"$T/www/1k"
head -c $((10 * 1024 * 1024)) /dev/urandom >"$T/www/10m"
chmod -R a+rX "$T/www"
fi_nginx 'keepalive_timeout 300s; keepalive_requests 1000000;'

exec {rfd}>"$T/ready"
sl_bg broker valgrind --tool=callgrind --callgrind-out-file="$OUT/cg.%p" \
	"$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:4443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/audit" --idle-timeout 600 --io-timeout 600 --header-timeout 600
exec {rfd}>&-
for i in $(seq 600); do grep -q READY "$T/ready" 2>/dev/null && break; sleep 0.1; done
grep -q READY "$T/ready" || sl_fail "broker did not get ready: $(cat "$T/broker.log")"
read -r _ BPORT _ <"$T/ready"
BPID=$(cat "$T/broker.pid")
C=(curl -sS --max-time 900 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT" -w '%{http_code}\n')

# Warm-up: cert minted, upstream session cached, code paged in.
"${C[@]}" -o /dev/null "https://api.test:4443/1k" >/dev/null || sl_fail "warm-up request failed: $(tail "$T/broker.log")"

phase() { # name curl-args...
	local name=$1; shift
	callgrind_control -z "$BPID" >/dev/null || sl_fail "callgrind_control -z failed"
	"${C[@]}" "$@" >"$T/$name.codes" || sl_fail "phase $name: curl failed: $(tail "$T/broker.log")"
	sleep 0.5
	callgrind_control -d "$name" "$BPID" >/dev/null || sl_fail "callgrind_control -d failed"
	sleep 0.5
	local f
	f=$(ls -t "$OUT"/cg.* | grep -v '\.txt$' | head -n 1)
	mv "$f" "$OUT/$name.cg"
	callgrind_annotate --threshold=100 --auto=no "$OUT/$name.cg" >"$OUT/$name.txt" 2>/dev/null
	callgrind_annotate --threshold=100 --auto=no --inclusive=yes "$OUT/$name.cg" >"$OUT/$name.incl.txt" 2>/dev/null
	grep -m1 'PROGRAM TOTALS' "$OUT/$name.txt" | awk '{gsub(",","",$1); print $1}' >"$OUT/$name.ir"
	# The HTTP engine and the audit line (inclusive): what hx.c, audit.c, buf.c and policy/ cost.
	grep -E ':(hx_on_client|hx_on_upstream|audit_record|audit_flush) ' "$OUT/$name.incl.txt" |
		awk '{gsub(",","",$1); s+=$1} END{print s+0}' >"$OUT/$name.hx"
}

for i in $(seq "$N"); do echo "url = \"https://api.test:4443/1k\""; echo "output = /dev/null"; done >"$T/urls"
phase ka -K "$T/urls"
[ "$(grep -c '^200$' "$T/ka.codes")" = "$N" ] || sl_fail "not all $N requests got 200: $(sort "$T/ka.codes" | uniq -c)"
phase one -o /dev/null "https://api.test:4443/1k"
phase big -o "$T/big.out" "https://api.test:4443/10m"
cmp -s "$T/big.out" "$T/www/10m" || sl_fail "10 MiB response corrupted"

# New connections, as in make bench's "close" case: each resumes the last
# session (TLS 1.3 ticket) and sends one request with Connection: close.
M=${SL_PERF_M:-200}
cat >"$T/conns.py" <<PYEOF
import socket, ssl, sys
ctx = ssl.create_default_context(cafile="$T/run/ca.crt")
full = len(sys.argv) > 1  # no resumption: a full handshake per connection
sess = None; reused = 0
for i in range($M):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", $BPORT)), server_hostname="api.test", session=sess)
    reused += s.session_reused
    s.sendall(b"GET /1k HTTP/1.1\r\nHost: api.test:4443\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d: break
        data += d
    sess = None if full else s.session
    s.close()
    print(data.split(b" ", 2)[1].decode())
print("reused", reused, file=sys.stderr)
PYEOF
conns_phase() { # name [full]
	local name=$1 f; shift
	callgrind_control -z "$BPID" >/dev/null || sl_fail "callgrind_control -z failed"
	"$PY" "$T/conns.py" "$@" >"$T/$name.codes" 2>"$T/$name.err" || sl_fail "$name phase failed: $(cat "$T/$name.err")"
	sleep 0.5; callgrind_control -d "$name" "$BPID" >/dev/null; sleep 0.5
	f=$(ls -t "$OUT"/cg.* | grep -v '\.txt$' | head -n 1); mv "$f" "$OUT/$name.cg"
	callgrind_annotate --threshold=100 --auto=no "$OUT/$name.cg" >"$OUT/$name.txt" 2>/dev/null
	callgrind_annotate --threshold=100 --auto=no --inclusive=yes "$OUT/$name.cg" >"$OUT/$name.incl.txt" 2>/dev/null
	[ "$(grep -c '^200$' "$T/$name.codes")" = "$M" ] || sl_fail "not all $M connections got 200: $(sort "$T/$name.codes" | uniq -c)"
	grep -m1 'PROGRAM TOTALS' "$OUT/$name.txt" | awk '{gsub(",","",$1); print $1}' >"$OUT/$name.ir"
}
conns_phase conns
conns_phase fullconns full
conns=$(cat "$OUT/conns.ir"); fullconns=$(cat "$OUT/fullconns.ir")

ka=$(cat "$OUT/ka.ir"); one=$(cat "$OUT/one.ir"); big=$(cat "$OUT/big.ir")
per=$(( (ka - one) / (N - 1) ))
hxper=$(( ($(cat "$OUT/ka.hx") - $(cat "$OUT/one.hx")) / (N - 1) ))
echo "ka: $ka Ir for $N requests; one: $one Ir; big (10 MiB): $big Ir"
echo "Ir/request (1 KiB keep-alive): $per total, $hxper in hx_on_client+hx_on_upstream+audit (inclusive)"
echo "Ir per 10 MiB response: $big total, $(cat "$OUT/big.hx") in hx+audit"
echo "Ir per new connection (resumed TLS 1.3, 1 KiB GET, Connection: close): $((conns / M)) ($(cat "$T/conns.err"))"
echo "Ir per new connection with a full handshake: $((fullconns / M)) ($(cat "$T/fullconns.err"))"
echo "tables: $OUT/{ka,one,big,conns,fullconns}.txt"
sl_pass "Ir/request $per"
