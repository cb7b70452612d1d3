#!/bin/bash
# SPDX-License-Identifier: MIT
# sluice attach/detach on an existing cgroup (a container's): while attached,
# a process in that cgroup (or a child cgroup) is redirected to the broker and
# sluice status lists it; after detach the cgroup is free again and nothing
# stays pinned.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_attach
sl_need_bins "$SLUICE"
fi_up

cat >"$T/broker.py" <<'EOF'
#!/usr/bin/python3
import os, socket, sys
a = sys.argv[1:]
port = int(a[a.index("--listen") + 1].rsplit(":", 1)[1]); rfd = int(a[a.index("--ready-fd") + 1])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("127.0.0.1", port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0))
os.write(rfd, b"READY %d %d\n" % (t.getsockname()[1], u.getsockname()[1])); os.close(rfd)
while True:
    c, _ = t.accept(); c.sendall(b"BROKER\n"); c.close()
EOF
chmod 755 "$T/broker.py"

CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
CG=$CG2/sl-attach-$$
NAME=katt$$
mkdir -p "$CG/child" || sl_fail "mkdir $CG"
# Cleanup runs in reverse: detach (bounded), then whatever a failed detach
# left: the supervisor (by its pid file), the pins, the cgroups.
sl_defer "rmdir $CG/child $CG"
sl_defer "rm -rf /sys/fs/bpf/sluice/$NAME"
sl_defer "[ -s $T/run/$NAME.pid ] && sl_kill_pid \$(cat $T/run/$NAME.pid)"
sl_defer "timeout 30 $SLUICE detach --cgroup $CG --name $NAME --run-dir $T/run"

probe() { # CGROUP: connect from a process in that cgroup to the fake internet's TCP server
	timeout 10 bash -c "echo \$\$ >'$1/cgroup.procs' && exec '$PY' -c '
import socket; s = socket.socket(); s.settimeout(3)
try:
    s.connect((\"$FI_IP4\", 9000)); print(s.recv(16).decode().strip())
except OSError as e: print(\"error\", e)'"
}

sl_assert_eq hello "$(probe "$CG")" "before attach: direct"
out=$(timeout 30 "$SLUICE" attach --cgroup "$CG" --name "$NAME" --broker "$T/broker.py" --run-dir "$T/run" 2>&1) ||
	sl_fail "attach: $out"
sl_assert_contains "$out" "attached" "attach reports success"
sl_assert_eq "$NAME" "$(echo "$out" | sed -n 's/^attached \([^:]*\):.*/\1/p')" "attach names the sandbox"
sl_assert_contains "$(timeout 10 "$SLUICE" status)" "$NAME" "status lists the attached cgroup"
c0=$(fi_conns 9000)
sl_assert_eq BROKER "$(probe "$CG")" "attached: redirected to the broker"
sl_assert_eq BROKER "$(probe "$CG/child")" "attached: a child cgroup is covered too"
# The same name for another cgroup (two compose projects with the default name): refused, and
# the first cgroup keeps its programs (pinning over its links would have detached them).
mkdir "$CG-other" || sl_fail "mkdir $CG-other"
sl_defer "rmdir $CG-other"
if out=$(timeout 30 "$SLUICE" attach --cgroup "$CG-other" --name "$NAME" --broker "$T/broker.py" --run-dir "$T/run" 2>&1); then
	sl_fail "attach of a second cgroup under the name in use succeeded: $out"
fi
sl_assert_contains "$out" "is in use" "attach refuses a sandbox name that another live cgroup holds"
sl_assert_eq BROKER "$(probe "$CG")" "the first cgroup is still redirected after the refused attach"
# A container removed and made again (compose: a recreated agent): the name is attached to the
# new cgroup, and the old attachment's supervisor, stopped after that, must not take the new pins.
N2=katt2$$
mkdir "$CG-a" "$CG-b" || sl_fail "mkdir $CG-a $CG-b"
sl_defer "rmdir $CG-a $CG-b 2>/dev/null"
sl_defer "rm -rf /sys/fs/bpf/sluice/$N2"
sl_defer "timeout 30 $SLUICE detach --cgroup $CG-b --name $N2 --run-dir $T/run2 >/dev/null 2>&1"
out=$(timeout 30 "$SLUICE" attach --cgroup "$CG-a" --name "$N2" --broker "$T/broker.py" --run-dir "$T/run2" 2>&1) ||
	sl_fail "attach a: $out"
sa=$(cat "$T/run2/$N2.pid")
sl_defer "sl_kill_pid $sa"
rmdir "$CG-a" || sl_fail "rmdir $CG-a"
for i in $(seq 50); do
	out=$(timeout 30 "$SLUICE" attach --cgroup "$CG-b" --name "$N2" --broker "$T/broker.py" --run-dir "$T/run2" 2>&1) && break
	sleep 0.2 # the removed cgroup's links let go of it once it is released
done
sl_assert_contains "$out" "attached" "the name attaches to a new cgroup once the old one is gone"
sl_defer "[ -s $T/run2/$N2.pid ] && sl_kill_pid \$(cat $T/run2/$N2.pid)"
kill "$sa"; for i in $(seq 100); do kill -0 "$sa" 2>/dev/null || break; sleep 0.1; done
[ -d "/sys/fs/bpf/sluice/$N2" ] || sl_fail "the old supervisor's teardown removed the new attachment's pins"
sl_assert_eq BROKER "$(probe "$CG-b")" "the new cgroup stays redirected after the old supervisor stopped"
sb=$(cat "$T/run2/$N2.pid" 2>/dev/null) || sl_fail "the old supervisor removed the new one's pid file"
timeout 30 "$SLUICE" detach --cgroup "$CG-b" --name "$N2" --run-dir "$T/run2" >/dev/null || sl_fail "detach $N2"
sl_wait_for sh -c "! kill -0 $sb" || sl_fail "detach left the new attachment's supervisor running"
sl_ok "detach stops the new attachment's supervisor"

# Names of the form run-PID are sluice run's own (their leftovers are removed once PID is gone).
if out=$(timeout 30 "$SLUICE" attach --cgroup "$CG-other" --name run-42 --broker "$T/broker.py" --run-dir "$T/run" 2>&1); then
	sl_fail "attach with a run- name succeeded: $out"
fi
sl_assert_contains "$out" "sluice run's own" "attach refuses names starting with run-"
# Pins that look like a killed run's (run-PID, PID gone) but hold the links of a live cgroup
# that is not that run's: the next sluice run leaves them (it removes only provably dead runs).
dead=$((4000000 + $$ % 100000)); while kill -0 "$dead" 2>/dev/null; do dead=$((dead + 1)); done
mv "/sys/fs/bpf/sluice/$NAME" "/sys/fs/bpf/sluice/run-$dead" || sl_fail "rename of the pin dir"
sl_defer "[ -d /sys/fs/bpf/sluice/run-$dead ] && mv /sys/fs/bpf/sluice/run-$dead /sys/fs/bpf/sluice/$NAME"
out=$(timeout 60 "$SLUICE" run --run-dir "$T/runs" --allow api.test -- true 2>&1) || sl_fail "sluice run: $out"
sl_assert_not_contains "$out" "run-$dead" "sluice run did not touch pins whose links are a live cgroup's"
[ -d "/sys/fs/bpf/sluice/run-$dead" ] || sl_fail "sluice run removed a live cgroup's pins"
sl_assert_eq BROKER "$(probe "$CG")" "the live cgroup is still redirected after sluice run's clean-up"
mv "/sys/fs/bpf/sluice/run-$dead" "/sys/fs/bpf/sluice/$NAME"
sl_assert_eq "$c0" "$(fi_conns 9000)" "attached: nothing reached the server"
# A server in the container that outlives the attachment: reachable over
# loopback from the container while attached, and again after a detach and a
# new attach (what marks it as the container's goes with the socket).
sl_bg server bash -c "echo \$\$ >'$CG/cgroup.procs' && exec '$PY' -c '
import socket
s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept(); c.sendall(b\"SELF\\n\"); c.close()'"
sl_wait_for grep -q . "$T/server.log" || sl_fail "the server in the attached cgroup did not start: $(cat "$T/server.log")"
SP=$(head -n 1 "$T/server.log")
probe_lo() { # CGROUP: connect to the container's server over loopback
	timeout 10 bash -c "echo \$\$ >'$1/cgroup.procs' && exec '$PY' -c '
import socket; s = socket.socket(); s.settimeout(3)
try:
    s.connect((\"127.0.0.1\", $SP)); print(s.recv(16).decode().strip())
except OSError as e: print(\"error\", e)'"
}
sl_assert_eq SELF "$(probe_lo "$CG")" "attached: the container reaches its own server over loopback"
timeout 30 "$SLUICE" detach --cgroup "$CG" --name "$NAME" --run-dir "$T/run" || sl_fail "detach failed"
out=$(timeout 30 "$SLUICE" attach --cgroup "$CG" --name "$NAME" --broker "$T/broker.py" --run-dir "$T/run" 2>&1) ||
	sl_fail "attach again: $out"
sl_assert_eq SELF "$(probe_lo "$CG")" "attached again: the server bound before still answers over loopback"
sl_assert_eq BROKER "$(probe "$CG")" "attached again: redirected to the broker"
timeout 30 "$SLUICE" detach --cgroup "$CG" --name "$NAME" --run-dir "$T/run" || sl_fail "second detach failed"
sl_assert_not_contains "$(timeout 10 "$SLUICE" status)" "$NAME" "status no longer lists it"
[ -e "/sys/fs/bpf/sluice/$NAME" ] && sl_fail "pins left at /sys/fs/bpf/sluice/$NAME"
sl_assert_eq hello "$(probe "$CG")" "after detach: direct again"
sl_pass
