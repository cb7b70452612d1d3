#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced operations, without the kernel part (--origdst-fixed): the DNS
# resolver (allowed names answered, others REFUSED and never forwarded),
# slowloris/handshake timeouts, malformed requests, non-HTTP TCP, no
# original destination, SIGHUP reload (bad file keeps the old policy), SIGTERM.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_ops
sl_need_bins "$SLUICED"
fi_up

cat >"$T/p1.yaml" <<YAML
rules:
  - { action: allow, host: api.test }
YAML
cp "$T/p1.yaml" "$T/policy.yaml"
exec {rfd}>"$T/ready"
# A caller's generous core limit must not reach sluiced (checked below).
ulimit -S -c "$(ulimit -H -c)"
sl_bg broker "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--resolve "other.test:$FI_IP4" --resolve "meta.test:169.254.169.254" --policy "$T/policy.yaml" \
	--audit "$T/audit" --handshake-timeout 1 --header-timeout 1.5 --drain-timeout 5 --log-level debug
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready" || sl_fail "broker did not get ready: $(cat "$T/broker.log")"
read -r _ BPORT BDNS <"$T/ready"
BPID=$(cat "$T/broker.pid")
# It holds the secret values and the CA key: no core file, whatever the caller's limit was.
grep -Eq '^Max core file size +0 +0 ' "/proc/$BPID/limits" ||
	sl_fail "sluiced may dump core: $(grep 'core file' "/proc/$BPID/limits")"
C=(curl -sS --max-time 10 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT")

# ---- DNS ----
dnsq() { # name type -> "RCODE addr,addr"
	"$PY" - "$BDNS" "$1" "$2" <<'PY'
import socket, struct, sys
port, name, qt = int(sys.argv[1]), sys.argv[2], {'A': 1, 'AAAA': 28, 'TXT': 16}[sys.argv[3]]
q = struct.pack('>HHHHHH', 0x1234, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(l)]) + l.encode() for l in name.split('.')) + b'\0' + struct.pack('>HH', qt, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, ('127.0.0.1', port))
r, _ = s.recvfrom(2048)
rid, flags, qd, an = struct.unpack('>HHHH', r[:8])
assert rid == 0x1234
off = len(q); addrs = []
for _ in range(an):
    if r[off] & 0xc0 == 0xc0: off += 2
    else:
        while r[off]: off += r[off] + 1
        off += 1
    t, c, ttl, rdlen = struct.unpack('>HHIH', r[off:off + 10]); off += 10
    rd = r[off:off + rdlen]; off += rdlen
    addrs.append(socket.inet_ntop(socket.AF_INET if t == 1 else socket.AF_INET6, rd))
print(flags & 0xf, ','.join(addrs))
PY
}
udp53=$(fi_udp_count 53)
sl_assert_eq "0 $FI_IP4" "$(dnsq api.test A)" "DNS: allowed name answered with the address the broker dials"
sl_assert_eq "5 " "$(dnsq evil.example A)" "DNS: name no rule allows is REFUSED"
sl_assert_eq "5 " "$(dnsq secret-data.other.test TXT)" "DNS: TXT exfiltration attempt is REFUSED"
sl_assert_eq "0 " "$(dnsq api.test AAAA)" "DNS: no AAAA for a v4-only name"
sl_assert_eq "$udp53" "$(fi_udp_count 53)" "DNS: nothing forwarded to an outside resolver"

# ---- requests ----
out=$("${C[@]}" "https://api.test/hello") || sl_fail "GET failed: $(tail "$T/broker.log")"
sl_assert_contains "$out" "hello" "GET allowed by the policy file"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://other.test/hello")
sl_assert_eq 403 "$code" "other.test denied by the policy file"

# Malformed requests: 400, and the broker stays up.
for req in 'GET / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n' \
	   'GET / HTTP/1.1\nHost: api.test\n\n' \
	   'GET / HTTP/1.1\r\nHost: api.test\r\nX: a\r\n b\r\n\r\n'; do
	resp=$(printf "$req" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$BPORT" -servername api.test 2>/dev/null | head -1)
	sl_assert_contains "$resp" " 400" "malformed request gets 400"
done
out=$("${C[@]}" "https://api.test/hello")
sl_assert_contains "$out" "hello" "broker still serves after malformed requests"

# Slowloris: a head that never ends gets 408 after --header-timeout.
out=$("$PY" - "$BPORT" "$T/run/ca.crt" <<'PY'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(('127.0.0.1', int(sys.argv[1]))), server_hostname='api.test')
s.sendall(b'GET /hello HTTP/1.1\r\nHost: api.test\r\n')
t0 = time.time(); s.settimeout(6)
line = s.recv(100).split(b'\r\n')[0].decode()
print(line, int((time.time() - t0) * 1000))
PY
)
sl_assert_contains "$out" " 408" "slow request head gets 408"
[ "${out##* }" -lt 3000 ] || sl_fail "408 came after ${out##* } ms (header timeout 1.5 s)"
# Handshake timeout: a connection that never speaks is closed.
start=$(date +%s%N)
"$PY" -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$BPORT)); s.settimeout(5); sys.exit(0 if s.recv(1)==b'' else 1)" ||
	sl_fail "silent connection not closed"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$ms" -lt 3000 ] || sl_fail "silent connection closed after ${ms} ms (handshake timeout 1 s)"
sl_ok "silent connection closed after the handshake timeout"

# Non-HTTP TCP is refused (closed without reaching any upstream).
before=$(fi_conns 443)
got=$("$PY" -c "
import socket
s = socket.create_connection(('127.0.0.1', $BPORT)); s.sendall(b'\x00\x01SSH-2.0-x\r\n'); s.settimeout(3)
try: print(len(s.recv(100)))
except ConnectionResetError: print(0)  # closed with our bytes unread: a reset
")
sl_assert_eq 0 "$got" "non-HTTP TCP closed"
sl_assert_eq "$before" "$(fi_conns 443)" "non-HTTP TCP reached no upstream"

# ---- reload ----
printf 'rules:\n  - { action: allow, host: other.test }\n' >"$T/policy.yaml"
kill -HUP "$BPID"
sl_wait_for sh -c "grep -q 'policy reloaded' '$T/broker.log'" || sl_fail "no reload logged"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://other.test/hello")
sl_assert_eq 200 "$code" "SIGHUP: the new policy allows other.test"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://api.test/hello")
sl_assert_eq 403 "$code" "SIGHUP: the new policy no longer allows api.test"
printf 'rules:\n  - { action: allow, host: [ unterminated\n' >"$T/policy.yaml"
kill -HUP "$BPID"
sl_wait_for sh -c "grep -q 'keeping the policy in force' '$T/broker.log'" || sl_fail "bad reload not reported: $(tail -3 "$T/broker.log")"
sl_assert_contains "$(grep 'keeping the policy' "$T/broker.log")" "policy.yaml:" "bad reload names file:line"
code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://other.test/hello")
sl_assert_eq 200 "$code" "bad policy file: the old policy stays in force"

# ---- bad option values: a clear refusal, never a timer of 0 ----
for v in nan 0.0001 -1 1e9 2x; do
	err=$("$SLUICED" --idle-timeout "$v" --help 2>&1 >/dev/null); rc=$?
	sl_assert_eq 2 "$rc" "--idle-timeout $v is refused"
	sl_assert_contains "$err" "expected seconds (0.001 <= S <= 86400)" "--idle-timeout $v: the message says what is expected"
done
"$SLUICED" --drain-timeout 0.5 --help >/dev/null 2>&1 || sl_fail "--drain-timeout 0.5 refused"

# ---- an audit log at the file size limit (ulimit -f): the broker lives on ----
# The write that crosses the limit fails (EFBIG; SIGXFSZ is ignored), and the
# lines go to the broker's stderr, whole.
head -c $((2048 * 1024 - 200)) /dev/zero | tr '\0' '#' >"$T/fsz.audit"
echo >>"$T/fsz.audit"
exec {rfd}>"$T/ready-fsz"
sl_bg fsz bash -c 'ulimit -f 2048; exec "$@"' fsz "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" \
	--ca-dir "$T/ca" --run-dir "$T/run-fsz" --origdst-fixed "$FI_IP4:443" --upstream-ca "$FI_CA" \
	--resolve "api.test:$FI_IP4" --allow api.test --audit "$T/fsz.audit"
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready-fsz" || sl_fail "broker (fsz) did not get ready: $(cat "$T/fsz.log")"
read -r _ FPORT _ <"$T/ready-fsz"
codes=""
for i in 1 2 3 4; do
	codes+=$(curl -sS --max-time 10 --cacert "$T/run-fsz/ca.crt" --connect-to "::127.0.0.1:$FPORT" \
		-o /dev/null -w '%{http_code} ' "https://api.test/hello?fsz=$i")
done
sl_assert_eq "200 200 200 200 " "$codes" "audit log at the file size limit: requests still served"
kill -0 "$(cat "$T/fsz.pid")" 2>/dev/null || sl_fail "the broker died at the audit log's file size limit: $(tail -n 3 "$T/fsz.log")"
sl_assert_contains "$(cat "$T/fsz.log")" "Couldn't write the audit log: File too large" "the broker says why the audit lines go to its log"
for i in 1 2 3 4; do
	n=$(cat "$T/fsz.log" "$T/fsz.audit" | grep -F "\"path\":\"/hello?fsz=$i\"" | grep -c '}$')
	[ "$n" = 1 ] || sl_fail "request $i has $n whole audit lines across the log and the broker's stderr"
done
sl_ok "every request's audit line is kept once, in the log or the broker's stderr"

# ---- SIGTERM ----
# A response whose last bytes still wait for a slow reader when the broker is
# told to stop is delivered whole before the connection closes.
# Two sizes: 3 MB still waits in the broker's own buffer at the signal; 100 KB
# has all left it into TLS records that the socket has not taken yet.
cat >"$T/slowread.py" <<'EOPY'
import os, socket, ssl, sys, time
port, ca, out, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.connect(("127.0.0.1", port))
s = ssl.create_default_context(cafile=ca).wrap_socket(raw, server_hostname="other.test")
s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: other.test\r\n\r\n" % n)
open(out + ".sent", "w").close()
time.sleep(2)  # the test sends SIGTERM meanwhile
data = b""
try:
    s.settimeout(10)
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
except OSError as e:
    data += b" <" + type(e).__name__.encode() + b">"
head, _, body = data.partition(b"\r\n\r\n")
open(out, "w").write("body %d %s" % (len(body), "clean" if not data.endswith(b">") else data[-40:].decode("latin-1")))
EOPY
"$PY" "$T/slowread.py" "$BPORT" "$T/run/ca.crt" "$T/slowread" 3000000 &
SLOW=$!
"$PY" "$T/slowread.py" "$BPORT" "$T/run/ca.crt" "$T/slowread2" 100000 &
SLOW2=$!
# A reader that stops reading past the drain deadline (--drain-timeout 5): its
# connection is cut when the broker stops, and its request still has an audit
# line that says so.
cat >"$T/stall.py" <<'EOPY'
import socket, ssl, sys, time
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
raw.connect(("127.0.0.1", int(sys.argv[1])))
s = ssl.create_default_context(cafile=sys.argv[2]).wrap_socket(raw, server_hostname="other.test")
s.sendall(b"GET /bytes?n=50000000 HTTP/1.1\r\nHost: other.test\r\n\r\n")
s.recv(1000)
open(sys.argv[3], "w").close()
time.sleep(15)  # past the drain deadline, also when valgrind slows the broker
EOPY
"$PY" "$T/stall.py" "$BPORT" "$T/run/ca.crt" "$T/stall.sent" &
STALL=$!
sl_wait_for test -e "$T/stall.sent" || sl_fail "the stalled reader did not start"
sl_wait_for test -e "$T/slowread.sent" || sl_fail "the slow reader did not start"
sl_wait_for test -e "$T/slowread2.sent" || sl_fail "the second slow reader did not start"
sleep 0.7
kill -TERM "$BPID"
wait $SLOW
wait $SLOW2
sl_assert_eq "body 3000000 clean" "$(cat "$T/slowread" 2>/dev/null)" "draining: a response still leaving to a slow reader arrives whole"
sl_assert_eq "body 100000 clean" "$(cat "$T/slowread2" 2>/dev/null)" "draining: a response whose last TLS records wait for the socket arrives whole"
# the stalled reader holds it to the drain deadline (5 s after the signal)
for i in $(seq 200); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$BPID" 2>/dev/null && sl_fail "broker did not exit on SIGTERM"
sl_assert_contains "$(cat "$T/broker.log")" "exited cleanly" "SIGTERM drains and exits"
kill "$STALL" 2>/dev/null; wait "$STALL" 2>/dev/null
line=$(grep -F '"path":"/bytes?n=50000000"' "$T/audit")
sl_log "audit: $line"
sl_assert_contains "$line" '"cut":"the broker stopped (drain deadline passed)"' \
	"a response cut at the drain deadline has its audit line, with the reason"
sl_pass
