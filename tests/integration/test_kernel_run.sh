#!/bin/bash
# SPDX-License-Identifier: MIT
# `sluice run` with the real sluiced: a sandboxed curl to an allowed HTTPS host
# gets its answer through the broker (which saw the original destination and
# the sandboxed process), a disallowed host gets 403, a non-HTTP connect to any
# other address and port (IPv4, IPv6, v4-mapped) reaches nothing, the sandbox
# sees placeholders and the CA trust variables instead of real secrets, the
# exit status is the command's, and the same curl outside is unaffected.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_run
sl_need_bins "$SLUICE" "$SLUICED"
fi_up

export SL_TEST_TOKEN=real-secret-$$
cat >"$T/policy.yaml" <<EOF
rules:
  - {action: allow, host: "api.test"}
secrets:
  API_TOKEN: {env: SL_TEST_TOKEN, hosts: [api.test], in: [header]}
EOF
# sluice_run's options, under a time limit (timeout cannot run a shell function).
RUN=(timeout 90 "$SLUICE" run --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" --resolve "evil.test:$FI_IP4" --policy "$T/policy.yaml" --run-dir "$T/run" --ca-dir "$T/ca" --audit "$T/audit.log")

# Outside: direct, verified with the test CA.
before=$(fi_conns 443)
out=$(curl -sS --max-time 10 --cacert "$FI_CA" --resolve "api.test:443:$FI_IP4" https://api.test/hello)
sl_assert_contains "$out" "hello from api.test" "outside: curl reaches the server directly"
sl_assert_eq $((before + 1)) "$(fi_conns 443)" "outside: the server saw the connection"

cat >"$T/inner.sh" <<EOF
curl -sS --max-time 10 --resolve "api.test:443:$FI_IP4" https://api.test/hello; echo " curl1=\$?"
curl -sS --max-time 10 -o /dev/null -w 'code=%{http_code}\n' --resolve "evil.test:443:$FI_IP4" https://evil.test/hello; echo " curl2=\$?"
/usr/bin/python3 - <<'PYEOF'
import socket
for fam, a in ((socket.AF_INET, "$FI_IP4"), (socket.AF_INET6, "$FI_IP6"), (socket.AF_INET6, "::ffff:$FI_IP4")):
    s = socket.socket(fam); s.settimeout(3)
    try:
        s.connect((a, 9000)); s.sendall(b"hi\\n"); d = s.recv(64)
    except OSError as e:
        d = str(e).encode()
    print("tcp", a, "data=%r" % d)
PYEOF
echo "token=\$API_TOKEN src=\${SL_TEST_TOKEN:-unset}"
env | grep -c "real-secret" | sed 's/^/leaks=/'
echo "bundle=\$CURL_CA_BUNDLE"
exit 7
EOF
conns9000=$(fi_conns 9000)
out=$("${RUN[@]}" -- bash "$T/inner.sh" 2>"$T/run.err")
rc=$?
echo "$out" >"$T/inner.out"
sl_assert_eq 7 "$rc" "exit status is the command's ($(tail -n 3 "$T/run.err"))"
sl_assert_contains "$out" "hello from api.test" "sandboxed curl got the answer through the broker"
out=$(echo "$out" | grep -v "hello from api.test")
sl_assert_contains "$out" "curl1=0" "sandboxed curl trusted the broker's certificate"
sl_assert_contains "$out" "code=403" "disallowed host: 403 from the broker"
sl_assert_eq 0 "$(fi_requests 443 | grep -c evil.test)" "disallowed request never reached the server"
sl_assert_eq 3 "$(echo "$out" | grep -c '^tcp .* data=')" "three non-HTTP probes ran"
sl_assert_not_contains "$out" "hello" "non-HTTP connects to another port got nothing from it (IPv4, IPv6, v4-mapped)"
sl_assert_eq "$conns9000" "$(fi_conns 9000)" "nothing reached the TCP server"
sl_assert_contains "$out" "token=SLUICE_PLACEHOLDER_API_TOKEN src=unset" "sandbox sees the placeholder, not the source var"
sl_assert_contains "$out" "leaks=0" "no env var holds the secret"
sl_assert_contains "$out" "bundle=$T/run/ca-bundle.pem" "CA trust variables point at sluice's bundle"
audit=$(cat "$T/audit.log")
sl_assert_contains "$audit" '"comm":"curl"' "audit names the sandboxed process (recorded by the kernel)"
sl_assert_contains "$audit" '"host":"api.test","port":443' "audit has the original destination port"
sl_assert_not_contains "$audit" "real-secret" "audit log holds no secret"
sl_assert_not_contains "$(cat "$T/run.err")" "killed by signal" "the broker did not crash"

# Connections the broker refuses (--max-conns) leave no record of their
# original destination behind in the map all sandboxes share.
orig_count() { bpftool -j map dump pinned /sys/fs/bpf/sluice/sluice_orig 2>/dev/null | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))'; }
printf '#!/bin/sh\nexec "%s" --max-conns 1 "$@"\n' "$SLUICED" >"$T/maxconns.sh"
chmod 755 "$T/maxconns.sh"
cat >"$T/refused.py" <<EOF
import socket, ssl, time
hold = socket.create_connection(("$FI_IP4", 443), 5)
time.sleep(0.3)
told = closed = 0
told_kind = [0, 0]
for i in range(20):
    s = socket.create_connection(("$FI_IP4", 443), 5); s.settimeout(5)
    try:
        if i % 2:  # TLS, trusting sluice's CA through SSL_CERT_FILE
            s = ssl.create_default_context().wrap_socket(s, server_hostname="api.test")
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n")
        r = b""
        while True:
            d = s.recv(4096)
            if not d:
                break
            r += d
        if r.startswith(b"HTTP/1.1 503 ") and b"--max-conns" in r:
            told += 1
            told_kind[i % 2] += 1
        elif not r:
            closed += 1
    except OSError:
        closed += 1
    s.close()
print("refused %d told %d plain %d tls %d" % (told + closed, told, told_kind[0], told_kind[1]))
hold.close()
EOF
before=$(orig_count)
out=$(timeout 60 "$SLUICE" run --broker "$T/maxconns.sh" --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test -- "$PY" "$T/refused.py" 2>&1)
sl_assert_contains "$out" "refused 20 " "the broker refused the 20 connections over --max-conns 1"
# Each is closed before the next opens, so each finds a free slot for the 503
# (the broker frees a connection only once it sees the close: allow 2 misses).
plain=$(sed -n 's/.* plain \([0-9]*\) tls.*/\1/p' <<<"$out"); tls=$(sed -n 's/.* tls \([0-9]*\).*/\1/p' <<<"$out")
told=$(( ${plain:-0} + ${tls:-0} ))
[ "${plain:-0}" -ge 8 ] && [ "${tls:-0}" -ge 8 ] ||
	sl_fail "connections over the limit told why (503 naming --max-conns): plain ${plain:-0} of 10, TLS ${tls:-0} of 10: $out"
sl_ok "connections over the limit get 503 naming --max-conns, over TLS and plain HTTP ($told of 20)"
sl_assert_eq "$before" "$(orig_count)" "no original-destination record is left behind by refused connections"

# The broker takes only records of its own sandbox (sluice passes --cgroup-id; the records' key,
# addresses and ports, can be the same in two pods' network namespaces). A broker told another
# cgroup id refuses the sandbox's connections, and says why.
printf '#!/bin/sh\nexec "%s" "$@" --cgroup-id 1\n' "$SLUICED" >"$T/othercg.sh"
chmod 755 "$T/othercg.sh"
rm -rf "$T/runcg"
out=$(timeout 60 "$SLUICE" run --broker "$T/othercg.sh" --run-dir "$T/runcg" --ca-dir "$T/ca" --upstream-ca "$FI_CA" \
	--resolve "api.test:$FI_IP4" --allow api.test -- curl -sS --max-time 10 https://api.test/hello 2>&1)
sl_assert_not_contains "$out" "hello from api.test" "a broker serving another cgroup id answered nothing"
sl_assert_contains "$(cat "$T"/runcg/*/sluiced.log)" "recorded for another sandbox" "and its log says the record was another sandbox's"

# A network socket handed in as stdin (inetd, bash's /dev/tcp) was made outside
# the sandbox's cgroup, so no hook applies to it: sluice refuses to run.
out=$("$PY" - "$SLUICE" "$FI_IP4" <<'EOPY'
import socket, subprocess, sys
s = socket.create_connection((sys.argv[2], 9000), 5)
p = subprocess.run([sys.argv[1], "run", "--", "true"], stdin=s.fileno(), capture_output=True, text=True, timeout=60)
print("rc", p.returncode, p.stderr.strip())
EOPY
)
sl_assert_contains "$out" "rc 2 " "sluice run with a TCP socket as stdin refuses to run"
sl_assert_contains "$out" "file descriptor 0 is a network socket" "and says which descriptor and why"

# sluice killed with SIGKILL (the OOM killer): the sandboxed command and the broker go with it
# (nobody would restart the broker), and the next sluice run removes the pins and the cgroup left.
CG2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
	/proc/self/mountinfo)
"$SLUICE" run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test -- sleep 3$$ >"$T/killed.log" 2>&1 &
kp=$!
sl_defer "sl_kill_pid $kp; pkill -f 'sleep 3$$'; pkill -f 'sandbox run-$kp\$'; rm -rf /sys/fs/bpf/sluice/run-$kp; rmdir $CG2/sluice/run-$kp"
sl_wait_for pgrep -f "^sleep 3$$\$" || sl_fail "the sandboxed sleep did not start: $(cat "$T/killed.log")"
sl_wait_for test -d "/sys/fs/bpf/sluice/run-$kp" || sl_fail "sluice run pinned nothing"
# A live run holds its pin directory's lock: that, not kill(PID), is what tells the clean-up it
# lives, also when it runs in another PID namespace (kill says ESRCH there).
"$PY" -c 'import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX | fcntl.LOCK_NB)' \
	"/sys/fs/bpf/sluice/run-$kp" 2>/dev/null && sl_fail "a live sluice run does not hold its pin directory's lock"
sl_ok "a live sluice run holds its pin directory's lock"
kill -9 "$kp"
sl_wait_for sh -c "! pgrep -f '^sleep 3$$\$'" || sl_fail "the sandboxed command outlived sluice (SIGKILL)"
sl_ok "the sandboxed command dies with sluice"
sl_wait_for sh -c "! pgrep -f 'sandbox run-$kp\$'" || sl_fail "the broker outlived sluice (SIGKILL)"
sl_ok "the broker exits when its sluice is killed"
[ -d "/sys/fs/bpf/sluice/run-$kp" ] || sl_fail "expected the killed run's pins to be left for the next run to remove"
# The same leftovers while something holds the lock (as a live run in another PID namespace
# would, to which kill() says ESRCH): the next run leaves them.
sl_bg holder "$PY" -c 'import fcntl, os, sys, time
fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), fcntl.LOCK_EX); print("held", flush=True); time.sleep(120)' \
	"/sys/fs/bpf/sluice/run-$kp"
sl_wait_for grep -q held "$T/holder.log" || sl_fail "could not take the pin directory's lock: $(cat "$T/holder.log")"
out=$(timeout 60 "$SLUICE" run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test -- true 2>&1) || sl_fail "run beside the lock: $out"
sl_assert_not_contains "$out" "run-$kp" "a run whose pin directory is locked is not cleaned up"
[ -d "/sys/fs/bpf/sluice/run-$kp" ] || sl_fail "the clean-up took pins whose lock was held"
sl_ok "pins whose lock is held stay"
sl_kill_pid "$(cat "$T/holder.pid")"
out=$(timeout 60 "$SLUICE" run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test -- true 2>&1) || sl_fail "next run: $out"
sl_assert_contains "$out" "removed what sandbox run-$kp left" "the next sluice run says it removed the killed run's leftovers"
[ -e "/sys/fs/bpf/sluice/run-$kp" ] && sl_fail "pins of the killed run are still there"
[ -e "$CG2/sluice/run-$kp" ] && sl_fail "the killed run's cgroup is still there"
sl_ok "the killed run's pins and cgroup are gone"
sl_pass
