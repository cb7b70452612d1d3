#!/bin/bash
# SPDX-License-Identifier: MIT
# Fail closed on the audit log: when neither the audit log (a full tmpfs) nor
# the broker's stderr (/dev/full) takes lines, the broker refuses requests
# until the log is writable again, then serves again.
. "$(dirname "$0")/../lib.sh"
sl_begin broker_audit_full
sl_need_bins "$SLUICED"
fi_up

mkdir "$T/afs"
mount -t tmpfs -o size=64k,mode=755 tmpfs "$T/afs" || sl_fail "cannot mount a tmpfs for the audit log"
sl_defer "umount -l $T/afs"
dd if=/dev/zero of="$T/afs/fill" bs=4k 2>/dev/null
exec {rfd}>"$T/ready"
"$SLUICED" --listen 127.0.0.1:0 --ready-fd "$rfd" --ca-dir "$T/ca" --run-dir "$T/run" \
	--origdst-fixed "$FI_IP4:443" --upstream-ca "$FI_CA" --resolve "api.test:$FI_IP4" \
	--allow api.test --audit "$T/afs/audit.log" 2>/dev/full &
echo $! >"$T/b.pid"
sl_defer "sl_kill_pid $(cat "$T/b.pid")"
exec {rfd}>&-
sl_wait_for grep -q READY "$T/ready" || sl_fail "broker did not get ready"
read -r _ BPORT _ <"$T/ready"
get() { curl -sS --max-time 10 --cacert "$T/run/ca.crt" --connect-to "::127.0.0.1:$BPORT" \
	-o "$T/out" -w '%{http_code}' "https://api.test/hello?n=$1"; }

sl_assert_eq 200 "$(get 1)" "first request served (its line is the one that cannot be written)"
sl_assert_eq 403 "$(get 2)" "with no place to record it, the next request is refused"
sl_assert_eq 0 "$(fi_requests 443 | grep -c 'n=2')" "the refused request never reached the upstream"
rm -f "$T/afs/fill"
get 3 >/dev/null   # its refusal line is written: the log works again
sl_assert_eq 200 "$(get 4)" "once the audit log is writable, requests are served again"
grep -q '"path":"/hello?n=4"' "$T/afs/audit.log" || sl_fail "request 4 is not in the audit log"
sl_ok "request 4 is in the audit log"
sl_pass
