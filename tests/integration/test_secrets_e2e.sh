#!/bin/bash
# SPDX-License-Identifier: MIT
# Secrets through `sluice run`: a sandboxed client sends placeholders; the
# broker substitutes the real value only toward the secret's host and only in
# the place the policy allows (header, query, body, also when the placeholder is
# split across chunks of a chunked upload), refuses every other use with a 403
# naming the secret (plain, percent-encoded, in a header name, in a body, to an
# unlisted host, in the wrong place) with nothing reaching the upstream, scrubs
# values an upstream echoes back, injects a bearer token, never puts a secret on
# plain HTTP, and never lets the value into the sandbox's environment or output.
. "$(dirname "$0")/../lib.sh"
. "$SL_ROOT/tests/fixtures/e2e/e2e.sh"
sl_begin secrets_e2e
sl_need_bins "$SLUICE" "$SLUICED"
fi_up
e2e_setup
e2e_soft
FX=$SL_ROOT/tests/fixtures/e2e

# Values differ in length from their placeholders, so framing must be fixed up.
export SLT_HDR=hdrval-$RANDOM$RANDOM-x
export SLT_QRY=qryval$RANDOM$RANDOM
export SLT_BODY=bodyval-$RANDOM$RANDOM-with-a-longer-tail-than-the-placeholder
export SLT_INJ=injval-$RANDOM$RANDOM
VALUES=("$SLT_HDR" "$SLT_QRY" "$SLT_BODY" "$SLT_INJ")

{
	e2e_prelude
	printf 'FI_DIR=%s\n' "$FI_DIR"
	cat <<'EOF'
env >"$O/env.txt"
# allowed: each placeholder in its own place toward api.test
req h1 -H "X-Token: $HDR_TOKEN" https://api.test/echo?id=h1
req q1 "https://api.test/echo?id=q1&key=$QRY_TOKEN"
req b1 --data-binary "k=$BODY_TOKEN&end=1" https://api.test/echo?id=b1
req r1 -D "$O/r1.hdr" "https://api.test/reflect?id=r1&v=$QRY_TOKEN"
req i1 https://x.api.test/echo?id=i1
/usr/bin/python3 - "$O" <<'PYEOF'
import http.client, ssl, sys, time, json
out = sys.argv[1]
def chunks(parts):
    for p in parts:
        yield p.encode()
        time.sleep(0.05)   # separate TCP segments and TLS records
def post(id, host, parts):
    c = http.client.HTTPSConnection(host, 443, context=ssl.create_default_context(), timeout=15)
    try:
        c.request("POST", "/echo?id=" + id, body=chunks(parts), encode_chunked=True,
                  headers={"Transfer-Encoding": "chunked"})
        r = c.getresponse(); body = r.read()
        code = r.status
    except Exception as e:
        code, body = 0, str(e).encode()
    open(out + "/" + id + ".body", "wb").write(body)
    open(out + "/codes", "a").write("%s %d\n" % (id, code))
split = ["a=SLUICE_PLA", "CEHOLDER_BODY", "_TOKEN&b=SLUICE_PLACEHOLDER_BODY_TOKE", "N&c=S", "LUICE_PLACEHOLDER_BODY_TOKEN"]
post("c1", "api.test", split)
post("c2", "other.test", ["pre-SLUICE_PLACEHOLDER_BO", "DY_TOKEN-post"])
# WebSocket: the upstream greets with the header's (substituted) value, then echoes
import os, socket
def ws():
    s = ssl.create_default_context().wrap_socket(socket.create_connection(("api.test", 443), 15),
                                                 server_hostname="api.test")
    s.sendall(("GET /ws?id=ws1 HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               "X-Ws-Greet: %s\r\n\r\n" % os.environ["HDR_TOKEN"]).encode())
    f = s.makefile("rb")
    status = f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    s.sendall(bytes([0x81, 0x82]) + b"\0\0\0\0" + b"hi")
    msgs, cur = [], b""
    while len(msgs) < 2:
        h = f.read(2)
        if len(h) < 2:
            break
        n = h[1] & 0x7f
        if n == 126:
            n = int.from_bytes(f.read(2), "big")
        cur += f.read(n)
        if h[0] & 0x80:
            msgs.append(cur.decode()); cur = b""
    open(out + "/ws1.body", "w").write("\n".join(msgs))
    open(out + "/codes", "a").write("ws1 %s\n" % status.split()[1].decode())
try:
    ws()
except Exception as e:
    open(out + "/ws1.body", "w").write("error %r" % e)
PYEOF
# refused: wrong host, wrong place, disguised
before=$(wc -l <"$FI_DIR/conn.443.log")
req l1 -H "X-Token: $HDR_TOKEN" https://other.test/echo?id=l1
req l2 "https://other.test/echo?id=l2&key=$QRY_TOKEN"
req l3 "https://other.test/echo?id=l3&key=SLUICE%5FPLACEHOLDER%5FQRY%5FTOKEN"
req l4 "https://other.test/echo?id=l4&key=%53LUICE_PLACEHOLDER_QRY_TOKEN"
req l5 -H "$HDR_TOKEN: 1" https://other.test/echo?id=l5
req l6 --data-binary "k=$BODY_TOKEN" https://other.test/echo?id=l6
req l7 -H "X-Token: $INJ_TOKEN" https://other.test/echo?id=l7
after=$(wc -l <"$FI_DIR/conn.443.log")
echo "leak_conns $((after - before))" >>"$O/codes"
req w1 "https://api.test/echo?id=w1&key=$HDR_TOKEN"
req w2 -H "X-Token: $QRY_TOKEN" https://api.test/echo?id=w2
req w3 -H "X-Token: $BODY_TOKEN" https://api.test/echo?id=w3
req w4 --data-binary "k=$HDR_TOKEN" https://api.test/echo?id=w4
# plain HTTP: never a secret
req p1 -H "X-Token: $HDR_TOKEN" http://api.test/echo?id=p1
req p2 http://x.api.test/echo?id=p2
req p3 "http://api.test/echo?id=p3&key=$QRY_TOKEN"
EOF
} >"$T/inner.sh"

e2e_run --policy "$FX/secrets.yaml" --audit "$T/audit.log" -- bash "$T/inner.sh" >"$T/run.out" 2>"$T/run.err"
sl_assert_eq 0 "$?" "sluice run exited 0 ($(tail -n 3 "$T/run.err"))"
srv=$(fi_requests 443)
srv80=$(fi_requests 80)
line() { fi_requests "${2:-443}" | grep "id=$1[^0-9A-Za-z_]"; }

# header
e2e_expect h1 200 "header: placeholder to its host in a header"
sl_assert_contains "$(line h1)" "[\"X-Token\", \"$SLT_HDR\"]" "header: the server got the real value"
sl_assert_contains "$(e2e_body h1)" "SLUICE_PLACEHOLDER_HDR_TOKEN" "header: the echoed value came back as the placeholder (scrubbed)"
# query
e2e_expect q1 200 "query: placeholder to its host in the query"
sl_assert_contains "$(line q1)" "key=$SLT_QRY" "query: the server got the real value"
# body with Content-Length
e2e_expect b1 200 "body: placeholder to its host in a Content-Length body"
sl_assert_contains "$(line b1)" "\"body\": \"k=$SLT_BODY&end=1\"" "body: the server got the real value"
want=$(( ${#SLT_BODY} + 8 ))
sl_assert_contains "$(line b1)" "[\"Content-Length\", \"$want\"]" "body: Content-Length header fixed up to the new length ($want)"
sl_assert_contains "$(line b1)" "\"body_len\": $want" "body: the server read exactly that many bytes"
# body, chunked, placeholder split across chunks
e2e_expect c1 200 "chunked: upload with placeholders split across chunks"
sl_assert_contains "$(line c1)" "\"body\": \"a=$SLT_BODY&b=$SLT_BODY&c=$SLT_BODY\"" "chunked: all three split placeholders substituted"
# response scrubbing
e2e_expect r1 200 "reflect: request accepted"
sl_assert_contains "$(line r1)" "v=$SLT_QRY" "reflect: the upstream got (and echoed) the real value"
sl_assert_eq "SLUICE_PLACEHOLDER_QRY_TOKEN" "$(e2e_body r1)" "reflect: the sandbox got the placeholder back in the body"
sl_assert_contains "$(tr -d '\r' <"$T/out/r1.hdr")" "X-Reflect: SLUICE_PLACEHOLDER_QRY_TOKEN" "reflect: and in the X-Reflect header"
# WebSocket from a host with secrets: frames rebuilt with the value scrubbed
e2e_expect ws1 101 "websocket: upgrade to api.test"
sl_assert_eq "SLUICE_PLACEHOLDER_HDR_TOKEN
hi" "$(cat "$T/out/ws1.body")" "websocket: the echoed value came back as the placeholder, then the echo"
# injection
e2e_expect i1 200 "inject: request to the injection host"
sl_assert_contains "$(line i1)" "[\"Authorization\", \"Bearer $SLT_INJ\"]" "inject: Authorization: Bearer added without a placeholder"
sl_assert_not_contains "$(e2e_body i1)" "$SLT_INJ" "inject: the echoed Authorization was scrubbed"
sl_assert_eq 0 "$(line h1 | grep -c "$SLT_INJ")" "inject: not added toward another host"

# leaks: 403 naming the secret, nothing at the upstream
leak() { # id secret what
	e2e_expect "$1" 403 "$3: 403"
	sl_assert_contains "$(e2e_body "$1")" "\"secret\":\"$2\"" "$3: the 403 names $2"
	sl_assert_eq 0 "$(e2e_seen 443 "$1")" "$3: the request never reached the upstream"
}
leak l1 HDR_TOKEN "leak: header placeholder to unlisted other.test"
sl_assert_contains "$(e2e_body l1)" '"host":"other.test"' "leak: the 403 names the host"
leak l2 QRY_TOKEN "leak: query placeholder to other.test"
leak l3 QRY_TOKEN "leak: percent-encoded (%5F) placeholder to other.test"
leak l4 QRY_TOKEN "leak: percent-encoded (%53) placeholder to other.test"
leak l5 HDR_TOKEN "leak: placeholder as a header name to other.test"
leak l6 BODY_TOKEN "leak: body placeholder to other.test"
leak c2 BODY_TOKEN "leak: body placeholder split across chunks to other.test"
leak l7 INJ_TOKEN "leak: injected secret's placeholder to other.test"
sl_assert_eq "0" "$(awk '$1 == "leak_conns" { print $2 }' "$T/out/codes")" "leak: zero upstream connections during the leak attempts"
sl_assert_eq 0 "$(fi_requests 443 | grep -c '"host": "other.test"')" "leak: other.test received no request at all"
leak w1 HDR_TOKEN "place: header-only secret in the query"
leak w2 QRY_TOKEN "place: query-only secret in a header"
leak w3 BODY_TOKEN "place: body-only secret in a header"
leak w4 HDR_TOKEN "place: header-only secret in the body"

# plain HTTP
for id in p1 p2 p3; do
	sl_assert_eq 0 "$(printf '%s\n' "$srv80" | grep -c -e "$SLT_HDR" -e "$SLT_QRY" -e "$SLT_INJ" || true)" "plain HTTP ($id): no secret value reached port 80"
	c=$(e2e_code $id)
	case "$c" in 403|200) sl_ok "plain HTTP ($id): answered $c" ;; *) sl_fail "plain HTTP ($id): expected 403 (or the placeholder passed through), got $c" ;; esac
done
sl_assert_eq 0 "$(line p2 80 | grep -c Authorization)" "plain HTTP: no injected Authorization"
sl_assert_eq 0 "$(e2e_seen 80 p1)" "plain HTTP: a placeholder meant for a secret is refused, not forwarded"

# nothing the sandbox saw or logged holds a value
envtxt=$(cat "$T/out/env.txt")
sl_assert_contains "$envtxt" "HDR_TOKEN=SLUICE_PLACEHOLDER_HDR_TOKEN" "env: the sandbox has the placeholder"
sl_assert_contains "$envtxt" "INJ_TOKEN=SLUICE_PLACEHOLDER_INJ_TOKEN" "env: injected secrets have a placeholder too"
sl_assert_eq 0 "$(printf '%s\n' "$envtxt" | grep -c '^SLT_')" "env: the source variables are not in the sandbox"
for v in "${VALUES[@]}"; do
	sl_assert_eq "" "$(grep -rl -F -e "$v" "$T/out" "$T/audit.log" "$T/run.err" "$T/run.out" 2>/dev/null)" \
		"value ${v:0:7}... is in nothing the sandbox received, nor in the audit log or the broker's messages"
done
sl_assert_contains "$(cat "$T/audit.log")" '"secrets":"HDR_TOKEN"' "audit names the secret used (not its value)"

# A value: (or file:) secret's value under another variable name stays out of the sandbox too:
# sluice run reads the values before the sandbox starts only to find such copies.
LITV=lit-v4lue-$RANDOM$RANDOM
printf 'rules:\n  - {action: allow, host: api.test}\nsecrets:\n  LIT: {value: "%s", hosts: [api.test]}\n' "$LITV" >"$T/lit.yaml"
chmod 600 "$T/lit.yaml"
litenv=$(COPY_OF_LIT="key=$LITV" UNRELATED=keep e2e_run --policy "$T/lit.yaml" --audit "$T/lit.audit" -- env 2>"$T/lit.err")
sl_assert_contains "$litenv" "LIT=SLUICE_PLACEHOLDER_LIT" "env: a value: secret gets its placeholder"
sl_assert_contains "$litenv" "UNRELATED=keep" "env: other variables pass"
sl_assert_not_contains "$litenv" "$LITV" "env: a variable holding a value: secret's value is not in the sandbox"
# That policy is covered file by file (not in a directory named sluice): sluice run says what a
# rename over it would do.
sl_assert_contains "$(cat "$T/lit.err")" "replaced by a rename" "a policy holding values outside a sluice directory gets a warning"
sl_assert_not_contains "$(cat "$T/run.err")" "killed by signal" "the broker did not crash"
e2e_finish
