#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench, end to end but short: bench/bench.sh with direct and sluice, the small case, 1 s each,
# in namespaces of its own. The report must carry a rate and no errors for both, the broker's CPU
# and RSS (read by the sampler), and wrk's own CPU per request and the machine's idle time (read by
# the wrapper around wrk, inside `sluice run` as well). A figure missing from the report means the
# bench can no longer tell a CPU-bound row from one bound by waiting.
. "$(dirname "$0")/../lib.sh"
sl_begin bench_smoke
sl_need_bins "$SLUICE" "$SLUICED"
for t in wrk nginx haproxy mitmdump; do
	command -v $t >/dev/null || sl_fail "$t not found: run 'make deps' (bench/bench.sh needs it)"
done

export NS_UP=slbt-up-$$ NS_AG=slbt-ag-$$
sl_defer "ip netns del $NS_UP"
sl_defer "ip netns del $NS_AG"
rc=0
OUT=$T/bench W=$T/bench/work BENCH_D=1 BENCH_REPS=1 CASES=small TARGETS="direct sluice" \
	timeout 180 bash "$SL_ROOT/bench/bench.sh" all >"$T/bench.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -30 "$T/bench.out" >&2; sl_fail "bench/bench.sh exited $rc"; }
! ip netns list | grep -qw -e "$NS_UP" -e "$NS_AG" || sl_fail "bench/bench.sh left its namespaces"

$PY - "$T/bench/report.md" <<'EOPY' || sl_fail "report incomplete (above); full report in $T/bench/report.md"
import sys
rows = {}
head = None
for line in open(sys.argv[1]):
    cells = [c.strip() for c in line.strip().strip('|').split('|')]
    if cells and cells[0] == 'target':
        head = cells
    elif head and cells and cells[0] in ('direct', 'sluice') and len(cells) == len(head):
        rows[cells[0]] = dict(zip(head, cells))
bad = []
def num(t, k):
    try:
        return float(rows[t][k].split()[0])
    except (KeyError, ValueError, IndexError):
        bad.append(f"{t}: '{k}' is {rows.get(t, {}).get(k)!r}")
        return 0.0
for t in ('direct', 'sluice'):
    if t not in rows:
        sys.exit(f"no '{t}' row in the report")
    if num(t, 'req/s median (min)') <= 0: bad.append(f"{t}: no requests")
    if num(t, 'errors') != 0: bad.append(f"{t}: errors")
    if num(t, 'wrk CPU us/req') <= 0: bad.append(f"{t}: no wrk CPU time")
    if num(t, 'upstream CPU us/req') <= 0: bad.append(f"{t}: no upstream CPU time")
    if not 0 <= num(t, 'machine idle %') <= 100 * 64: bad.append(f"{t}: idle out of range")
if num('sluice', 'proxy CPU us/req') <= 0: bad.append("sluice: no broker CPU time")
if num('sluice', 'proxy peak RSS MiB') <= 0: bad.append("sluice: no broker RSS")
s = rows['sluice']
if abs(num('sluice', 'all three us/req') - num('sluice', 'wrk CPU us/req') - num('sluice', 'proxy CPU us/req')
       - num('sluice', 'upstream CPU us/req')) > 2:
    bad.append("sluice: 'all three' is not wrk + proxy + upstream")
if bad:
    sys.exit("\n".join(bad))
print(f"direct {rows['direct']['req/s median (min)']} req/s, sluice {s['req/s median (min)']} req/s, "
      f"wrk {s['wrk CPU us/req']} + broker {s['proxy CPU us/req']} + upstream {s['upstream CPU us/req']} us/req, "
      f"idle {s['machine idle %']}%")
EOPY
sl_pass
