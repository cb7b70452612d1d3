#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced streaming and connection reuse, without the kernel part (--origdst-fixed):
# a 50 MiB HTTPS download through the broker from an nginx in the test's namespace
# must arrive intact and take no more than 3x the direct download (a broker that
# stalls on backpressure or waits for a lost wake-up takes seconds), several in
# parallel too, and to a reader slower than the upstream; requests on a reused upstream connection the server closed get
# sent again on a new one (not a 502); the header timeout (408) must
# also hold for a second request on a keep-alive connection (slowloris).
. "$(dirname "$0")/../lib.sh"
sl_begin broker_stream
sl_need_bins "$SLUICED"
fi_up

# nginx in the fake internet on 4443: fast enough that the broker is what is measured.
mkdir -p "$T/www"
head -c $((50 * 1024 * 1024)) /dev/urandom >"$T/www/big"
printf 'hello\n' >"$T/www/small"
chmod -R a+rX "$T/www"
fi_nginx 'keepalive_timeout 30s;'

exec {rfd}>"$T/ready"
sl_bg broker "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:4443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/audit" --header-timeout 1
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready" || sl_fail "broker did not get ready: $(cat "$T/broker.log")"
read -r _ BPORT _ <"$T/ready"
C=(curl -sS --max-time 60 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT")

secs() { date +%s.%N; }
want=$(sha256sum <"$T/www/big" | cut -d' ' -f1)

# ---- 50 MiB download, timed against the direct one ----
t0=$(secs)
curl -sS --max-time 60 --cacert "$FI_CA" --resolve "api.test:4443:$FI_IP4" -o "$T/direct" \
	"https://api.test:4443/big" || sl_fail "direct download failed"
t1=$(secs)
"${C[@]}" -o "$T/via" "https://api.test:4443/big" || sl_fail "download through the broker failed: $(tail "$T/broker.log")"
t2=$(secs)
sl_assert_eq "$want" "$(sha256sum <"$T/via" | cut -d' ' -f1)" "50 MiB through the broker arrives intact"
direct=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
via=$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b - a}')
sl_log "50 MiB: direct ${direct}s, through the broker ${via}s"
awk -v d="$direct" -v v="$via" 'BEGIN{exit !(v <= 3 * d + 0.3)}' ||
	sl_fail "50 MiB through the broker took ${via}s, more than 3x the direct ${direct}s (stall?)"
sl_ok "50 MiB through the broker within 3x of direct (${via}s vs ${direct}s)"

# Four at once on one worker: each stream must keep moving.
t0=$(secs)
pids=()
for i in 1 2 3 4; do "${C[@]}" -o "$T/par$i" "https://api.test:4443/big" & pids+=($!); done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
t1=$(secs)
[ $fails = 0 ] || sl_fail "$fails of 4 parallel downloads failed"
for i in 1 2 3 4; do
	[ "$(sha256sum <"$T/par$i" | cut -d' ' -f1)" = "$want" ] || sl_fail "parallel download $i is corrupt"
done
par=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
awk -v d="$direct" -v v="$par" 'BEGIN{exit !(v <= 4 * 3 * d + 1)}' ||
	sl_fail "4 parallel 50 MiB downloads took ${par}s (direct one: ${direct}s)"
sl_ok "4 parallel 50 MiB downloads intact in ${par}s"

# A reader slower than the upstream: the broker's writes toward it find the socket
# full again and again (EPOLLOUT asked for and delivered each time); a lost
# wake-up stalls the transfer until curl's own timeout.
head -c $((16 * 1024 * 1024)) "$T/www/big" >"$T/www/mid"
chmod a+r "$T/www/mid"
t0=$(secs)
"${C[@]}" --limit-rate 8M -o "$T/slow" "https://api.test:4443/mid" ||
	sl_fail "slow-reader download failed: $(tail -n 3 "$T/broker.log")"
t1=$(secs)
sl_assert_eq "$(sha256sum <"$T/www/mid" | cut -d' ' -f1)" "$(sha256sum <"$T/slow" | cut -d' ' -f1)" \
	"16 MiB to a reader limited to 8 MiB/s arrives intact"
slow=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
awk -v v="$slow" 'BEGIN{exit !(v <= 6)}' || sl_fail "16 MiB at 8 MiB/s took ${slow}s (stalled?)"
sl_ok "16 MiB to a slow reader in ${slow}s (2 s at its rate)"

# ---- a client that goes away mid-download still gets its audit line ----
# One closes cleanly after 64 KiB, one resets; both requests went upstream, so
# both are on record, with how far they got and why they ended.
"$PY" - "$BPORT" "$T/run/ca.crt" <<'PY' || sl_fail "mid-download clients failed"
import socket, ssl, struct, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
for path, reset in (("/big?quit", False), ("/big?reset", True)):
    raw = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
    s = ctx.wrap_socket(raw, server_hostname="api.test")
    s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: api.test:4443\r\n\r\n")
    got = 0
    while got < 65536:
        got += len(s.recv(65536))
    if reset:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
PY
cut_line() { grep -F "\"path\":\"$1\"" "$T/audit" | grep -F '"cut":'; }
sl_wait_for cut_line "/big?quit" || sl_fail "no audit line for a download the client quit: $(tail -n 3 "$T/audit")"
sl_wait_for cut_line "/big?reset" || sl_fail "no audit line for a download the client reset: $(tail -n 3 "$T/audit")"
for q in quit reset; do
	line=$(cut_line "/big?$q")
	sl_log "audit: $line"
	sl_assert_contains "$line" '"status":200' "the cut download ($q) is on record with the status it got"
	out=$(sed 's/.*"bytes_out":\([0-9]*\).*/\1/' <<<"$line")
	[ "$out" -ge 65536 ] && [ "$out" -lt $((50 * 1024 * 1024)) ] ||
		sl_fail "the cut download ($q) says bytes_out $out: not how far it got"
done
sl_ok "downloads cut short by the client have audit lines with their bytes and the reason"

# ---- a reused upstream connection the server closed: retried once, not a 502 ----
# Each connection answers its first request (keep-alive) and closes on the next
# one without a word: what a server whose keep-alive timer fired just as the
# request left looks like, past any liveness check the broker can make.
sl_bg closer ip netns exec "$FI_NS" "$PY" -c '
import socket, ssl, sys, threading
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[3], 4446)); s.listen(64)
log = open(sys.argv[4], "a", buffering=1)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True); buf = b""
        while b"\r\n\r\n" not in buf:
            d = t.recv(4096)
            if not d: return
            buf += d
        log.write("answered\n")
        t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        t.recv(4096)  # the next request: dropped, connection closed unanswered
        log.write("dropped\n")
        t.close()
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$FI_DIR/pki/srv.crt" "$FI_DIR/pki/srv.key" "$FI_IP4" "$T/closer.log"
closer_up() { ip netns exec "$FI_NS" "$PY" -c "import socket; socket.create_connection(('$FI_IP4', 4446), 1)"; }
sl_wait_for closer_up || sl_fail "closing server did not start: $(cat "$T/closer.log")"
exec {rfd}>"$T/ready2"
sl_bg broker2 "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:4446" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/audit2" --header-timeout 1
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready2" || sl_fail "broker2 did not get ready: $(cat "$T/broker2.log")"
read -r _ BPORT2 _ <"$T/ready2"
C2=(curl -sS --max-time 10 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT2" -o /dev/null -w '%{http_code} ')
codes=$("${C2[@]}" "https://api.test:4446/a" -o /dev/null "https://api.test:4446/b" -o /dev/null "https://api.test:4446/c")
sl_assert_eq "200 200 200 " "$codes" "keep-alive requests after the server dropped the upstream connection"
codes=$("${C2[@]}" "https://api.test:4446/d"; "${C2[@]}" "https://api.test:4446/e")
sl_assert_eq "200 200 " "$codes" "pooled upstream closed by the server: retried on a new connection"
sl_assert_contains "$(cat "$T/closer.log")" "dropped" "the server really dropped reused connections"
grep -q "sending the request again" "$T/broker2.log" || sl_fail "the broker did not say it retried"
sl_ok "the broker logged the retry"
# A POST on a reused connection the server drops is not sent again: the server
# may have acted on it (RFC 9110 9.2.2). The client gets 502.
d0=$(grep -c dropped "$T/closer.log")
code=$("${C2[@]}" -X POST -d x "https://api.test:4446/f")
sl_assert_eq "502 " "$code" "a POST the server dropped on a reused connection: 502, not retried"
sl_assert_eq $((d0 + 1)) "$(grep -c dropped "$T/closer.log")" "the server saw the POST once"
grep -q "not sending it again" "$T/broker2.log" || sl_fail "the broker did not say why it did not retry"

# ---- header timeout on a later request of a kept-alive connection (slowloris) ----
out=$(timeout 20 "$PY" - "$BPORT" "$T/run/ca.crt" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="api.test")
s.sendall(b"GET /small HTTP/1.1\r\nHost: api.test:4443\r\n\r\n")
first = b""
while b"hello" not in first:
    first += s.recv(4096)
t0 = time.time()
s.sendall(b"GET /small HTTP/1.1\r\nHost: api.test:4443\r\n")
resp = b""
s.settimeout(0.3)
while time.time() - t0 < 8:
    try:
        s.sendall(b"X")  # one header byte at a time, forever
    except OSError:
        break
    try:
        d = s.recv(4096)
        if not d:
            break
        resp += d
    except socket.timeout:
        pass
    except OSError:
        break
print("%.1f %s" % (time.time() - t0, resp.split(b"\r\n")[0].decode(errors="replace")))
PY
)
sl_log "slowloris on the second request: $out"
sl_assert_contains "$out" "408" "a trickled second request head gets 408"
awk -v t="${out%% *}" 'BEGIN{exit !(t < 3)}' || sl_fail "the second request head was cut off only after ${out%% *}s (header timeout 1 s)"
sl_ok "second request head cut off in ${out%% *}s"

# ---- timers that trickled bytes must not renew ----
# An upstream that takes requests and never answers (port 4447), and a broker
# with 1 s idle and I/O timeouts.
sl_bg silent ip netns exec "$FI_NS" "$PY" -c '
import socket, ssl, sys, threading, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[3], 4447)); s.listen(64)
def serve(c):
    try:
        t = ctx.wrap_socket(c, server_side=True)
        while t.recv(4096):
            pass
    except OSError:
        pass
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$FI_DIR/pki/srv.crt" "$FI_DIR/pki/srv.key" "$FI_IP4"
silent_up() { ip netns exec "$FI_NS" "$PY" -c "import socket; socket.create_connection(('$FI_IP4', 4447), 1)"; }
sl_wait_for silent_up || sl_fail "silent server did not start"
exec {rfd}>"$T/ready3"
sl_bg broker3 "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:4447" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/audit3" --header-timeout 5 --idle-timeout 1 --io-timeout 1
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready3" || sl_fail "broker3 did not get ready: $(cat "$T/broker3.log")"
read -r _ BPORT3 _ <"$T/ready3"
trickle() { # mode: idle (empty lines on an idle connection) | pipelined (a next request, byte by byte)
	timeout 20 "$PY" - "$BPORT3" "$T/run/ca.crt" "$1" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="api.test")
if sys.argv[3] == "pipelined":
    s.sendall(b"GET /never HTTP/1.1\r\nHost: api.test:4447\r\n\r\n")
    drip = b"GET /next HTTP/1.1\r\nHost: api.test:4447\r\n"
else:
    drip = b"\r\n" * 40
t0 = time.time(); resp = b""; s.settimeout(0.25)
for ch in drip:
    if time.time() - t0 > 5:
        break
    try:
        s.sendall(bytes([ch]))
        d = s.recv(4096)
        if not d:
            break
        resp += d
    except socket.timeout:
        pass
    except OSError:
        break
print("%.1f %s" % (time.time() - t0, resp.split(b"\r\n")[0].decode(errors="replace") or "closed"))
PY
}
out=$(trickle idle)
sl_log "empty lines trickled on an idle connection: $out"
sl_assert_contains "$out" " closed" "the broker closed the idle connection"
awk -v t="${out%% *}" 'BEGIN{exit !(t >= 0.9 && t < 2.5)}' || sl_fail "empty lines kept an idle connection open for ${out%% *}s (idle timeout 1 s)"
sl_ok "empty lines do not renew the idle timeout (closed after ${out%% *}s)"
out=$(trickle pipelined)
sl_log "a next request trickled while the upstream is silent: $out"
sl_assert_contains "$out" "504" "the request waiting for a silent upstream gets 504"
awk -v t="${out%% *}" 'BEGIN{exit !(t < 2.5)}' || sl_fail "the 504 came after ${out%% *}s: trickled pipelined bytes held it off (I/O timeout 1 s)"
sl_ok "trickled pipelined bytes do not hold off the 504 (${out%% *}s)"
# Requests the broker answers itself (421 here) are exchanges too: one every
# 0.6 s keeps the connection open past the 1 s idle timeout.
out=$(timeout 20 "$PY" - "$BPORT3" "$T/run/ca.crt" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="api.test")
s.settimeout(3)
n = 0
try:
    for i in range(5):
        time.sleep(0.6)
        s.sendall(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n")
        d = s.recv(4096)
        if not d.startswith(b"HTTP/1.1 421 "):
            break
        n += 1
except OSError:
    pass
print("answered", n)
PY
)
sl_assert_eq "answered 5" "$out" "requests answered by the broker itself restart the idle timeout (3 s of 421s on a 1 s timeout)"

sl_pass
