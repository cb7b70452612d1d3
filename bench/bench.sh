#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make bench: direct vs sluice vs nginx vs haproxy vs mitmproxy, side by side, with wrk.
# Grown from ../shared/bench/anchors.sh (same cases, same accounting), plus sluice measured the way
# users run it: wrk inside `sluice run`, dialling https://api.test/..., redirected by the kernel.
#
# Placement (all targets measured alike): the HTTPS upstream (nginx) runs in netns $NS_UP at
# 10.77.0.2:443; every client (wrk) and every proxy runs in netns $NS_AG (10.77.0.1), on loopback.
#   direct     wrk -> https://10.77.0.2
#   nginx      wrk -> https://127.0.0.1:9443 (TLS re-encrypting reverse proxy, upstream keepalive)
#   haproxy    wrk -> https://127.0.0.1:7443 (same)
#   mitmproxy  wrk -> https://127.0.0.1:8443 (reverse mode)
#   sluice     nsenter --net=$NS_AG sluice run --upstream-ca ca.crt --resolve api.test:10.77.0.2
#                  --allow api.test -- wrk https://api.test/...
#              `sluice run` enters only the network namespace (nsenter, not `ip netns exec`, which
#              remounts /sys and would hide the cgroup and bpf filesystems), so sluiced starts and
#              binds loopback in $NS_AG like the other proxies, and the sandbox's DNS goes to it
#              (nothing in $NS_AG routes anywhere else).
# Cases: small     1 KiB body, keep-alive, C conns (16)
#        big       10 MiB body, keep-alive, CB conns (4)
#        close     1 KiB, "Connection: close": new TCP + resumed TLS per request, CC conns (8)
#        closefull like close, with LD_PRELOAD=nosess.so: full TLS handshake per request
# Per case and target: req/s, p50/p99, MB/s, errors, proxy CPU % and CPU us/request (process tree
# for the peers, every sluiced process in $NS_AG for sluice: measured from its start, so its startup
# is included), proxy peak RSS (sampled every 0.2 s), upstream CPU, ratio to direct. Median of REPS.
# Also wrk's own CPU per request, the upstream's, their sum with the proxy's, and the machine's idle
# time over exactly wrk's run (a wrapper, $W/wrkrun.sh): together they
# tell a CPU-bound row (no idle: cores / summed CPU per request caps the rate) from one bound by
# waiting. results.tsv also has the whole machine's CPU % (system_cpu_pct) over the measurement:
# for sluice that spans all of `sluice run` (sandbox set-up, broker start, the 0.6 s tail), not only
# wrk's D seconds, so it reads lower than the peers' for the same load.
#
# Usage (root): bench/bench.sh [all|setup|run|report|teardown]   (make bench = all)
# Env: BENCH_D (secs per wrk run, 5)  BENCH_REPS (1)  C CB CC  TARGETS CASES  W (work dir)
#      SLUICE / SLUICED (binaries, default build/sluice, build/sluiced)  OUT (report dir, build/bench)
# Traffic stays in the two namespaces this script creates; teardown (also on error/^C) kills what it
# started by PID and deletes the namespaces.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd); HERE=$ROOT/bench
OUT=${OUT:-$ROOT/build/bench}; W=${W:-$OUT/work}
D=${BENCH_D:-${D:-5}}; REPS=${BENCH_REPS:-${REPS:-1}}; C=${C:-16}; CB=${CB:-4}; CC=${CC:-8}
CASES=${CASES:-"small big close closefull"}
TARGETS=${TARGETS:-"direct sluice nginx haproxy mitmproxy"}
SLUICE=${SLUICE:-$ROOT/build/sluice}; SLUICED=${SLUICED:-$ROOT/build/sluiced}
NS_UP=${NS_UP:-slbench-up}; NS_AG=${NS_AG:-slbench-agent}
HZ=$(getconf CLK_TCK)
declare -A URL=( [direct]=https://10.77.0.2 [nginx]=https://127.0.0.1:9443 [haproxy]=https://127.0.0.1:7443
                 [mitmproxy]=https://127.0.0.1:8443 [sluice]=https://api.test )
AG="ip netns exec $NS_AG"
PY=/usr/bin/python3

die() { echo "bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (network namespaces, BPF); run: sudo make bench"
for t in wrk nginx haproxy mitmdump nsenter openssl gcc; do
  command -v $t >/dev/null || die "$t not found; run 'make deps' (it installs the Debian packages)"; done

# ---------- config writers ----------
write_confs() {
  cat > $W/up.conf <<EOC
worker_processes 1; pid $W/up.pid; error_log $W/up.err; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; ssl_protocols TLSv1.2 TLSv1.3;
 server { listen 10.77.0.2:443 ssl; ssl_certificate $W/up.crt; ssl_certificate_key $W/up.key; root $W/www; } }
EOC
  cat > $W/px.conf <<EOC
worker_processes 1; pid $W/px.pid; error_log $W/px.err; events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000; ssl_protocols TLSv1.2 TLSv1.3; upstream u { server 10.77.0.2:443; keepalive 64; }
 server { listen 127.0.0.1:9443 ssl; ssl_certificate $W/up.crt; ssl_certificate_key $W/up.key;
  location / { proxy_pass https://u; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_ssl_server_name on; proxy_ssl_name api.test; proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.2 TLSv1.3; proxy_buffering off; } } }
EOC
  cat > $W/hp.cfg <<EOC
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:7443 ssl crt $W/px.pem
  default_backend be
backend be
  http-reuse always
  server up 10.77.0.2:443 ssl verify none sni str(api.test)
EOC
}

# ---------- process helpers (by PID only) ----------
tree_pids() { # root pid + all descendants
  ps -e -o pid=,ppid= | awk -v r="$1" '{p[$1]=$2} END{s[r]=1;ch=1;while(ch){ch=0;for(k in p) if(!(k in s) && (p[k] in s)){s[k]=1;ch=1}} for(k in s) print k}'
}
cpu_ticks() { local t=0 p f; for p in "$@"; do f=$(cat /proc/$p/stat 2>/dev/null) || continue; f=${f##*) }; set -- $f; t=$((t + ${12} + ${13})); done; echo $t; }
rss_kb() { local t=0 p v; for p in "$@"; do v=$(awk '/^VmRSS/{print $2}' /proc/$p/status 2>/dev/null) || v=0; t=$((t + ${v:-0})); done; echo $t; }
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
pid_of() { [ -f $W/$1.pid ] && cat $W/$1.pid || true; }
kill_pidfile() { local p i; p=$(pid_of $1); [ -n "$p" ] || return 0; kill $p 2>/dev/null || true
  for i in $(seq 50); do kill -0 $p 2>/dev/null || break; sleep 0.1; done; kill -9 $p 2>/dev/null || true; rm -f $W/$1.pid; }
wait_url() { local i; for i in $(seq 100); do $AG curl -sk -o /dev/null --max-time 2 "$1/small" && return 0; sleep 0.2; done
  echo "bench: WARN: $1 is not answering" >&2; }
# sluiced processes living in our agent netns: sluice run may start the broker as a child or
# detach it, so it is found by namespace rather than by parentage or by name alone
sluiced_pids() { local ino p; ino=$(stat -L -c %i /run/netns/$NS_AG)
  for p in $(ps -e -o pid=,comm= | awk '$2=="sluiced"{print $1}'); do
    [ "$(stat -L -c %i /proc/$p/ns/net 2>/dev/null)" = "$ino" ] && echo $p; done; true; }

# The sampler runs beside the measured load, so it must not compete with it: after the target's
# pids are known it forks nothing (bash builtins only, a fifo read as its clock). An earlier one
# ran ps/awk/cat about 25 times a second for sluice and 10 for the peers, which took CPU from the
# two cores under test, unevenly. Writes "summed max CPU ticks per pid, peak summed RSS KiB" to
# $W/samp.$2 every 0.2 s. $1: pids, or "sluiced" to look them up (only until they appear).
sampler() {
  local pids=$1 t=$2 m=0 sum r p k v x l; local -A mx=()
  rm -f $W/tick.$t; mkfifo $W/tick.$t; exec 9<>$W/tick.$t
  [ "$pids" = sluiced ] && pids=""
  while :; do
    if [ -z "$pids" ] && [ $t = sluice ]; then pids=$(sluiced_pids); fi
    r=0; sum=0
    for p in $pids; do
      while read -r k v x; do [ "$k" = VmRSS: ] && { r=$((r + v)); break; }; done 2>/dev/null < /proc/$p/status || :
      if read -r l 2>/dev/null < /proc/$p/stat; then l=${l##*) }; set -- $l; v=$((${12} + ${13}))
        [ $v -gt ${mx[$p]:-0} ] && mx[$p]=$v; fi
    done
    for p in "${!mx[@]}"; do sum=$((sum + mx[$p])); done
    [ $r -gt $m ] && m=$r
    echo "$sum $m" > $W/samp.$t
    read -t 0.2 -u 9 x || :
  done
}

# ---------- targets ----------
start_upstream() { ip netns exec $NS_UP nginx -c $W/up.conf; }
start_nginx() { $AG nginx -c $W/px.conf; }
start_haproxy() { $AG haproxy -f $W/hp.cfg -D -p $W/haproxy.pid; }
start_mitmproxy() { # default settings (bodies buffered in full, certs minted from its CA and cached)
  ( $AG mitmdump -q --mode reverse:https://10.77.0.2:443 --listen-host 127.0.0.1 -p 8443 \
      --set ssl_insecure=true --set confdir=$W/mitm >>$W/mitm.log 2>&1 & echo $! > $W/mitmproxy.pid ); }

# the sandboxed command line: wrk inside sluice run; the sleep keeps the broker alive for a last
# CPU/RSS sample after wrk ends (it is idle by then)
SL_SANDBOX_RUN=()
sluice_cmd() { # preload wrk-args... -> argv in SL_SANDBOX_RUN
  local pre=$1; shift
  SL_SANDBOX_RUN=(nsenter --net=/run/netns/$NS_AG -- "$SLUICE" run --upstream-ca "$W/ca.crt"
    --resolve api.test:10.77.0.2 --allow api.test -- $W/wrkrun.sh 0.6 env ${pre:+LD_PRELOAD=$pre} wrk "$@")
}
# Checks once that build/sluice can carry a request; the reason goes into the report otherwise.
probe_sluice() {
  rm -f $W/unavailable.sluice
  local why=""
  if [ -n "${BENCH_BUILD_FAILED:-}" ]; then why="'make all' failed at this commit (see its output above)"
  elif [ ! -x "$SLUICE" ]; then why="$SLUICE not built (make)"
  elif [ ! -x "$SLUICED" ]; then why="$SLUICED not built (make)"
  else
    local out rc=0
    out=$(timeout 30 nsenter --net=/run/netns/$NS_AG -- "$SLUICE" run --upstream-ca "$W/ca.crt" \
      --resolve api.test:10.77.0.2 --allow api.test -- \
      curl -sS -o /dev/null -w 'HTTP %{http_code}\n' --max-time 10 https://api.test/small 2>&1) || rc=$?
    echo "$out" > $W/probe.sluice.log
    if [ $rc -ne 0 ] || ! grep -q '^HTTP 200$' <<<"$out"; then
      why="probe 'sluice run -- curl https://api.test/small' failed (rc=$rc): $(grep -v '^$' <<<"$out" | tail -n 1 | cut -c1-200)"
    fi
  fi
  if [ -n "$why" ]; then echo "$why" > $W/unavailable.sluice; echo "bench: sluice not available: $why" >&2; fi
}

stop_all() { for n in mitmproxy haproxy px up; do kill_pidfile $n; done; }
start_all() {
  write_confs; start_upstream
  local t
  for t in $TARGETS; do case $t in direct) ;; sluice) probe_sluice ;; *) start_$t ;; esac; done
  for t in $TARGETS; do case $t in sluice) ;; *) wait_url ${URL[$t]} ;; esac; done
}

setup() {
  mkdir -p $W/www; chmod 755 $OUT $W $W/www; cd $W
  ip netns add $NS_UP; ip netns add $NS_AG
  ip link add slb-a netns $NS_AG type veth peer name slb-u netns $NS_UP
  ip -n $NS_AG addr add 10.77.0.1/24 dev slb-a; ip -n $NS_UP addr add 10.77.0.2/24 dev slb-u
  local n; for n in $NS_AG $NS_UP; do ip -n $n link set lo up; done
  ip -n $NS_AG link set slb-a up; ip -n $NS_UP link set slb-u up
  [ -f ca.key ] && [ -f www/big ] || {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 30 -subj /CN=sluice-bench-ca 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout up.key -out up.csr -subj /CN=api.test 2>/dev/null
    printf 'subjectAltName=DNS:api.test,IP:10.77.0.2,IP:127.0.0.1\n' > ext
    openssl x509 -req -in up.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out up.crt -days 30 -extfile ext 2>/dev/null
    head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > www/small
    head -c 10485760 /dev/urandom > www/big
  }
  chmod 644 ca.crt www/small www/big
  cat up.crt up.key > px.pem
  gcc -O2 -shared -fPIC -o $W/nosess.so $HERE/nosess.c -ldl -lssl
  chmod 755 $W/nosess.so
  write_wrkrun
  start_all
}

# wrk's own CPU time and the machine's idle time over exactly wrk's run (inside `sluice run` too,
# where the sandbox can still read /proc/stat): they show whether a row was bound by CPU (no idle
# left, so client + proxy + upstream CPU per request sets the rate) or by waiting.
# Usage: wrkrun.sh TAIL_SECS CMD... (TAIL_SECS: stay alive after CMD, for a last broker sample)
write_wrkrun() {
  cat > $W/wrkrun.sh <<'EOS'
#!/bin/bash
tail=$1; shift
read -r c0 < /proc/stat
"$@"; rc=$?
read -r c1 < /proc/stat
echo "SLB_STAT0 $c0"; echo "SLB_STAT1 $c1"
echo SLB_TIMES; times  # in this shell, not a subshell: its second line is wrk's user and sys
[ "$tail" = 0 ] || sleep "$tail"
exit $rc
EOS
  chmod 755 $W/wrkrun.sh
}

# ---------- one measurement ----------
parse_wrk() { # out -> globals
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$1"); p50=$(awk '$1=="50%"{print $2}' <<<"$1"); p99=$(awk '$1=="99%"{print $2}' <<<"$1")
  tr=$(awk '/Transfer\/sec/{print $2}' <<<"$1"); reqs=$(awk '/requests in/{print $1}' <<<"$1")
  errs=$(awk -F'[ ,]+' '/Socket errors/{print $4+$6+$8+$10}' <<<"$1"); non2xx=$(awk '/Non-2xx/{print $NF}' <<<"$1")
}

measure() { # run case target
  local run=$1 cs=$2 t=$3 path=small c=$C extra=() url out ppids upids c0=0 c1=0 u0 u1 samp rss s0 s1 pre=""
  local rps p50 p99 tr reqs errs non2xx
  case $cs in big) path=big; c=$CB;; close) c=$CC; extra=(-H "Connection: close");;
              closefull) c=$CC; extra=(-H "Connection: close"); pre=$W/nosess.so;; esac
  url=${URL[$t]}/$path
  if [ $t = sluice ] && [ -f $W/unavailable.sluice ]; then
    printf '%s\t%s\t%s\t%s\tNA\t-\t-\t-\t0\t0\t0\t-\t-\t-\t-\t-\t-\t-\t-\n' $run $cs $t $c | tee -a $W/results.tsv; return 0; fi
  upids=$(tree_pids $(pid_of up)); u0=$(cpu_ticks $upids); s0=$(sys_busy)
  local wrk_args=(-t1 -c$c -d${D}s --latency "${extra[@]}" $url)
  if [ $t = sluice ]; then
    sluice_cmd "$pre" "${wrk_args[@]}"
    # per-pid max CPU ticks (a pid's ticks only grow) and peak summed RSS of the sluiced processes
    sampler sluiced $t & samp=$!
    local rc=0
    out=$("${SL_SANDBOX_RUN[@]}" 2>&1) || rc=$?
    kill $samp 2>/dev/null || true; wait $samp 2>/dev/null || true
    read -r c1 rss < $W/samp.$t || { c1=0; rss=0; }; rm -f $W/tick.$t
    [ $rc -eq 0 ] || echo "bench: sluice run exited $rc for case $cs (output in $W/wrk.$run.$cs.$t.txt)" >&2
    ppids=sluiced
  else
    ppids=""; [ $t != direct ] && { local rp; rp=$(pid_of $([ $t = nginx ] && echo px || echo $t)); [ -n "$rp" ] && ppids=$(tree_pids $rp); }
    c0=$(cpu_ticks $ppids)
    sampler "$ppids" $t & samp=$!
    out=$($AG $W/wrkrun.sh 0 env ${pre:+LD_PRELOAD=$pre} wrk "${wrk_args[@]}" 2>&1) || true
    c1=$(cpu_ticks $ppids)
    kill $samp 2>/dev/null || true; wait $samp 2>/dev/null || true
    rss=$(awk '{print $2}' $W/samp.$t 2>/dev/null || echo 0); rm -f $W/tick.$t
  fi
  u1=$(cpu_ticks $upids); s1=$(sys_busy)
  echo "$out" > $W/wrk.$run.$cs.$t.txt
  parse_wrk "$out"
  local cpu_pct="-" cpu_us="-" up_pct sys_pct
  [ -n "$ppids" ] && { cpu_pct=$(awk -v a=$c0 -v b=$c1 -v hz=$HZ -v d=$D 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
                       cpu_us=$(awk -v a=$c0 -v b=$c1 -v hz=$HZ -v n=${reqs:-0} 'BEGIN{printf "%.0f", n? (b-a)/hz*1e6/n : 0}'); }
  up_pct=$(awk -v a=$u0 -v b=$u1 -v hz=$HZ -v d=$D 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
  [ -n "$ppids" ] || rss="-"
  sys_pct=$(echo "$s0 $s1" | awk -v n=$(nproc) '{printf "%.0f", ($3-$1)/($4-$2)*100*n}')
  local up_us cl_us idle_pct
  up_us=$(awk -v a=$u0 -v b=$u1 -v hz=$HZ -v n=${reqs:-0} 'BEGIN{printf "%.0f", n? (b-a)/hz*1e6/n : 0}')
  # wrk's user+sys ("XmY.YYYs XmY.YYYs" from bash's times) and idle+iowait share of the machine
  cl_us=$(awk -v n=${reqs:-0} '/^SLB_TIMES$/{k=3} k&&!--k{split($1,u,/[ms]/); split($2,s,/[ms]/)
          if (n) printf "%.0f", (u[1]*60+u[2]+s[1]*60+s[2])*1e6/n}' <<<"$out")
  idle_pct=$(awk -v n=$(nproc) '/^SLB_STAT0/{for(i=3;i<=10;i++)a[i]=$i} /^SLB_STAT1/{for(i=3;i<=10;i++){d=$i-a[i];t+=d;if(i==6||i==7)id+=d}}
             END{if (t) printf "%.0f", id/t*100*n}' <<<"$out")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' $run $cs $t $c ${rps:-0} ${p50:--} ${p99:--} ${tr:--} ${reqs:-0} ${errs:-0} ${non2xx:-0} $cpu_pct $cpu_us ${rss:-0} $up_pct $sys_pct ${cl_us:--} ${up_us:--} ${idle_pct:--} | tee -a $W/results.tsv
}

run() {
  local run=${RUN:-r$(date +%H%M%S)} cs t
  [ -f $W/results.tsv ] || printf 'run\tcase\ttarget\tconns\trps\tp50\tp99\ttransfer_s\treqs\tsock_err\tnon2xx\tproxy_cpu_pct\tproxy_cpu_us_per_req\tproxy_rss_peak_kb\tupstream_cpu_pct\tsystem_cpu_pct\tclient_cpu_us_per_req\tupstream_cpu_us_per_req\tidle_pct\n' > $W/results.tsv
  for cs in $CASES; do for t in $TARGETS; do measure $run $cs $t; done; done
}

report() {
  { echo "# sluice bench"
    echo
    echo "\`make bench\` (BENCH_D=$D BENCH_REPS=$REPS) on $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores,"
    echo "commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'). Raw rows: $W/results.tsv; wrk output: $W/wrk.*.txt."
    echo "Upstream nginx in netns $NS_UP; wrk and every proxy in netns $NS_AG; sluice as \`sluice run --allow api.test -- wrk https://api.test/...\`."
    echo
  } > $OUT/report.md
  $PY - "$W/results.tsv" "$W/unavailable.sluice" >> $OUT/report.md <<'EOPY'
import sys, csv, os, statistics as st, re
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
na = open(sys.argv[2]).read().strip() if os.path.exists(sys.argv[2]) else None
# issue 4's targets for sluice (ratio of direct req/s)
goal = {'small': 0.56, 'big': 0.80, 'close': 0.90, 'closefull': 0.95}
def ms(v):
    m = re.match(r'([\d.]+)(us|ms|s)$', v or '')
    return float(m.group(1)) * {'us': 1e-3, 'ms': 1, 's': 1e3}[m.group(2)] if m else float('nan')
def mbs(v):
    m = re.match(r'([\d.]+)([KMG]?B)$', v or '')
    return float(m.group(1)) * {'B': 1 / 2**20, 'KB': 1 / 1024, 'MB': 1, 'GB': 1024}[m.group(2)] if m else float('nan')
def num(v):
    try: return float(v)
    except (TypeError, ValueError): return float('nan')
def med(xs):
    xs = [x for x in xs if x == x]
    return st.median(xs) if xs else float('nan')
fmt = lambda x, p=1: '-' if x != x else f"{x:.{p}f}"
runs = sorted({r['run'] for r in rows}); cases = []; tg = []
for r in rows:
    if r['case'] not in cases: cases.append(r['case'])
    if r['target'] not in tg: tg.append(r['target'])
print(f"runs: {len(runs)}; values are medians across runs; req/s shown as median (min).")
print("CPU us/req = proxy CPU time / requests completed; for sluice: every sluiced process, counted from its start.")
print("wrk CPU us/req: wrk's own user+sys time; all three = wrk + proxy + upstream per request. Machine idle %: idle")
print(f"time of all {os.cpu_count()} cores during wrk's run ({os.cpu_count()}00 = all idle). With no idle left, the rate")
print("cannot exceed cores / (all three us/req); with idle left, the row was bound by waiting, not by CPU.\n")
for c in cases:
    print(f"### case {c}\n")
    print("| target | conns | req/s median (min) | p50 ms | p99 ms | MB/s | errors | proxy CPU % | proxy CPU us/req | proxy peak RSS MiB | upstream CPU % | wrk CPU us/req | upstream CPU us/req | all three us/req | machine idle % | ratio vs direct | issue-4 goal |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for t in tg:
        rs = [r for r in rows if r['case'] == c and r['target'] == t]
        if not rs: continue
        if t == 'sluice' and (na or all(r['rps'] == 'NA' for r in rs)):
            print(f"| sluice | {rs[0]['conns']} | not available: {na or 'no result'} |" + " |" * 14)
            continue
        rps = [num(r['rps']) for r in rs]; m = med(rps)
        if t == 'direct': base = m
        f = lambda k, fn=num: med([fn(r.get(k)) for r in rs])
        err = sum(int(num(r['sock_err']) or 0) + int(num(r['non2xx']) or 0) for r in rs)
        rss = f('proxy_rss_peak_kb') / 1024
        ratio = m / base if base else float('nan')
        px = 0.0 if t == 'direct' else f('proxy_cpu_us_per_req')
        all3 = f('client_cpu_us_per_req') + px + f('upstream_cpu_us_per_req')
        g = '-'
        if t == 'sluice' and c in goal and ratio == ratio:
            g = f"{goal[c]:.2f}: {'met' if ratio >= goal[c] else 'MISSED'}"
        print(f"| {t} | {rs[0]['conns']} | {m:.0f} ({min(rps):.0f}) | {fmt(f('p50', ms), 2)} | {fmt(f('p99', ms), 2)} | {fmt(f('transfer_s', mbs))} | {err} | {fmt(f('proxy_cpu_pct'), 0)} | {fmt(f('proxy_cpu_us_per_req'), 0)} | {fmt(rss)} | {fmt(f('upstream_cpu_pct'), 0)} | {fmt(f('client_cpu_us_per_req'), 0)} | {fmt(f('upstream_cpu_us_per_req'), 0)} | {fmt(all3, 0)} | {fmt(f('idle_pct'), 0)} | {fmt(ratio, 3)} | {g} |")
    print()
print("Goals for sluice (issue 4, one worker): small >= 0.56 of direct at <= 25 us broker CPU/req, big >= 0.80,")
print("close (resumed) >= 0.90, closefull >= 0.95, peak RSS <= 12 MiB.")
EOPY
  cat $OUT/report.md
}

teardown() {
  stop_all
  ip netns pids $NS_AG 2>/dev/null | while read -r p; do
    [ "$(ps -o comm= -p $p 2>/dev/null)" = sluiced ] && kill $p 2>/dev/null; done || true
  ip netns del $NS_AG 2>/dev/null || true; ip netns del $NS_UP 2>/dev/null || true
}

case ${1:-all} in
  setup) setup;; run) run;; report) report;; teardown) teardown;;
  all) mkdir -p $OUT $W; rm -f $W/results.tsv
       # a namespace left by an interrupted earlier run: remove ours (by name) before starting
       if ip netns list | grep -qw -e $NS_AG -e $NS_UP; then echo "bench: removing a previous run's namespaces" >&2; teardown; fi
       trap teardown EXIT INT TERM; setup
       for i in $(seq $REPS); do RUN=r$i run; done; report;;
  *) die "usage: bench/bench.sh [all|setup|run|report|teardown]";;
esac
