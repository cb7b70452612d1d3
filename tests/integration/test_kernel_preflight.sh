#!/bin/bash
# SPDX-License-Identifier: MIT
# sluice refuses up front, naming the cause and the fix, when it cannot
# enforce: not root, root without CAP_SYS_ADMIN/CAP_BPF or CAP_NET_ADMIN
# (a container without --cap-add), and it creates nothing (no cgroup, no pins).
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_preflight
sl_need_bins "$SLUICE"
NAME=kpre$$
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
sl_defer "[ -d $CG2/sluice/$NAME ] && { echo 1 >$CG2/sluice/$NAME/cgroup.kill; sleep 0.3; rmdir $CG2/sluice/$NAME; }"
sl_defer "rm -rf /sys/fs/bpf/sluice/$NAME"
touch "$T/ran"; chmod 666 "$T/ran"

try() { # expected-rc-nonzero, then setpriv args...
	timeout 30 setpriv "$@" "$SLUICE" run --name "$NAME" --run-dir "$T/run" --ca-dir "$T/ca" -- \
		sh -c "echo ran >'$T/ran'" 2>&1
}
out=$(try --reuid=65534 --regid=65534 --clear-groups); rc=$?
[ $rc != 0 ] || sl_fail "as nobody: sluice run succeeded"
sl_assert_contains "$out" "needs root" "not root: says root is needed"
sl_assert_contains "$out" "sudo" "not root: says how"

out=$(try --bounding-set=-bpf,-sys_admin --inh-caps=-all); rc=$?
[ $rc != 0 ] || sl_fail "without CAP_SYS_ADMIN and CAP_BPF: sluice run succeeded"
sl_assert_contains "$out" "missing CAP_SYS_ADMIN" "no CAP_SYS_ADMIN: named"
sl_assert_contains "$out" "CAP_BPF" "no CAP_BPF: named"
sl_assert_contains "$out" "--cap-add" "missing capabilities: says how to grant them"
sl_assert_not_contains "$out" "CAP_NET_ADMIN" "CAP_NET_ADMIN is there: not named"

out=$(try --bounding-set=-net_admin --inh-caps=-all); rc=$?
[ $rc != 0 ] || sl_fail "without CAP_NET_ADMIN: sluice run succeeded"
sl_assert_contains "$out" "missing CAP_NET_ADMIN" "no CAP_NET_ADMIN: named"

sl_assert_eq "" "$(cat "$T/ran")" "the command never ran"
[ -d "$CG2/sluice/$NAME" ] && sl_fail "a cgroup was left at $CG2/sluice/$NAME"
[ -e "/sys/fs/bpf/sluice/$NAME" ] && sl_fail "pins were left at /sys/fs/bpf/sluice/$NAME"
sl_ok "nothing was created"

# The same as root with every capability runs (so the refusals above are the checks).
out=$(timeout 30 "$SLUICE" run --name "$NAME" --run-dir "$T/run" --ca-dir "$T/ca" --user root --writable "$T" -- sh -c "echo ran >'$T/ran'" 2>&1) ||
	sl_fail "as root: $out"
sl_assert_eq ran "$(cat "$T/ran")" "as root with all capabilities the command runs"
sl_pass
