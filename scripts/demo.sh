#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# make demo: a sandboxed command against a local HTTPS server (in a network
# namespace of its own, with its own CA), showing an allowed request, a blocked
# one, a blocked direct connection and a substituted secret.
set -u
. "$(dirname "$0")/../tests/lib.sh"
sl_begin demo
sl_need_bins "$SLUICE" "$SLUICED"
fi_up

cat >"$T/demo.yaml" <<'P'
rules:
  - {action: allow, host: "api.test", method: [GET, POST]}
  - {action: allow, host: "other.test", method: GET}
  - {action: deny, host: "*"}
secrets:
  DEMO_TOKEN: {env: DEMO_TOKEN_REAL, hosts: ["api.test"], in: [header]}
P
chmod 644 "$T/demo.yaml"
export DEMO_TOKEN_REAL=demo-secret-$RANDOM$RANDOM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "policy (build/sluice policy check)"
"$SLUICE" policy check "$T/demo.yaml"

cat >"$T/agent.sh" <<AGENT
echo "inside the sandbox: DEMO_TOKEN=\$DEMO_TOKEN"
echo; echo "--- 1. allowed: GET https://api.test/hello"
curl -sS https://api.test/hello
echo; echo "--- 2. blocked by policy: POST https://other.test/upload (other.test is GET only)"
curl -sS -w '  (HTTP %{http_code})\n' -d 'the source code' https://other.test/upload
echo; echo "--- 3. UDP to $FI_IP4:9001 dies in the kernel; raw TCP to $FI_IP4:9000 (no rule allows it, not valid HTTP) gets the broker's 400"
$PY -c "import socket; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.sendto(b'x',('$FI_IP4',9001))" 2>&1 | tail -1
echo 'SSH-2.0-probe' | curl -sS --max-time 3 telnet://$FI_IP4:9000 2>&1 | tail -1
echo; echo "--- 4. secret: the sandbox sends its placeholder to api.test"
curl -sS -H "Authorization: Bearer \$DEMO_TOKEN" https://api.test/echo -o /dev/null -w 'HTTP %{http_code}\n'
echo; echo "--- 5. leak: the same placeholder toward other.test"
curl -sS -H "Authorization: Bearer \$DEMO_TOKEN" https://other.test/echo -w '  (HTTP %{http_code})\n'
AGENT
chmod 755 "$T/agent.sh"
step "sluice run --policy demo.yaml -- sh agent.sh"
sluice_run --policy "$T/demo.yaml" --audit "$T/audit.jsonl" -- sh "$T/agent.sh"

step "what api.test received (server side)"
if fi_requests 443 | grep -q "Bearer $DEMO_TOKEN_REAL"; then
	echo "api.test got 'Authorization: Bearer <the real DEMO_TOKEN value>' (substituted by the broker)"
else
	echo "api.test did NOT receive the real value"; exit 1
fi
if fi_requests 443 | grep -q "SLUICE_PLACEHOLDER_DEMO_TOKEN"; then echo "a placeholder reached the server"; exit 1; fi
echo "requests that reached the fake internet: $(fi_requests 443 | wc -l); UDP datagrams: $(fi_udp_count); raw TCP connects: $(fi_conns 9000)"
step "audit log (one JSON line per request)"
cat "$T/audit.jsonl" 2>/dev/null
echo
exit 0
