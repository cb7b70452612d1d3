#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced's resolver on both of its sockets (127.0.0.1 and [::1]), with dig:
# allowed names answered with the address the broker dials, others REFUSED,
# internal addresses only for names a rule spells out, a burst of queries
# all answered (the sockets are level-triggered), nothing forwarded outside.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_dns
sl_need_bins "$SLUICED"
command -v dig >/dev/null || sl_fail "dig is missing (package dnsutils; run make deps)"
fi_up

cat >"$T/p.yaml" <<P
rules:
  - {action: allow, host: "api.test"}
  - {action: allow, host: "localhost"}
  - {action: allow, host: "*.glob.test", method: GET}
P
exec {rfd}>"$T/ready"
sl_bg broker "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:443" --policy "$T/p.yaml" --resolve "api.test:$FI_IP4" --audit "$T/audit"
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready" || sl_fail "broker did not get ready: $(cat "$T/broker.log")"
read -r _ _ BDNS <"$T/ready"

q() { dig +tries=1 +time=2 +short -p "$BDNS" "@$1" "$2" "${3:-A}"; }
st() { dig +tries=1 +time=2 -p "$BDNS" "@$1" "$2" A | sed -n 's/.*status: \([A-Z]*\).*/\1/p'; }
udp53=$(fi_udp_count 53)
for srv in 127.0.0.1 ::1; do
	sl_assert_eq "$FI_IP4" "$(q $srv api.test)" "[$srv] allowed name gets the address the broker dials"
	sl_assert_eq "REFUSED" "$(st $srv evil.example)" "[$srv] a name no rule allows is REFUSED"
	sl_assert_eq "127.0.0.1" "$(q $srv localhost)" "[$srv] loopback only for a name a rule spells out"
done
# A glob-allowed name with no pinned address goes to the system resolver (127.0.0.1 in this test: nothing).
sl_assert_eq "REFUSED" "$(st 127.0.0.1 localhost.localdomain)" "a name no rule allows is refused even if /etc/hosts has it"
kill -0 "$(cat "$T/broker.pid")" || sl_fail "broker died"

# A burst: 300 queries sent at once on each socket, all answered.
burst() {
	"$PY" - "$1" "$BDNS" <<'PY'
import socket, struct, sys, time
host, port = sys.argv[1], int(sys.argv[2])
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
q = lambda i: struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 0) + b'\x03api\x04test\x00' + struct.pack('!HH', 1, 1)
for i in range(300):
    s.sendto(q(i), (host, port))
s.settimeout(3)
got = set()
try:
    while len(got) < 300:
        got.add(struct.unpack('!H', s.recv(512)[:2])[0])
except socket.timeout:
    pass
print(len(got))
PY
}
n4=$(burst 127.0.0.1); n6=$(burst ::1)
[ "$n4" -ge 290 ] || sl_fail "IPv4 burst: only $n4 of 300 answered"
[ "$n6" -ge 290 ] || sl_fail "IPv6 burst: only $n6 of 300 answered"
sl_ok "bursts answered: $n4/300 (IPv4), $n6/300 (IPv6)"
sl_assert_eq "$udp53" "$(fi_udp_count 53)" "nothing forwarded to an outside resolver"

# 200 CHAOS-class questions for an allowed name: no lookup (REFUSED), and no log line each
# (a sandbox must not be able to fill the broker's log with them).
lines0=$(wc -l <"$T/broker.log")
"$PY" - "$BDNS" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    s.sendto(struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 0) + b'\x03api\x04test\x00' + struct.pack('!HH', 1, 3),
             ("127.0.0.1", int(sys.argv[1])))
PY
sleep 0.5
sl_assert_eq "127.0.0.1" "$(q 127.0.0.1 localhost)" "the resolver still answers afterwards"
[ $(( $(wc -l <"$T/broker.log") - lines0 )) -lt 20 ] || sl_fail "CHAOS questions wrote $(( $(wc -l <"$T/broker.log") - lines0 )) log lines"
sl_ok "CHAOS questions were dropped quietly"

# Queries refused before any lookup get an answer at once (no client waits
# out its timeout): FORMERR for a broken message, NOTIMP for another opcode,
# REFUSED for another class; a response sent to it gets nothing.
o=$("$PY" - "$BDNS" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
name = b'\x03api\x04test\x00'
cases = [("truncated", struct.pack('!HHHHHH', 1, 0x0100, 1, 0, 0, 0) + name[:5]),
         ("two-questions", struct.pack('!HHHHHH', 2, 0x0100, 2, 0, 0, 0) + (name + struct.pack('!HH', 1, 1)) * 2),
         ("opcode-status", struct.pack('!HHHHHH', 3, 0x1100, 1, 0, 0, 0) + name + struct.pack('!HH', 1, 1)),
         ("class-chaos", struct.pack('!HHHHHH', 4, 0x0100, 1, 0, 0, 0) + name + struct.pack('!HH', 1, 3)),
         ("a-response", struct.pack('!HHHHHH', 5, 0x8100, 1, 0, 0, 0) + name + struct.pack('!HH', 1, 1))]
for label, m in cases:
    s.sendto(m, ("127.0.0.1", int(sys.argv[1])))
    try:
        d = s.recv(512)
        ok = len(d) == 12 and d[:2] == m[:2] and d[2] & 0x80
        print(label, {1: "FORMERR", 4: "NOTIMP", 5: "REFUSED"}.get(d[3] & 15, "rcode%d" % (d[3] & 15)) if ok else "bad-reply")
    except socket.timeout:
        print(label, "none")
PY
)
for want in "truncated FORMERR" "two-questions FORMERR" "opcode-status NOTIMP" "class-chaos REFUSED" "a-response none"; do
	sl_assert_contains "$o" "$want" "refused before any lookup: ${want% *} gets ${want#* }"
done

# 100 refused names: 20 are logged, then one line says the rest are counted
# (a sandbox must not fill the broker's log, often on tmpfs, with them).
r0=$(grep -c 'dns: refused ' "$T/broker.log")
"$PY" - "$BDNS" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(100):
    s.sendto(struct.pack('!HHHHHH', i, 0x0100, 1, 0, 0, 0) + b'\x0cflood%07d\x04evil\x00' % i + struct.pack('!HH', 1, 1),
             ("127.0.0.1", int(sys.argv[1])))
PY
sleep 0.5
r1=$(grep -c 'dns: refused flood' "$T/broker.log")
[ "$r1" -le 20 ] && [ "$r1" -ge 1 ] || sl_fail "100 refused names wrote $r1 log lines naming them (at most 20 expected)"
sl_assert_contains "$(cat "$T/broker.log")" "the rest are counted, not logged" "the log says refused names are being counted"
sl_ok "100 refused names: $r1 logged by name ($r0 before them), the rest counted"

# A flood of new names under an allowed glob while the name server is slow:
# the lookups waiting at once are bounded, and the rest get SERVFAIL at once
# (the queue, and the broker's memory, would otherwise grow with the flood).
# The name server here (127.0.0.1:53, this test's resolv.conf) never answers.
sl_bg blackhole "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").close()
while True: s.recvfrom(2048)
' "$T/blackhole.up"
sl_wait_for test -e "$T/blackhole.up" || sl_fail "could not bind 127.0.0.1:53 for a silent name server: $(cat "$T/blackhole.log")"
o=$("$PY" - "$BDNS" <<'EOPY'
import os, socket, struct, sys, time
port = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
def q(i, name):
    hdr = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0)
    return hdr + b"".join(bytes([len(l)]) + l for l in name.encode().split(b".")) + b"\0" + struct.pack("!HH", 1, 1)
for i in range(600):
    s.sendto(q(i, "n%d-%s.glob.test" % (i, os.urandom(4).hex())), ("127.0.0.1", port))
servfail, end = 0, time.time() + 2.5  # waiting lookups end in SERVFAIL too, about 4 a second
while time.time() < end:
    try:
        d = s.recv(2048)
    except socket.timeout:
        continue
    if len(d) >= 4 and d[3] & 0x0f == 2:
        servfail += 1
print("servfail", servfail)
EOPY
)
n=$(echo "$o" | awk '{print $2}')
[ "${n:-0}" -ge 200 ] || sl_fail "600 new names with a silent name server: only ${n:-0} answered SERVFAIL at once ($o)"
sl_ok "600 new names with a silent name server: $n answered SERVFAIL at once, the rest wait"
kill -0 "$(cat "$T/broker.pid")" || sl_fail "the broker died under the DNS flood"
sl_kill_pid "$(cat "$T/blackhole.pid")"

# No other process (here uid 65534) can bind the resolver's port beside it
# and take the queries the sandboxes send there.
for fam in 4 6; do
	o=$(setpriv --reuid 65534 --regid 65534 --clear-groups "$PY" -c '
import errno, socket, sys
fam, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET if fam == "4" else socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1" if fam == "4" else "::1", port)); print("bound")
except OSError as e:
    print("error", errno.errorcode.get(e.errno, e.errno))
' "$fam" "$BDNS")
	sl_assert_eq "error EADDRINUSE" "$o" "IPv$fam: another process cannot bind the broker's DNS port with SO_REUSEADDR"
done

# [::1] on the broker's port held by another socket: the broker refuses to
# start rather than leave the sandboxes' IPv6 connections to it.
HPORT=$(( 30000 + $$ % 20000 ))
sl_bg v6holder "$PY" -c '
import socket, sys, time
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind(("::1", int(sys.argv[1]))); s.listen(1); open(sys.argv[2], "w").close(); time.sleep(120)
' "$HPORT" "$T/v6holder.up"
sl_wait_for test -e "$T/v6holder.up" || sl_fail "could not hold [::1]:$HPORT"
o=$(timeout 20 "$SLUICED" --listen "127.0.0.1:$HPORT" --ca-dir "$T/ca" --run-dir "$T/run6" --allow api.test 2>&1); rc=$?
[ $rc != 0 ] || sl_fail "sluiced started although [::1]:$HPORT is held by another socket"
sl_assert_contains "$o" "another socket holds it" "the broker says why it does not start"
sl_pass
