#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench-idle: broker memory per idle TLS connection (issue 4: <= 64 KiB with 10,000 open).
# A Python client inside `sluice run` opens N TLS connections to https://api.test (redirected to the
# broker by the kernel; the handshake is all, so no upstream is dialled and nothing leaves the host:
# api.test is pinned with --resolve to an address inside 10.99/16 that is never used), idles, and
# the broker's RSS is sampled before the first connection and after all are open and idle.
# Env: N (10000)  HOLD (secs idle after opening, 4)  SLUICE (build/sluice)  OUT (build/bench)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-10000}; HOLD=${HOLD:-4}; SLUICE=${SLUICE:-$ROOT/build/sluice}; OUT=${OUT:-$ROOT/build/bench}
PY=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "bench-idle: needs root (BPF, cgroups)" >&2; exit 1; }
[ -x "$SLUICE" ] || { echo "bench-idle: $SLUICE not built (make)" >&2; exit 1; }
mkdir -p "$OUT"
W=$(mktemp -d /tmp/sluice-bench-idle.XXXXXX); chmod 755 "$W"
RUNPID=""
cleanup() { [ -n "$RUNPID" ] && kill "$RUNPID" 2>/dev/null; rm -rf "$W"; }
trap cleanup EXIT INT TERM

cat >"$W/idle.py" <<'EOF'
import resource, socket, ssl, sys, time
n, hold = int(sys.argv[1]), float(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
time.sleep(1.5)                      # the broker's baseline RSS is sampled meanwhile
print("opening", flush=True)
ctx = ssl.create_default_context()   # trusts the broker's CA through the env sluice run sets
conns = [ctx.wrap_socket(socket.create_connection(("api.test", 443)), server_hostname="api.test")
         for _ in range(n)]
print("open", len(conns), flush=True)
time.sleep(hold)
print("done", flush=True)
EOF
chmod 644 "$W/idle.py"

"$SLUICE" run --resolve api.test:10.99.255.1 --allow api.test -- "$PY" "$W/idle.py" "$N" "$HOLD" \
	>"$W/client.log" 2>&1 &
RUNPID=$!
# the broker is the sluiced child of this sluice run
bpid=""
for _ in $(seq 50); do
	bpid=$(ps -e -o pid=,ppid=,comm= | awk -v p=$RUNPID '$2==p && $3=="sluiced"{print $1}')
	[ -n "$bpid" ] && break; sleep 0.1
done
[ -n "$bpid" ] || { echo "bench-idle: no broker under sluice run: $(cat "$W/client.log")" >&2; exit 1; }
rss() { awk '/^VmRSS/{print $2}' /proc/$bpid/status 2>/dev/null || echo 0; }
sleep 1; base=$(rss)
while kill -0 $RUNPID 2>/dev/null && ! grep -q '^open ' "$W/client.log"; do sleep 0.2; done
sleep $((HOLD / 2)); idle=$(rss); fds=$(ls /proc/$bpid/fd 2>/dev/null | wc -l)
wait $RUNPID || { echo "bench-idle: client failed: $(tail -3 "$W/client.log")" >&2; exit 1; }
RUNPID=""
opened=$(awk '/^open /{print $2}' "$W/client.log")
[ "${opened:-0}" = "$N" ] || { echo "bench-idle: only ${opened:-0} of $N connections opened" >&2; exit 1; }
per=$(awk -v a=$base -v b=$idle -v n=$N 'BEGIN{printf "%.1f", (b - a) / n}')
{ echo "# sluice bench: idle connections"
  echo
  echo "$N idle TLS connections inside \`sluice run\` (Python ssl client), broker RSS before: $((base / 1024)) MiB,"
  echo "with all open and idle ${HOLD}/2 s: $((idle / 1024)) MiB ($fds fds): **$per KiB per idle connection** (issue 4: <= 64)."
} | tee "$OUT/idle.md"
