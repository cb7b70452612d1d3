#!/bin/bash
# SPDX-License-Identifier: MIT
# Escape attempts at the HTTP layer, inside `sluice run` with the real broker:
# SNI/Host mismatch (421), CONNECT (405), request smuggling (CL+TE, duplicate
# Content-Length, obs-fold, bare LF, TE obfuscation: each 400 and nothing
# extra reaches the upstream), and a secret's placeholder percent-encoded,
# split across chunks, inside a gzip body, in a header name and in a WebSocket
# frame, plus an upstream that echoes the secret back. The invariant for every
# secret case: the real value reaches only the secret's host (api.test), and
# the sandbox never sees it.
#
# gzip: the broker does not decode bodies, so a placeholder inside a
# compressed body is invisible to it; the decision is that it is neither
# substituted nor detected there - the upstream gets the placeholder bytes
# (compressed), never the value. WebSocket frames after the upgrade are passed
# through as is, with the same outcome.
. "$(dirname "$0")/../lib.sh"
sl_begin escape_http
sl_need_bins "$SLUICE" "$SLUICED"
fi_up

export SL_ESC_TOKEN=esc-http-secret-$$-$RANDOM$RANDOM
cat >"$T/policy.yaml" <<EOF
rules:
  - {action: allow, host: "api.test"}
  - {action: allow, host: "other.test"}
secrets:
  TOK: {env: SL_ESC_TOKEN, hosts: [api.test], in: [header, body]}
EOF

cat >"$T/probe.py" <<EOF
import base64, gzip, os, socket, ssl, struct, sys
FI4 = "$FI_IP4"
PH = os.environ["TOK"]                 # the placeholder, as the sandbox sees it
CTX = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
def out(*a): print(*a, flush=True)
def tls(host):
    s = socket.create_connection((FI4, 443), 5)
    return CTX.wrap_socket(s, server_hostname=host)
def exchange(name, host, raw, wait=4):
    """Sends raw bytes, reads until the broker closes or wait s pass; prints every status line."""
    try:
        s = tls(host); s.settimeout(wait); s.sendall(raw)
        data = b""
        while True:
            try:
                d = s.recv(65536)
            except socket.timeout:
                break
            if not d: break
            data += d
    except (OSError, ssl.SSLError) as e:
        return out(name, "error", e)
    st, bodies = responses(data)
    out(name, "status=" + (",".join(st) or "none"), "body=" + b"|".join(bodies)[:400].decode("latin-1").replace("\n", " "))
    return data
def responses(data):
    """Splits a byte stream into responses (Content-Length or chunked); returns statuses and bodies."""
    st, bodies = [], []
    while data.startswith(b"HTTP/1.1 ") and b"\r\n\r\n" in data:
        head, data = data.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n"); st.append(lines[0].split(b" ")[1].decode())
        hd = {l.split(b":", 1)[0].strip().lower(): l.split(b":", 1)[1].strip() for l in lines[1:] if b":" in l}
        body = b""
        if b"chunked" in hd.get(b"transfer-encoding", b"").lower():
            while b"\r\n" in data:
                n, data = data.split(b"\r\n", 1); n = int(n.split(b";")[0], 16)
                body += data[:n]; data = data[n + 2:]
                if n == 0:
                    break
        else:
            n = int(hd.get(b"content-length", b"0")); body, data = data[:n], data[n:]
        bodies.append(body)
    return st, bodies
H = "Host: %s\r\n"
def req(host, head, body=b""):
    return head.replace("{H}", H % host).encode() + body

# --- SNI / Host, CONNECT ---
exchange("snihost", "api.test", req("evil.test", "GET /echo?case=snihost HTTP/1.1\r\n{H}Connection: close\r\n\r\n"))
exchange("connect", "api.test", b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n")
exchange("connect2", "api.test", b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test\r\n\r\n")
# --- smuggling: each carries a second request to /smuggled that must never arrive ---
SM = b"GET /smuggled HTTP/1.1\r\nHost: api.test\r\n\r\n"
exchange("clte", "api.test", req("api.test", "POST /echo?case=clte HTTP/1.1\r\n{H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", b"0\r\n\r\n" + SM))
exchange("tecl", "api.test", req("api.test", "POST /echo?case=tecl HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nContent-Length: 50\r\n\r\n", b"0\r\n\r\n" + SM))
exchange("dupcl", "api.test", req("api.test", "POST /echo?case=dupcl HTTP/1.1\r\n{H}Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SM), SM))
exchange("obsfold", "api.test", req("api.test", "GET /echo?case=obsfold HTTP/1.1\r\n{H}X-A: a\r\n Content-Length: %d\r\n\r\n" % len(SM), SM))
exchange("barelf", "api.test", req("api.test", "GET /echo?case=barelf HTTP/1.1\n{H}\n".replace("\r\n", "\n")) + SM)
exchange("barelf2", "api.test", req("api.test", "GET /echo?case=barelf2 HTTP/1.1\r\n{H}X-B: b\nContent-Length: %d\r\n\r\n" % len(SM), SM))
exchange("tespace", "api.test", req("api.test", "POST /echo?case=tespace HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n", b"0\r\n\r\n" + SM))
exchange("teobf", "api.test", req("api.test", "POST /echo?case=teobf HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n\r\n", b"0\r\n\r\n" + SM))
exchange("tedouble", "api.test", req("api.test", "POST /echo?case=tedouble HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n", b"0\r\n\r\n" + SM))
# --- placeholders toward other.test (not the secret's host) ---
pct = "".join("%%%02X" % ord(c) for c in PH)
exchange("pctquery", "other.test", req("other.test", "GET /echo?case=pctquery&t=%s HTTP/1.1\r\n{H}Connection: close\r\n\r\n" % pct))
exchange("pcthdr", "other.test", req("other.test", "GET /echo?case=pcthdr HTTP/1.1\r\n{H}X-T: %s\r\nConnection: close\r\n\r\n" % pct))
half = len(PH) // 2
chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half + 2, b"a=" + PH[:half].encode(), len(PH) - half, PH[half:].encode())
exchange("splitleak", "other.test", req("other.test", "POST /echo?case=splitleak HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", chunks))
exchange("splitsub", "api.test", req("api.test", "POST /echo?case=splitsub HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", chunks))
gz = gzip.compress(("token=" + PH).encode())
exchange("gzleak", "other.test", req("other.test", "POST /echo?case=gzleak HTTP/1.1\r\n{H}Content-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(gz), gz))
exchange("gzapi", "api.test", req("api.test", "POST /echo?case=gzapi HTTP/1.1\r\n{H}Content-Encoding: gzip\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(gz), gz))
exchange("hdrname", "other.test", req("other.test", "GET /echo?case=hdrname HTTP/1.1\r\n{H}X-%s: 1\r\nConnection: close\r\n\r\n" % PH))
exchange("hdrnameapi", "api.test", req("api.test", "GET /echo?case=hdrnameapi HTTP/1.1\r\n{H}X-%s: 1\r\nConnection: close\r\n\r\n" % PH))
# --- the upstream echoes the substituted value back: the sandbox must see the placeholder ---
exchange("echo", "api.test", req("api.test", "GET /echo?case=echo HTTP/1.1\r\n{H}Authorization: Bearer %s\r\nConnection: close\r\n\r\n" % PH))
# --- WebSocket: frames after the upgrade (masked and unmasked text carrying the placeholder) ---
try:
    s = tls("api.test"); s.settimeout(5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws?case=ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % key).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(4096)
        if not d: break
        head += d
    out("ws upgrade", head.split(b"\r\n")[0].decode())
    got = head.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in head else b""
    for masked in (True, False):
        payload = ("ws:" + PH).encode(); m = os.urandom(4) if masked else b""
        body = bytes(b ^ m[i % 4] for i, b in enumerate(payload)) if masked else payload
        s.sendall(bytes([0x81, (0x80 if masked else 0) | len(payload)]) + m + body)
    s.settimeout(2)
    try:
        while True:
            d = s.recv(4096)
            if not d: break
            got += d
    except socket.timeout:
        pass
    out("ws echoed", got.decode("latin-1").replace("\n", " "))
except (OSError, ssl.SSLError) as e:
    out("ws error", e)
EOF

out=$(sluice_run --policy "$T/policy.yaml" --run-dir "$T/run" --ca-dir "$T/ca" --audit "$T/audit.log" \
	-- "$PY" "$T/probe.py" 2>"$T/run.err")
echo "$out" >"$T/out.txt"
sl_log "probe output:"; echo "$out" | sed 's/^/    /' >&2
reqs=$(fi_requests 443)
ws=$(cat "$FI_DIR/ws.443.log" 2>/dev/null)
line() { echo "$out" | grep "^$1 " | head -n 1; }
got() { echo "$reqs" | grep "case=$1[\"&]"; }
HOLES=()
hole() { HOLES+=("$*"); sl_log "HOLE: $*"; }

st() { line "$1" | sed -n 's/^[^ ]* status=\([0-9,]*\).*/\1/p'; }
sl_assert_eq 421 "$(st snihost)" "SNI api.test with Host evil.test: 421"
[ -z "$(got snihost)" ] || hole "SNI/Host mismatch reached the upstream"
sl_assert_eq 405 "$(st connect)" "CONNECT evil.test: 405"
sl_assert_eq 405 "$(st connect2)" "CONNECT to the allowed host itself: 405"
for c in clte tecl dupcl obsfold barelf barelf2 tespace teobf tedouble; do
	s=$(st $c)
	[ "$s" = 400 ] && sl_ok "smuggling $c: 400 only" || hole "smuggling $c: expected status 400 alone, got '$s'"
	[ -z "$(got $c)" ] && sl_ok "smuggling $c: nothing reached the upstream" || hole "smuggling $c reached the upstream: $(got $c | head -c 300)"
done
[ -z "$(echo "$reqs" | grep '/smuggled')" ] && sl_ok "no smuggled request reached the upstream" || hole "a smuggled request reached the upstream"

# Secrets: the value goes only to api.test, in bound places, and never back to the sandbox.
leakto=$(echo "$reqs" | grep -F "$SL_ESC_TOKEN" | grep -v '"host": "api.test"')
[ -z "$leakto" ] && sl_ok "the real value reached no host but api.test" || hole "real value sent to another host: $(echo "$leakto" | head -c 300)"
for c in pctquery pcthdr; do
	s=$(st $c)
	[ -z "$(got $c | grep -F "$SL_ESC_TOKEN")" ] || hole "$c: the real value left"
	sl_ok "$c (percent-encoded placeholder to other.test, status $s): no real value left"
done
sl_assert_eq 403 "$(st splitleak)" "placeholder split across two chunks toward other.test: 403 (leak detected)"
[ -z "$(got splitleak)" ] || hole "split-chunk leak request reached other.test"
sl_assert_eq 200 "$(st splitsub)" "placeholder split across chunks toward api.test: substituted"
got splitsub | grep -qF "a=$SL_ESC_TOKEN" || hole "split-chunk substitution toward api.test did not give the value: $(got splitsub | head -c 300)"
for c in gzleak gzapi; do
	b=$(got $c | "$PY" -c '
import gzip, json, sys
for l in sys.stdin:
    print(gzip.decompress(json.loads(l)["body"].encode("latin-1")).decode())')
	s=$(st $c)
	if [ -z "$(got $c)" ]; then
		sl_ok "$c: gzip body with a placeholder refused (status $s)"
	else
		sl_assert_contains "$b" "token=SLUICE_PLACEHOLDER_TOK" "$c: the upstream got the placeholder, compressed, untouched"
		sl_assert_not_contains "$b" "$SL_ESC_TOKEN" "$c: the real value is not inside the gzip body"
	fi
done
for c in hdrname hdrnameapi; do
	s=$(st $c)
	[ -z "$(got $c | grep -F "$SL_ESC_TOKEN")" ] || hole "$c: real value sent in a header name"
	sl_ok "$c: placeholder in a header name (status $s): the value did not leave"
done
sl_assert_eq 403 "$(st hdrname)" "placeholder in a header name toward other.test: 403 (leak detected)"
[ -z "$(got hdrname)" ] || hole "hdrname: a request with a placeholder header name reached other.test"

sl_assert_eq 200 "$(st echo)" "echo: the request went through"
got echo | grep -qF "Bearer $SL_ESC_TOKEN" || hole "echo: api.test did not get the substituted value"
sl_assert_contains "$(line echo)" "Bearer SLUICE_PLACEHOLDER_TOK" "echo: the sandbox sees the placeholder where the upstream echoed the value"
sl_assert_contains "$(line 'ws upgrade')" "101" "WebSocket upgraded"
[ -n "$ws" ] || hole "WebSocket frames never reached the upstream (cannot judge)"
sl_assert_not_contains "$ws" "$SL_ESC_TOKEN" "WebSocket: the upstream never saw the real value"
sl_assert_contains "$ws" "ws:SLUICE_PLACEHOLDER_TOK" "WebSocket: frames passed through with the placeholder"
sl_assert_not_contains "$out" "$SL_ESC_TOKEN" "the sandbox never saw the real value"
sl_assert_not_contains "$(cat "$T/audit.log" "$T/run.err")" "$SL_ESC_TOKEN" "audit log and broker log hold no secret"
[ ${#HOLES[@]} = 0 ] || sl_fail "$(printf '%s; ' "${HOLES[@]}")"
sl_pass
