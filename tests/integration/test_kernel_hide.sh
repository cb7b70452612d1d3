#!/bin/bash
# SPDX-License-Identifier: MIT
# A uid 0 sandbox (--user root --writable "$T": owner permission checks pass on 0600 root
# files) cannot read sluice's secrets and keys: the CA directory, the policy
# (which may hold literal secrets), a secret's file source, the audit log,
# the broker's log and whatever else is in the run directory (only ca.crt and
# ca-bundle.pem stay, read-only). It has its own PID namespace: the broker and
# sluice are not in its /proc (so neither their environ nor a signal reaches
# them). The broker's messages go to <run-dir>/<name>/sluiced.log (0600), not
# to the sandbox's terminal; sluice says where in one line. Signals reach the
# command through the sandbox's init, and the exit status is the command's.
. "$(dirname "$0")/../lib.sh"
sl_begin kernel_hide
sl_need_bins "$SLUICE" "$SLUICED"

NAME=khide$$
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
sl_defer "[ -d $CG2/sluice/$NAME ] && { echo 1 >$CG2/sluice/$NAME/cgroup.kill; sleep 0.3; rmdir $CG2/sluice/$NAME; }"
sl_defer "rm -rf /sys/fs/bpf/sluice/$NAME"

export SL_HIDE_ENV=env-secret-$$
mkdir -p "$T/sec"
printf 'file-secret-%s\n' $$ >"$T/sec/token"
chmod 600 "$T/sec/token"
cat >"$T/policy.yaml" <<EOF
rules:
  - {action: allow, host: "api.test"}
secrets:
  LIT_TOKEN: {value: literal-secret-$$, hosts: [api.test], in: [header]}
  ENV_TOKEN: {env: SL_HIDE_ENV, hosts: [api.test], in: [header]}
  FILE_TOKEN: {file: $T/sec/token, hosts: [api.test], in: [header]}
EOF
chmod 600 "$T/policy.yaml"

cat >"$T/probe.sh" <<'EOF'
T=$1
try() { # name file: print "name ok <first bytes>" or "name error"
	if v=$(head -c 40 "$2" 2>/dev/null) && [ -n "$v" ]; then echo "$1 ok $v"; else echo "$1 error"; fi
}
try cakey "$T/ca/ca.key"
try cacrt_private "$T/ca/ca.crt"
try policy "$T/policy.yaml"
try secretfile "$T/sec/token"
try audit "$T/audit.log"
try brokerlog "$T/run/$2/sluiced.log"
try bundle "$T/run/ca-bundle.pem"
try pubcrt "$T/run/ca.crt"
try rawdisk "$4"
head -c 8 /dev/urandom 2>/dev/null | wc -c | sed 's/^/urandom /'
echo x 2>/dev/null >/dev/null && echo "devnull ok" || echo "devnull error"
echo "rundir $(ls "$T/run" | tr '\n' ' ')"
echo x 2>/dev/null >"$T/run/new" && echo "rundir writable" || echo "rundir readonly"
echo "init $(cat /proc/1/comm)"
tr '\0' '\n' </proc/1/environ 2>/dev/null | grep -c . | sed 's/^/init_environ_lines /'
head -c 1 /proc/1/mem 2>/dev/null >/dev/null && echo "initmem readable" || echo "initmem error"
bp=$(cat "$T/broker.pid")
[ -e "/proc/$bp" ] && echo "brokerproc visible" || echo "brokerproc absent"
kill -0 "$bp" 2>/dev/null && echo "brokerkill ok" || echo "brokerkill error"
grep -l "$3" /proc/[0-9]*/environ 2>/dev/null | sed 's/^/environ_hit /'
echo "procs $(ls -d /proc/[0-9]* | wc -l)"
echo ready >"$T/probe.done"
EOF

# A block device holding a secret, as a disk with the CA key would: a loop
# device over a file of the test's (root-owned 0600 node, like a real disk's).
printf 'disk-secret-%s\n' $$ >"$T/disk.img"
truncate -s 1M "$T/disk.img"
LOOPDEV=$(losetup -f --show "$T/disk.img") || sl_fail "losetup failed: cannot set up the test's loop device"
sl_defer "losetup -d $LOOPDEV"
head -c 40 "$LOOPDEV" | grep -q "disk-secret-$$" || sl_fail "test premise: $LOOPDEV should read back the marker"

# The sandboxed probe needs the broker's pid: the test reads it from
# `sluice status` while the command waits for it (bounded).
cat >"$T/inner.sh" <<EOF
for i in \$(seq 100); do [ -s "$T/broker.pid" ] && break; sleep 0.1; done
bash "$T/probe.sh" "$T" "$NAME" "$SL_HIDE_ENV" "$LOOPDEV"
EOF
timeout 60 "$SLUICE" run --name "$NAME" --user root --writable "$T" --policy "$T/policy.yaml" --run-dir "$T/run" --ca-dir "$T/ca" \
	--audit "$T/audit.log" -- bash "$T/inner.sh" >"$T/out" 2>"$T/err" &
RUNPID=$!
sl_defer "sl_kill_pid $RUNPID"
sl_wait_for sh -c "'$SLUICE' status | grep -q '^$NAME .*broker pid [0-9]* (alive'" || sl_fail "sandbox did not start: $(cat "$T/err")"
"$SLUICE" status | sed -n "s/^$NAME .*broker pid \([0-9]*\) (alive.*/\1/p" >"$T/broker.pid.tmp"
mv "$T/broker.pid.tmp" "$T/broker.pid"
BPID=$(cat "$T/broker.pid")
grep -qa "SL_HIDE_ENV=" "/proc/$BPID/environ" || sl_fail "test premise: the broker's environ should hold SL_HIDE_ENV"
wait $RUNPID; rc=$?
out=$(cat "$T/out"); err=$(cat "$T/err")
[ $rc = 0 ] || sl_fail "sluice run rc=$rc: $err $out"

sl_assert_contains "$out" "cakey error" "the CA key is unreadable"
sl_assert_contains "$out" "cacrt_private error" "the CA directory is hidden"
sl_assert_contains "$out" "policy error" "the policy file (literal secrets) is unreadable"
sl_assert_contains "$out" "secretfile error" "a secret's file source is unreadable"
sl_assert_contains "$out" "audit error" "the audit log is unreadable"
sl_assert_contains "$out" "brokerlog error" "the broker's log is unreadable"
sl_assert_contains "$out" "bundle ok -----BEGIN" "the CA bundle stays readable"
sl_assert_contains "$out" "pubcrt ok -----BEGIN" "the public CA certificate stays readable"
sl_assert_contains "$out" "rawdisk error" "a block device (a disk read raw) cannot be opened"
sl_assert_contains "$out" "urandom 8" "/dev/urandom still reads"
sl_assert_contains "$out" "devnull ok" "/dev/null still writes"
sl_assert_contains "$out" "rundir ca-bundle.pem ca.crt " "the run directory shows only the two public files"
sl_assert_contains "$out" "rundir readonly" "the run directory is read-only"
sl_assert_contains "$out" "init sluice" "the command runs in its own PID namespace (sluice's init is pid 1)"
sl_assert_contains "$out" "init_environ_lines 0" "the sandbox's init shows no environment (it started as a copy of sluice's)"
sl_assert_contains "$out" "initmem error" "the sandbox cannot read its init's memory"
sl_assert_contains "$out" "brokerproc absent" "the broker is not in the sandbox's /proc"
sl_assert_contains "$out" "brokerkill error" "the sandbox cannot signal the broker"
sl_assert_not_contains "$out" "environ_hit" "no environ in the sandbox's /proc holds the env secret"
for s in "literal-secret-$$" "file-secret-$$" "$SL_HIDE_ENV" "BEGIN PRIVATE" "disk-secret-$$"; do
	sl_assert_not_contains "$out" "$s" "no secret in the sandbox's output ($s)"
done
log=$T/run/$NAME/sluiced.log
[ -f "$log" ] || sl_fail "no broker log at $log"
sl_assert_eq 600 "$(stat -c %a "$log")" "the broker's log is 0600"
sl_assert_contains "$(cat "$log")" "listening on" "the broker's messages are in its log"
sl_assert_not_contains "$err" "sluiced:" "the broker's messages are not on the terminal"
sl_assert_contains "$err" "logs to $log" "sluice says where the broker logs"

# A policy and a secret file kept in a directory named sluice as symlinks (a
# dotfile manager's layout) are hidden where they really are, and a sandbox
# started from inside a hidden directory is refused (it would read it through
# its working directory). Files readable by nobody stand in for the caller's.
mkdir -p "$T/cfg/sluice" "$T/dotfiles"
printf 'dot-secret-%s\n' $$ >"$T/dotfiles/token"
printf 'rules:\n  - {action: allow, host: "api.test"}\nsecrets:\n  DOT: {value: dotlit-%s, hosts: [api.test]}\n  DOTF: {file: %s, hosts: [api.test]}\n' \
	$$ "$T/cfg/sluice/token" >"$T/dotfiles/policy.yaml"
printf 'plain-%s\n' $$ >"$T/cfg/sluice/plain"
chmod 755 "$T/cfg" "$T/cfg/sluice" "$T/dotfiles"
chmod 644 "$T/dotfiles/token" "$T/dotfiles/policy.yaml" "$T/cfg/sluice/plain"
ln -s ../../dotfiles/policy.yaml "$T/cfg/sluice/policy.yaml"
ln -s ../../dotfiles/token "$T/cfg/sluice/token"
out=$(timeout 60 "$SLUICE" run --name "$NAME" --policy "$T/cfg/sluice/policy.yaml" --run-dir "$T/run" --ca-dir "$T/ca" -- \
	sh -c "cat '$T/dotfiles/policy.yaml' || echo dotpolicy-hidden; cat '$T/dotfiles/token' || echo dottoken-hidden" 2>&1)
sl_assert_contains "$out" "dotpolicy-hidden" "a policy symlinked from a sluice directory is hidden where it really is"
sl_assert_contains "$out" "dottoken-hidden" "a secret file symlinked from a sluice directory is hidden where it really is"
for v in "dotlit-$$" "dot-secret-$$"; do
	sl_assert_not_contains "$out" "$v" "the symlinked files' secrets stay out of the sandbox ($v)"
done
out=$(cd "$T/cfg/sluice" && timeout 60 "$SLUICE" run --name "$NAME" --policy "$T/cfg/sluice/policy.yaml" --run-dir "$T/run" \
	--ca-dir "$T/ca" -- sh -c "cat ./plain" 2>&1); rc=$?
sl_assert_not_contains "$out" "plain-$$" "started from inside a hidden directory, the sandbox cannot read it through its cwd"
[ $rc != 0 ] || sl_fail "sluice run from inside a hidden directory should refuse to run: $out"
sl_assert_contains "$out" "cd to the project first" "the refusal says what to do"

# A uid 0 sandbox started in a home directory cannot write its dotfiles (they
# run outside later): a home is not a project, so it stays read-only.
FAKEHOME=/home/slhome$$
mkdir -p "$FAKEHOME"
sl_defer "rm -rf $FAKEHOME"
out=$(cd "$FAKEHOME" && timeout 60 "$SLUICE" run --name "$NAME" --user root --run-dir "$T/run" --ca-dir "$T/ca" -- \
	sh -c 'echo x 2>/dev/null >>.bashrc && echo "homewrite ok" || echo "homewrite refused"' 2>&1)
sl_assert_contains "$out" "homewrite refused" "a uid 0 sandbox started in a home directory cannot write its dotfiles"
sl_assert_contains "$out" "is not a project directory" "sluice says why the home directory stays read-only"
[ ! -e "$FAKEHOME/.bashrc" ] || sl_fail "a .bashrc appeared in $FAKEHOME"

# Host daemons' sockets that would act for the sandbox outside it are hidden:
# the user's session bus (systemd-run --user starts units outside the
# sandbox's cgroup) and the system bus (systemd-resolved resolves any name).
# Stand-in listeners at their paths, created only where nothing is.
probe='import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("bus", s.recv(64).decode().strip())
except OSError as e:
    print("bus error", e.errno)'
bus_case() { # dir socket-path label
	local dir=$1 path=$2 label=$3 o
	if [ -e "$path" ]; then
		sl_fail "$path exists on this host: the test needs to own it (run on a clean machine)"
		return
	fi
	[ -e "$(dirname "$dir")" ] || { mkdir "$(dirname "$dir")"; sl_defer "rmdir $(dirname "$dir")"; }
	[ -e "$dir" ] || { mkdir "$dir"; chown 65534 "$dir"; chmod 755 "$dir"; sl_defer "rm -rf $dir"; }
	sl_bg "bus-$label" "$PY" -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"HOSTBUS\n"); c.close()
' "$path"
	sl_defer "rm -f $path"
	sl_wait_for test -S "$path" || sl_fail "the stand-in $label did not start"
	o=$(setpriv --reuid 65534 --regid 65534 --clear-groups "$PY" -c "$probe" "$path")
	sl_assert_contains "$o" "bus HOSTBUS" "outside: the stand-in $label answers uid 65534"
	o=$(timeout 60 "$SLUICE" run --name "$NAME" --run-dir "$T/run" --ca-dir "$T/ca" -- "$PY" -c "$probe" "$path" 2>&1)
	sl_assert_contains "$o" "bus error" "the sandbox (uid 65534) cannot reach the $label"
	sl_assert_not_contains "$o" "HOSTBUS" "nothing came back from the $label"
}
bus_case /run/user/65534 /run/user/65534/bus "session bus"
bus_case /run/dbus /run/dbus/system_bus_socket "system bus"

# Signals go through the sandbox's init to the command; its status comes back.
cat >"$T/sig.py" <<EOF
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))
open("$T/sig.ready", "w").write(str(os.getpid()))
time.sleep(30)
sys.exit(1)
EOF
timeout 60 "$SLUICE" run --name "$NAME" --user root --writable "$T" --run-dir "$T/run" --ca-dir "$T/ca" -- "$PY" "$T/sig.py" \
	>"$T/sig.out" 2>"$T/sig.err" &
RUNPID=$!
sl_defer "sl_kill_pid $RUNPID"
sl_wait_for test -s "$T/sig.ready" || sl_fail "signal probe did not start: $(cat "$T/sig.err")"
SLPID=$(pgrep -P $RUNPID -x sluice)
[ -n "$SLPID" ] || sl_fail "no sluice process under $RUNPID"
kill -TERM "$SLPID"
wait $RUNPID; rc=$?
sl_assert_eq 42 "$rc" "SIGTERM reached the command through the sandbox's init ($(cat "$T/sig.err"))"
sl_pass
