#!/bin/bash
# SPDX-License-Identifier: MIT
# Policies through `sluice run --policy F` with a sandboxed curl: sandcat's
# settings.json as its README writes it (GET anywhere, POST only to the API host,
# PUT denied, an empty network list denies all), an agent-sandbox policy.yaml with
# `domains:`, and sluice's own rules with method/path/port matchers, where
# dot-segment and percent-encoding tricks cannot dodge a path rule. Every
# denial is a 403 whose JSON names the deciding rule, and nothing denied reaches
# the fake internet (checked in the server's own request log).
. "$(dirname "$0")/../lib.sh"
. "$SL_ROOT/tests/fixtures/e2e/e2e.sh"
sl_begin policy_e2e
sl_need_bins "$SLUICE" "$SLUICED"
fi_up
e2e_setup
e2e_soft
FX=$SL_ROOT/tests/fixtures/e2e

# run_policy NAME POLICY: runs $T/NAME.sh (prelude + body on stdin) in a sandbox.
run_policy() {
	{ e2e_prelude; cat; } >"$T/$1.sh"
	e2e_run --policy "$2" --audit "$T/$1.audit" -- bash "$T/$1.sh" >"$T/$1.out" 2>"$T/$1.err"
	sl_assert_eq 0 "$?" "$1: sluice run exited 0 ($(tail -n 3 "$T/$1.err"))"
}

# ---- sandcat settings.json (README example, names moved to *.test) ----
c8443=$(fi_conns 8443)
run_policy sandcat "$FX/sandcat_settings.json" <<'EOF'
req c1 https://www.api.test/hello?id=c1
req c2 https://other.test/hello?id=c2
req c3 -d 'payload=1' https://api.test/echo?id=c3
req c4 -d 'payload=1' https://www.api.test/echo?id=c4
req c5 -X PUT -d 'payload=1' https://api.test/echo?id=c5
req c6 https://x.api.test/hello?id=c6
req c7 -X POST https://x.api.test/echo?id=c7
req c8 -H 'X-Key: SANDCAT_PLACEHOLDER_ANTHROPIC_API_KEY' https://api.test/echo?id=c8
req c9 -X DELETE https://api.test/echo?id=c9
req c10 -H 'X-Key: SLUICE_PLACEHOLDER_ANTHROPIC_API_KEY' https://api.test/echo?id=c10
EOF
SC="rule 1 ($FX/sandcat_settings.json"
e2e_expect c1 200 "sandcat: GET www.api.test allowed (GET anywhere)"
e2e_expect c2 200 "sandcat: GET other.test allowed"
sl_assert_contains "$(e2e_body c1)" "hello from www.api.test" "sandcat: www.api.test answered through the broker"
e2e_expect c3 200 "sandcat: POST api.test allowed"
sl_assert_contains "$(e2e_body c3)" '"method": "POST"' "sandcat: the server saw the POST"
sl_assert_contains "$(e2e_body c3)" 'payload=1' "sandcat: the POST body arrived"
e2e_expect c6 200 "sandcat: GET x.api.test allowed (fnmatch * crosses dots)"
e2e_denied c4 "no rule matched: default deny" "sandcat: POST www.api.test denied"
e2e_denied c5 "no rule matched: default deny" "sandcat: PUT api.test denied"
e2e_denied c7 "no rule matched: default deny" "sandcat: POST x.api.test denied (api.test names only itself)"
e2e_denied c9 "no rule matched: default deny" "sandcat: DELETE api.test denied"
e2e_expect c8 403 "sandcat: the SANDCAT_PLACEHOLDER_ alias toward a host not in the secret's list is refused"
sl_assert_contains "$(e2e_body c8)" '"secret":"ANTHROPIC_API_KEY"' "sandcat: the leak 403 names the secret"
sl_assert_eq 0 "$(e2e_seen 443 c8)" "sandcat: the leaking request never reached the server"
e2e_expect c10 403 "sandcat: the placeholder toward a host not in the secret's list is refused"
sl_assert_contains "$(e2e_body c10)" '"secret":"ANTHROPIC_API_KEY"' "sandcat: the leak 403 names the secret"
sl_assert_eq 0 "$(e2e_seen 443 c10)" "sandcat: the leaking request never reached the server"
sl_assert_eq 0 "$(fi_requests 443 | grep -c 'sk-ant-e2e')" "sandcat: the secret value never reached the server"
sl_assert_eq 1 "$(e2e_seen 443 c1)" "sandcat: server saw the allowed GET exactly once"
sl_assert_eq 1 "$(e2e_seen 443 c3)" "sandcat: server saw the allowed POST exactly once"
sl_assert_not_contains "$(cat "$T/sandcat.audit")" "sk-ant-e2e" "sandcat: audit log has no secret value"

run_policy sandcat_empty "$FX/sandcat_empty.json" <<'EOF'
req e1 https://api.test/hello?id=e1
req e2 https://www.api.test/hello?id=e2
req e3 http://other.test/hello?id=e3
EOF
e2e_denied e1 "no rule matched: default deny" "sandcat empty network list: GET api.test denied"
e2e_denied e2 "no rule matched: default deny" "sandcat empty network list: GET www.api.test denied"
e2e_denied e3 "no rule matched: default deny" "sandcat empty network list: plain HTTP denied" 80

# ---- agent-sandbox policy.yaml with domains: ----
run_policy agent "$FX/agent_sandbox.yaml" <<'EOF'
req a1 https://api.test/hello?id=a1
req a2 -d 'x=1' https://api.test/echo?id=a2
req a3 -X DELETE https://api.test/echo?id=a3
req a4 https://other.test/hello?id=a4
req a5 https://www.api.test/hello?id=a5
req a6 https://x.api.test/hello?id=a6
req a7 http://api.test/hello?id=a7
req a8 https://evil.test/hello?id=a8
EOF
e2e_expect a1 200 "agent-sandbox: GET api.test (a listed domain) allowed"
e2e_expect a2 200 "agent-sandbox: POST to a listed domain allowed (any method)"
e2e_expect a3 200 "agent-sandbox: DELETE to a listed domain allowed (any method)"
e2e_expect a4 200 "agent-sandbox: *.other.test covers other.test itself"
e2e_expect a7 200 "agent-sandbox: a listed domain on plain HTTP port 80 allowed (any port)"
sl_assert_eq 1 "$(e2e_seen 80 a7)" "agent-sandbox: port 80 server saw the plain HTTP request"
e2e_denied a5 "no rule matched: default deny" "agent-sandbox: unlisted www.api.test denied"
e2e_denied a6 "no rule matched: default deny" "agent-sandbox: x.api.test denied (a plain name matches only itself)"
e2e_denied a8 "no rule matched: default deny" "agent-sandbox: evil.test denied"

# ---- sluice rules: method, path (normalised), port ----
R1="rule 1 ($FX/sluice_rules.yaml:3:5): deny"
R4="rule 4 ($FX/sluice_rules.yaml:6:5): deny"
DD="no rule matched: default deny"
run_policy sluice "$FX/sluice_rules.yaml" <<'EOF'
req s1 https://api.test/v1/items?id=s1
req s2 -d 'n=2' https://api.test/v1/items?id=s2
req s3 -X PUT -d 'n=3' https://api.test/v1/items?id=s3
req s4 https://api.test/admin?id=s4
req s5 --path-as-is 'https://api.test/v1/../admin?id=s5'
req s6 --path-as-is 'https://api.test/v1/%2e%2e/admin?id=s6'
req s7 --path-as-is 'https://api.test/v1/x/../admin/users?id=s7'
req s8 --path-as-is 'https://api.test/v1//admin/users?id=s8'
req s9 'https://api.test/v1/%61dmin/users?id=s9'
req s10 --path-as-is 'https://api.test/v1/./admin/./users?id=s10'
req s11 https://api.test:8443/v1/items?id=s11
req s12 http://other.test/hello?id=s12
req s13 https://other.test/hello?id=s13
req s14 -d 'n=14' http://other.test/hello?id=s14
req s15 -X DELETE https://www.api.test/pub/x?id=s15
req s16 https://www.api.test/pub/x?id=s16
req s17 https://www.api.test/pub/x/y?id=s17
req s18 https://evil.test/v1/items?id=s18
req s19 -H 'Host: api.test' http://other.test/v1/items?id=s19
req s20 --path-as-is 'https://api.test/v1/../../v1/items?id=s20'
req s21 --path-as-is 'https://api.test/v1/..%2F..%2Fadmin?id=s21'
req s22 --path-as-is 'https://api.test//v1/items?id=s22'
EOF
e2e_expect s1 404 "sluice: GET api.test/v1/items allowed (the server's own 404)"
e2e_expect s2 404 "sluice: POST api.test/v1/items allowed (the server's own 404)"
sl_assert_eq 1 "$(e2e_seen 443 s1)" "sluice: server saw the GET once"
sl_assert_eq 1 "$(e2e_seen 443 s2)" "sluice: server saw the POST once"
e2e_denied s3 "$DD" "sluice: PUT (method not in the rule) denied"
e2e_denied s4 "$DD" "sluice: /admin (outside /v1/**) denied"
# Dot-segments are refused (400), not resolved: a router that never resolves them would serve
# another path than the one the rules saw. So are ones hidden behind %2F, and a leading '//'.
for id in s5 s6 s7 s10 s21 s22; do
	e2e_expect $id 400 "sluice: request $id (a dot-segment or a leading //) refused"
	sl_assert_contains "$(e2e_body $id)" "could read as another path" "sluice: the 400 of $id says why"
	sl_assert_eq 0 "$(e2e_seen 443 $id)" "sluice: request $id never reached the server"
done
e2e_denied s8 "$R1" "sluice: /v1//admin/users caught by the no-admin rule"
e2e_denied s9 "$R1" "sluice: /v1/%61dmin/users caught by the no-admin rule"
e2e_denied s11 "$DD" "sluice: api.test on port 8443 (rule says 443) denied"
sl_assert_eq "$c8443" "$(fi_conns 8443)" "sluice: no connection was opened to port 8443"
e2e_expect s12 200 "sluice: GET http://other.test (port 80 rule) allowed"
sl_assert_eq 1 "$(e2e_seen 80 s12)" "sluice: port 80 server saw the GET"
e2e_denied s13 "$DD" "sluice: other.test on 443 (rule says 80) denied"
e2e_denied s14 "$DD" "sluice: POST http://other.test denied (GET only)" 80
e2e_denied s15 "$R4" "sluice: DELETE www.api.test caught by the earlier deny rule"
e2e_expect s16 404 "sluice: GET www.api.test/pub/x allowed (the server's own 404)"
sl_assert_eq 1 "$(e2e_seen 443 s16)" "sluice: server saw /pub/x once"
e2e_denied s17 "$DD" "sluice: /pub/x/y denied (* is one segment)"
e2e_denied s18 "$DD" "sluice: evil.test denied"
e2e_denied s19 "$DD" "sluice: plain HTTP decided by the Host header (api.test port 80: no rule)" 80
e2e_expect s20 400 "sluice: /v1/../../v1/items climbs above the root: 400"
sl_assert_eq 0 "$(e2e_seen 443 s20)" "sluice: the path above the root never reached the server"
audit=$(cat "$T/sluice.audit")
sl_assert_contains "$audit" "\"status\":403" "sluice: denials are in the audit log"
sl_assert_not_contains "$(cat "$T"/*.err)" "killed by signal" "the broker did not crash"
e2e_finish
