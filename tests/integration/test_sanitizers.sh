#!/bin/bash
# SPDX-License-Identifier: MIT
# The broker and the CLI built with ASan+UBSan (build-san/, `make B=build-san
# SAN=1 all`) through a short end-to-end scenario, then sluiced of the normal
# build under valgrind memcheck on the same scenario. Fails on any ASan, UBSan
# or LeakSanitizer report, any memcheck error and any definite/indirect/possible
# leak at exit. Scenario: allowed GET, POST with Content-Length and chunked
# bodies, a placeholder swapped toward its host, the same placeholder refused
# (leak) toward another host, a denied host, a DNS query answered and one
# refused, a policy reload (SIGHUP), SIGTERM; then `sluice run` of a sandboxed curl.
SAN_B=build-san
. "$(dirname "$0")/../lib.sh"
sl_begin sanitizers
cd "$SL_ROOT" || exit 1
make --no-print-directory -j2 B=$SAN_B SAN=1 all >"$T/build.log" 2>&1 ||
	sl_fail "ASan+UBSan build failed: $(tail -n 20 "$T/build.log")"
SAN_SLUICED=$SL_ROOT/$SAN_B/sluiced SAN_SLUICE=$SL_ROOT/$SAN_B/sluice
sl_need_bins "$SAN_SLUICED" "$SAN_SLUICE" "$SLUICED"
command -v valgrind >/dev/null || sl_fail "valgrind is not installed (apt-get install valgrind; scripts/deps.sh)"
fi_up

# Reports go to files (one per process) besides stderr, so none is lost when
# a child's stderr is not ours; halt_on_error makes UBSan fatal too.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:log_path=$T/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$T/ubsan"
export SL_SAN_TOKEN=san-real-token-$$
cat >"$T/policy.yaml" <<YAML
rules:
  - {action: allow, host: "api.test"}
  - {action: allow, host: "other.test", port: 443}
secrets:
  TOK: {env: SL_SAN_TOKEN, hosts: [api.test], in: [header, query, body]}
YAML

# broker_start NAME BIN WAIT_SECS [WRAPPER...]: sets BPORT, BDNS, BPID.
broker_start() {
	local name=$1 bin=$2 wait=$3 i; shift 3
	exec {rfd}>"$T/$name.ready"
	sl_bg "$name" "$@" "$bin" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/$name.run" \
		--origdst-fixed "$FI_IP4:443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
		--resolve "other.test:$FI_IP4" --policy "$T/policy.yaml" --audit "$T/$name.audit"
	exec {rfd}>&-
	for ((i = 0; i < wait * 10; i++)); do grep -q READY "$T/$name.ready" && break; sleep 0.1; done
	grep -q READY "$T/$name.ready" || sl_fail "$name did not get ready: $(tail -n 20 "$T/$name.log")"
	read -r _ BPORT BDNS <"$T/$name.ready"
	BPID=$(cat "$T/$name.pid")
}

dns_query() { # port name -> rcode
	"$PY" - "$1" "$2" <<'PY'
import socket, struct, sys
q = struct.pack('>HHHHHH', 0x4242, 0x0100, 1, 0, 0, 0)
q += b''.join(bytes([len(l)]) + l.encode() for l in sys.argv[2].split('.')) + b'\0' + struct.pack('>HH', 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(20)
s.sendto(q, ('127.0.0.1', int(sys.argv[1])))
r, _ = s.recvfrom(2048)
print(r[3] & 15)
PY
}

# scenario NAME BIN WAIT_SECS [WRAPPER...]: the requests, each asserted; BRC = exit status.
scenario() {
	local name=$1 bin=$2 wait=$3 out code i
	shift 3
	broker_start "$name" "$bin" "$wait" "$@"
	local C=(curl -sS --max-time 60 --cacert "$T/$name.run/ca.crt" --connect-to "::127.0.0.1:$BPORT")
	out=$("${C[@]}" "https://api.test/hello") || sl_fail "$name: GET failed: $(tail "$T/$name.log")"
	sl_assert_contains "$out" "hello" "$name: allowed GET"
	out=$("${C[@]}" -X POST --data-binary "body-$name" "https://api.test/echo")
	sl_assert_contains "$out" "body-$name" "$name: POST with Content-Length"
	out=$(printf 'chunk-%s' "$name" | "${C[@]}" -X POST -H 'Transfer-Encoding: chunked' --data-binary @- "https://api.test/echo")
	sl_assert_contains "$out" "chunk-$name" "$name: POST chunked"
	out=$("${C[@]}" -X POST -H "X-Tok: SLUICE_PLACEHOLDER_TOK" --data-binary "b$name=SLUICE_PLACEHOLDER_TOK" "https://api.test/echo")
	# The echo comes back scrubbed (value -> placeholder); the server's log shows what it got.
	sl_assert_contains "$(fi_requests 443)" "b$name=$SL_SAN_TOKEN" "$name: placeholder swapped toward its host"
	sl_assert_not_contains "$out" "$SL_SAN_TOKEN" "$name: value scrubbed from the response"
	code=$("${C[@]}" -o /dev/null -w '%{http_code}' -H "X-Tok: SLUICE_PLACEHOLDER_TOK" "https://other.test/hello")
	sl_assert_eq 403 "$code" "$name: placeholder toward another host refused"
	code=$("${C[@]}" -o /dev/null -w '%{http_code}' "https://evil.test/hello")
	sl_assert_eq 403 "$code" "$name: denied host"
	sl_assert_eq 0 "$(dns_query "$BDNS" api.test)" "$name: DNS answer for an allowed name"
	sl_assert_eq 5 "$(dns_query "$BDNS" evil.test)" "$name: DNS refused for another name"
	kill -HUP "$BPID"
	sleep 1
	out=$("${C[@]}" "https://api.test/hello") || sl_fail "$name: GET after reload failed"
	sl_assert_contains "$out" "hello" "$name: GET after SIGHUP reload"
	kill -TERM "$BPID"
	for ((i = 0; i < wait * 10; i++)); do kill -0 "$BPID" 2>/dev/null || break; sleep 0.1; done
	kill -0 "$BPID" 2>/dev/null && sl_fail "$name: still running ${wait}s after SIGTERM"
	wait "$BPID"
	BRC=$?
}

san_reports() { # the reports, empty when clean
	local f
	for f in "$T"/asan.* "$T"/ubsan.*; do [ -e "$f" ] && { echo "== $f"; head -n 30 "$f"; }; done
	grep -h -A 12 -E 'runtime error|ERROR: (Address|Leak)Sanitizer' "$T"/*.log "$T"/*.err 2>/dev/null | head -n 40
}

# ---- 1: ASan+UBSan sluiced ----
scenario san "$SAN_SLUICED" 20
r=$(san_reports)
[ -z "$r" ] || sl_fail "sanitizer reports from sluiced: $r"
sl_assert_eq 0 "$BRC" "ASan sluiced exited cleanly after SIGTERM, no leak report"

# ---- 2: ASan+UBSan sluice run (CLI, kernel programs, its broker) ----
out=$(SLUICE=$SAN_SLUICE sluice_run --policy "$T/policy.yaml" --run-dir "$T/run" --ca-dir "$T/ca" \
	--audit "$T/run.audit" -- curl -sS --max-time 20 --resolve "api.test:443:$FI_IP4" \
	https://api.test/hello 2>"$T/run.err")
rc=$?
sl_assert_eq 0 "$rc" "ASan sluice run exit status ($(tail -n 3 "$T/run.err"))"
sl_assert_contains "$out" "hello" "ASan sluice run: sandboxed curl through the ASan broker"
r=$(san_reports)
[ -z "$r" ] || sl_fail "sanitizer reports from sluice run: $r"
sl_ok "no ASan/UBSan/LSan report from sluice run"

# ---- 3: valgrind memcheck on the normal build's sluiced ----
unset ASAN_OPTIONS UBSAN_OPTIONS
scenario vg "$SLUICED" 90 valgrind --error-exitcode=99 --leak-check=full \
	--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
	--log-file="$T/valgrind.txt"
grep -q "ERROR SUMMARY" "$T/valgrind.txt" || sl_fail "valgrind did not finish: $(tail "$T/valgrind.txt")"
[ "$BRC" = 0 ] || sl_fail "valgrind reported errors or leaks (exit $BRC): $(grep -A 20 -E 'Invalid|uninitialised|definitely|indirectly|possibly' "$T/valgrind.txt" | head -n 60)"
sl_ok "valgrind: $(grep 'ERROR SUMMARY' "$T/valgrind.txt" | sed 's/^==[0-9]*== //')"
sl_pass
