#!/bin/bash
# SPDX-License-Identifier: MIT
# Kernel enforcement with a stand-in broker (so it tests bpf/ + user/ alone):
# every TCP connect of the sandbox reaches the broker with its original
# destination recorded, nothing reaches the fake internet directly (IPv4, IPv6,
# v4-mapped), non-DNS UDP and raw sockets are refused, DNS goes to the broker
# with the reply's source restored, loopback passes only to the sandbox's own
# ports, a uid 0 sandbox cannot leave its cgroup or see bpffs, a dead broker
# means refused connects (and sluice restarts it), the same command outside the
# sandbox is unaffected, and everything is removed afterwards.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_enforce
sl_need_bins "$SLUICE"
fi_up

PIN=/sys/fs/bpf/sluice
NAME=ktest$$

# A stand-in for sluiced that keeps the contract: READY P Q on --ready-fd,
# TCP on 127.0.0.1:P and [::1]:P, UDP on 127.0.0.1:Q and [::1]:Q. It answers
# "BROKER" and logs what it accepted; it leaves sluice_orig entries in place so
# the test can read them. With $T/no-restart present it refuses to start.
cat >"$T/fakebroker.py" <<'EOF'
#!/usr/bin/python3
import os, socket, sys, threading
args = sys.argv[1:]
def opt(n):
    return args[args.index(n) + 1]
if os.path.exists(os.environ["FB_DIR"] + "/no-restart"):
    sys.exit("fake broker: told not to start")
open(os.environ["FB_DIR"] + "/fb.pid", "w").write(str(os.getpid()))
port = int(opt("--listen").rsplit(":", 1)[1]); rfd = int(opt("--ready-fd"))
log = open(os.environ["FB_DIR"] + "/fb.log", "a", buffering=1)
def tcp_sock(fam, addr, port):
    s = socket.socket(fam)
    if fam == socket.AF_INET6: s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen(128)
    return s
t4 = tcp_sock(socket.AF_INET, "127.0.0.1", port); port = t4.getsockname()[1]
t6 = tcp_sock(socket.AF_INET6, "::1", port)
u4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u4.bind(("127.0.0.1", 0)); q = u4.getsockname()[1]
u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); u6.bind(("::1", q))
def tcp(s):
    while True:
        c, a = s.accept()
        log.write("tcp peer=%s:%d\n" % a[:2])
        try: c.sendall(b"BROKER\n")
        except OSError: pass
        c.close()
def udp(s):
    while True:
        d, a = s.recvfrom(2048)
        log.write("udp len=%d\n" % len(d))
        s.sendto(b"DNS" + d, a)
for f, s in ((tcp, t4), (tcp, t6), (udp, u4), (udp, u6)):
    threading.Thread(target=f, args=(s,), daemon=True).start()
os.write(rfd, b"READY %d %d\n" % (port, q)); os.close(rfd)
threading.Event().wait()
EOF
chmod 755 "$T/fakebroker.py"
export FB_DIR=$T

# A host-side service on loopback the sandbox must not reach directly.
sl_bg hostsvc "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(8)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("x\n"); c.sendall(b"HOSTSVC\n"); c.close()
' "$T/hostsvc.port" "$T/hostsvc.log"
sl_wait_for test -s "$T/hostsvc.port" || sl_fail "host service did not start"
HOSTSVC_PORT=$(cat "$T/hostsvc.port")
# A host service in a SO_REUSEPORT group, same uid as the (root) sandbox: the
# sandbox may not join the group, and no connection of its may land on the host's member.
sl_bg rpsvc "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("x\n"); c.sendall(b"RPSVC\n"); c.close()
' "$T/rpsvc.port" "$T/rpsvc.log"
sl_wait_for test -s "$T/rpsvc.port" || sl_fail "reuseport host service did not start"
RP_PORT=$(cat "$T/rpsvc.port")
# The same with UDP: a member the sandbox put in the group would get a share of the
# host service's datagrams.
sl_bg rpudp "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", 0)); open(sys.argv[1], "w").write(str(s.getsockname()[1]))
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(("127.0.0.1", 0)); open(sys.argv[2], "w").write(str(a.getsockname()[1]))
while True:
    s.recvfrom(64)
' "$T/rpudp.port" "$T/raudp.port"
sl_wait_for test -s "$T/raudp.port" || sl_fail "reuseport UDP host service did not start"
RPU_PORT=$(cat "$T/rpudp.port")
# SO_REUSEADDR: UDP shares the port with any uid, and the socket bound last gets the datagrams.
RAU_PORT=$(cat "$T/raudp.port")

# The sandboxed program: one line per probe, "name result".
cat >"$T/probe.py" <<EOF
import errno, os, socket, struct, sys, time
FI4, FI6 = "$FI_IP4", "$FI_IP6"
def out(*a): print(*a, flush=True)
def tcp(name, fam, addr):
    s = socket.socket(fam); s.settimeout(3)
    try:
        s.connect(addr); data = s.recv(64).decode().strip()
        out(name, "connected", data, "peer=%s:%d" % s.getpeername()[:2])
    except OSError as e:
        out(name, "error", errno.errorcode.get(e.errno, e.errno))
    s.close()
mode = sys.argv[1]
if mode == "main":
    tcp("v4", socket.AF_INET, (FI4, 9000))
    tcp("v6", socket.AF_INET6, (FI6, 9000))
    tcp("mapped", socket.AF_INET6, ("::ffff:" + FI4, 9000))
    tcp("hostsvc", socket.AF_INET, ("127.0.0.1", $HOSTSVC_PORT))
    # loopback to a port the sandbox bound itself passes unchanged
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4)
    c = socket.create_connection(l.getsockname(), 3); a, _ = l.accept(); a.sendall(b"SELF\n")
    out("self", "connected", c.recv(64).decode().strip()); c.close(); a.close(); l.close()
    # a new connection on the 4-tuple of one the sandbox's server closed first
    # (its TIME_WAIT entry hands the SYN to the listener) reaches the server
    import random
    l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(4); l.settimeout(3); lp = l.getsockname()[1]
    cp = random.randint(20000, 30000)
    for i in range(2):
        c = socket.socket(); c.settimeout(3); c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            c.bind(("127.0.0.1", cp)); c.connect(("127.0.0.1", lp)); a, _ = l.accept()
            a.sendall(b"SELF%d\n" % i); a.close()  # the server closes first: TIME_WAIT on its side
            out("tw%d" % i, "connected", c.recv(64).decode().strip())
        except OSError as e:
            out("tw%d" % i, "error", errno.errorcode.get(e.errno, str(e.errno)))
        c.close(); time.sleep(0.1)
    l.close()
    # a steering program for a SO_REUSEPORT group would defeat the egress check
    import ctypes
    class SockFilter(ctypes.Structure):
        _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]
    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(SockFilter))]
    ret0 = (SockFilter * 1)(SockFilter(0x06, 0, 0, 0))
    fp = SockFprog(1, ret0)
    r = socket.socket(); r.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        r.setsockopt(socket.SOL_SOCKET, 51, bytes(fp)); out("cbpf", "attached")  # SO_ATTACH_REUSEPORT_CBPF
    except OSError as e:
        out("cbpf", "error", errno.errorcode.get(e.errno, e.errno))
    r.close()
    # a segment routing header would send a datagram to its first segment, not
    # to the broker the hook chose; IPv4 options carry source routes; a broadcast
    # to 127.255.255.255 reaches every socket on 0.0.0.0 of the port; a multicast
    # join makes the kernel send a report naming the group on the LAN
    srh = bytes([17, 4, 4, 1, 1, 0, 0, 0]) + socket.inet_pton(socket.AF_INET6, FI6) + socket.inet_pton(socket.AF_INET6, "::1")
    for name, fam, lvl, opt, val in (
            ("srh", socket.AF_INET6, socket.IPPROTO_IPV6, 57, srh),
            ("ipopts", socket.AF_INET, socket.IPPROTO_IP, 4, b"\x01\x01\x01\x00"),
            ("broadcast", socket.AF_INET, socket.SOL_SOCKET, socket.SO_BROADCAST, 1),
            ("mcast4", socket.AF_INET, socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
             socket.inet_aton("239.1.2.3") + socket.inet_aton("127.0.0.1")),
            ("mcast6", socket.AF_INET6, socket.IPPROTO_IPV6, 20,
             socket.inet_pton(socket.AF_INET6, "ff0e::6578:6669:6c74") + struct.pack("@I", 1))):
        r = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            r.setsockopt(lvl, opt, val); out(name, "set")
        except OSError as e:
            out(name, "error", errno.errorcode.get(e.errno, e.errno))
        r.close()
    # a datagram the hook sent to the broker's 127.0.0.1, routed out of another
    # device (the fake internet's veth) by IP_UNICAST_IF
    if os.environ.get("SL_DUMMY_IF"):
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.IPPROTO_IP, 50, struct.pack("!I", int(os.environ["SL_DUMMY_IF"])))
        try:
            r.sendto(b"UCIF", (FI4, 53)); out("ucif", "sent")
        except OSError as e:
            out("ucif", "error", errno.errorcode.get(e.errno, e.errno))
        r.close()
    # "::" from a v4-mapped source is 127.0.0.1 to the kernel: a v6-only wildcard
    # listener of the sandbox on the host service's port must not open the way to it
    l6 = socket.socket(socket.AF_INET6); l6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    l6.bind(("::", $HOSTSVC_PORT)); l6.listen(4)
    c = socket.socket(socket.AF_INET6); c.settimeout(3); c.bind(("::ffff:127.0.0.1", 0))
    try:
        c.connect(("::", $HOSTSVC_PORT)); out("unspec6", "connected", c.recv(64).decode().strip())
    except OSError as e:
        out("unspec6", "error", errno.errorcode.get(e.errno, e.errno))
    c.close(); l6.close()
    # Joining the host service's SO_REUSEPORT group is refused; a group of the sandbox's
    # own works. (An IPv6 socket on the v4-mapped address makes a group of its own: a group
    # holds one family, and IPv4 lookups prefer the IPv4 listener.) Then,
    # whatever each SYN's 4-tuple picks, the host's member is never reached.
    import threading
    def serve(l, what=b"SELF\n"):
        while True:
            try:
                a, _ = l.accept()
            except OSError:
                return
            a.sendall(what); a.close()
    rp = []
    for name, fam, addr in (("rpjoin", socket.AF_INET, "127.0.0.1"),):
        l = socket.socket(fam); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            l.bind((addr, $RP_PORT)); l.listen(64); rp.append(l); out(name, "bound")
            threading.Thread(target=serve, args=(l,), daemon=True).start()
        except OSError as e:
            out(name, "error", errno.errorcode.get(e.errno, e.errno)); l.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        u.bind(("127.0.0.1", $RPU_PORT)); out("rpudpjoin", "bound")
    except OSError as e:
        out("rpudpjoin", "error", errno.errorcode.get(e.errno, e.errno))
    u.close()
    for name, fam, addr in (("raudpjoin", socket.AF_INET, "127.0.0.1"), ("raudpjoin6", socket.AF_INET6, "::ffff:127.0.0.1")):
        u = socket.socket(fam, socket.SOCK_DGRAM); u.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            u.bind((addr, $RAU_PORT)); out(name, "bound")
        except OSError as e:
            out(name, "error", errno.errorcode.get(e.errno, e.errno))
        u.close()
    uo = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for x in uo:
            x.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            x.bind(("127.0.0.1", uo[0].getsockname()[1] if x is not uo[0] else 0))
        out("rpudpown", "bound")
    except OSError as e:
        out("rpudpown", "error", errno.errorcode.get(e.errno, e.errno))
    for x in uo:
        x.close()
    own = []
    for _ in range(2):
        l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            l.bind(("127.0.0.1", own[0].getsockname()[1] if own else 0)); l.listen(16); own.append(l)
            threading.Thread(target=serve, args=(l, b"OWNRP\n"), daemon=True).start()
        except OSError as e:
            out("rpown", "error", errno.errorcode.get(e.errno, e.errno))
    if len(own) == 2:
        got = set()
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", own[0].getsockname()[1]), 3)
            got.add(c.recv(64).decode().strip()); c.close()
        out("rpown", "connected", " ".join(sorted(got)))
    for l in own:
        l.close()
    seen = {}
    for _ in range(40):
        c = socket.socket(); c.settimeout(1.5)  # a SYN dropped at egress: no answer, the connect times out
        try:
            c.connect(("127.0.0.1", $RP_PORT)); r = c.recv(64).decode().strip() or "empty"
        except OSError as e:
            r = errno.errorcode.get(e.errno, str(e.errno))
        seen[r] = seen.get(r, 0) + 1; c.close()
    out("reuseport", " ".join("%s=%d" % kv for kv in sorted(seen.items())))
    for l in rp:
        l.close()
    # and to its own wildcard listener through the wildcard address (which the kernel reads as loopback)
    l = socket.socket(); l.bind(("0.0.0.0", 0)); l.listen(4)
    c = socket.create_connection(("0.0.0.0", l.getsockname()[1]), 3); a, _ = l.accept(); a.sendall(b"SELFANY\n")
    out("selfany", "connected", c.recv(64).decode().strip()); c.close(); a.close(); l.close()
    if os.environ.get("SL_INBOUND"):
        # A wildcard listener and UDP socket: the fake internet tries to reach
        # both (the test does, from outside); nothing may arrive.
        L = socket.socket(); L.bind(("0.0.0.0", 0)); L.listen(4); L.settimeout(4)
        U = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); U.bind(("0.0.0.0", 0)); U.settimeout(0.5)
        open(os.environ["SL_INBOUND"] + ".tmp", "w").write("%d %d\n" % (L.getsockname()[1], U.getsockname()[1]))
        os.rename(os.environ["SL_INBOUND"] + ".tmp", os.environ["SL_INBOUND"])
        try:
            a, peer = L.accept(); out("inbound", "accepted", peer[0]); a.close()
        except socket.timeout:
            out("inbound", "none")
        try:
            d, peer = U.recvfrom(64); out("inboundudp", "received", peer[0])
        except socket.timeout:
            out("inboundudp", "none")
    if os.environ.get("SL_STALE"):
        # A UDP socket binds an automatic port and gives it up with
        # connect(AF_UNSPEC) but stays open; a host service takes the port
        # (the test does, outside). Its old record must not let loopback in.
        import ctypes
        base = os.environ["SL_STALE"]
        g = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); g.bind(("127.0.0.1", 0))
        gp = g.getsockname()[1]
        # connected while the port is the sandbox's own: checked at connect() only
        c2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c2.connect(("127.0.0.1", gp))
        unspec = ctypes.create_string_buffer(16)  # sa_family 0: AF_UNSPEC
        ctypes.CDLL(None, use_errno=True).connect(g.fileno(), unspec, 16)
        open(base + ".tmp", "w").write(str(gp)); os.rename(base + ".tmp", base)
        for _ in range(200):
            if os.path.exists(base + ".taken"): break
            time.sleep(0.05)
        s2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s2.sendto(b"STALE", ("127.0.0.1", gp)); out("stale", "sent")
        except OSError as e:
            out("stale", "error", errno.errorcode.get(e.errno, e.errno))
        try:
            c2.send(b"STALE2"); out("stalec", "sent")
        except OSError as e:
            out("stalec", "error", errno.errorcode.get(e.errno, e.errno))
        s2.close(); c2.close(); g.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
    try:
        u.sendto(b"ping", (FI4, 9001)); out("udp9001", "sent")
    except OSError as e:
        out("udp9001", "error", errno.errorcode.get(e.errno, e.errno))
    try:
        u.connect((FI4, 9001)); out("udpconnect9001", "connected")
    except OSError as e:
        out("udpconnect9001", "error", errno.errorcode.get(e.errno, e.errno))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(3)
    u.sendto(b"query", (FI4, 53)); d, src = u.recvfrom(64)
    out("dns", d.decode(), "src=%s:%d" % src[:2])
    u6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); u6.settimeout(3)
    u6.sendto(b"query6", (FI6, 53)); d, src = u6.recvfrom(64)
    out("dns6", d.decode(), "src=%s:%d" % src[:2])
    for fam, typ, proto, name in ((socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP, "raw"),
                                  (socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP, "ping"),
                                  (socket.AF_PACKET, socket.SOCK_RAW, 0, "packet"),
                                  (socket.AF_INET, socket.SOCK_STREAM, 132, "sctp"),
                                  (40, socket.SOCK_STREAM, 0, "vsock")):
        try:
            socket.socket(fam, typ, proto).close(); out(name, "created")
        except OSError as e:
            out(name, "error", errno.errorcode.get(e.errno, e.errno))
    out("uid", os.getuid(), "capeff", open("/proc/self/status").read().split("CapEff:")[1].split()[0])
    out("cgroup", open("/proc/self/cgroup").read().strip().replace(" ", "_"))
    for p in sys.argv[2:]:
        try:
            open(p, "w").write(str(os.getpid())); out("escape", p, "WRITTEN")
        except OSError as e:
            out("escape", p, "error", errno.errorcode.get(e.errno, e.errno))
    out("bpffs", "present" if os.path.exists("/sys/fs/bpf/sluice") else "absent")
elif mode == "brokerdown":
    open(sys.argv[2] + "/sb.ready", "w").write("1")
    # bounded waits: a test must not hang when the outside fails
    for _ in range(600):
        if os.path.exists(sys.argv[2] + "/go1"): break
        time.sleep(0.05)
    tcp("down", socket.AF_INET, (FI4, 9000))
    open(sys.argv[2] + "/sb.done1", "w").write("1")
    for _ in range(600):
        if os.path.exists(sys.argv[2] + "/go2"): break
        time.sleep(0.05)
    for i in range(50):
        s = socket.socket(); s.settimeout(2)
        try:
            s.connect((FI4, 9000)); break
        except OSError: time.sleep(0.2)
        finally: s.close()
    tcp("back", socket.AF_INET, (FI4, 9000))
EOF

CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$CG2" ] || sl_fail "no cgroup2 mount"
sl_defer "[ -d $CG2/sluice/$NAME ] && { echo 1 >$CG2/sluice/$NAME/cgroup.kill; sleep 0.3; rmdir $CG2/sluice/$NAME; }"
sl_defer "rm -rf $PIN/$NAME"

# ---- outside the sandbox: unaffected ----
before=$(fi_conns 9000)
out=$("$PY" "$T/probe.py" main 2>&1 | grep -E "^(v4|v6|udp9001) ")
sl_assert_contains "$out" "v4 connected hello" "outside: IPv4 connect reaches the fake internet"
sl_assert_contains "$out" "v6 connected hello" "outside: IPv6 connect reaches the fake internet"
sl_assert_contains "$out" "udp9001 sent" "outside: UDP datagram goes out"
sl_wait_for test "$(fi_udp_count 9001)" -ge 1 || sl_fail "outside: the UDP datagram did not arrive"
sl_assert_eq $((before + 3)) "$(fi_conns 9000)" "outside: the three connections arrived"

# ---- inside, uid 0 without capabilities ----
conns0=$(fi_conns 9000); udp0=$(fi_udp_count 9001); dns0=$(fi_udp_count 53); hs0=$(wc -l <"$T/hostsvc.log" 2>/dev/null || echo 0); rp0=$(wc -l <"$T/rpsvc.log" 2>/dev/null || echo 0)
# From the fake internet, toward the sandbox's wildcard sockets (the host's veth address).
( for i in $(seq 200); do [ -s "$T/inbound.ports" ] && break; sleep 0.05; done
  read -r tp up <"$T/inbound.ports" || exit 0
  ip netns exec "$FI_NS" "$PY" -c '
import socket, sys
h, tp, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(5): u.sendto(b"IN", (h, up))
try:
    socket.create_connection((h, tp), 3).sendall(b"IN"); print("inbound connect OK")
except OSError as e:
    print("inbound connect failed", e)
' "$FI_HOST4" "$tp" "$up" >"$T/inbound.client" 2>&1 ) &
INB=$!
# The host service that takes over the port the sandbox gave up (SL_STALE above).
( for i in $(seq 300); do [ -s "$T/stale.port" ] && break; sleep 0.05; done
  [ -s "$T/stale.port" ] || exit 0
  exec "$PY" -c '
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", int(open(sys.argv[1]).read())))
open(sys.argv[1] + ".taken", "w").write("1"); u.settimeout(2)
try:
    d, _ = u.recvfrom(64); print("received", d.decode())
except socket.timeout:
    print("none")
' "$T/stale.port" >"$T/stale.host" 2>&1 ) &
STALE=$!
# For the IP_UNICAST_IF probe: the host's end of the fake internet's veth
# (a datagram that got out would land in the test's own namespace).
DUMMY_IF=$(cat "/sys/class/net/$FI_HV/ifindex")
out=$(SL_DUMMY_IF=$DUMMY_IF SL_INBOUND="$T/inbound.ports" SL_STALE="$T/stale.port" timeout 60 "$SLUICE" run --broker "$T/fakebroker.py" --name "$NAME" --user root --writable "$T" -- \
	"$PY" "$T/probe.py" main "$CG2/cgroup.procs" "$CG2/sluice/cgroup.procs" /sys/fs/cgroup/unified/../unified/cgroup.procs 2>"$T/run.err")
rc=$?
wait $INB $STALE
echo "$out" >"$T/inside.out"
[ $rc = 0 ] || sl_fail "sluice run failed rc=$rc: $(cat "$T/run.err") $out"
sl_assert_contains "$out" "v4 connected BROKER peer=$FI_IP4:9000" "IPv4 connect went to the broker; getpeername shows the original"
sl_assert_contains "$out" "v6 connected BROKER peer=$FI_IP6:9000" "IPv6 connect went to the broker"
sl_assert_contains "$out" "mapped connected BROKER peer=::ffff:$FI_IP4:9000" "v4-mapped connect went to the broker"
sl_assert_contains "$out" "hostsvc connected BROKER" "loopback to a host service goes to the broker"
sl_assert_contains "$out" "self connected SELF" "loopback to the sandbox's own listener passes"
sl_assert_contains "$out" "tw1 connected SELF1" "a connection reusing the 4-tuple of one in TIME_WAIT reaches the sandbox's own server"
sl_assert_contains "$out" "cbpf error EPERM" "no SO_ATTACH_REUSEPORT_CBPF in the sandbox"
sl_assert_contains "$out" "srh error EPERM" "no IPv6 routing header in the sandbox"
sl_assert_contains "$out" "ipopts error EPERM" "no IPv4 options in the sandbox"
sl_assert_contains "$out" "broadcast error EPERM" "no SO_BROADCAST in the sandbox"
sl_assert_contains "$out" "mcast4 error EPERM" "no IPv4 multicast join in the sandbox"
sl_assert_contains "$out" "mcast6 error EPERM" "no IPv6 multicast join in the sandbox"
sl_assert_contains "$out" "ucif error EPERM" "a datagram to the broker's loopback address routed out of another device is dropped"
sl_assert_contains "$out" "unspec6 connected BROKER" "'::' from a v4-mapped source is checked as 127.0.0.1: to the broker, not the host service"
sl_assert_contains "$out" "rpjoin error EADDRINUSE" "a SO_REUSEPORT bind into a host service's group is refused"
sl_assert_contains "$out" "rpown connected OWNRP" "a SO_REUSEPORT group of the sandbox's own works"
sl_assert_contains "$out" "rpudpjoin error EADDRINUSE" "a SO_REUSEPORT UDP bind into a host service's group is refused"
sl_assert_contains "$out" "rpudpown bound" "a SO_REUSEPORT UDP group of the sandbox's own works"
sl_assert_contains "$out" "raudpjoin error EADDRINUSE" "a SO_REUSEADDR UDP bind onto a host service's port is refused"
sl_assert_contains "$out" "raudpjoin6 error EADDRINUSE" "... also through its v4-mapped address on an IPv6 socket"
sl_assert_not_contains "$(grep '^reuseport ' <<<"$out")" "RPSVC" "a SO_REUSEPORT group shared with a host service: no connection reached the host's member"
sl_assert_eq "$rp0" "$(wc -l <"$T/rpsvc.log" 2>/dev/null || echo 0)" "the reuseport host service saw nothing"
sl_assert_contains "$out" "selfany connected SELFANY" "0.0.0.0 to the sandbox's own wildcard listener passes"
sl_assert_contains "$out" "inbound none" "no TCP connection from the network reached a wildcard listener in the sandbox"
sl_assert_contains "$out" "inboundudp none" "no datagram from the network reached a wildcard UDP socket in the sandbox"
sl_assert_contains "$(cat "$T/inbound.client")" "inbound connect failed" "the outside peer could not connect"
sl_assert_contains "$out" "stale error EPERM" "loopback to a port the sandbox gave up and a host service took: refused"
sl_assert_eq none "$(cat "$T/stale.host")" "the host service on the given-up port received nothing (also from a socket connected to it before)"
sl_assert_contains "$out" "udp9001 error EPERM" "non-DNS UDP datagram refused"
sl_assert_contains "$out" "udpconnect9001 error EPERM" "non-DNS UDP connect refused"
sl_assert_contains "$out" "dns DNSquery src=$FI_IP4:53" "DNS went to the broker; the reply's source is the server asked"
sl_assert_contains "$out" "dns6 DNSquery6 src=$FI_IP6:53" "IPv6 DNS went to the broker"
sl_assert_contains "$out" "raw error EPERM" "raw socket refused"
sl_assert_contains "$out" "ping error" "ICMP ping socket refused"
sl_assert_contains "$out" "packet error" "packet socket refused"
sl_assert_contains "$out" "sctp error" "SCTP socket refused"
sl_assert_contains "$out" "vsock error EAFNOSUPPORT" "vsock refused by the seccomp filter"
sl_assert_contains "$out" "uid 0 capeff 0000000000000000" "uid 0 without capabilities"
sl_assert_contains "$out" "0::/
" "own cgroup namespace (its cgroup is the root it sees)"
sl_assert_not_contains "$out" "WRITTEN" "cannot move itself out of its cgroup"
sl_assert_contains "$out" "bpffs absent" "bpffs not visible"
sl_assert_eq "$conns0" "$(fi_conns 9000)" "nothing reached the fake internet's TCP server"
sl_assert_eq "$udp0" "$(fi_udp_count 9001)" "no UDP datagram reached the fake internet"
sl_assert_eq "$dns0" "$(fi_udp_count 53)" "no DNS query reached the foreign resolver"
sl_assert_eq "$hs0" "$(wc -l <"$T/hostsvc.log" 2>/dev/null || echo 0)" "the host's loopback service saw nothing"
sl_ok "reuseport probe's results: $(grep '^reuseport ' <<<"$out")"
rp_broker=$(grep '^reuseport ' <<<"$out" | grep -o 'BROKER=[0-9]*' | cut -d= -f2)
sl_assert_eq $((5 + ${rp_broker:-0})) "$(grep -c '^tcp ' "$T/fb.log")" "the broker accepted the five redirected connections (and the reuseport probe's that went there)"

# sockops recorded the original destinations keyed by the broker-side 4-tuple.
orig=$(timeout 10 bpftool -j map dump pinned $PIN/sluice_orig)
want4=$(echo "$FI_IP4" | tr '.' ',')
echo "$orig" | "$PY" -c '
import ipaddress, json, sys
want4 = [int(x) for x in sys.argv[1].split(",")]
want6 = list(ipaddress.IPv6Address(sys.argv[2]).packed)
ents = [e["formatted"] for e in json.load(sys.stdin)]
ents = [e for e in ents if e["value"]["port"] == 9000 and (e["value"]["addr"][:4] == want4 or e["value"]["addr"] == want6)]
v4 = [e for e in ents if e["value"]["family"] == 2 and e["value"]["addr"][:4] == want4 and e["key"]["family"] == 2]
v6 = [e for e in ents if e["value"]["family"] == 10 and e["key"]["family"] == 10]
assert len(v4) >= 2, ents   # plain IPv4 and v4-mapped (keyed as IPv4)
assert len(v6) >= 1, ents
assert all(e["key"]["dst_addr"][:4] == [127, 0, 0, 1] for e in v4)
assert all(e["value"]["comm"].startswith("python") for e in ents)
' "$want4" "$FI_IP6" || sl_fail "sluice_orig lacks the recorded destinations: $(echo "$orig" | head -c 1500)"
sl_ok "sluice_orig holds the original destinations by 4-tuple"

# Teardown: cgroup, pinned links and the sandbox entry are gone.
[ -d "$CG2/sluice/$NAME" ] && sl_fail "cgroup $CG2/sluice/$NAME left behind"
[ -e "$PIN/$NAME" ] && sl_fail "pinned links $PIN/$NAME left behind"
sl_assert_not_contains "$(timeout 10 "$SLUICE" status)" "$NAME" "sluice status no longer lists the sandbox"

# ---- broker down: connects refused, nothing leaks; sluice restarts it ----
rm -f "$T/fb.log"
timeout 90 "$SLUICE" run --broker "$T/fakebroker.py" --name "$NAME" --user root --writable "$T" -- \
	"$PY" "$T/probe.py" brokerdown "$T" >"$T/down.out" 2>"$T/down.err" &
RUNPID=$!
sl_defer "sl_kill_pid $RUNPID"
sl_wait_for test -e "$T/sb.ready" || sl_fail "sandbox did not start: $(cat "$T/down.err")"
conns0=$(fi_conns 9000)
CGID=$(timeout 10 "$SLUICE" status | awk -v n="$NAME" '$1 == n { print $2 }')
[ -n "$CGID" ] && [ "$CGID" -gt 0 ] 2>/dev/null || sl_fail "sluice status does not show $NAME: $(timeout 10 "$SLUICE" status)"
BPORT=$(timeout 10 "$SLUICE" status | awk -v n="$NAME" '$1 == n { print $3 }')
touch "$T/no-restart"
kill "$(cat "$T/fb.pid")"
sleep 0.5
# Something else takes the dead broker's port: it must not get the sandbox's connections.
sl_bg impostor "$PY" -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8); open(sys.argv[2] + ".up", "w").close()
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("conn\n"); c.sendall(b"IMPOSTOR\n"); c.close()
' "$BPORT" "$T/impostor.log"
IMPOSTOR=$(cat "$T/impostor.pid")
sl_wait_for test -e "$T/impostor.log.up" || sl_fail "the impostor could not take port $BPORT"
touch "$T/go1"
sl_wait_for test -e "$T/sb.done1" || sl_fail "probe stuck"
sl_kill_pid $IMPOSTOR
rm -f "$T/no-restart"
touch "$T/go2"
wait $RUNPID; rc=$?
out=$(cat "$T/down.out")
[ $rc = 0 ] || sl_fail "sluice run (broker down) rc=$rc: $(cat "$T/down.err")"
sl_assert_contains "$out" "down error EPERM" "broker down: connect refused by the kernel (the sandbox has no broker port until one is back)"
sl_assert_not_contains "$out" "IMPOSTOR" "broker down: the process on the dead broker's port got nothing"
[ -s "$T/impostor.log" ] && sl_fail "broker down: a connection reached the dead broker's port"
sl_assert_eq "$conns0" "$(fi_conns 9000)" "broker down: nothing reached the target"
sl_assert_contains "$out" "back connected BROKER" "restarted broker serves the sandbox again"
sl_assert_contains "$(cat "$T/down.err")" "restarted" "sluice said it restarted the broker"
key=$("$PY" -c 'import struct, sys; print(" ".join(str(b) for b in struct.pack("<Q", int(sys.argv[1]))))' "$CGID")
bpftool map lookup pinned $PIN/sluice_sandboxes key $key >/dev/null 2>&1 && sl_fail "sandbox entry $CGID left in sluice_sandboxes"
sl_ok "sandbox entry removed from sluice_sandboxes"

sl_pass
