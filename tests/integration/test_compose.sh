#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# compose/: no Docker engine or Kubernetes here, so the files are validated by parsing them and
# checking the fields that make enforcement work (privileges, pid/cgroup namespaces, mounts, the
# attach command, the agent's wait for the attach), and each checker is shown to fail on a broken
# copy. The two pieces of logic that run in those containers, finding the agent's cgroup
# (sluice-attach.sh) and a pod's cgroup (sluice-node.py), are run against real cgroups made here.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=/usr/bin/python3
T=$(mktemp -d /tmp/sluice-compose.XXXXXX)
PIDS=() CGS=()
cleanup() {
	local p c
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	for ((c = ${#CGS[@]} - 1; c >= 0; c--)); do rmdir "${CGS[c]}" 2>/dev/null || true; done
	rm -rf "$T"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

$PY -c 'import yaml' 2>/dev/null || fail "python3-yaml is missing (apt-get install python3-yaml)"

# ---------- the checkers (a broken file makes them exit non-zero) ----------
cat > "$T/check.py" <<'EOPY'
import json, sys, yaml

def need(cond, what):
    if not cond:
        sys.exit(f"{sys.argv[1]}: {what}")

def vols(svc):
    out = {}
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "rw")
        else:
            out[v["target"]] = (v.get("source"), "ro" if v.get("read_only") else "rw")
    return out

def check_compose(path):
    doc = yaml.safe_load(open(path))
    svcs = doc.get("services", {})
    need("sluice" in svcs and "agent" in svcs, "services sluice and agent are required")
    s, a = svcs["sluice"], svcs["agent"]
    need(s.get("privileged") is True, "sluice sidecar must be privileged (loads BPF, attaches to cgroups)")
    need(s.get("pid") == "host", "sluice sidecar needs pid: host (finds the agent's process)")
    need(s.get("cgroup") == "host", "sluice sidecar needs cgroup: host (sees the agent's cgroup path)")
    sv = vols(s)
    need(sv.get("/sys/fs/bpf", ("",))[0] == "/sys/fs/bpf", "sidecar must mount the host's /sys/fs/bpf")
    need(sv.get("/sys/fs/cgroup", ("",))[0] == "/sys/fs/cgroup", "sidecar must mount the host's /sys/fs/cgroup")
    ep = " ".join(s.get("entrypoint", []) + s.get("command", []))
    need("sluice-attach" in ep, "sidecar entrypoint must be sluice-attach (runs sluice attach)")
    need(s["environment"].get("SLUICE_TARGET") == a["environment"].get("SLUICE_SANDBOX"),
         "sidecar SLUICE_TARGET must equal the agent's SLUICE_SANDBOX marker")
    need("SLUICE_SANDBOX" not in s["environment"], "the marker must not be in the sidecar's own environment")
    pol = s["environment"].get("SLUICE_POLICY")
    need(pol in sv, f"policy {pol} must be mounted into the sidecar")
    need(a.get("network_mode") == "service:sluice",
         "agent must share the sidecar's network namespace (the broker listens on its loopback)")
    need(a.get("privileged") is not True, "agent must not be privileged")
    need("ALL" in a.get("cap_drop", []), "agent must drop all capabilities")
    need(any("no-new-privileges" in o for o in a.get("security_opt", [])), "agent needs no-new-privileges")
    av = vols(a)
    share = s["environment"].get("SLUICE_SHARE")
    need(share in av and av[share][1] == "ro", "agent must mount the share read-only")
    need("/sys/fs/bpf" not in av and "/sys/fs/cgroup" not in av, "agent must not see bpffs or cgroupfs")
    ep = " ".join(a.get("entrypoint", []))
    need(f"{share}/ready" in ep and "until" in ep, "agent's entrypoint must wait for the sidecar's ready file")
    need("sluice" in a.get("depends_on", []), "agent must depend on sluice")
    for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        need(a["environment"].get(k, "").startswith(share + "/"), f"agent's {k} must point at the sluice CA bundle")
    for k, v in a["environment"].items():
        if k in s["environment"] and k.isupper() and k not in ("SLUICE_SANDBOX",):
            need(v == "SLUICE_PLACEHOLDER_" + k, f"agent's {k} must be the placeholder, not a value")

def check_devcontainer(path, compose_path):
    d = json.load(open(path))
    comp = yaml.safe_load(open(compose_path))
    need(d.get("dockerComposeFile") in (["docker-compose.yml"], "docker-compose.yml"),
         "dockerComposeFile must name docker-compose.yml")
    need(d.get("service") == "agent" and "agent" in comp["services"], "service must be the agent")
    need("sluice" in d.get("runServices", []), "runServices must start the sluice sidecar")
    need(d.get("overrideCommand") is False, "overrideCommand must be false (keeps the wait-for-attach entrypoint)")
    need(d.get("containerEnv", {}).get("SLUICE_SANDBOX") ==
         comp["services"]["sluice"]["environment"]["SLUICE_TARGET"], "containerEnv must carry the marker")

def check_k8s(path, pod_path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    by = {d["kind"]: d for d in docs}
    need("DaemonSet" in by, "no DaemonSet")
    ds = by["DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    need(spec.get("hostPID") is True, "DaemonSet needs hostPID: true")
    need(spec.get("serviceAccountName") == by["ServiceAccount"]["metadata"]["name"], "serviceAccountName")
    c = spec["containers"][0]
    need(c.get("securityContext", {}).get("privileged") is True, "sluice container must be privileged")
    need("sluice-node" in " ".join(c.get("command", [])), "command must run the sluice-node controller")
    need(any(e["name"] == "NODE_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
             for e in c.get("env", [])), "NODE_NAME from spec.nodeName")
    hv = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    need(hv.get(mounts.get("/sys/fs/bpf")) == "/sys/fs/bpf", "hostPath /sys/fs/bpf mounted at /sys/fs/bpf")
    need(hv.get(mounts.get("/sys/fs/cgroup")) == "/sys/fs/cgroup", "hostPath /sys/fs/cgroup mounted at /sys/fs/cgroup")
    bpfm = [m for m in c["volumeMounts"] if m["mountPath"] == "/sys/fs/bpf"][0]
    need(bpfm.get("mountPropagation") == "Bidirectional", "bpffs mount must be Bidirectional (pins visible to the host)")
    rules = by["ClusterRole"]["rules"]
    can = lambda res, verb: any(res in r["resources"] and verb in r["verbs"] for r in rules)
    need(can("pods", "list") and can("pods", "patch") and can("configmaps", "get"), "RBAC: list/patch pods, get configmaps")
    rb = by["ClusterRoleBinding"]
    need(rb["roleRef"]["name"] == by["ClusterRole"]["metadata"]["name"] and
         rb["subjects"][0]["name"] == by["ServiceAccount"]["metadata"]["name"], "ClusterRoleBinding wiring")
    # the example pod uses the annotations the controller reads and writes
    src = open("compose/k8s/sluice-node.py").read()
    pods = [d for d in yaml.safe_load_all(open(pod_path)) if d]
    pod = [d for d in pods if d["kind"] == "Pod"][0]
    cm = [d for d in pods if d["kind"] == "ConfigMap"][0]
    ann = pod["metadata"]["annotations"]["sluice.dev/policy"]
    need('"sluice.dev/policy"' in src and '"sluice.dev/attached"' in src, "controller annotations")
    name, _, key = ann.partition("/")
    need(name == cm["metadata"]["name"] and (key or "policy.yaml") in cm["data"], "annotation names the ConfigMap/key")
    init = " ".join(pod["spec"]["initContainers"][0]["command"])
    need("sluice.dev/attached" in init, "init container must wait for sluice.dev/attached")
    need(any(v.get("downwardAPI") for v in pod["spec"]["volumes"]), "downward API volume for the annotations")
    yaml.safe_load(cm["data"][key or "policy.yaml"])

kind = sys.argv[2]
if kind == "compose": check_compose(sys.argv[1])
elif kind == "devcontainer": check_devcontainer(sys.argv[1], sys.argv[3])
elif kind == "k8s": check_k8s(sys.argv[1], sys.argv[3])
print(f"ok {sys.argv[1]}")
EOPY

check() { $PY "$T/check.py" "$@"; }
# a checker must reject a broken copy: proves it looks at the field
must_reject() { # file kind extra sed-expr what
	local f=$1 kind=$2 extra=$3 expr=$4 what=$5 copy
	copy=$T/broken.$(basename "$f")
	sed "$expr" "$f" > "$copy"
	cmp -s "$f" "$copy" && fail "mutation '$what' did not change $f"
	if check "$copy" "$kind" $extra >/dev/null 2>&1; then fail "checker accepted $f with $what"; fi
	echo "rejected as expected: $what"
}

test_files_valid() {
	check compose/docker-compose.yml compose
	check compose/devcontainer.json devcontainer compose/docker-compose.yml
	check compose/k8s/daemonset.yaml k8s compose/k8s/example-agent-pod.yaml
	$PY -c 'import yaml; yaml.safe_load(open("compose/policy.yaml"))'
	sh -n compose/sluice-attach.sh
	$PY -m py_compile compose/k8s/sluice-node.py
	grep -q 'sluice-attach' compose/Dockerfile && grep -q 'sluice-node' compose/Dockerfile ||
		fail "Dockerfile must install sluice-attach and sluice-node"
	if [ -x build/sluice ] && build/sluice policy check compose/policy.yaml >/dev/null 2>&1; then
		echo "build/sluice policy check accepts compose/policy.yaml"
	elif [ -x build/sluice ] && build/sluice policy check compose/policy.yaml 2>&1 | grep -qi 'unknown\|usage'; then
		echo "note: build/sluice has no 'policy check' yet"
	elif [ -x build/sluice ]; then
		build/sluice policy check compose/policy.yaml || fail "compose/policy.yaml rejected by sluice policy check"
	fi
}

test_checkers_reject_broken() {
	local dc=compose/docker-compose.yml k8=compose/k8s/daemonset.yaml
	must_reject $dc compose "" 's/privileged: true/privileged: false/' "sidecar not privileged"
	must_reject $dc compose "" '/^    pid: host/d' "no pid: host"
	must_reject $dc compose "" '/^    cgroup: host/d' "no cgroup: host"
	must_reject $dc compose "" '\#- /sys/fs/bpf:/sys/fs/bpf#d' "no bpffs volume"
	must_reject $dc compose "" '\#- /sys/fs/cgroup:/sys/fs/cgroup#d' "no cgroup volume"
	must_reject $dc compose "" 's#network_mode: "service:sluice"#network_mode: bridge#' "agent in its own netns"
	must_reject $dc compose "" 's#until \[ .* \]; do sleep 0.2; done; ##' "agent not waiting"
	must_reject $dc compose "" 's#GITHUB_TOKEN: SLUICE_PLACEHOLDER_GITHUB_TOKEN#GITHUB_TOKEN: ${GITHUB_TOKEN}#' "real token in agent"
	must_reject $dc compose "" 's#sluice-share:/run/sluice-share:ro#sluice-share:/run/sluice-share#' "share writable by agent"
	must_reject $dc compose "" 's#/usr/local/bin/sluice-attach#/bin/true#' "sidecar not attaching"
	must_reject compose/devcontainer.json devcontainer $dc 's/"overrideCommand": false/"overrideCommand": true/' "devcontainer overriding the wait"
	must_reject compose/devcontainer.json devcontainer $dc 's/"runServices": \["sluice", "agent"\]/"runServices": ["agent"]/' "devcontainer without sidecar"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's/hostPID: true/hostPID: false/' "DaemonSet without hostPID"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's#path: /sys/fs/bpf#path: /tmp/bpf#' "bpffs hostPath wrong"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's#path: /sys/fs/cgroup#path: /tmp/cg#' "cgroup hostPath wrong"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's/privileged: true/privileged: false/' "DaemonSet not privileged"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's/mountPropagation: Bidirectional/mountPropagation: None/' "bpffs not propagated"
	must_reject $k8 k8s compose/k8s/example-agent-pod.yaml 's/"patch"//; s/, \]/]/' "RBAC without patch"
}

cg2_mount() { awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") { print $5; exit } break } }' /proc/self/mountinfo; }

# sluice-attach.sh --find-only finds the marked process's cgroup, and nobody else's
test_attach_finds_agent_cgroup() {
	local mnt base marker pid_other pid_agent got
	mnt=$(cg2_mount); [ -n "$mnt" ] || fail "no cgroup2 mount on this host"
	base=$mnt/sluice-compose-test-$$
	mkdir "$base" "$base/agent" "$base/other"; CGS+=("$base" "$base/agent" "$base/other")
	marker=ct$$
	# a decoy with a marker that only shares a prefix, started first
	env SLUICE_SANDBOX="${marker}x" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' sh "$base/other" & pid_other=$!
	PIDS+=("$pid_other")
	# and one with the same marker in another network namespace: another compose project's agent
	unshare -n env SLUICE_SANDBOX="$marker" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' sh "$base/other" &
	PIDS+=("$!")
	for _ in $(seq 50); do [ "$(readlink /proc/$!/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.1; done
	# the agent as compose runs it: cap_drop: [ALL]
	env SLUICE_SANDBOX="$marker" setpriv --bounding-set -all "$PY" "$T/seccomp.py" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' \
		sh "$base/agent" & pid_agent=$!
	PIDS+=("$pid_agent")
	for _ in $(seq 50); do grep -q "sluice-compose-test-$$/agent" /proc/$pid_agent/cgroup 2>/dev/null && break; sleep 0.1; done
	got=$(SLUICE_TARGET=$marker SLUICE_TIMEOUT=5 sh compose/sluice-attach.sh --find-only)
	[ "$got" = "$base/agent" ] || fail "sluice-attach found '$got', expected $base/agent"
	echo "sluice-attach found $got"
	# with no marked process it gives up with a message naming the fix
	if out=$(SLUICE_TARGET=nobody-$$ SLUICE_TIMEOUT=1 sh compose/sluice-attach.sh --find-only 2>&1); then
		fail "sluice-attach succeeded without an agent: $out"
	fi
	grep -q "SLUICE_SANDBOX=nobody-$$" <<<"$out" || fail "unhelpful error: $out"
	# an agent that keeps Docker's default capabilities (NET_RAW: raw frames) is refused
	env SLUICE_SANDBOX="${marker}caps" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' sh "$base/other" &
	PIDS+=("$!")
	if out=$(SLUICE_TARGET=${marker}caps SLUICE_TIMEOUT=5 sh compose/sluice-attach.sh --find-only 2>&1); then
		fail "sluice-attach accepted an agent with NET_RAW in its bounding set: $out"
	fi
	grep -q "cap_drop" <<<"$out" || fail "unhelpful error for an agent with capabilities: $out"
	echo "refused as expected: $out"
	# and one with no seccomp filter (seccomp=unconfined: AF_VSOCK passes)
	env SLUICE_SANDBOX="${marker}nosec" setpriv --bounding-set -all sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' \
		sh "$base/other" &
	PIDS+=("$!")
	if out=$(SLUICE_TARGET=${marker}nosec SLUICE_TIMEOUT=5 sh compose/sluice-attach.sh --find-only 2>&1); then
		fail "sluice-attach accepted an agent without a seccomp filter: $out"
	fi
	grep -q "seccomp" <<<"$out" || fail "unhelpful error for an agent without seccomp: $out"
	echo "refused as expected: $out"
}

# sluice-node.py finds the pod-level cgroup (cgroupfs and systemd naming) and a pid inside
test_node_finds_pod_cgroup() {
	local mnt base uid pid got
	mnt=$(cg2_mount)
	base=$mnt/sluice-compose-test-$$
	[ -d "$base" ] || { mkdir "$base"; CGS+=("$base"); }
	for style in cgroupfs systemd; do
		uid=$(cat /proc/sys/kernel/random/uuid)
		if [ $style = cgroupfs ]; then pod=pod$uid; else pod=kubepods-pod${uid//-/_}.slice; fi
		mkdir "$base/$pod" "$base/$pod/ctr"; CGS+=("$base/$pod" "$base/$pod/ctr")
		sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' sh "$base/$pod/ctr" & pid=$!
		PIDS+=("$pid")
		for _ in $(seq 50); do grep -q "$pod/ctr" /proc/$pid/cgroup 2>/dev/null && break; sleep 0.1; done
		got=$($PY -c 'import sys, importlib.util as u
s = u.spec_from_file_location("n", "compose/k8s/sluice-node.py"); m = u.module_from_spec(s); s.loader.exec_module(m)
rel, pid = m.pod_cgroup(sys.argv[1]); print(m.cg2_mount() + rel if rel else "none", pid)' "$uid")
		[ "$got" = "$base/$pod $pid" ] || fail "sluice-node ($style) found '$got', expected '$base/$pod $pid'"
		echo "sluice-node ($style) found $got"
	done
}

# sluice-node.py attaches only to pods it can confine: the example pod passes; each way of
# keeping a way around the IP-only cgroup programs is refused with what to change.
test_node_refuses_unsafe_pods() {
	$PY - <<'EOPY' || fail "sluice-node's pod check"
import copy, importlib.util as u, yaml
s = u.spec_from_file_location("n", "compose/k8s/sluice-node.py"); m = u.module_from_spec(s); s.loader.exec_module(m)
pod = [d for d in yaml.safe_load_all(open("compose/k8s/example-agent-pod.yaml")) if d and d["kind"] == "Pod"][0]
assert m.pod_unsafe(pod) is None, m.pod_unsafe(pod)
ok = copy.deepcopy(pod); ok["spec"]["volumes"].append({"name": "w", "hostPath": {"path": "/home/dev/project"}})
assert m.pod_unsafe(ok) is None, m.pod_unsafe(ok)
def mut(f):
    p = copy.deepcopy(pod); f(p["spec"]); return m.pod_unsafe(p)
cases = {
    "NET_RAW": lambda sp: sp["containers"][0]["securityContext"].pop("capabilities"),
    "NET_RAW ": lambda sp: sp["initContainers"][0].pop("securityContext"),
    "adds NET_ADMIN": lambda sp: sp["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    "privileged": lambda sp: sp["containers"][0]["securityContext"].update(privileged=True),
    "seccomp": lambda sp: sp.pop("securityContext"),
    "hostNetwork": lambda sp: sp.update(hostNetwork=True),
    "hostPID": lambda sp: sp.update(hostPID=True),
    "/var/run/docker.sock": lambda sp: sp["volumes"].append({"name": "d", "hostPath": {"path": "/var/run/docker.sock"}}),
    "/sys/fs": lambda sp: sp["volumes"].append({"name": "d", "hostPath": {"path": "/sys//fs/"}}),
    "/var": lambda sp: sp["volumes"].append({"name": "d", "hostPath": {"path": "/var"}}),
    "/var/lib/kubelet": lambda sp: sp["volumes"].append({"name": "d", "hostPath": {"path": "/var/lib/kubelet/pods"}}),
    "ephemeral": lambda sp: sp.update(ephemeralContainers=[{"name": "ephemeral-debug", "image": "busybox"}]),
}
for want, f in cases.items():
    why = mut(f)
    assert why and want.strip() in why, (want, why)
    print("refused as expected:", why)

# A pod already attached that gains an ephemeral container (kubectl debug): warned about once
# (not every round), nothing re-attached; once the pod is gone, its cgroup is detached.
logged, ran = [], []
m.log = logged.append
def no_attach(*a):
    raise AssertionError("attach called for a pod already attached")
m.attach = no_attach
p = copy.deepcopy(pod); p["metadata"].update(uid="u-1", namespace="agents")
done = {"u-1": "/sys/fs/cgroup/kubepods/podu-1"}
m.reconcile(None, [p], "/sys/fs/cgroup", done, run=lambda *a, **k: ran.append(a[0]))
assert logged == [] and ran == [], (logged, ran)
p["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox"}]
for _ in range(3):
    m.reconcile(None, [p], "/sys/fs/cgroup", done, run=lambda *a, **k: ran.append(a[0]))
assert len(logged) == 1 and "attached, but now" in logged[0] and "delete the pod" in logged[0], logged
assert "container debugger" in logged[0], logged
assert done == {"u-1": "/sys/fs/cgroup/kubepods/podu-1"} and ran == [], (done, ran)
print("warned once:", logged[0])
m.reconcile(None, [], "/sys/fs/cgroup", done, run=lambda *a, **k: ran.append(a[0]))
assert done == {} and ran == [["sluice", "detach", "--cgroup", "/sys/fs/cgroup/kubepods/podu-1"]], (done, ran)
assert "u-1" not in m.WARNED
print("pod gone: detached", ran[0][-1])
EOPY
}

# The example pod's init container opens the pod only when sluice.dev/attached names this pod's
# uid: "true" (an annotation copied from another pod's manifest) or another uid keeps it waiting.
test_k8s_gate() {
	local cmd uid=4f0c7a52-1111-4222-8333-944455556666 ann=$T/annotations
	cmd=$($PY -c 'import yaml, sys
pod = [d for d in yaml.safe_load_all(open("compose/k8s/example-agent-pod.yaml")) if d and d["kind"] == "Pod"][0]
ic = pod["spec"]["initContainers"][0]
assert any(e["name"] == "POD_UID" and e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.uid" for e in ic["env"])
print(ic["command"][2].replace("/etc/podinfo/annotations", sys.argv[1]))' "$ann") || fail "init container: no POD_UID from metadata.uid"
	for v in true other-uid; do
		printf 'sluice.dev/policy="agent-policy/policy.yaml"\nsluice.dev/attached="%s"\n' "$v" >"$ann"
		if POD_UID=$uid timeout 2 sh -c "$cmd"; then fail "the init container opened the pod on sluice.dev/attached=\"$v\""; fi
	done
	printf 'sluice.dev/policy="agent-policy/policy.yaml"\nsluice.dev/attached="%s"\n' "$uid" >"$ann"
	POD_UID=$uid timeout 5 sh -c "$cmd" || fail "the init container did not open the pod on its own uid"
	grep -q '{ANN_ATTACHED: uid}' compose/k8s/sluice-node.py || fail "sluice-node must write the pod uid to sluice.dev/attached"
	echo "k8s gate: opens on the pod's own uid only"
}

# The agent's entrypoint waits for ready to hold its own cgroup's inode, which it reads from its
# cgroup namespace's root; the sidecar writes the inode of the cgroup it attached (--token-only).
# A restarted agent (a new cgroup, no programs) keeps waiting on the old token.
test_compose_ready_token() {
	local mnt base marker pid tok cmd
	mnt=$(cg2_mount); base=$mnt/sluice-compose-tok-$$
	mkdir "$base" "$base/tok"; CGS+=("$base" "$base/tok")
	marker=tok$$
	env SLUICE_SANDBOX="$marker" setpriv --bounding-set -all "$PY" "$T/seccomp.py" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' \
		sh "$base/tok" & pid=$!
	PIDS+=("$pid")
	for _ in $(seq 50); do grep -q "sluice-compose-tok-$$/tok" /proc/$pid/cgroup 2>/dev/null && break; sleep 0.1; done
	tok=$(SLUICE_TARGET=$marker SLUICE_TIMEOUT=5 sh compose/sluice-attach.sh --token-only) || fail "no token: $tok"
	[ "$tok" = "$(stat -c %i "$base/tok")" ] || fail "token $tok is not the cgroup's inode"
	cmd=$($PY -c 'import yaml, sys
a = yaml.safe_load(open("compose/docker-compose.yml"))["services"]["agent"]
c = a["entrypoint"][2].replace("$$", "$").replace("/run/sluice-share", sys.argv[1]).replace("/sys/fs/cgroup", sys.argv[2])
print(c.replace("exec \"$@\"", "echo opened"))' "$T/share" "$T/cgview") || fail "agent entrypoint"
	mkdir -p "$T/share" "$T/cgview"
	# the agent's view: a process in the cgroup, in a cgroup namespace of its own, mounts cgroup2
	# (as Docker does for a container): its root is the agent's cgroup
	cat >"$T/agentview.sh" <<'EOF'
echo $$ > "$1/cgroup.procs" || exit 9
exec unshare -C -m sh -c 'mount -t cgroup2 none "$1" && exec sh -c "$2"' sh "$2" "$3"
EOF
	run_agent() { timeout "$1" sh "$T/agentview.sh" "$base/tok" "$T/cgview" "$cmd"; }
	echo 12345 >"$T/share/ready"
	if run_agent 2; then fail "the agent's entrypoint opened on another cgroup's token"; fi
	# an image without stat (or without /sys/fs/cgroup): no token of its own, and no start, also
	# while the sidecar has removed ready to attach again
	rm -f "$T/share/ready"
	if [ "$(cmd=${cmd//stat -c/nostat -c} run_agent 3 2>/dev/null)" = opened ]; then
		fail "the agent's entrypoint opened without a token of its own"
	fi
	echo "$tok" >"$T/share/ready"
	[ "$(run_agent 5)" = opened ] || fail "the agent's entrypoint did not open on its own cgroup's token"
	echo "compose ready token: the agent opens on its own cgroup's inode only"
}

# The sidecar's watch: a restarted agent (`docker restart`: the same cgroup path, a new cgroup)
# gets attached again and a new token, with `sluice` stood in for by a script that logs its calls.
test_sidecar_reattaches() {
	local mnt base marker pid sc tok1 tok2
	mnt=$(cg2_mount); base=$mnt/sluice-compose-re-$$
	mkdir "$base" "$base/agent"; CGS+=("$base" "$base/agent")
	marker=re$$
	mkdir -p "$T/re/run" "$T/re/share"; : >"$T/re/run/ca-bundle.pem"; : >"$T/re/policy.yaml"
	printf '#!/bin/sh\necho "$*" >>"%s"\n' "$T/re/calls" >"$T/re/sluice"; chmod 755 "$T/re/sluice"
	start_agent() {
		env SLUICE_SANDBOX="$marker" setpriv --bounding-set -all "$PY" "$T/seccomp.py" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' \
			sh "$base/agent" & pid=$!
		PIDS+=("$pid")
		for _ in $(seq 50); do grep -q "sluice-compose-re-$$/agent" /proc/$pid/cgroup 2>/dev/null && break; sleep 0.1; done
	}
	start_agent
	SLUICE=$T/re/sluice SLUICE_TARGET=$marker SLUICE_SHARE=$T/re/share SLUICE_RUN_DIR=$T/re/run \
		SLUICE_POLICY=$T/re/policy.yaml SLUICE_TIMEOUT=5 sh compose/sluice-attach.sh >"$T/re/side.log" 2>&1 & sc=$!
	PIDS+=("$sc")
	tok1=$(stat -c %i "$base/agent")
	for _ in $(seq 50); do [ "$(cat "$T/re/share/ready" 2>/dev/null)" = "$tok1" ] && break; sleep 0.1; done
	[ "$(cat "$T/re/share/ready" 2>/dev/null)" = "$tok1" ] || fail "sidecar: no ready token for the agent: $(cat "$T/re/side.log")"
	# a second container with the marker (compose run, --scale) while the first is attached:
	# the sidecar leaves the attached one alone
	mkdir "$base/agent2"; CGS+=("$base/agent2")
	env SLUICE_SANDBOX="$marker" setpriv --bounding-set -all "$PY" "$T/seccomp.py" sh -c 'echo $$ > "$1/cgroup.procs"; exec sleep 300' \
		sh "$base/agent2" &
	local other=$!
	PIDS+=("$other")
	sleep 2.5
	[ "$(grep -c '^attach ' "$T/re/calls")" = 1 ] && ! grep -q '^detach ' "$T/re/calls" ||
		fail "sidecar: a second marker container moved the attachment: $(cat "$T/re/calls")"
	[ "$(cat "$T/re/share/ready")" = "$tok1" ] || fail "sidecar: the token changed with a second marker container"
	kill "$other"; wait "$other" 2>/dev/null || true
	# the restart: the agent's cgroup goes and comes back at the same path
	kill "$pid"; wait "$pid" 2>/dev/null || true
	rmdir "$base/agent" && mkdir "$base/agent" || fail "could not recreate the agent's cgroup"
	start_agent
	tok2=$(stat -c %i "$base/agent")
	[ "$tok1" != "$tok2" ] || fail "the recreated cgroup kept its inode ($tok1)"
	for _ in $(seq 80); do [ "$(cat "$T/re/share/ready" 2>/dev/null)" = "$tok2" ] && break; sleep 0.1; done
	[ "$(cat "$T/re/share/ready" 2>/dev/null)" = "$tok2" ] ||
		fail "sidecar: the restarted agent was not attached again: $(cat "$T/re/side.log")"
	[ "$(grep -c "^attach --cgroup $base/agent " "$T/re/calls")" = 2 ] || fail "sidecar calls: $(cat "$T/re/calls")"
	grep -q "^detach --cgroup $base/agent " "$T/re/calls" || fail "sidecar did not detach the old attachment: $(cat "$T/re/calls")"
	echo "sidecar: a restarted agent is attached again (tokens $tok1, $tok2)"
}

# Agent stand-ins run as Docker runs the agent: no capabilities (setpriv), and a seccomp filter
# (this one allows everything; Docker's default profile refuses AF_VSOCK and the like).
cat >"$T/seccomp.py" <<'EOF'
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
insn = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0x7fff0000))  # RET ALLOW
prog = Fprog(1, ctypes.cast(insn, ctypes.c_void_p))
u = ctypes.c_ulong
assert libc.prctl(38, u(1), u(0), u(0), u(0)) == 0  # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, u(2), ctypes.byref(prog), u(0), u(0)) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
os.execvp(sys.argv[1], sys.argv[1:])
EOF

test_files_valid
test_compose_ready_token
test_sidecar_reattaches
test_k8s_gate
test_checkers_reject_broken
test_attach_finds_agent_cgroup
test_node_finds_pod_cgroup
test_node_refuses_unsafe_pods
echo "PASS test_compose"
