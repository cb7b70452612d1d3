#!/bin/bash
# SPDX-License-Identifier: MIT
# Load: 10,000 distinct SNIs (h<N>.test) from inside `sluice run`. The broker
# mints a leaf per name into a bounded LRU cache (1,024 entries); each
# handshake must verify against sluice's CA with the right name, and the
# request after it gets the policy's 403 (no rule allows h<N>.test, so no
# upstream is involved: this measures the minting path alone). Asserts no
# failed handshake and bounded memory: the broker's RSS after 10,000 names is
# within 8 MiB of its RSS after the first 2,500 (the cache full by then).
. "$(dirname "$0")/../lib.sh"
sl_begin load_sni
sl_need_bins "$SLUICE" "$SLUICED"
fi_up
N=${SL_LOAD_SNIS:-10000}
mkdir -m 777 "$T/fl"

cat >"$T/broker.sh" <<EOF
#!/bin/sh
echo \$\$ >"$T/broker.pid"
exec "$SLUICED" "\$@"
EOF
chmod 755 "$T/broker.sh"

# Four workers, each over a quarter of the names; a checkpoint file after the first quarter of each.
cat >"$T/client.py" <<EOF
import json, os, socket, ssl, sys, time
N, W, w = $N, 4, int(sys.argv[1])
CTX = ssl.create_default_context(cafile=os.environ["SSL_CERT_FILE"])
st = {"ok": 0, "hs_err": 0, "not403": 0, "errors": []}
names = list(range(w, N, W))
for k, i in enumerate(names):
    name = "h%d.test" % i
    try:
        s = CTX.wrap_socket(socket.create_connection(("$FI_IP4", 443), 10), server_hostname=name)
        sans = [v for t, v in s.getpeercert().get("subjectAltName", ()) if t == "DNS"]
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % name.encode())
        d = s.recv(64); s.close()
        if sans != [name]:
            st["hs_err"] += 1; st["errors"].append("%s: cert for %r" % (name, sans))
        elif not d.startswith(b"HTTP/1.1 403"):
            st["not403"] += 1; st["errors"].append("%s: %r" % (name, d[:40]))
        else:
            st["ok"] += 1
    except (OSError, ssl.SSLError) as e:
        st["hs_err"] += 1; st["errors"].append("%s: %r" % (name, e))
    if k == len(names) // 4:
        open("$T/fl/q%d" % w, "w").write("1")
        while not os.path.exists("$T/fl/go"):
            time.sleep(0.05)
st["errors"] = st["errors"][:5]
print(json.dumps(st), flush=True)
EOF
cat >"$T/inner.sh" <<EOF
for w in 0 1 2 3; do /usr/bin/python3 "$T/client.py" \$w >"$T/fl/out.\$w" 2>&1 & done
wait
EOF

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$(cat "$T/broker.pid")/status"; }
t0=$(date +%s)
sluice_run --allow api.test --run-dir "$T/run" --ca-dir "$T/ca" --audit "$T/audit.log" \
	--broker "$T/broker.sh" -- bash "$T/inner.sh" >"$T/run.out" 2>"$T/run.err" &
RUNPID=$!
sl_defer "sl_kill_pid $RUNPID"
sl_wait_for test -s "$T/broker.pid" || sl_fail "broker did not start: $(cat "$T/run.err")"
RSS0=$(rss)
for i in $(seq 600); do
	[ "$(ls "$T"/fl/q? 2>/dev/null | wc -l)" = 4 ] && break
	kill -0 $RUNPID 2>/dev/null || break; sleep 0.1
done
[ "$(ls "$T"/fl/q? 2>/dev/null | wc -l)" = 4 ] || sl_fail "the clients did not reach the first quarter: $(cat "$T"/fl/out.* "$T/run.err" | tail -5)"
RSS1=$(rss)
touch "$T/fl/go"
peak=$RSS1
while kill -0 $RUNPID 2>/dev/null; do
	r=$(rss 2>/dev/null) && [ -n "$r" ] && [ "$r" -gt "$peak" ] && peak=$r
	sleep 0.5
done
wait $RUNPID; rc=$?
secs=$(( $(date +%s) - t0 ))
[ $rc = 0 ] || sl_fail "sluice run rc=$rc: $(tail -n 5 "$T/run.err")"
tot=$(cat "$T"/fl/out.* | "$PY" -c '
import json, sys
t = {"ok": 0, "hs_err": 0, "not403": 0, "errors": []}
for l in sys.stdin:
    d = json.loads(l)
    for k in ("ok", "hs_err", "not403"): t[k] += d[k]
    t["errors"] += d["errors"]
print(t["ok"], t["hs_err"], t["not403"], json.dumps(t["errors"][:5]))')
read -r ok hs not403 errs <<<"$tot"
sl_log "figures: names=$N in ${secs}s ok=$ok handshake_errors=$hs not403=$not403 broker RSS kB: idle=$RSS0 after $((N / 4))=$RSS1 peak=$peak"
sl_assert_eq 0 "$hs" "no failed handshake, every certificate named its SNI ($errs)"
sl_assert_eq 0 "$not403" "every request got the policy's 403"
sl_assert_eq "$N" "$ok" "$N distinct names served"
[ "$peak" -le $((RSS1 + 8192)) ] || sl_fail "broker RSS grew from $RSS1 kB (after $((N / 4)) names) to $peak kB: the cert cache is not bounded"
sl_ok "memory bounded: $RSS1 kB -> peak $peak kB"
sl_assert_not_contains "$(cat "$T/run.err")" "killed by signal" "the broker did not crash"
sl_pass "names=$N secs=$secs errors=0 rss_kB idle=$RSS0 quarter=$RSS1 peak=$peak"
