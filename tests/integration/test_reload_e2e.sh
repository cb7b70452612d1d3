#!/bin/bash
# SPDX-License-Identifier: MIT
# Policy reload under a running `sluice run`: the sandboxed client keeps going
# while the test rewrites the policy file. A new file replaced by rename is
# picked up by the broker's file watch (inotify) without a signal; a file
# rewritten in place plus SIGHUP applies at once; a broken file is refused (the
# broker logs file:line:col) and the old policy stays in force, also on a
# keep-alive connection; a later good file replaces the policy completely; and
# the policy's directory renamed away and replaced by another one (as a sandbox
# that can write its parent could do) is not read: the policy stays.
. "$(dirname "$0")/../lib.sh"
. "$SL_ROOT/tests/fixtures/e2e/e2e.sh"
sl_begin reload_e2e
sl_need_bins "$SLUICE" "$SLUICED"
fi_up
e2e_setup
e2e_soft
mkdir "$T/conf"
P=$T/conf/policy.yaml

write_policy() { # hosts...: allow each host; written to a temp file, then renamed over $P
	local h
	{ echo "rules:"; for h in "$@"; do echo "  - {action: allow, host: \"$h\"}"; done; } >"$P.new"
	mv -f "$P.new" "$P"
}
write_policy api.test

cat >"$T/inner.py" <<'EOF'
import http.client, os, ssl, sys, time
O = sys.argv[1]
ctx = ssl.create_default_context()

def get(host, path, conn=None):
    c = conn or http.client.HTTPSConnection(host, 443, context=ctx, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode("latin-1")
    except Exception as e:
        return 0, repr(e)
    finally:
        if conn is None:
            c.close()

def rec(id, res):
    open(O + "/" + id + ".body", "w").write(res[1])
    with open(O + "/codes", "a") as f:
        f.write("%s %d\n" % (id, res[0]))

def until(id, host, want, secs):
    # poll with fresh connections: a reload is asynchronous
    end = time.time() + secs
    while True:
        res = get(host, "/hello?id=" + id)
        if res[0] == want or time.time() > end:
            return rec(id, res)
        time.sleep(0.1)

def phase(n):
    open(O + "/ready%d" % n, "w").close()
    end = time.time() + 30
    while not os.path.exists(O + "/go%d" % n):
        if time.time() > end:
            sys.exit("no go%d from the test" % n)
        time.sleep(0.05)

keep = http.client.HTTPSConnection("api.test", 443, context=ctx, timeout=10)
rec("k0", get("api.test", "/hello?id=k0", keep))
port0 = keep.sock.getsockname()[1] if keep.sock else -1
rec("r0", get("other.test", "/hello?id=r0"))
phase(0)   # test: new file allowing other.test renamed over the policy, no signal
until("r1", "other.test", 200, 4)
phase(1)   # test: in-place rewrite allowing www.api.test too, SIGHUP
until("r2", "www.api.test", 200, 3)
rec("r2b", get("other.test", "/hello?id=r2b"))
phase(2)   # test: broken file (would allow everything), SIGHUP
time.sleep(1)
rec("r3a", get("x.api.test", "/hello?id=r3a"))
rec("r3b", get("www.api.test", "/hello?id=r3b"))
rec("k3", get("api.test", "/hello?id=k3", keep))
port3 = keep.sock.getsockname()[1] if keep.sock else -2
open(O + "/keepalive", "w").write("same" if port0 == port3 else "reconnected")
phase(3)   # test: good file allowing only x.api.test, SIGHUP
until("r4a", "x.api.test", 200, 3)
rec("r4b", get("api.test", "/hello?id=r4b"))
rec("k4", get("api.test", "/hello?id=k4", keep))
phase(4)   # test: the policy's directory renamed, a new one with an allow-all policy in its place
time.sleep(1)
rec("r5a", get("other.test", "/hello?id=r5a"))
rec("r5b", get("x.api.test", "/hello?id=r5b"))
EOF

e2e_run_bg run --name reload --policy "$P" -- /usr/bin/python3 "$T/inner.py" "$T/out"
BLOG=$T/run/reload/sluiced.log  # the broker's own log (sluice run keeps it out of the sandbox's terminal)
waitfile() { sl_wait_for test -e "$T/out/$1" || { sl_fail "the sandbox never reached $1 ($(tail -n 5 "$T/run.err"))"; sl_log "giving up"; exit 1; }; }

waitfile ready0
BPID=$(e2e_broker_pid "$E2E_PID")
[ -n "$BPID" ] || { sl_fail "no sluiced child of sluice run (pid $E2E_PID)"; exit 1; }
sl_ok "broker is pid $BPID"

# 1: inotify, atomic rename (how editors and config tools replace files)
write_policy api.test other.test
touch "$T/out/go0"
waitfile ready1
# 2: in place + SIGHUP
{ echo "rules:"; for h in api.test other.test www.api.test; do echo "  - {action: allow, host: \"$h\"}"; done; } >"$P"
kill -HUP "$BPID"
touch "$T/out/go1"
waitfile ready2
# 3: a broken file that, half-read, would allow everything
cat >"$P" <<'EOF'
rules:
  - {action: allow, host: "*"}
  - {action: allow, host: api.test, colour: blue}
EOF
kill -HUP "$BPID"
touch "$T/out/go2"
waitfile ready3
err3=$(cat "$BLOG")
# 4: a good file again: it replaces the old policy completely
write_policy x.api.test
kill -HUP "$BPID"
touch "$T/out/go3"
waitfile ready4
# 5: the directory swapped under the broker; both the watch and SIGHUP fire
mv "$T/conf" "$T/conf.old"
mkdir "$T/conf"
printf 'rules:\n  - {action: allow, host: "*"}\n' >"$T/conf/policy.yaml"
touch "$T/conf.old/..swap"
kill -HUP "$BPID"
touch "$T/out/go4"
for i in $(seq 100); do kill -0 "$E2E_PID" 2>/dev/null || break; sleep 0.1; done
wait "$E2E_PID"
sl_assert_eq 0 "$?" "sluice run exited 0 ($(tail -n 3 "$T/run.err"))"

e2e_expect k0 200 "start: api.test allowed (keep-alive connection)"
e2e_expect r0 403 "start: other.test denied"
e2e_expect r1 200 "inotify: other.test allowed after the file was replaced, without a signal or restart"
e2e_expect r2 200 "SIGHUP: www.api.test allowed after an in-place rewrite"
e2e_expect r2b 200 "SIGHUP: other.test still allowed"
e2e_denied r3a "no rule matched: default deny" "broken file: x.api.test"
e2e_expect r3b 200 "broken file: the old policy stays in force"
e2e_expect k3 200 "broken file: keep-alive connection still served by the old policy"
sl_assert_eq same "$(cat "$T/out/keepalive" 2>/dev/null)" "keep-alive: both requests went over one connection"
sl_assert_contains "$err3" "$P:3:" "broken file: the broker logs file:line:col"
sl_assert_contains "$err3" "colour" "broken file: the broker names the unknown key"
sl_assert_contains "$err3" "keeping the policy in force" "broken file: the broker says the old policy stays"
e2e_expect r4a 200 "good file after a broken one: x.api.test allowed"
e2e_expect r4b 403 "good file: api.test no longer allowed (policy replaced, not merged)"
e2e_expect k4 403 "good file: the next request on an old keep-alive connection gets the new policy"
sl_assert_eq 0 "$(e2e_seen 443 r4b)" "good file: the denied request never reached the server"
e2e_denied r5a "no rule matched: default deny" "directory swapped: the policy in the new directory is not loaded"
e2e_expect r5b 200 "directory swapped: the policy in force stays"
sl_assert_contains "$(cat "$BLOG")" "was renamed or replaced since sluiced started" "directory swapped: the broker says why it kept the policy"
sl_assert_eq 1 "$(e2e_seen 443 k3)" "server saw the keep-alive request under the old policy"
sl_assert_not_contains "$(cat "$T/run.err" "$BLOG")" "killed by signal" "the broker did not crash"
e2e_finish
