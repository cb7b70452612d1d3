#!/bin/bash
# SPDX-License-Identifier: MIT
# A name that resolves to loopback (here "localhost", from /etc/hosts) is not
# dialled because a broad rule ("*") allows it: DNS must not be a way into this
# host or to link-local metadata. It is dialled when an allow rule names it
# exactly. Traffic stays on loopback.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_internal
sl_need_bins "$SLUICED"
getent hosts localhost | grep -q '127.0.0.1' || sl_fail "this test needs localhost -> 127.0.0.1 in /etc/hosts"

# A TCP listener on loopback standing for an internal service; it counts connections.
LPORT=$(( 20000 + $$ % 20000 ))
mkdir -p "$T/lo"
sl_bg lo "$PY" "$SL_ROOT/tests/servers/upstream.py" tcpcount "$LPORT" "$T/lo"
sl_wait_for "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $LPORT), 1)" || sl_fail "listener"
conns() { wc -l <"$T/lo/conn.$LPORT.log" | tr -d ' '; }
base=$(conns)

start() { # name policy-file
	exec {rfd}>"$T/$1.ready"
	sl_bg "$1" "$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/$1.run" \
		--origdst-fixed "127.0.0.1:$LPORT" --policy "$2" --audit "$T/$1.audit"
	exec {rfd}>&-
	sl_wait_for grep -q READY "$T/$1.ready" || sl_fail "$1 did not get ready: $(cat "$T/$1.log")"
	read -r _ BPORT _ <"$T/$1.ready"
}
get() { curl -sS --max-time 10 --cacert "$T/$2.run/ca.crt" --connect-to "::127.0.0.1:$BPORT" \
	-o "$T/out" -w '%{http_code}' "https://localhost:$LPORT/$1"; }

printf 'rules:\n  - {action: allow, host: "*"}\n' >"$T/star.yaml"
start star "$T/star.yaml"
code=$(get x star)
sl_assert_eq 502 "$code" "a glob does not open the way to loopback"
sl_assert_contains "$(cat "$T/out")" "internal address" "502 says why"
sl_assert_eq "$base" "$(conns)" "nothing reached the loopback service"

printf 'rules:\n  - {action: allow, host: "localhost"}\n' >"$T/named.yaml"
start named "$T/named.yaml"
code=$(get y named)
# The listener is not TLS: the broker dials it, and the TLS handshake fails (502),
# but only after the connection reached it.
sl_assert_eq 502 "$code" "upstream is not TLS"
sl_assert_not_contains "$(cat "$T/out")" "internal address" "not refused as internal"
[ "$(conns)" -gt "$base" ] || sl_fail "the named host was not dialled"
sl_ok "an allow rule naming the host exactly lets the broker dial it"
sl_pass
