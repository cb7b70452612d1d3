#!/bin/bash
# SPDX-License-Identifier: MIT
# A uid 0 sandbox (--user root) cannot write the host: a file in /etc/cron.d
# or a systemd unit would later run outside the sandbox with the network
# open. Every mount is read-only in its mount namespace (EROFS, and it cannot
# remount), /etc/shadow and /etc/gshadow read empty, /tmp and /dev/shm are
# private fresh tmpfs; the current directory (the project) and --writable
# paths stay writable and what is written there reaches the host.
# --writable / is refused, a missing --writable path refuses to run. A nobody
# sandbox keeps the host's /tmp (its own permissions apply) unless
# --readonly-root.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_rootfs
sl_need_bins "$SLUICE" "$SLUICED"

NAME=krootfs$$
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
sl_defer "[ -d $CG2/sluice/$NAME ] && { echo 1 >$CG2/sluice/$NAME/cgroup.kill; sleep 0.3; rmdir $CG2/sluice/$NAME; }"
sl_defer "rm -rf /sys/fs/bpf/sluice/$NAME"

HOSTMARK=/tmp/sluice-rootfs-host-$$
echo host >"$HOSTMARK"
chmod 644 "$HOSTMARK"
sl_defer "rm -f $HOSTMARK /tmp/sluice-rootfs-nobody-$$ /etc/sluice-test-x /etc/cron.d/sluice-test-x /usr/local/bin/sluice-test-x"
[ -s /etc/shadow ] || sl_fail "test premise: the host's /etc/shadow is not empty"

P=$T/proj W=$T/w
mkdir -p "$P" "$W"
chmod 777 "$P" "$W"
cat >"$P/probe.py" <<EOF
import errno, os, sys
def wr(name, path):
    try:
        with open(path, "w") as f:
            f.write("x")
        print(name, "written", flush=True)
    except OSError as e:
        print(name, "error", errno.errorcode.get(e.errno), flush=True)
def rd(name, path):
    try:
        print(name, "bytes", len(open(path, "rb").read()), flush=True)
    except OSError as e:
        print(name, "error", errno.errorcode.get(e.errno), flush=True)
print("tmpls", sorted(os.listdir("/tmp")), flush=True)
wr("etc", "/etc/sluice-test-x")
wr("crond", "/etc/cron.d/sluice-test-x")
wr("usrlocal", "/usr/local/bin/sluice-test-x")
rd("shadow", "/etc/shadow")
rd("gshadow", "/etc/gshadow")
wr("cwd", "inproj-$$")
wr("writable", "$W/inw-$$")
wr("tmp", "/tmp/sluice-rootfs-nobody-$$")
wr("shm", "/dev/shm/sluice-rootfs-$$")
rd("hostmark", "$HOSTMARK")
for t in ("/", "/etc", "/tmp"):
    r = os.system("mount -o remount,rw %s 2>/dev/null" % t)
    print("remount", t, "refused" if r else "done", flush=True)
r = os.system("umount /tmp 2>/dev/null")
print("umount-tmp", "refused" if r else "done", flush=True)
EOF

# ---- uid 0 ----
out=$(cd "$P" && timeout 60 "$SLUICE" run --name "$NAME" --user root --writable "$W" --run-dir "$T/run" \
	--ca-dir "$T/ca" -- "$PY" probe.py 2>"$T/root.err") || sl_fail "sluice run as root failed: $(cat "$T/root.err") $out"
echo "$out" >"$T/root.out"
sl_log "root probe: $(echo "$out" | tr '\n' ';')"
sl_assert_contains "$out" "etc error EROFS" "uid 0: writing /etc/sluice-test-x fails with EROFS"
sl_assert_contains "$out" "crond error EROFS" "uid 0: writing /etc/cron.d/x fails with EROFS"
sl_assert_contains "$out" "usrlocal error EROFS" "uid 0: writing /usr/local/bin/x fails with EROFS"
for f in /etc/sluice-test-x /etc/cron.d/sluice-test-x /usr/local/bin/sluice-test-x; do
	[ ! -e "$f" ] || sl_fail "$f appeared on the host"
done
sl_ok "nothing appeared in /etc, /etc/cron.d, /usr/local/bin"
sl_assert_contains "$out" "shadow bytes 0" "uid 0: /etc/shadow reads empty"
sl_assert_contains "$out" "gshadow bytes 0" "uid 0: /etc/gshadow reads empty"
sl_assert_contains "$out" "cwd written" "uid 0: the current directory is writable"
sl_assert_eq x "$(cat "$P/inproj-$$" 2>/dev/null)" "the file written in the current directory is on the host"
sl_assert_contains "$out" "writable written" "uid 0: the --writable directory is writable"
sl_assert_eq x "$(cat "$W/inw-$$" 2>/dev/null)" "the file written in the --writable directory is on the host"
sl_assert_contains "$out" "tmp written" "uid 0: /tmp is writable"
[ ! -e /tmp/sluice-rootfs-nobody-$$ ] || sl_fail "the sandbox's /tmp file appeared in the host's /tmp"
sl_ok "the sandbox's /tmp is not the host's (its file is not on the host)"
sl_assert_contains "$out" "hostmark error ENOENT" "uid 0: the host's /tmp files are not in the sandbox's /tmp"
sl_assert_contains "$out" "tmpls ['$(basename "$T")']" "uid 0: /tmp holds only the way to the kept paths"
sl_assert_contains "$out" "shm written" "uid 0: /dev/shm is writable"
[ ! -e /dev/shm/sluice-rootfs-$$ ] || { rm -f /dev/shm/sluice-rootfs-$$; sl_fail "the sandbox's /dev/shm is the host's"; }
sl_ok "the sandbox's /dev/shm is private"
for t in / /etc /tmp; do
	sl_assert_contains "$out" "remount $t refused" "uid 0: remounting $t read-write is refused"
done
sl_assert_contains "$out" "umount-tmp refused" "uid 0: unmounting the private /tmp is refused"

rm -f "$P/inproj-$$" "$W/inw-$$"

# ---- refusals: fail closed ----
rm -f "$T/ran"
err=$(cd "$P" && timeout 30 "$SLUICE" run --name "$NAME" --user root --writable / --run-dir "$T/run" \
	--ca-dir "$T/ca" -- touch "$T/ran" 2>&1) && sl_fail "--writable / was accepted: $err"
sl_assert_contains "$err" "--writable /: refused" "--writable / is refused with a reason"
err=$(cd "$P" && timeout 30 "$SLUICE" run --name "$NAME" --user root --writable "$T/missing" --run-dir "$T/run" \
	--ca-dir "$T/ca" -- touch "$T/ran" 2>&1) && sl_fail "a missing --writable path was accepted: $err"
sl_assert_contains "$err" "--writable $T/missing: No such file or directory" "a missing --writable path refuses to run"
[ ! -e "$T/ran" ] || sl_fail "the command ran although sluice refused"
sl_ok "the command never ran when sluice refused"

# ---- nobody: unchanged (the host's /tmp, its own permissions) ----
rm -f /tmp/sluice-rootfs-nobody-$$
out=$(cd "$P" && timeout 60 "$SLUICE" run --name "$NAME" --user nobody --run-dir "$T/run" --ca-dir "$T/ca" -- \
	"$PY" probe.py 2>"$T/nobody.err") || sl_fail "sluice run as nobody failed: $(cat "$T/nobody.err") $out"
sl_log "nobody probe: $(echo "$out" | grep -v ^tmpls | tr '\n' ';')"
sl_assert_contains "$out" "etc error EACCES" "nobody: /etc refused by permissions (not a read-only mount)"
sl_assert_contains "$out" "hostmark bytes 5" "nobody: the host's /tmp is visible"
sl_assert_eq x "$(cat /tmp/sluice-rootfs-nobody-$$ 2>/dev/null)" "nobody: its /tmp file is in the host's /tmp"
rm -f /tmp/sluice-rootfs-nobody-$$

# ---- nobody --readonly-root: the same lockdown as uid 0 ----
out=$(cd "$P" && timeout 60 "$SLUICE" run --name "$NAME" --user nobody --readonly-root --run-dir "$T/run" \
	--ca-dir "$T/ca" -- "$PY" probe.py 2>"$T/ro.err") || sl_fail "sluice run --readonly-root failed: $(cat "$T/ro.err") $out"
sl_assert_contains "$out" "etc error EROFS" "--readonly-root: /etc is a read-only mount"
sl_assert_contains "$out" "hostmark error ENOENT" "--readonly-root: /tmp is private"
sl_assert_contains "$out" "cwd written" "--readonly-root: the current directory stays writable"
[ ! -e /tmp/sluice-rootfs-nobody-$$ ] || sl_fail "--readonly-root: the /tmp file reached the host"
sl_pass
