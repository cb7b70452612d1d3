#!/bin/bash
# SPDX-License-Identifier: MIT
# Load: 1,000 concurrent keep-alive HTTPS connections from inside `sluice run`
# for ~30 s (issue 6; a python asyncio client, each connection sending a request every
# ~0.5 s) through sluiced to an nginx in the fake internet. Asserts: every
# connection opened, no request failed, every answer was right, and the
# broker's RSS at the end is flat against its RSS once all connections were up.
# Prints the figures (connections, requests, errors, RSS before/after).
. "$(dirname "$0")/../lib.sh"
sl_begin load_conns
sl_need_bins "$SLUICE" "$SLUICED"
[ -x /usr/sbin/nginx ] || sl_fail "nginx is not installed (scripts/deps.sh: nginx-light)"
fi_up
NCONN=${SL_LOAD_CONNS:-1000}
DUR=${SL_LOAD_SECS:-30}
mkdir -m 777 "$T/fl"
ulimit -n 16384 || sl_fail "cannot raise the fd limit to 16384 (needed for $NCONN connections)"

# nginx on 4443 in the fake internet, with the fake internet's certificate.
mkdir -p "$T/nginx/logs"
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {
        listen 4443 ssl;
        server_name api.test;
        ssl_certificate $FI_DIR/pki/srv.crt;
        ssl_certificate_key $FI_DIR/pki/srv.key;
        location / { return 200 "ok-from-nginx\n"; }
    }
}
EOF
sl_bg nginx ip netns exec "$FI_NS" /usr/sbin/nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -g "daemon off;"
sl_wait_for fi_probe 4443 || sl_fail "nginx did not start: $(cat "$T/nginx.log" "$T/nginx/logs/error.log" 2>/dev/null)"

cat >"$T/broker.sh" <<EOF
#!/bin/sh
echo \$\$ >"$T/broker.pid"
exec "$SLUICED" "\$@"
EOF
chmod 755 "$T/broker.sh"

cat >"$T/client.py" <<EOF
import asyncio, json, os, random, ssl, sys, time
N, DUR = $NCONN, $DUR
CTX = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
REQ = b"GET /load HTTP/1.1\r\nHost: api.test\r\n\r\n"
st = {"opened": 0, "open_err": 0, "req": 0, "err": 0, "bad": 0, "errors": []}
async def one(i, sem, up):
    async with sem:
        try:
            r, w = await asyncio.wait_for(asyncio.open_connection("$FI_IP4", 4443, ssl=CTX, server_hostname="api.test"), 30)
        except Exception as e:
            st["open_err"] += 1; st["errors"].append("open: %r" % e); return
    st["opened"] += 1
    await up.wait()
    end = time.monotonic() + DUR
    await asyncio.sleep(random.random() * 0.5)
    while time.monotonic() < end:
        try:
            w.write(REQ)
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
            n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0].split(b":")[1])
            body = await asyncio.wait_for(r.readexactly(n), 10)
            if not head.startswith(b"HTTP/1.1 200") or body != b"ok-from-nginx\n":
                st["bad"] += 1
            st["req"] += 1
        except Exception as e:
            st["err"] += 1; st["errors"].append("req: %r" % e); return
        await asyncio.sleep(0.3 + random.random() * 0.4)
    w.close()
async def main():
    sem = asyncio.Semaphore(64); up = asyncio.Event()
    tasks = [asyncio.create_task(one(i, sem, up)) for i in range(N)]
    while st["opened"] + st["open_err"] < N:
        await asyncio.sleep(0.1)
    open("$T/fl/all-open", "w").write("1")
    while not os.path.exists("$T/fl/go"):
        await asyncio.sleep(0.05)
    up.set()
    await asyncio.gather(*tasks)
    st["errors"] = st["errors"][:5]
    print(json.dumps(st), flush=True)
asyncio.run(main())
EOF

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$(cat "$T/broker.pid")/status"; }
sluice_run --allow api.test --run-dir "$T/run" --ca-dir "$T/ca" --audit "$T/audit.log" \
	--broker "$T/broker.sh" -- "$PY" "$T/client.py" >"$T/client.out" 2>"$T/run.err" &
RUNPID=$!
sl_defer "sl_kill_pid $RUNPID"
sl_wait_for test -s "$T/broker.pid" || sl_fail "broker did not start: $(cat "$T/run.err")"
RSS0=$(rss)
for i in $(seq 600); do [ -e "$T/fl/all-open" ] && break; sleep 0.1; kill -0 $RUNPID 2>/dev/null || break; done
[ -e "$T/fl/all-open" ] || sl_fail "the client did not open its connections in 60 s: $(cat "$T/client.out" "$T/run.err" | tail -5)"
touch "$T/fl/go"
# One RSS sample a second while the traffic runs.
for i in $(seq $((DUR - 1))); do sleep 1; rss >>"$T/rss.log" 2>/dev/null; done
wait $RUNPID; rc=$?
RSS1=$(sed -n 5p "$T/rss.log")          # all connections up and busy for 5 s
RSSE=$(tail -n 1 "$T/rss.log")          # at the end of the traffic
res=$(tail -n 1 "$T/client.out")
sl_log "figures: conns=$NCONN duration=${DUR}s result=$res broker RSS kB: idle=$RSS0 busy(5s)=$RSS1 end=$RSSE samples=$(tr '\n' ' ' <"$T/rss.log")"
[ $rc = 0 ] || sl_fail "sluice run rc=$rc: $(tail -n 5 "$T/run.err")"
get() { echo "$res" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
sl_assert_eq "$NCONN" "$(get opened)" "all $NCONN connections opened"
sl_assert_eq 0 "$(get open_err)" "no connection failed to open"
sl_assert_eq 0 "$(get err)" "no request failed ($(get errors))"
sl_assert_eq 0 "$(get bad)" "every answer was nginx's 200"
nreq=$(get req)
[ "$nreq" -ge $((NCONN * DUR)) ] || sl_fail "only $nreq requests in ${DUR}s over $NCONN connections (expected >= $((NCONN * DUR)))"
sl_ok "$nreq requests over $NCONN keep-alive connections in ~${DUR}s"
sl_assert_eq "$nreq" "$(grep -c '"path":"/load"' "$T/audit.log")" "one audit line per request"
sl_assert_not_contains "$(cat "$T/run.err")" "killed by signal" "the broker did not crash"
# Flat: the end within 15 % (+4 MiB of allocator slack) of the level once everything was busy.
[ -n "$RSS1" ] && [ -n "$RSSE" ] || sl_fail "no RSS samples"
[ "$RSSE" -le $((RSS1 + RSS1 / 7 + 4096)) ] || sl_fail "broker RSS grew from $RSS1 kB to $RSSE kB under steady load"
sl_ok "broker RSS flat: $RSS1 kB -> $RSSE kB"
sl_pass "conns=$NCONN duration=${DUR}s requests=$nreq errors=0 broker RSS kB idle=$RSS0 busy=$RSS1 end=$RSSE"
