#!/bin/bash
# SPDX-License-Identifier: MIT
# Per-sandbox counters and processes in `sluice status`, and the
# cgroup/getsockopt SO_ORIGINAL_DST emulation: two sandboxes run at once, each
# sees only its own counters (connects redirected, UDP refused, sockets
# refused), the broker and supervisor pids are shown alive; a sandboxed
# program asking SO_ORIGINAL_DST (SOL_IP and SOL_IPV6) on its redirected
# socket gets the destination it asked for, not the broker's address.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_status
sl_need_bins "$SLUICE" "$SLUICED"

A=kst-a$$ B=kst-b$$
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
for n in $A $B; do
	sl_defer "[ -d $CG2/sluice/$n ] && { echo 1 >$CG2/sluice/$n/cgroup.kill; sleep 0.3; rmdir $CG2/sluice/$n; }"
	sl_defer "rm -rf /sys/fs/bpf/sluice/$n"
done

# The sandboxed probe: N loopback connects (they go to the broker), then
# SO_ORIGINAL_DST on each, one refused UDP datagram and one refused raw
# socket; it then waits (bounded) for the test to read `sluice status`.
cat >"$T/probe.py" <<'EOF'
import errno, os, socket, struct, sys, time
d, n = sys.argv[1], int(sys.argv[2])
def orig(s, level, size):
    try:
        r = s.getsockopt(level, 80, size)
    except OSError as e:
        return "error " + errno.errorcode.get(e.errno, str(e.errno))
    fam, port = struct.unpack("=HH", r[:4])
    if fam == socket.AF_INET:
        return "%s:%d" % (socket.inet_ntoa(r[4:8]), socket.ntohs(port))
    return "[%s]:%d" % (socket.inet_ntop(socket.AF_INET6, r[8:24]), socket.ntohs(port))
socks = []
for i, (fam, addr) in enumerate([(socket.AF_INET, ("127.0.0.1", 7001)), (socket.AF_INET6, ("::1", 7002)),
                                 (socket.AF_INET6, ("::ffff:127.0.0.1", 7003))][:n]):
    s = socket.socket(fam); s.settimeout(3); s.connect(addr); socks.append(s)
    print("orig", addr[1], orig(s, socket.SOL_IP if fam == socket.AF_INET else 41, 16 if fam == socket.AF_INET else 28), flush=True)
    if fam == socket.AF_INET6 and addr[0].startswith("::ffff:"):
        print("orig4", addr[1], orig(s, socket.SOL_IP, 16), flush=True)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    u.sendto(b"x", ("127.0.0.1", 9999)); print("udp sent", flush=True)
except OSError as e:
    print("udp error", errno.errorcode.get(e.errno), flush=True)
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); print("raw created", flush=True)
except OSError as e:
    print("raw error", errno.errorcode.get(e.errno), flush=True)
open(d + "/ready", "w").write("1")
for _ in range(200):
    if os.path.exists(d + "/go"): break
    time.sleep(0.05)
EOF
mkdir -p "$T/a" "$T/b"
chmod 777 "$T/a" "$T/b"
for x in a b; do
	n=3; name=$A
	[ $x = b ] && { n=1; name=$B; }
	timeout 60 "$SLUICE" run --name "$name" --user root --writable "$T" --run-dir "$T/run" --ca-dir "$T/ca" -- \
		"$PY" "$T/probe.py" "$T/$x" $n >"$T/$x.out" 2>"$T/$x.err" &
	sl_defer "sl_kill_pid $!"
	eval "PID_$x=$!"
done
sl_wait_for test -e "$T/a/ready" || sl_fail "sandbox A did not get ready: $(cat "$T/a.err" "$T/a.out")"
sl_wait_for test -e "$T/b/ready" || sl_fail "sandbox B did not get ready: $(cat "$T/b.err" "$T/b.out")"
st=$(timeout 10 "$SLUICE" status)
echo "$st" >"$T/status.out"
sup=$(echo "$st" | grep -A1 "^$A " | sed -n 's/.*supervisor pid \([0-9]*\) (alive, sluice).*/\1/p')
sup_parent=$(ps -o ppid= -p "${sup:-1}" | tr -d ' ')
touch "$T/a/go" "$T/b/go"
wait "$PID_a" || sl_fail "sandbox A failed: $(cat "$T/a.err")"
wait "$PID_b" || sl_fail "sandbox B failed: $(cat "$T/b.err")"

out=$(cat "$T/a.out")
sl_assert_contains "$out" "orig 7001 127.0.0.1:7001" "SO_ORIGINAL_DST (SOL_IP) gives the IPv4 destination asked for"
sl_assert_contains "$out" "orig 7002 [::1]:7002" "SO_ORIGINAL_DST (SOL_IPV6) gives the IPv6 destination"
sl_assert_contains "$out" "orig 7003 [::ffff:127.0.0.1]:7003" "v4-mapped connect: SOL_IPV6 answer is v4-mapped"
sl_assert_contains "$out" "orig4 7003 127.0.0.1:7003" "v4-mapped connect: SOL_IP answer is IPv4"
sl_assert_contains "$out" "udp error EPERM" "non-DNS UDP refused"
sl_assert_contains "$out" "raw error EPERM" "raw socket refused"

line_a=$(echo "$st" | grep -A1 "^$A ")
line_b=$(echo "$st" | grep -A1 "^$B ")
sl_assert_contains "$line_a" "tcp_redirected=3 " "status: sandbox A counted its 3 redirected connects ($st)"
sl_assert_contains "$line_a" "denied_udp=1 " "status: sandbox A counted its refused datagram"
sl_assert_contains "$line_a" "denied_socket=1 " "status: sandbox A counted its refused socket"
sl_assert_contains "$line_b" "tcp_redirected=1 " "status: sandbox B has its own counters"
bpid=$(echo "$line_a" | sed -n 's/.*broker pid \([0-9]*\) (alive, sluiced).*/\1/p')
[ -n "$bpid" ] || sl_fail "status does not show sandbox A's broker alive: $line_a"
[ -n "$sup" ] && [ "$sup_parent" = "$PID_a" ] ||
	sl_fail "status does not show sandbox A's sluice (child of $PID_a) alive: $line_a"
sl_ok "status shows the broker and the supervising sluice alive"
# After exit: the broker is gone and the sandbox is no longer listed.
sl_wait_for sh -c "! kill -0 $bpid 2>/dev/null" || sl_fail "broker $bpid still running after its sandbox ended"
st=$(timeout 10 "$SLUICE" status)
sl_assert_not_contains "$st" "$A" "status no longer lists sandbox A"

# A name is a directory under the pin root: "." (the pin root itself) and
# anything but plain characters are refused before anything is attached.
ls /sys/fs/bpf/sluice >"$T/pins.before"
for n in . .. ".x" "a/b" "a b" ""; do
	o=$(timeout 10 "$SLUICE" run --name "$n" -- true 2>&1); rc=$?
	[ $rc != 0 ] || sl_fail "--name '$n' was accepted"
	sl_assert_contains "$o" "use letters, digits" "--name '$n' refused with what to use"
done
o=$(timeout 10 "$SLUICE" attach --name . --cgroup "$T/no-such-cgroup" 2>&1); rc=$?
[ $rc != 0 ] || sl_fail "attach --name . was accepted"
sl_assert_contains "$o" "use letters, digits" "attach --name . refused"
sl_assert_eq "$(cat "$T/pins.before")" "$(ls /sys/fs/bpf/sluice)" "the pin root is unchanged"
sl_pass
