#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The sockmap short-cut experiment (README.md here). Root only.
#   run.sh reader [N]   blocking_reader.py N times (10) with ROLE=3, 1 and 2, and without
#   run.sh backlog      unread_backlog.py with and without the short-cut
#   run.sh bench [N]    N pairs (3) of bench/bench.sh small case, direct and sluice, on / off
# reader and backlog attach to a cgroup of their own; bench attaches sockops to the cgroup v2
# root for its runs (only 127.0.0.1 <-> 127.0.0.1 pairs are touched) and detaches on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../../.." && pwd)
PIN=/sys/fs/bpf/sluice-sockmap-exp; TMP=$(mktemp -d); chmod 755 "$TMP" # the upstream nginx reads its files
CG2=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$CG2" ] || { echo "run.sh: no cgroup2 mount in /proc/self/mountinfo" >&2; exit 1; }
CG=$CG2/sluice-sockmap-exp.$$; ATTACHED=

cleanup() {
  [ -n "$ATTACHED" ] && bpftool cgroup detach "$ATTACHED" sock_ops pinned $PIN/ops 2>/dev/null
  rm -rf "$PIN" "$TMP"; [ -d "$CG" ] && rmdir "$CG" 2>/dev/null
  return 0
}
trap cleanup EXIT

load() {  # $1 = ROLE
  [ -n "$ATTACHED" ] && { bpftool cgroup detach "$ATTACHED" sock_ops pinned $PIN/ops; ATTACHED=; }
  rm -rf "$PIN"; mkdir -p "$PIN"
  clang -O2 -g -target bpf -DROLE="$1" -I"$ROOT/vmlinux" -c "$HERE/shortcut.bpf.c" -o "$TMP/sc.o"
  bpftool prog loadall "$TMP/sc.o" "$PIN" pinmaps "$PIN/maps" >/dev/null
  mv "$PIN/shortcut_ops" "$PIN/ops"; mv "$PIN/shortcut_msg" "$PIN/msg"
  bpftool prog attach pinned $PIN/msg msg_verdict pinned $PIN/maps/pairs
}
attach() { bpftool cgroup attach "$1" sock_ops pinned $PIN/ops multi; ATTACHED=$1; }
detach() { bpftool cgroup detach "$ATTACHED" sock_ops pinned $PIN/ops; ATTACHED=; }
counts() { bpftool map dump pinned $PIN/maps/counts | awk '/"value"/ { gsub(/[^0-9]/, ""); v = v " " $0 } END { print "sockets added, short-cut, on TCP:" v }'; }
in_cg() { mkdir -p "$CG"; (echo $BASHPID > "$CG/cgroup.procs"; exec "$@"); }

case ${1:-} in
reader)
  n=${2:-10}
  for role in none 3 1 2; do
    if [ $role != none ]; then load $role; mkdir -p "$CG"; attach "$CG"; fi
    bad=0; for _ in $(seq "$n"); do
      r=$(in_cg timeout 30 python3 "$HERE/blocking_reader.py" 2>&1 | tail -n 1) || true
      [ "$r" = ok ] || { bad=$((bad + 1)); last=$r; }
    done
    echo "ROLE=$role: $((n - bad)) of $n ok${last:+ (last failure: $last)}"; last=
    [ $role != none ] && { counts; detach; }
  done ;;
backlog)
  echo "TCP:        $(in_cg python3 "$HERE/unread_backlog.py")"
  load 3; mkdir -p "$CG"; attach "$CG"
  echo "short-cut:  $(in_cg python3 "$HERE/unread_backlog.py")"; counts ;;
bench)
  n=${2:-3}; export OUT=$TMP/bench W=$TMP/bench/work TARGETS="direct sluice" CASES=small BENCH_REPS=1
  load 3; bash "$ROOT/bench/bench.sh" setup >/dev/null || { tail -n 5 "$W/probe.sluice.log"; exit 1; }
  trap 'bash "$ROOT/bench/bench.sh" teardown >/dev/null 2>&1; cleanup' EXIT
  for _ in $(seq "$n"); do for mode in on off; do
    [ $mode = on ] && attach "$CG2"
    bash "$ROOT/bench/bench.sh" run >/dev/null 2>&1
    [ $mode = on ] && detach
    tail -n 2 "$W/results.tsv" | awk -F'\t' -v m=$mode '
      $3 == "direct" { d = $5 } $3 == "sluice" { s = $5; c = $13; w = $17 }
      END { printf "short-cut %-3s  sluice/direct %.3f  sluiced %s us/req  wrk %s us/req\n", m, s / d, c, w }'
  done; done; counts ;;
*) sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
