#!/bin/bash
# SPDX-License-Identifier: MIT
# Unmodified real clients inside `sluice run`, trusting sluice's CA only through
# the variables it sets: curl, Python http.client and requests, Node https.
# GET, POST with Content-Length and chunked bodies, a 50 MiB download (curl,
# http.client, Node), a redirect passed back, a 103 before the 200, h2c not
# passed on, a head over the limit (431),
# pipelined requests in one TLS write, a WebSocket echo, Host/SNI mismatch
# (421, also on the second request of a connection), an upstream whose
# certificate does not verify (502 naming the reason; all three clients), and malformed requests
# (CL+TE, differing duplicate Content-Length, obs-fold, bare LF, NUL in a
# header name): each gets 400, never reaches the upstream, and the broker stays up.
. "$(dirname "$0")/../lib.sh"
. "$SL_ROOT/tests/fixtures/e2e/e2e.sh"
sl_begin clients_e2e
sl_need_bins "$SLUICE" "$SLUICED"
command -v node >/dev/null || sl_fail "node is not installed (scripts/deps.sh)"
fi_up
e2e_setup
e2e_soft
FX=$SL_ROOT/tests/fixtures/e2e
BIG=$((50 * 1024 * 1024))

BIGH=$(head -c 70000 /dev/zero | tr '\0' a)  # a header over the 64 KiB head limit
head -c 300000 /dev/urandom | base64 -w 0 >"$T/upload.txt"
head -c 3000000 /dev/zero | tr '\0' 'e' >"$T/upload3m.txt"
chmod 644 "$T/upload.txt" "$T/upload3m.txt"
{
	e2e_prelude
	cat <<EOF
req c1 https://api.test/echo?id=c1
req c2 --data-binary @$T/upload.txt https://api.test/echo?id=c2
req c3 -H 'Transfer-Encoding: chunked' --data-binary @$T/upload.txt https://api.test/echo?id=c3
curl -sS --max-time 60 -o "\$O/big.bin" -w 'c5 %{http_code}\n' "https://api.test/bytes?n=$BIG&id=c5" >>"\$O/codes"
req c6 --http1.1 https://api.test/chunked?n=300000\&size=7000\&id=c6
req c7 -H 'Expect: 100-continue' --data-binary @$T/upload3m.txt https://api.test/echo?id=c7
req c8 -I "https://api.test/bytes?n=12345&id=c8"
req bc https://bad.test:8443/hello?id=bc
req sm -H 'Host: other.test' https://api.test/echo?id=sm
req rd -D "\$O/rd.hdr" "https://api.test/redirect?id=rd"
req eh -D "\$O/eh.hdr" "https://api.test/early?id=eh"
req up2 -H 'Connection: Upgrade, HTTP2-Settings' -H 'Upgrade: h2c' -H 'HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA' "https://api.test/echo?id=up2"
req h431 -H "X-Big: $BIGH" "https://api.test/echo?id=h431"
/usr/bin/python3 $FX/clients_py.py "\$O"
node $FX/clients_node.js "\$O"
req last https://api.test/hello?id=last
req nt --cacert /etc/ssl/certs/ca-certificates.crt https://api.test/hello?id=nt
EOF
} >"$T/inner.sh"

e2e_run --policy "$FX/clients.yaml" --audit "$T/audit.log" -- bash "$T/inner.sh" >"$T/run.out" 2>"$T/run.err"
sl_assert_eq 0 "$?" "sluice run exited 0 ($(tail -n 3 "$T/run.err"))"
line() { fi_requests 443 | grep "id=$1[^0-9A-Za-z_]"; }
blen() { line "$1" | sed -n 's/.*"body_len": \([0-9]*\).*/\1/p' | head -n 1; }
up=$(wc -c <"$T/upload.txt")

# curl
e2e_expect c1 200 "curl: GET"
sl_assert_contains "$(e2e_body c1)" '"method": "GET"' "curl: the upstream's answer came back"
e2e_expect c2 200 "curl: POST with Content-Length"
sl_assert_eq "$up" "$(blen c2)" "curl: the upstream read the whole Content-Length body"
e2e_expect c3 200 "curl: POST chunked"
sl_assert_eq "$up" "$(blen c3)" "curl: the upstream read the whole chunked body"
sl_assert_contains "$(e2e_body c3)" "$(head -c 64 "$T/upload.txt")" "curl: chunked body content intact"
e2e_expect c5 200 "curl: 50 MiB download"
sl_assert_eq "$BIG" "$(stat -c %s "$T/out/big.bin" 2>/dev/null)" "curl: 50 MiB arrived complete"
sl_assert_eq 0 "$(tr -d x <"$T/out/big.bin" | wc -c)" "curl: 50 MiB content intact"
e2e_expect c6 200 "curl: chunked response"
sl_assert_eq 300000 "$(e2e_body c6 | wc -c)" "curl: chunked response complete"

e2e_expect c7 200 "curl: 3 MB POST with Expect: 100-continue"
sl_assert_eq 3000000 "$(blen c7)" "curl: the upstream read the whole 100-continue body"
e2e_expect c8 200 "curl: HEAD"
sl_assert_eq 1 "$(e2e_seen 443 c8)" "curl: HEAD reached the upstream"

# Python http.client / requests
e2e_expect h1 200 "http.client: GET"
e2e_expect h2 200 "http.client: POST 1 MB with Content-Length"
sl_assert_eq 1000000 "$(blen h2)" "http.client: the upstream read 1 MB"
e2e_expect h3 200 "http.client: POST chunked"
sl_assert_contains "$(line h3)" '"body": "chunk-one|chunk-two|chunk-three"' "http.client: chunked body reassembled at the upstream"
sl_assert_eq none "$(e2e_code q_err)" "requests: no exception ($(e2e_body q_err))"
e2e_expect q1 200 "requests: GET"
e2e_expect q2 200 "requests: POST json"
sl_assert_contains "$(line q2)" "vvvvvvvvvv" "requests: json body at the upstream"
e2e_expect q3 200 "requests: POST from a generator (chunked)"
sl_assert_contains "$(line q3)" '"body": "gen-a|gen-b"' "requests: generator body at the upstream"

# Node https
e2e_expect n1 200 "node: GET"
e2e_expect n2 200 "node: POST with Content-Length"
sl_assert_contains "$(line n2)" '"body": "hello node!"' "node: body at the upstream"
e2e_expect n3 200 "node: POST chunked"
sl_assert_contains "$(line n3)" '"body": "part1-part2"' "node: chunked body at the upstream"
e2e_expect n4 200 "node: 3 MB download"
sl_assert_eq 3000000 "$(e2e_body n4 | wc -c)" "node: download complete"

# 50 MiB and a bad certificate, also from Python and Node
for c in hbig:http.client nbig:node; do
	e2e_expect "${c%%:*}" 200 "${c#*:}: 50 MiB download"
	sl_assert_eq "$BIG 0" "$(e2e_body "${c%%:*}")" "${c#*:}: 50 MiB complete, every byte intact"
done
for c in hbc:http.client nbc:node; do
	e2e_expect "${c%%:*}" 502 "${c#*:}: upstream with a bad certificate: 502"
	sl_assert_contains "$(e2e_body "${c%%:*}" | tr 'A-Z' 'a-z')" "certificate" "${c#*:}: the 502 names the reason"
done

# redirects are passed back, never followed
e2e_expect rd 302 "redirect: the 302 is passed back"
sl_assert_contains "$(tr -d '\r' <"$T/out/rd.hdr" 2>/dev/null)" "Location: https://elsewhere.test/" "redirect: its Location is intact"
sl_assert_eq 1 "$(e2e_seen 443 rd)" "redirect: one request upstream"
# 1xx: forwarded ahead of the final response
e2e_expect eh 200 "1xx: the final response"
eh=$(tr -d '\r' <"$T/out/eh.hdr" 2>/dev/null)
sl_assert_contains "$eh" "HTTP/1.1 103 Early Hints" "1xx: the 103 reached the client"
sl_assert_contains "$eh" "rel=preload" "1xx: with its Link header"
sl_assert_eq "after the hints" "$(e2e_body eh)" "1xx: then the final body"
# Upgrade: h2c is not passed on: the request is served over HTTP/1.1
e2e_expect up2 200 "h2c: served as HTTP/1.1"
sl_assert_eq 1 "$(e2e_seen 443 up2)" "h2c: the request reached the upstream"
sl_assert_not_contains "$(line up2 | tr 'A-Z' 'a-z')" '"upgrade"' "h2c: the Upgrade header did not reach the upstream"
sl_assert_not_contains "$(line up2 | tr 'A-Z' 'a-z')" "http2-settings" "h2c: nor its settings"
# a head over the limit
e2e_expect h431 431 "a 70 KB header: 431"
sl_assert_eq 0 "$(e2e_seen 443 h431)" "a 70 KB header: nothing reached the upstream"

# pipelining
pp=$(e2e_body pp)
sl_assert_eq 2 "$(printf '%s' "$pp" | grep -o 'HTTP/1.1 200' | wc -l)" "pipelining: two 200 responses on one connection"
sl_assert_contains "$(printf '%s' "$pp" | tr -d '\r\n')" '"path": "/echo?id=pp1"' "pipelining: first response is the first request's"
first=$(printf '%s' "$pp" | grep -ob 'id=pp1' | head -n 1 | cut -d: -f1)
second=$(printf '%s' "$pp" | grep -ob 'id=pp2' | head -n 1 | cut -d: -f1)
[ -n "$first" ] && [ -n "$second" ] && [ "$first" -lt "$second" ] && sl_ok "pipelining: responses in request order" ||
	sl_fail "pipelining: responses out of order or missing (pp1 at '$first', pp2 at '$second')"
sl_assert_contains "$(line pp2)" '"body": "hello"' "pipelining: second request's body at the upstream"

# WebSocket
e2e_expect ws 101 "websocket: 101 from the upstream"
sl_assert_eq "hello-ws
second message through the tunnel" "$(e2e_body ws)" "websocket: both messages echoed"
sl_assert_contains "$(cat "$FI_DIR/ws.443.log" 2>/dev/null)" "second message through the tunnel" "websocket: the upstream got the frames"
# Its audit line is written when the tunnel ends, with the frames' bytes:
# 156 bytes of upgrade request, then 53 of masked frames from the client.
wsl=$(grep -F '"path":"/ws?id=ws1"' "$T/audit.log")
sl_log "websocket audit: $wsl"
sl_assert_contains "$wsl" '"status":101' "websocket: one audit line, status 101"
wsin=$(sed 's/.*"bytes_in":\([0-9]*\).*/\1/' <<<"$wsl")
[ "$wsin" = 209 ] || sl_fail "websocket: the audit line counts $wsin bytes in, not the 156 of the upgrade + 53 of frames"
sl_ok "websocket: the audit line counts the tunnel's bytes"

# Host/SNI mismatch
e2e_expect sm 421 "mismatch: curl with Host other.test on SNI api.test"
e2e_expect m1 421 "mismatch: raw request with Host other.test on SNI api.test"
sl_assert_contains "$(e2e_body m2)" "HTTP/1.1 421" "mismatch: the second request of a keep-alive connection is checked too"
sl_assert_eq 1 "$(e2e_seen 443 m2a)" "mismatch: the matching first request was served"
for id in sm m1 m2; do sl_assert_eq 0 "$(e2e_seen 443 $id)" "mismatch ($id): nothing reached the upstream"; done

# upstream certificate that does not verify
e2e_expect bc 502 "bad certificate: 502"
sl_assert_contains "$(e2e_body bc | tr 'A-Z' 'a-z')" "certificate" "bad certificate: the 502 names the reason"
sl_assert_eq 0 "$(fi_requests 8443 | wc -l)" "bad certificate: no request was sent to it"

# malformed requests
for id in x1 x2 x3 x4 x5 x6; do
	e2e_expect $id 400 "malformed ($id): 400"
	sl_assert_eq 1 "$(e2e_code ${id}_closed)" "malformed ($id): connection closed"
	sl_assert_eq 0 "$(e2e_seen 443 $id)" "malformed ($id): nothing reached the upstream"
done
e2e_expect after 200 "broker still serves after the malformed requests"
e2e_expect last 200 "broker still serves at the end"
e2e_expect nt 000 "trust: curl with only the system CA store rejects the broker (trust came from sluice's variables)"
sl_assert_contains "$(cat "$T/out/nt.err")" "certificate" "trust: the failure is certificate verification"
sl_assert_not_contains "$(cat "$T/run.err")" "killed by signal" "the broker did not crash"
sl_assert_contains "$(cat "$T/audit.log")" '"status":400' "malformed requests are in the audit log"
e2e_finish
