#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced --workers 2 through the real kernel redirect (`sluice run
# --broker-workers 2`):
#  1. 200 HTTPS requests over 50 keep-alive connections from the sandbox all
#     succeed, both workers accepted connections (their counters in the broker
#     log at exit), the audit log holds exactly one well-formed JSON line per
#     request (no two workers' lines interleaved); a policy reload (file
#     replaced, inotify on worker 0) is seen by every worker: 40 new
#     connections after it are all allowed.
#  2. Raw TCP allowed by a `proto: tcp` rule naming git.test: the name is
#     answered by worker 0's DNS, the connections land on both workers (the
#     run makes no other connection, and worker 1's counter is not 0) and all
#     pass. The sandbox runs as uid 0 and cannot join the broker's
#     SO_REUSEPORT group (its listeners belong to SLUICE_LISTEN_UID).
#  3. SIGTERM on a directly started sluiced --workers 2 with slow requests in
#     flight: every request finishes, no new connection is taken, exit 0. A
#     second broker on its port is refused (not joined to its listeners).
# Fails on a single-worker broker: no per-worker counters, nothing on worker 1.
. "$(dirname "$0")/../lib.sh"
. "$SL_ROOT/tests/fixtures/e2e/e2e.sh"
sl_begin broker_workers
sl_need_bins "$SLUICE" "$SLUICED"
fi_up
e2e_setup
E2E_RUN+=(--resolve "git.test:$FI_IP4" --broker-workers 2)
P=$T/policy.yaml
printf 'rules:\n  - {action: allow, host: api.test}\n' >"$P"

# worker_count LOG N: connections worker N accepted (its line at exit), "none" without one.
worker_count() {
	local c
	c=$(sed -n "s/.*worker $2: \([0-9]*\) connection(s) accepted.*/\1/p" "$1" | tail -n 1)
	echo "${c:-none}"
}

# ---- 1. many HTTPS requests, audit lines, reload ----
cat >"$T/inner.py" <<'EOF'
import http.client, os, ssl, sys, threading, time
O = sys.argv[1]
ctx = ssl.create_default_context()
res, lock = {}, threading.Lock()

def conn_run(tag, host, n):
    c = http.client.HTTPSConnection(host, 443, context=ctx, timeout=15)
    for i in range(n):
        rid = "%s-%d" % (tag, i)
        try:
            c.request("GET", "/hello?id=" + rid)
            r = c.getresponse()
            body = r.read()
            code = r.status if (r.status != 200 or body.startswith(b"hello from")) else -1
        except Exception as e:
            code = repr(e)
        with lock:
            res[rid] = code
    c.close()

def many(prefix, host, conns, per, par=8):
    todo = ["%s%d" % (prefix, k) for k in range(conns)]
    def worker():
        while True:
            with lock:
                if not todo:
                    return
                tag = todo.pop()
            conn_run(tag, host, per)
    ts = [threading.Thread(target=worker) for _ in range(par)]
    for t in ts: t.start()
    for t in ts: t.join()

def report(name, prefix, want):
    codes = [v for k, v in res.items() if k.startswith(prefix)]
    bad = [str(v) for v in codes if v != want]
    open(O + "/" + name, "w").write("%d %d %s\n" % (len(codes), len(bad), " ".join(bad[:5])))

many("w", "api.test", 50, 4)
report("https", "w", 200)
many("d", "other.test", 10, 1)
report("before", "d", 403)
open(O + "/ready0", "w").close()
end = time.time() + 30
while not os.path.exists(O + "/go0") and time.time() < end:
    time.sleep(0.05)
end = time.time() + 10
while time.time() < end:   # the reload is asynchronous: poll on fresh connections
    conn_run("p%f" % time.time(), "other.test", 1)
    if 200 in [v for k, v in res.items() if k.startswith("p")]:
        break
    time.sleep(0.1)
many("a", "other.test", 40, 1)
report("after", "a", 200)
EOF
e2e_run_bg run --name workers --policy "$P" -- /usr/bin/python3 "$T/inner.py" "$T/out"
BLOG=$T/run/workers/sluiced.log
sl_wait_for test -e "$T/out/ready0" || sl_wait_for test -e "$T/out/ready0" || sl_wait_for test -e "$T/out/ready0" ||
	sl_fail "the sandbox never finished its first phase ($(tail -n 5 "$T/run.err"; tail -n 5 "$BLOG"))"
printf 'rules:\n  - {action: allow, host: api.test}\n  - {action: allow, host: other.test}\n' >"$P.new"
mv -f "$P.new" "$P"
touch "$T/out/go0"
for i in $(seq 600); do kill -0 "$E2E_PID" 2>/dev/null || break; sleep 0.1; done
wait "$E2E_PID"
sl_assert_eq 0 "$?" "sluice run exited 0 ($(tail -n 3 "$T/run.err"))"

sl_assert_contains "$(cat "$BLOG")" "with 2 workers (SO_REUSEPORT)" "the broker started two workers"
sl_assert_eq "200 0 " "$(cat "$T/out/https" 2>/dev/null)" "200 HTTPS requests over 50 connections: all 200 (count, failures)"
sl_assert_eq "10 0 " "$(cat "$T/out/before" 2>/dev/null)" "before the reload: other.test denied on 10 connections"
sl_assert_eq "40 0 " "$(cat "$T/out/after" 2>/dev/null)" "after the reload: other.test allowed on 40 new connections"
sl_assert_contains "$(cat "$BLOG")" "policy reloaded" "the reload was logged once"
sl_assert_eq 1 "$(grep -c 'policy reloaded' "$BLOG")" "one reload for all workers"
w0=$(worker_count "$BLOG" 0); w1=$(worker_count "$BLOG" 1)
sl_ok "connections accepted: worker 0 $w0, worker 1 $w1"
[ "$w0" != none ] && [ "$w1" != none ] && [ "$w0" -gt 0 ] && [ "$w1" -gt 0 ] ||
	sl_fail "both workers should have accepted connections: worker 0 '$w0', worker 1 '$w1' ($(tail -n 5 "$BLOG"))"
sl_assert_contains "$(cat "$BLOG")" "exited cleanly" "the broker drained and exited cleanly"

AUD=$T/run/workers/audit.jsonl
[ -s "$AUD" ] || sl_fail "no audit log at $AUD"
check=$(/usr/bin/python3 - "$AUD" <<'EOF'
import json, sys, collections
ids, bad, n = collections.Counter(), 0, 0
for line in open(sys.argv[1], encoding="utf-8", errors="replace"):
    n += 1
    try:
        o = json.loads(line)
        assert isinstance(o, dict) and line.endswith("}\n") and line.count("\n") == 1
    except Exception:
        bad += 1
        continue
    p = o.get("path") or ""
    if o.get("host") == "api.test" and p.startswith("/hello?id=w"):
        ids[p] += 1
print("lines=%d bad=%d ids=%d once=%d" % (n, bad, len(ids), sum(1 for v in ids.values() if v == 1)))
EOF
)
sl_assert_contains "$check" "bad=0 ids=200 once=200" "audit: every line well-formed JSON, exactly one line per HTTPS request"

# ---- 2. raw TCP by name: DNS answered by worker 0, connections on both workers ----
printf 'rules:\n  - {action: allow, proto: tcp, host: git.test, port: 9000}\n' >"$T/tcp.yaml"
cat >"$T/tcp.py" <<'EOF'
import socket, sys, threading
# A uid 0 sandbox, as the broker's uid, tries to join every loopback listener's
# SO_REUSEPORT group (the broker's port included) and keeps what it got while
# the connections below run: a member would be handed a share of them.
joined = []
for f, fam, host in (("/proc/net/tcp", socket.AF_INET, "127.0.0.1"), ("/proc/net/tcp6", socket.AF_INET6, "::1")):
    want = "0100007F" if fam == socket.AF_INET else "00000000000000000000000001000000"
    for line in open(f).read().splitlines()[1:]:
        loc, st = line.split()[1], line.split()[3]
        if st != "0A" or loc.split(":")[0] != want:
            continue
        port = int(loc.split(":")[1], 16)
        if (fam, port) in [(x.family, p) for p, x in joined]:
            continue
        l = socket.socket(fam); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            l.bind((host, port)); l.listen(64); l.setblocking(False); joined.append((port, l))
        except OSError:
            l.close()
print("joined", " ".join(str(p) for p, _ in joined) or "none")
a = socket.getaddrinfo("git.test", 9000, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
out = []
def talk():
    s = socket.socket(); s.settimeout(5)
    got = b""
    try:
        s.connect((a, 9000))
        while True:
            d = s.recv(64)
            if not d:
                break
            got += d
    except OSError as e:
        got += b" (" + str(e).encode() + b")"
    out.append(got)
ts = [threading.Thread(target=talk) for _ in range(24)]
for t in ts: t.start()
for t in ts: t.join()
print("resolved", a)
print("ok", sum(1 for g in out if g == b"hello\n"), "of", len(out))
stolen = 0
for _, l in joined:
    try:
        while True:
            l.accept()[0].close(); stolen += 1
    except OSError:
        pass
print("stolen", stolen)
EOF
c0=$(fi_conns 9000)
# git.test is not in the hosts file: the sandbox asks the broker's DNS (worker 0).
out=$(e2e_run --name tcp --user root --writable "$T" --policy "$T/tcp.yaml" -- /usr/bin/python3 "$T/tcp.py" 2>"$T/tcp.err")
TLOG=$T/run/tcp/sluiced.log
bport=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$TLOG" | head -n 1)
sl_ok "the uid 0 sandbox joined: $(grep '^joined' <<<"$out") (broker on $bport)"
[ -n "$bport" ] || sl_fail "no broker port in $TLOG"
grep '^joined' <<<"$out" | grep -qw -- "$bport" &&
	sl_fail "a uid 0 sandbox joined the broker's SO_REUSEPORT group on port $bport"
sl_assert_contains "$out" "stolen 0" "no connection reached a listener of the sandbox's"
sl_assert_contains "$out" "resolved $FI_IP4" "the sandbox resolved git.test through the broker ($(tail -n 3 "$T/tcp.err"))"
sl_assert_contains "$out" "ok 24 of 24" "raw TCP allowed by name: all 24 connections got the banner"
sl_assert_eq $((c0 + 24)) "$(fi_conns 9000)" "the server saw 24 connections"
w1=$(worker_count "$TLOG" 1)
sl_ok "raw TCP connections: worker 0 $(worker_count "$TLOG" 0), worker 1 $w1"
[ "$w1" != none ] && [ "$w1" -gt 0 ] ||
	sl_fail "worker 1 took none of the raw TCP connections ('$w1'): the name from worker 0's DNS was not tested there"
sl_assert_eq 24 "$(grep -c '"method":"TCP","host":"git.test"' "$T/run/tcp/audit.jsonl")" "one TCP audit line per connection"

# ---- 3. SIGTERM drains every worker ----
rfd=
exec {rfd}>"$T/d.ready"
sl_bg drain "$SLUICED" --workers 2 --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/drun" \
	--origdst-fixed "$FI_IP4:443" --allow api.test --resolve "api.test:$FI_IP4" --upstream-ca "$FI_CA" \
	--audit "$T/drain.audit"
exec {rfd}>&-
DPID=$(cat "$T/drain.pid")
sl_wait_for grep -q READY "$T/d.ready" || sl_fail "drain broker did not get ready: $(cat "$T/drain.log")"
read -r _ DPORT _ <"$T/d.ready"
# A second broker on that port must not join the first one's SO_REUSEPORT group.
timeout 10 "$SLUICED" --workers 2 --listen "127.0.0.1:$DPORT" --ca-dir "$T/ca" --run-dir "$T/drun2" \
	--allow api.test --audit - >"$T/dup.log" 2>&1
sl_assert_eq 1 "$?" "a second --workers broker on a port in use is refused"
sl_assert_contains "$(cat "$T/dup.log")" "Address already in use" "and says why"
for k in $(seq 8); do
	curl -sS --max-time 20 --cacert "$T/drun/ca.crt" --connect-to "::127.0.0.1:$DPORT" \
		-o "$T/slow.$k" -w '%{http_code}' "https://api.test/slow?ms=2500&id=s$k" >"$T/slow.$k.code" 2>"$T/slow.$k.err" &
	echo $! >"$T/slow.$k.pid"
done
# every request in flight at the server before the signal
for i in $(seq 100); do [ "$(e2e_seen 443 's[0-9]')" -ge 8 ] && break; sleep 0.05; done
sl_assert_eq 8 "$(e2e_seen 443 's[0-9]')" "8 slow requests in flight"
kill -TERM "$DPID"
sleep 0.5
if curl -sS --max-time 3 --cacert "$T/drun/ca.crt" --connect-to "::127.0.0.1:$DPORT" \
	-o /dev/null "https://api.test/hello?id=late" 2>/dev/null; then
	sl_fail "a new connection was served while draining"
else
	sl_ok "draining: new connections refused"
fi
for k in $(seq 8); do wait "$(cat "$T/slow.$k.pid")"; done
ok=0
for k in $(seq 8); do
	[ "$(cat "$T/slow.$k.code")" = 200 ] && [ "$(cat "$T/slow.$k")" = slow ] && ok=$((ok + 1))
done
sl_assert_eq 8 "$ok" "every in-flight request finished after SIGTERM ($(cat "$T"/slow.*.err | head -c 300))"
for i in $(seq 150); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$DPID" 2>/dev/null && sl_fail "sluiced still running 15 s after SIGTERM"
wait "$DPID"
sl_assert_eq 0 "$?" "sluiced --workers 2 exited 0 after draining ($(tail -n 3 "$T/drain.log"))"
d0=$(worker_count "$T/drain.log" 0); d1=$(worker_count "$T/drain.log" 1)
sl_ok "slow requests: worker 0 $d0, worker 1 $d1"
[ "$d0" != none ] && [ "$d1" != none ] && [ $((d0 + d1)) -ge 8 ] ||
	sl_fail "both workers report their counters at exit: '$d0' '$d1'"
sl_assert_eq 8 "$(grep -c '"path":"/slow' "$T/drain.audit")" "one audit line per drained request"
sl_pass
