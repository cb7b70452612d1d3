#!/bin/bash
# SPDX-License-Identifier: MIT
# A name that resolves to loopback (here "localhost", from /etc/hosts) is not
# dialled because a broad rule ("*") allows it: DNS must not be a way into this
# host or to link-local metadata. It is dialled when an allow rule names it
# exactly. Traffic stays on loopback.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_internal
sl_need_bins "$SLUICED"
getent hosts localhost | grep -q '127.0.0.1' || sl_fail "this test needs localhost -> 127.0.0.1 in /etc/hosts"

# A TCP listener on loopback standing for an internal service; it counts connections.
LPORT=$(( 20000 + $$ % 20000 ))
mkdir -p "$T/lo"
sl_bg lo "$PY" "$SL_ROOT/tests/servers/upstream.py" tcpcount "$LPORT" "$T/lo"
sl_wait_for "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $LPORT), 1)" || sl_fail "listener"
conns() { wc -l <"$T/lo/conn.$LPORT.log" | tr -d ' '; }
base=$(conns)

start() { # name policy-file [original destination] -> BPORT
	exec {rfd}>"$T/$1.ready"
	sl_bg "$1" "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/$1.run" \
		--origdst-fixed "${3:-127.0.0.1:$LPORT}" --policy "$2" --audit "$T/$1.audit"
	exec {rfd}>&-
	sl_wait_for grep -q READY "$T/$1.ready" || sl_fail "$1 did not get ready: $(cat "$T/$1.log")"
	read -r _ BPORT _ <"$T/$1.ready"
}
get() { curl -sS --max-time 10 --cacert "$T/$2.run/ca.crt" --connect-to "::127.0.0.1:$BPORT" \
	-o "$T/out" -w '%{http_code}' "https://localhost:$LPORT/$1"; }

printf 'rules:\n  - {action: allow, host: "*"}\n' >"$T/star.yaml"
start star "$T/star.yaml"
code=$(get x star)
sl_assert_eq 502 "$code" "a glob does not open the way to loopback"
sl_assert_contains "$(cat "$T/out")" "internal address" "502 says why"
sl_assert_eq "$base" "$(conns)" "nothing reached the loopback service"

# Pipelined requests whose upstream fails at once (internal address, 502) are
# answered one after the other, not by a call chain one level deeper per
# request: 20,000 of them on a 2 MiB stack.
exec {rfd}>"$T/deep.ready"
sl_bg deep bash -c 'ulimit -s 2048; exec "$@"' deep "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" \
	--ca-dir "$T/ca" --run-dir "$T/deep.run" --origdst-fixed "127.0.0.1:$LPORT" --policy "$T/star.yaml" --audit /dev/null
exec {rfd}>&-
sl_wait_for grep -q READY "$T/deep.ready" || sl_fail "deep did not get ready: $(cat "$T/deep.log")"
read -r _ DPORT _ <"$T/deep.ready"
DPID=$(cat "$T/deep.pid")
out=$("$PY" - "$DPORT" "$LPORT" "$T/deep.run/ca.crt" <<'EOPY'
import select, socket, ssl, sys
port, lport, ca = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), 10), server_hostname="localhost")
s.settimeout(30)
N, B = 20000, 2000
req = ("HEAD / HTTP/1.1\r\nHost: localhost:%s\r\n\r\n" % lport).encode()
got, data, sent = 0, b"", 0
def read_some(wait):
    """Reads what comes within wait: "eof", "more" (something came) or "idle"."""
    global got, data
    r = "idle"
    while s.pending() or select.select([s], [], [], wait)[0]:
        d = s.recv(65536)
        if not d:
            return "eof"
        data += d
        got += data.count(b"HTTP/1.1 502")
        data = data[-11:]  # a marker split across reads is counted once, with the next
        wait, r = 0, "more"
    return r
try:
    # One thread (an SSL object is not for two at once): a batch out (more than
    # the broker takes in one read), then whatever answers are there.
    while sent < N:
        s.sendall(req * B)
        sent += B
        if read_some(0.05) == "eof":
            break
    while got < N and read_some(10) == "more":
        pass
except OSError as e:
    print("error", e)
print("answered", got)
EOPY
)
sl_assert_contains "$out" "answered 20000" "20,000 pipelined requests with a failing upstream were all answered"
kill -0 "$DPID" 2>/dev/null || sl_fail "the broker died under pipelined requests: $(tail -n 3 "$T/deep.log")"
sl_ok "the broker is still running"
sl_assert_eq "$base" "$(conns)" "nothing reached the loopback service"

printf 'rules:\n  - {action: allow, host: "localhost"}\n' >"$T/named.yaml"
start named "$T/named.yaml"
code=$(get y named)
# The listener is not TLS: the broker dials it, and the TLS handshake fails (502),
# but only after the connection reached it.
sl_assert_eq 502 "$code" "upstream is not TLS"
sl_assert_not_contains "$(cat "$T/out")" "internal address" "not refused as internal"
[ "$(conns)" -gt "$base" ] || sl_fail "the named host was not dialled"
sl_ok "an allow rule naming the host exactly lets the broker dial it"

# The rule that allowed the request decides, not another rule naming the host for some other
# port, method or path: here "*" allows it, and localhost is named only for GET /health on 3000.
printf 'rules:\n  - {action: allow, host: localhost, port: 3000, method: GET, path: /health}\n  - {action: allow, host: "*"}\n' >"$T/other.yaml"
start other "$T/other.yaml"
before=$(conns)
code=$(get z other)
sl_assert_eq 502 "$code" "a rule naming the host for another port does not open it to a glob-allowed request"
sl_assert_contains "$(cat "$T/out")" "internal address" "502 says why"
sl_assert_eq "$before" "$(conns)" "nothing reached the loopback service"

# On a kept-alive connection each request needs such a rule: the first (GET /ok, a rule names
# localhost) reaches the loopback server; the next one ("*" allows it) may not ride that connection.
HPORT=$(( 20000 + ($$ + 7) % 20000 ))
sl_bg hsrv "$PY" -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        b = ("internal " + self.path).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$HPORT"
sl_wait_for "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $HPORT), 1)" || sl_fail "http server"
printf 'rules:\n  - {action: allow, host: localhost, path: /ok}\n  - {action: allow, host: "*"}\n' >"$T/ka.yaml"
start ka "$T/ka.yaml" "127.0.0.1:$HPORT"
KPORT=$BPORT
out=$("$PY" - "$KPORT" "$HPORT" <<'EOPY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
for path in ("/ok", "/admin"):
    c.request("GET", path, headers={"Host": "localhost:" + sys.argv[2]})
    r = c.getresponse(); body = r.read().decode(errors="replace")
    print(path, r.status, body)
    if r.getheader("Connection", "").lower() == "close":
        break
EOPY
)
sl_assert_contains "$out" "/ok 200 internal /ok" "the request whose rule names localhost reached the loopback server"
sl_assert_not_contains "$out" "internal /admin" "the next request on that connection, allowed only by '*', did not"
sl_assert_contains "$out" "/admin 502" "it got 502"

# Cloud metadata outside link-local (AWS's IPv6 IMDS), as a plain HTTP Host under a "*" rule.
printf 'rules:\n  - {action: allow, host: "*"}\n' >"$T/imds.yaml"
start imds "$T/imds.yaml" "127.0.0.1:80"
IPORT=$BPORT
out=$("$PY" - "$IPORT" <<'EOPY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET /latest/meta-data/ HTTP/1.1\r\nHost: [fd00:ec2::254]\r\nConnection: close\r\n\r\n")
d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
print(d.decode(errors="replace"))
EOPY
)
sl_assert_contains "$out" "HTTP/1.1 502" "fd00:ec2::254 is refused"
sl_assert_contains "$out" "internal address" "as an internal address"

# The name resolved is the name the rules checked: no search list from resolv.conf ("db" must not
# become db.corp.test, which a deny rule covers). In a network namespace of its own, with a fake
# DNS server on its loopback that answers db.corp.test and logs every question.
cat >"$T/fakedns.py" <<'EOPY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
log = open(sys.argv[1], "a", buffering=1)
while True:
    m, peer = s.recvfrom(4096)
    qid = struct.unpack(">H", m[:2])[0]; off = 12; labels = []
    while m[off]:
        labels.append(m[off + 1:off + 1 + m[off]].decode()); off += 1 + m[off]
    off += 5; name = ".".join(labels).lower(); qt = struct.unpack(">H", m[off - 4:off - 2])[0]
    log.write("Q %s\n" % name)
    if name == "db.corp.test" and qt == 1:
        r = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0) + m[12:off] + \
            struct.pack(">HHHIH", 0xc00c, 1, 1, 5, 4) + socket.inet_aton("127.0.0.9")
    else:
        r = struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + m[12:off]
    s.sendto(r, peer)
EOPY
printf 'nameserver 127.0.0.1\nsearch corp.test\noptions attempts:1 timeout:1\n' >"$T/search.conf"
printf 'rules:\n  - {action: deny, host: "*.corp.test"}\n  - {action: allow, host: "*", method: GET}\n' >"$T/search.yaml"
cat >"$T/search.sh" <<EOSH
ip link set lo up
mount --bind "$T/search.conf" /etc/resolv.conf || exit 125
"$PY" "$T/fakedns.py" "$T/dns.log" & D=\$!
exec {rfd}>"$T/search.ready"
"$SLUICED" --listen 127.0.0.1:0 --ready-fd \$rfd --ca-dir "$T/ca" --run-dir "$T/search.run" \
	--origdst-fixed 127.0.0.1:80 --policy "$T/search.yaml" --audit "$T/search.audit" >"$T/search.log" 2>&1 & B=\$!
exec {rfd}>&-
for i in \$(seq 100); do grep -q READY "$T/search.ready" && break; sleep 0.05; done
read -r _ P _ <"$T/search.ready"
get() {
"$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sys.argv[2].encode())
d = b""
while True:
    x = s.recv(4096)
    if not x: break
    d += x
print(d.decode(errors="replace"))
' "\$P" "\$1"
}
get db
# An address this host gained after the broker started is still its own.
ip addr add 203.0.113.7/32 dev lo
echo "== late"; get 203.0.113.7
kill \$B \$D; wait \$B \$D 2>/dev/null
EOSH
out=$(timeout 30 unshare -n -m bash "$T/search.sh" 2>&1)
late=${out#*== late}; out=${out%%== late*}
sl_assert_contains "$late" "internal address" "an address added to this host after the broker started counts as its own"
sl_assert_contains "$out" "HTTP/1.1 502" "Host: db is not served from db.corp.test"
sl_assert_contains "$out" "no such name" "the broker looked up db itself, which does not exist"
sl_assert_contains "$(cat "$T/dns.log")" "Q db" "the DNS server was asked for db"
sl_assert_not_contains "$(cat "$T/dns.log")" "corp.test" "and never for a name from the search list"
sl_pass
