#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced keeps each upstream connection in step with the requests it carries,
# without the kernel part (--origdst-fixed), against plain-HTTP upstreams of
# the test's own, all on the loopback of a network namespace the test makes
# (127.0.0.1, named by the rule), whose socket send buffers are capped at
# 64 KiB so that a request body waits in the broker, not in the kernel:
#  - an upstream that answers before it has read the whole request body (an
#    early 401) and then drops the connection: the body's unsent end must not
#    go to a new connection, where a request hidden at its end would be read as
#    a request of its own that no rule checked (request smuggling);
#  - the same with stray bytes from that upstream after its answer;
#  - an upstream that sends a response nobody asked for right after a long
#    body: it must not be taken for the answer to the next pipelined request.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_upsync
sl_need_bins "$SLUICED"
NS=slus$$
ip netns add "$NS" || sl_fail "cannot create network namespace $NS"
sl_defer "ip netns delete $NS"
ip -n "$NS" link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536" || sl_fail "cannot cap tcp_wmem in $NS"
IN=(ip netns exec "$NS")

free_port() { "${IN[@]}" "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# An upstream that answers /early with 401 once it has read all but the last
# K bytes of the body (by then the broker has taken all of it, and part may
# wait in its buffer), then (mode drop) reads what comes for half a second
# and half-closes, or (mode stray) sends an unasked response; anything else
# gets "good". How much waits where depends on timing: several K are tried.
cat >"$T/early.py" <<'EOPY'
import socket, sys, threading, time
port, mode, log = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "a", buffering=1)
K = int(sys.argv[4])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.bind(("127.0.0.1", port)); s.listen(16)
def serve(c):
    buf = b""
    try:
        while True:
            while b"\r\n\r\n" not in buf.lstrip(b"\r\n"):
                d = c.recv(65536)
                if not d:
                    return
                buf += d
            head, buf = buf.lstrip(b"\r\n").split(b"\r\n\r\n", 1)
            line = head.split(b"\r\n")[0]
            log.write("request %s\n" % line.decode("latin-1"))
            cl = 0
            for h in head.split(b"\r\n")[1:]:
                if h.lower().startswith(b"content-length:"):
                    cl = int(h.split(b":")[1])
            if b"/early" not in line:
                buf = buf[cl:]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
                continue
            while len(buf) < cl - K:
                buf += c.recv(65536)
            time.sleep(1)
            c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            time.sleep(1)
            if mode == "drop":
                c.settimeout(0.5)  # what comes within half a second, then half-close
                try:
                    while c.recv(65536):
                        pass
                except socket.timeout:
                    pass
                c.settimeout(None)
                c.shutdown(socket.SHUT_WR)
                while c.recv(65536):
                    pass
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
            time.sleep(3)
            return
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOPY

# The client: a POST whose body is 1.6 MB of empty lines and then a whole
# request; after the 401, a second request on the same connection.
cat >"$T/smuggle.py" <<'EOPY'
import socket, sys, threading, time
bport, pause = int(sys.argv[1]), float(sys.argv[2])
body = b"\r\n" * 800000 + b"GET /smuggled HTTP/1.1\r\nHost: up.test\r\n\r\n"
c = socket.socket(); c.connect(("127.0.0.1", bport))
threading.Thread(target=lambda: c.sendall(b"POST /early HTTP/1.1\r\nHost: up.test\r\nContent-Length: %d\r\n\r\n"
                                          % len(body) + body), daemon=True).start()
c.settimeout(10)
data = b""
while b"401" not in data:
    d = c.recv(65536)
    if not d:
        print("closed before the 401"); sys.exit()
    data += d
time.sleep(pause)
c.sendall(b"GET /two HTTP/1.1\r\nHost: up.test\r\n\r\n")
try:
    while not (data.endswith(b"good") or data.endswith(b"stale") or data.endswith(b"}\n")):
        d = c.recv(65536)
        if not d:
            break
        data += d
except socket.timeout:
    pass
print("last:", data[-60:])
EOPY

start_broker() { # name upstream-port
	local rfd
	exec {rfd}>"$T/ready-$1"
	sl_bg "$1" "${IN[@]}" "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
		--origdst-fixed "127.0.0.1:$2" --resolve "up.test:127.0.0.1" --allow up.test --audit "$T/audit-$1"
	exec {rfd}>&-
	sl_wait_for grep -q READY "$T/ready-$1" || sl_fail "broker $1 did not get ready: $(cat "$T/$1.log")"
	read -r _ BPORT _ <"$T/ready-$1"
}

for run in drop:100000 drop:110000 drop:120000 drop:150000 drop:200000 stray:110000 stray:200000; do
	mode=${run%:*} k=${run#*:}
	UP=$(free_port)
	sl_bg "up-$mode-$k" "${IN[@]}" "$PY" "$T/early.py" "$UP" "$mode" "$T/up-$mode-$k.req" "$k"
	sl_wait_for "${IN[@]}" "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $UP), 1)" ||
		sl_fail "upstream ($mode) did not start"
	start_broker "b-$mode-$k" "$UP"
	out=$(timeout 30 "${IN[@]}" "$PY" "$T/smuggle.py" "$BPORT" "$([ $mode = drop ] && echo 0 || echo 1.5)")
	sleep 0.5
	sl_log "[$run] client: $out; upstream saw: $(tr '\n' ' ' <"$T/up-$mode-$k.req")"
	sl_assert_not_contains "$(cat "$T/up-$mode-$k.req")" "/smuggled" \
		"[$run] the end of a body cut short by an early answer never reaches an upstream as a request"
	sl_assert_contains "$(cat "$T/up-$mode-$k.req")" "request GET /two" "[$run] the next request reached the upstream"
	sl_assert_contains "$out" "good" "[$run] the next request got its own answer"
done

# A response nobody asked for, right behind a 3 MB body, to a client that
# pipelines a second request and reads slowly.
UP=$(free_port)
sl_bg up-extra "${IN[@]}" "$PY" -c '
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16)
def serve(c):
    buf = b""
    while True:
        d = c.recv(65536)
        if not d:
            break
        buf += d
        while b"\r\n\r\n" in buf:
            req, buf = buf.split(b"\r\n\r\n", 1)
            if b"/big" in req.split(b"\r\n")[0]:
                n = 3000000
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n + b"x" * n +
                          b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil")
            else:
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood")
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
' "$UP"
sl_wait_for "${IN[@]}" "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $UP), 1)" || sl_fail "upstream (extra) did not start"
start_broker b-extra "$UP"
out=$(timeout 40 "${IN[@]}" "$PY" - "$BPORT" <<'EOPY'
import socket, sys, time
c = socket.socket(); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
c.connect(("127.0.0.1", int(sys.argv[1])))
c.sendall(b"GET /big HTTP/1.1\r\nHost: up.test\r\n\r\nGET /two HTTP/1.1\r\nHost: up.test\r\n\r\n")
time.sleep(1)
data, end = b"", time.time() + 25
c.settimeout(2)
while time.time() < end:
    try:
        d = c.recv(2000)
    except socket.timeout:
        break
    if not d:
        break
    data += d
    time.sleep(0.0005)
i = data.find(b"\r\n\r\n")
print("second:", data[i + 4 + 3000000:][-40:])
EOPY
)
sl_log "pipelined after a 3 MB body with an unasked response behind it: $out"
sl_assert_contains "$out" "good" "the next pipelined request gets its own answer"
sl_assert_not_contains "$out" "evil" "an unasked response behind a body is never taken for the next answer"

sl_pass
