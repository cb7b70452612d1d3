#!/bin/bash
# SPDX-License-Identifier: MIT
# sluiced streaming and connection reuse, without the kernel part (--origdst-fixed):
# a 50 MiB HTTPS download through the broker from an nginx in the test's namespace
# must arrive intact and take no more than 3x the direct download (a broker that
# stalls on backpressure or waits for a lost wake-up takes seconds), several in
# parallel too; keep-alive requests must keep working after the upstream closed
# the pooled connection behind the broker's back; the header timeout (408) must
# also hold for a second request on a keep-alive connection (slowloris).
. "$(dirname "$0")/../lib.sh"
sl_begin broker_stream
sl_need_bins "$SLUICED"
command -v nginx >/dev/null || sl_fail "nginx not found: run make deps (nginx-light)"
fi_up

# nginx in the fake internet on 4443: fast enough that the broker is what is measured.
mkdir -p "$T/www" "$T/ngx"
head -c $((50 * 1024 * 1024)) /dev/urandom >"$T/www/big"
printf 'hello\n' >"$T/www/small"
chmod -R a+rX "$T/www"
cat >"$T/ngx/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $T/ngx/nginx.pid; error_log $T/ngx/error.log;
events { worker_connections 256; }
http {
  access_log off; client_body_temp_path $T/ngx; proxy_temp_path $T/ngx; fastcgi_temp_path $T/ngx;
  uwsgi_temp_path $T/ngx; scgi_temp_path $T/ngx;
  keepalive_requests 3; keepalive_timeout 1s;
  server { listen $FI_IP4:4443 ssl; ssl_certificate $FI_DIR/pki/srv.crt;
           ssl_certificate_key $FI_DIR/pki/srv.key; root $T/www; }
}
EOF
sl_bg nginx ip netns exec "$FI_NS" nginx -c "$T/ngx/nginx.conf"
ngx_up() { ip netns exec "$FI_NS" "$PY" -c "import socket; socket.create_connection(('$FI_IP4', 4443), 1)"; }
sl_wait_for ngx_up || sl_fail "nginx did not start: $(cat "$T/ngx/error.log" "$T/nginx.log")"

exec {rfd}>"$T/ready"
sl_bg broker "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:4443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/audit" --header-timeout 1
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready" || sl_fail "broker did not get ready: $(cat "$T/broker.log")"
read -r _ BPORT _ <"$T/ready"
C=(curl -sS --max-time 60 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT")

secs() { date +%s.%N; }
want=$(sha256sum <"$T/www/big" | cut -d' ' -f1)

# ---- 50 MiB download, timed against the direct one ----
t0=$(secs)
curl -sS --max-time 60 --cacert "$FI_CA" --resolve "api.test:4443:$FI_IP4" -o "$T/direct" \
	"https://api.test:4443/big" || sl_fail "direct download failed"
t1=$(secs)
"${C[@]}" -o "$T/via" "https://api.test:4443/big" || sl_fail "download through the broker failed: $(tail "$T/broker.log")"
t2=$(secs)
sl_assert_eq "$want" "$(sha256sum <"$T/via" | cut -d' ' -f1)" "50 MiB through the broker arrives intact"
direct=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
via=$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b - a}')
sl_log "50 MiB: direct ${direct}s, through the broker ${via}s"
awk -v d="$direct" -v v="$via" 'BEGIN{exit !(v <= 3 * d + 0.3)}' ||
	sl_fail "50 MiB through the broker took ${via}s, more than 3x the direct ${direct}s (stall?)"
sl_ok "50 MiB through the broker within 3x of direct (${via}s vs ${direct}s)"

# Four at once on one worker: each stream must keep moving.
t0=$(secs)
pids=()
for i in 1 2 3 4; do "${C[@]}" -o "$T/par$i" "https://api.test:4443/big" & pids+=($!); done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
t1=$(secs)
[ $fails = 0 ] || sl_fail "$fails of 4 parallel downloads failed"
for i in 1 2 3 4; do
	[ "$(sha256sum <"$T/par$i" | cut -d' ' -f1)" = "$want" ] || sl_fail "parallel download $i is corrupt"
done
par=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b - a}')
awk -v d="$direct" -v v="$par" 'BEGIN{exit !(v <= 4 * 3 * d + 1)}' ||
	sl_fail "4 parallel 50 MiB downloads took ${par}s (direct one: ${direct}s)"
sl_ok "4 parallel 50 MiB downloads intact in ${par}s"

sl_pass
