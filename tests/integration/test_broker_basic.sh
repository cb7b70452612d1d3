#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced on its own (no kernel part): --origdst-fixed stands for the redirect.
# TLS termination with a minted cert, policy allow/deny, upstream verification,
# plain HTTP, POST bodies, keep-alive, the audit log, and the CA's files.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_basic
sl_need_bins "$SLUICED"
fi_up

# broker_start NAME ORIGPORT ARGS...: sets BPORT, BDNS, BRUN (run dir).
broker_start() {
	local name=$1 oport=$2; shift 2
	BRUN=$T/$name.run
	exec {rfd}>"$T/$name.ready"
	sl_bg "$name" "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$BRUN" \
		--origdst-fixed "$FI_IP4:$oport" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
		--resolve "other.test:$FI_IP4" --resolve "bad.test:$FI_IP4" --audit "$T/$name.audit" "$@"
	exec {rfd}>&-
	sl_wait_for grep -q READY "$T/$name.ready" || sl_fail "$name did not get ready: $(cat "$T/$name.log")"
	read -r _ BPORT BDNS <"$T/$name.ready"
}

broker_start b443 443 --allow api.test --allow '*.other.test' --sandbox t1
sl_assert_eq "600" "$(stat -c %a "$T/ca/ca.key")" "CA key is private"
sl_assert_eq "700" "$(stat -c %a "$T/ca")" "CA dir is private"
sl_assert_eq "644" "$(stat -c %a "$BRUN/ca.crt")" "public CA cert is readable"
grep -q "BEGIN CERTIFICATE" "$BRUN/ca-bundle.pem" || sl_fail "no bundle"
sl_assert_contains "$(openssl x509 -in "$BRUN/ca.crt" -noout -text)" "CA:TRUE" "CA cert is a CA"

# --connect-to keeps the URL (and Host header) at the original port, as a
# redirected connection would, while the TCP connection goes to the broker.
C=(curl -sS --max-time 10 --cacert "$BRUN/ca.crt" --connect-to "::127.0.0.1:$BPORT")

out=$("${C[@]}" "https://api.test:443/hello") || sl_fail "GET through the broker failed: $(tail "$T/b443.log")"
sl_assert_contains "$out" "hello" "GET /hello through the broker"

leaf=$(openssl s_client -connect "127.0.0.1:$BPORT" -servername api.test </dev/null 2>/dev/null |
	openssl x509 -noout -text)
sl_assert_contains "$leaf" "DNS:api.test" "leaf SAN is the SNI"
sl_assert_contains "$leaf" "prime256v1" "leaf key is P-256"

head -c 100000 /dev/urandom | base64 -w0 >"$T/body"
body=$(cat "$T/body")
out=$("${C[@]}" -X POST --data-binary @"$T/body" -H 'Content-Type: text/plain' "https://api.test:443/echo")
sl_assert_contains "$out" "${body:0:64}" "POST body (Content-Length) reaches upstream"
out=$(printf 'chunky' | "${C[@]}" -X POST -H 'Transfer-Encoding: chunked' --data-binary @- "https://api.test:443/echo")
sl_assert_contains "$out" "chunky" "POST chunked body reaches upstream"

code=$("${C[@]}" -o "$T/deny.out" -w '%{http_code}' "https://other.test:443/hello")
sl_assert_eq 403 "$code" "host without a rule gets 403"
sl_assert_contains "$(cat "$T/deny.out")" "other.test" "403 body names the host"
sl_assert_eq 0 "$(fi_requests 443 | grep -c other.test)" "denied request never reached upstream"

# Keep-alive: two requests, one client connection, one upstream connection.
before=$(fi_conns 443)
out=$("${C[@]}" "https://api.test:443/hello" "https://api.test:443/bytes?n=10")
sl_assert_contains "$out" "hello" "keep-alive request 1"
[ $(( $(fi_conns 443) - before )) -le 1 ] || sl_fail "keep-alive requests opened $(( $(fi_conns 443) - before )) upstream connections"
sl_ok "keep-alive requests share one upstream connection"
# Pooling: separate client connections, one after the other, reuse the idle upstream.
before=$(fi_conns 443)
for i in 1 2 3 4; do "${C[@]}" -o /dev/null "https://api.test:443/hello" || sl_fail "request $i"; done
[ $(( $(fi_conns 443) - before )) -le 1 ] || sl_fail "4 sequential client connections opened $(( $(fi_conns 443) - before )) upstream connections (no pooling)"
sl_ok "upstream connections are pooled across client connections"

# Resumption toward the client (TLS 1.3, stateful ticket): the ticket is not
# sent on its own after the handshake but with the first response (no bytes
# readable before the request), and the next connection resumes with it.
out=$(/usr/bin/python3 - "$BRUN/ca.crt" "$BPORT" <<'PYEOF'
import select, socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[1])
def one(sess):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[2]))),
                        server_hostname="api.test", session=sess)
    early = bool(select.select([s], [], [], 0.3)[0])
    s.sendall(b"GET /hello HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    r = (s.version(), early, s.session_reused, data.split(b" ")[1].decode(), s.session)
    s.close()
    return r
v, early, _, code, sess = one(None)
_, _, reused, code2, _ = one(sess)
print(v, "early=%s" % early, code, code2, "reused=%s" % reused)
PYEOF
) || sl_fail "resumption client failed: $out"
sl_assert_eq "TLSv1.3 early=False 200 200 reused=True" "$out" \
	"the ticket rides with the first response; the next connection resumes with it"

# Large download streams through.
"${C[@]}" -o "$T/big" "https://api.test:443/bytes?n=20000000" || sl_fail "20 MB download failed"
sl_assert_eq 20000000 "$(stat -c %s "$T/big")" "20 MB download complete"
# The last response of a connection (Connection: close) to a slow reader: its final
# records wait in the socket BIO while the socket is full; the connection must not
# close before they are sent.
out=$(/usr/bin/python3 - "$BRUN/ca.crt" "$BPORT" <<'PYEOF'
import socket, ssl, sys, time
ctx = ssl.create_default_context(cafile=sys.argv[1])
raw = socket.socket()
raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)  # the broker's socket fills up
raw.connect(("127.0.0.1", int(sys.argv[2])))
s = ctx.wrap_socket(raw, server_hostname="api.test")
n = 12000000
s.sendall(b"GET /bytes?n=%d HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n" % n)
got, err = b"", "clean"
try:
    while True:
        d = s.recv(65536)
        if not d:
            break
        got += d
        time.sleep(0.002)
except (ssl.SSLError, OSError) as e:
    err = type(e).__name__
head, _, body = got.partition(b"\r\n\r\n")
print(len(body) == n, err)
PYEOF
) || sl_fail "slow reader client failed: $out"
sl_assert_eq "True clean" "$out" "the last response of a connection reaches a slow reader whole, then a clean close"

# TLS without SNI is refused.
if openssl s_client -connect "127.0.0.1:$BPORT" -noservername </dev/null >"$T/nosni" 2>&1 &&
   grep -q 'BEGIN CERTIFICATE' "$T/nosni"; then
	sl_fail "TLS without SNI got a certificate"
fi
sl_ok "TLS without SNI refused"

# Audit: one line per request, with the fields.
sleep 0.2
a=$(cat "$T/b443.audit")
sl_assert_contains "$a" '"host":"api.test"' "audit has the host"
sl_assert_contains "$a" '"status":403' "audit has the refusal"
sl_assert_contains "$a" '"sandbox":"t1"' "audit has the sandbox"
/usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$T/b443.audit" ||
	sl_fail "audit lines are not JSON"
sl_ok "audit lines are JSON"

# Uploads bigger than the socket buffers, one after the other: the second goes out on
# the pooled upstream connection, whose writes find the socket full (EPOLLOUT asked
# for on a reused connection) while the server reads.
head -c $((12 * 1024 * 1024)) /dev/urandom >"$T/up.bin"
want=$(sha256sum <"$T/up.bin" | cut -d' ' -f1)
for i in 1 2; do
	out=$("${C[@]}" --max-time 30 -H 'Content-Type: application/octet-stream' --data-binary @"$T/up.bin" \
		"https://api.test/sink") || sl_fail "upload $i failed: $(tail -n 3 "$T/b443.log")"
	sl_assert_contains "$out" "\"sha256\": \"$want\"" "12 MiB upload $i arrives intact"
done

# The CA is reused on restart (same key), not recreated.
fp1=$(openssl x509 -in "$BRUN/ca.crt" -noout -fingerprint)

# Bad upstream certificate: 502 with the reason.
broker_start b8443 8443 --allow bad.test --allow api.test
C=(curl -sS --max-time 10 --cacert "$BRUN/ca.crt" --connect-to "::127.0.0.1:$BPORT")
code=$("${C[@]}" -o "$T/bad.out" -w '%{http_code}' "https://bad.test:8443/hello")
sl_assert_eq 502 "$code" "upstream with an untrusted cert gets 502"
sl_assert_contains "$(cat "$T/bad.out")" "verif" "502 names the verification failure"
sl_assert_eq "$fp1" "$(openssl x509 -in "$BRUN/ca.crt" -noout -fingerprint)" "CA reused across restarts"

# Plain HTTP on port 80, by Host header.
broker_start b80 80 --allow api.test
out=$(curl -sS --max-time 10 --connect-to "::127.0.0.1:$BPORT" "http://api.test/hello") || sl_fail "plain HTTP failed"
sl_assert_contains "$out" "hello" "plain HTTP GET by Host header"
code=$(curl -sS --max-time 10 -o /dev/null -w '%{http_code}' --connect-to "::127.0.0.1:$BPORT" "http://other.test/hello")
sl_assert_eq 403 "$code" "plain HTTP to a host without a rule gets 403"

# A full pool gives up the upstream connection idle longest, not the one just used.
broker_start bpool 443 --allow '*.api.test' --pool-max 2 --resolve "a.api.test:$FI_IP4" --resolve "b.api.test:$FI_IP4" \
	--resolve "c.api.test:$FI_IP4"
C=(curl -sS --max-time 10 --cacert "$BRUN/ca.crt" --connect-to "::127.0.0.1:$BPORT" -o /dev/null)
pooled_get() { # pooled_get HOST: how many upstream connections one request to HOST opened
	local before; before=$(fi_conns 443)
	[ "$("${C[@]}" -w '%{http_code}' "https://$1/hello")" = 200 ] || echo "GET $1 failed"
	sleep 0.3 # the broker sees the client's close and pools the upstream
	echo $(( $(fi_conns 443) - before ))
}
for h in a.api.test b.api.test c.api.test; do
	n=$(pooled_get $h); [ "$n" = 1 ] || sl_fail "first GET $h through the broker with --pool-max 2: $n"
done
sl_assert_eq 0 "$(pooled_get b.api.test)" "--pool-max 2: the second newest upstream stays pooled when a third comes"
sl_assert_eq 1 "$(pooled_get a.api.test)" "--pool-max 2: the oldest pooled upstream was closed to make room"
broker_start bnopool 443 --allow api.test --pool-max 0
C=(curl -sS --max-time 10 --cacert "$BRUN/ca.crt" --connect-to "::127.0.0.1:$BPORT" -o /dev/null)
n=$(pooled_get api.test); [ "$n" = 1 ] || sl_fail "first GET api.test with --pool-max 0: $n"
sl_assert_eq 1 "$(pooled_get api.test)" "--pool-max 0: no upstream connection is kept"

# A broker killed while it writes a new CA key leaves no cut key behind: the next
# start creates the CA instead of failing on an unreadable one. strace kills it at
# its first write to, or link or rename onto, ca.key.
command -v strace >/dev/null || sl_fail "strace is missing: run make deps"
rc=0
timeout 20 strace -f -qq -o /dev/null -P "$T/ca2/ca.key" -e trace=write,link,linkat,rename,renameat,renameat2 \
	-e inject=write,link,linkat,rename,renameat,renameat2:signal=KILL \
	"$SL_ROOT/$B/sluiced" --listen 127.0.0.1:0 --ca-dir "$T/ca2" --run-dir "$T/run2" --allow api.test \
	>"$T/cakill.log" 2>&1 || rc=$? # not under valgrind: its log would end without a summary
[ "$rc" != 0 ] && [ "$rc" != 124 ] || sl_fail "the broker was not killed while writing its CA key (rc $rc): $(cat "$T/cakill.log")"
exec {rfd}>"$T/ca2.ready"
sl_bg ca2 "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca2" --run-dir "$T/run2" --allow api.test
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ca2.ready" || sl_fail "after a kill mid-write of the CA key, the next start failed: $(cat "$T/ca2.log")"
sl_assert_eq "600" "$(stat -c %a "$T/ca2/ca.key")" "the CA key written after the kill is private"
sl_assert_eq "" "$(ls "$T/ca2" | grep '\.tmp$')" "the killed broker's temporary key file was removed"
sl_assert_eq "$(openssl pkey -in "$T/ca2/ca.key" -pubout)" "$(openssl x509 -in "$T/ca2/ca.crt" -noout -pubkey)" \
	"the CA key and cert written after the kill match"
sl_pass
