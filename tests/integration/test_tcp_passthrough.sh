#!/bin/bash
# SPDX-License-Identifier: MIT
# Non-HTTP TCP allowed by `proto: tcp` rules, through sluiced directly
# (--origdst-fixed) and through `sluice run`: a server-speaks-first service
# (the fake internet's 9000 sends "hello\n") and a client-first one (an echo
# server made here) pass when a rule allows the destination, by address
# literal or by a name the sandbox resolved through the broker's DNS; the same
# destination with no tcp rule, or with only an HTTP rule, is refused and the
# server counts no connection; an internal address needs an exact rule.
. "$(dirname "$0")/../lib.sh"
sl_begin tcp_passthrough
sl_need_bins "$SLUICE" "$SLUICED"
command -v dig >/dev/null || sl_fail "dig is missing (package dnsutils; run make deps)"
fi_up

# Client-first echo server on 9100 in the fake internet: logs what it read.
cat >"$T/echo.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(16)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    try:
        d = c.recv(4096)
        with open(sys.argv[2], "a") as f:
            f.write(d.decode(errors="replace").strip() + "\n")
        c.sendall(b"echo:" + d)
    except OSError:
        pass
    c.close()
PY
: >"$FI_DIR/echo.log"
sl_bg echo9100 ip netns exec "$FI_NS" "$PY" "$T/echo.py" 9100 "$FI_DIR/echo.log"
sl_wait_for fi_probe 9100 || sl_fail "echo server did not start"
: >"$FI_DIR/echo.log"

# client PORT MODE: connects to the broker on 127.0.0.1:PORT; MODE "silent"
# reads what the server says first, "send" sends a line first. Prints what came back.
client() {
	"$PY" - "$1" "$2" "${3:-}" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 3)
s.settimeout(2)
got = b""
try:
    if sys.argv[2] == "send":
        s.sendall(b"ping from sandbox\n")
    elif sys.argv[2] == "ssh":
        s.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")  # OpenSSH clients speak first
    elif sys.argv[2] == "ping":
        s.sendall(b"PING\r\n")  # Redis inline command
    elif sys.argv[2] == "http":
        s.sendall(b"GET /x HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % sys.argv[3].encode())
    elif sys.argv[2] == "raw":
        s.sendall(b"\x00\x01binary")
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except ConnectionResetError:
    pass  # closed by the broker with the client's bytes unread
except OSError as e:
    got += b" (" + str(e).encode() + b")"
print("got=%r" % got)
PY
}

# start_broker NAME ORIGDST POLICY-TEXT [SLUICED-ARGS...]: sets BPORT, BDNS; audit in $T/NAME.audit.
n_brokers=0
start_broker() {
	local name=$1 od=$2 rfd
	printf '%s\n' "$3" >"$T/$name.yaml"
	shift 3
	exec {rfd}>"$T/$name.ready"
	sl_bg "$name" "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
		--origdst-fixed "$od" --policy "$T/$name.yaml" --resolve "git.test:$FI_IP4" \
		--audit "$T/$name.audit" "$@"
	exec {rfd}>&-
	sl_wait_for grep -q READY "$T/$name.ready" || sl_fail "broker $name did not get ready: $(cat "$T/$name.log")"
	read -r _ BPORT BDNS <"$T/$name.ready"
}

# 1. Server speaks first, allowed by the address literal.
start_broker lit "$FI_IP4:9000" "rules:
  - {action: allow, proto: tcp, host: \"$FI_IP4\", port: 9000}"
c0=$(fi_conns 9000)
out=$(client "$BPORT" silent)
sl_assert_eq "got=b'hello\\n'" "$out" "server-first: the banner arrived through the broker"
sl_assert_eq $((c0 + 1)) "$(fi_conns 9000)" "server-first: the server saw one connection"
sl_wait_for grep -q '"method":"TCP"' "$T/lit.audit" || sl_fail "no audit line: $(cat "$T/lit.audit")"
audit=$(cat "$T/lit.audit")
sl_assert_contains "$audit" "\"method\":\"TCP\",\"host\":\"$FI_IP4\",\"port\":9000,\"tls\":false,\"path\":null,\"status\":200" "audit: TCP, host, port, null path"
sl_assert_contains "$audit" '"bytes_in":0,"bytes_out":6' "audit: bytes both ways"
sl_assert_contains "$audit" "proto=tcp" "audit: the rule that allowed it"

# 1b. A reload in the wait for the server's first bytes (the rule is gone):
#     the tunnel is decided again when it starts, and refused.
"$PY" - "$BPORT" "$T/silent.connected" >"$T/silent.out" <<'PY' &
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 3)
open(sys.argv[2], "w").close()
s.settimeout(3)
got = b""
try:
    while True:
        d = s.recv(4096)
        if not d:
            break
        got += d
except OSError:
    pass
print("got=%r" % got)
PY
SILENT=$!
sl_wait_for test -e "$T/silent.connected" || sl_fail "the silent client did not connect"
c0=$(fi_conns 9000)
printf 'rules: []\n' >"$T/lit.yaml"
kill -HUP "$(cat "$T/lit.pid")"
wait $SILENT
sl_assert_eq "got=b''" "$(cat "$T/silent.out")" "a reload before the tunnel started: refused"
sl_assert_eq "$c0" "$(fi_conns 9000)" "the server counted no connection after the reload"

# 2. The same destination allowed only by name: refused until the sandbox
#    resolved the name through the broker's DNS, then allowed.
start_broker name "$FI_IP4:9000" "rules:
  - {action: allow, proto: tcp, host: git.test, port: 9000}"
c0=$(fi_conns 9000)
out=$(client "$BPORT" raw)
sl_assert_eq "got=b''" "$out" "by name, before any DNS answer: refused"
sl_assert_eq "$c0" "$(fi_conns 9000)" "refused: the server counted no connection"
sl_wait_for grep -q "no proto: tcp rule allows it" "$T/name.log" || sl_fail "refusal not logged: $(cat "$T/name.log")"
sl_assert_contains "$(grep 'no proto: tcp rule allows it' "$T/name.log")" "$FI_IP4 port 9000" "the log names address and port"
sl_assert_eq "$FI_IP4" "$(dig +tries=1 +time=2 +short -p "$BDNS" @127.0.0.1 git.test A)" "the broker's DNS answers git.test"
out=$(client "$BPORT" silent)
sl_assert_eq "got=b'hello\\n'" "$out" "by name, after the DNS answer: allowed"
sl_assert_eq $((c0 + 1)) "$(fi_conns 9000)" "the server saw exactly the allowed connection"
sl_wait_for grep -q '"method":"TCP","host":"git.test"' "$T/name.audit" || sl_fail "audit names the host: $(cat "$T/name.audit")"

# 3. Client speaks first.
start_broker echo "$FI_IP4:9100" "rules:
  - {action: allow, proto: tcp, host: \"$FI_IP4\", port: 9100}"
out=$(client "$BPORT" send)
sl_assert_eq "got=b'echo:ping from sandbox\\n'" "$out" "client-first: the bytes went both ways"
sl_assert_eq "ping from sandbox" "$(cat "$FI_DIR/echo.log")" "client-first: the server read the client's bytes"
# Client-first protocols whose first bytes are capitals, as an HTTP method's are.
: >"$FI_DIR/echo.log"
out=$(client "$BPORT" ssh)
sl_assert_eq "got=b'echo:SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n'" "$out" "client-first SSH banner: tunnelled, not taken for HTTP"
out=$(client "$BPORT" ping)
sl_assert_eq "got=b'echo:PING\\r\\n'" "$out" "client-first Redis PING: tunnelled"
sl_assert_eq "SSH-2.0-OpenSSH_9.2p1 Debian-2
PING" "$(cat "$FI_DIR/echo.log")" "the server read both"
# A request line to that destination still goes by the HTTP rules (none here: 403).
out=$(client "$BPORT" http "$FI_IP4:9100")
sl_assert_contains "$out" "HTTP/1.1 403" "an HTTP request to a proto: tcp destination gets the HTTP rules"

# 4. An HTTP rule (and a tcp rule for another port) do not open raw TCP.
start_broker http "$FI_IP4:9000" "rules:
  - {action: allow, host: \"$FI_IP4\"}
  - {action: allow, host: git.test}
  - {action: allow, proto: tcp, host: \"$FI_IP4\", port: 9100}"
c0=$(fi_conns 9000)
out=$(client "$BPORT" raw)
sl_assert_eq "got=b''" "$out" "HTTP rule only: binary client refused"
out=$(client "$BPORT" silent)
sl_assert_not_contains "$out" "hello" "HTTP rule only: a silent client gets nothing"
sl_assert_eq "$c0" "$(fi_conns 9000)" "HTTP rule only: the server counted no connection"

# 5. Internal addresses need a rule naming them exactly.
cat >"$T/local.py" <<'PY'
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    open(sys.argv[1], "a").write("conn\n")
    c.sendall(b"local\n"); c.close()
PY
: >"$T/local.log"
"$PY" "$T/local.py" "$T/local.log" >"$T/local.port" 2>/dev/null &
echo $! >"$T/local.pid"; sl_defer "kill $(cat "$T/local.pid") 2>/dev/null"
sl_wait_for test -s "$T/local.port" || sl_fail "local server did not start"
LP=$(cat "$T/local.port")
start_broker glob "127.0.0.1:$LP" "rules:
  - {action: allow, proto: tcp, host: \"*\", port: $LP}"
out=$(client "$BPORT" silent)
sl_assert_not_contains "$out" "local" "a glob tcp rule does not reach loopback"
sl_assert_eq 0 "$(wc -l <"$T/local.log")" "loopback server saw nothing"
# Another rule naming 127.0.0.1 (here for HTTP) does not lend its exemption
# to the glob rule that allows this connection.
start_broker glob2 "127.0.0.1:$LP" "rules:
  - {action: allow, host: \"127.0.0.1\"}
  - {action: allow, proto: tcp, host: \"*\", port: $LP}"
out=$(client "$BPORT" silent)
sl_assert_not_contains "$out" "local" "a glob tcp rule beside an HTTP rule naming 127.0.0.1 does not reach loopback"
sl_assert_eq 0 "$(wc -l <"$T/local.log")" "loopback server saw nothing (glob beside a named HTTP rule)"
start_broker exact "127.0.0.1:$LP" "rules:
  - {action: allow, proto: tcp, host: \"127.0.0.1\", port: $LP}"
out=$(client "$BPORT" silent)
sl_assert_eq "got=b'local\\n'" "$out" "a rule naming 127.0.0.1 exactly reaches it"

# 6. Through `sluice run`: the kernel redirects, the sandbox resolves git.test
#    through the broker's DNS, server-first passes, an unlisted port does not.
cat >"$T/run.yaml" <<EOF
rules:
  - {action: allow, host: api.test}
  - {action: allow, proto: tcp, host: git.test, port: 9000}
EOF
cat >"$T/inner.py" <<PY
import socket
a = socket.getaddrinfo("git.test", 9000, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
print("resolved", a)
def talk(port, send):
    s = socket.socket(); s.settimeout(3)
    got = b""
    try:
        s.connect((a, port))
        if send:
            s.sendall(b"\x00hi\n")
        while True:
            d = s.recv(64)
            if not d:
                break
            got += d
    except ConnectionResetError:
        pass
    except OSError as e:
        got += b" (" + str(e).encode() + b")"
    print("port", port, "got=%r" % got)
talk(9000, False)
talk(9100, True)
PY
c0=$(fi_conns 9000); e0=$(wc -l <"$FI_DIR/echo.log")
out=$(timeout 90 "$SLUICE" run --upstream-ca "$FI_CA" --resolve "git.test:$FI_IP4" --resolve "api.test:$FI_IP4" \
	--policy "$T/run.yaml" --run-dir "$T/rrun" --ca-dir "$T/ca" --audit "$T/run.audit" -- "$PY" "$T/inner.py" 2>"$T/run.err")
echo "$out" >"$T/inner.out"
sl_assert_contains "$out" "resolved $FI_IP4" "sandbox resolved git.test through the broker ($(tail -n 3 "$T/run.err"))"
sl_assert_contains "$out" "port 9000 got=b'hello\\n'" "sluice run: server-first TCP allowed by name passes"
sl_assert_contains "$out" "port 9100 got=b''" "sluice run: a port no tcp rule allows is refused"
sl_assert_eq $((c0 + 1)) "$(fi_conns 9000)" "sluice run: the server saw one connection"
sl_assert_eq "$e0" "$(wc -l <"$FI_DIR/echo.log")" "sluice run: the unlisted port's server saw nothing"
sl_assert_contains "$(cat "$T/run.audit")" '"method":"TCP","host":"git.test","port":9000' "sluice run: audit line for the tunnel"

# Over --max-conns, a connection taken only to answer HTTP 503 never becomes a
# raw tunnel, even to a destination a tcp rule allows.
start_broker over "$FI_IP4:9100" "rules:
  - {action: allow, proto: tcp, host: \"$FI_IP4\", port: 9100}" --max-conns 1
"$PY" -c 'import socket, sys, time; s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 3); time.sleep(4)' "$BPORT" &
HOLD=$!
sl_defer "sl_kill_pid $HOLD"
sleep 0.5
e0=$(wc -l <"$FI_DIR/echo.log")
out=$(client "$BPORT" raw)
sl_assert_eq "got=b''" "$out" "over --max-conns: raw TCP is closed, not tunnelled"
sl_assert_eq "$e0" "$(wc -l <"$FI_DIR/echo.log")" "over --max-conns: the server saw nothing from it"
sl_pass
