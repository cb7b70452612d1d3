#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Per-node controller run by the sluice DaemonSet (compose/k8s/daemonset.yaml).

Every few seconds it lists the pods of this node. A pod annotated
sluice.dev/policy: CONFIGMAP[/KEY] (key default policy.yaml, ConfigMap in the pod's namespace) gets:
  1. its pod-level cgroup found from /proc/*/cgroup (hostPID), so every container of the pod,
     also those started later, is covered (cgroup programs apply to descendants);
  2. `sluice attach --cgroup <pod cgroup> --policy <file>` run inside the pod's network namespace
     (nsenter --net), so the broker listens on the pod's loopback where the kernel programs send
     its connects;
  3. the annotation sluice.dev/attached=<the pod's uid>, which the pod's init container waits for
     (through a downward-API volume, compared with its own metadata.uid) before any of the pod's
     own code runs. A uid, not "true": an annotation copied with a manifest exported from another
     pod names that pod, so it cannot open this one before sluice has attached.
A pod whose policy cannot be read or attached is never marked: its init container keeps waiting,
so the pod stays blocked (fail closed). Errors are printed with the pod's name and what to fix.
"""
import json
import os
import posixpath
import ssl
import subprocess
import sys
import time
import urllib.request

ANN_POLICY = "sluice.dev/policy"
ANN_ATTACHED = "sluice.dev/attached"
PROC = os.environ.get("PROC", "/proc")
STATE = os.environ.get("SLUICE_STATE", "/var/lib/sluice/pods")
SA = "/var/run/secrets/kubernetes.io/serviceaccount"


def log(msg):
    print(f"sluice-node: {msg}", file=sys.stderr, flush=True)


def cg2_mount():
    """The cgroup v2 mount point from mountinfo (hosts mount it at different places)."""
    with open(f"{PROC}/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ")[0] == "cgroup2":
                return left.split(" ")[4]
    return None


def pod_cgroup(uid):
    """(pod cgroup path relative to the cgroup2 root, a pid inside the pod) or (None, None).
    cgroupfs drivers name the pod cgroup pod<uid>, the systemd driver pod<uid with _ for ->.slice."""
    keys = ("pod" + uid, "pod" + uid.replace("-", "_"))
    for ent in os.listdir(PROC):
        if not ent.isdigit():
            continue
        try:
            with open(f"{PROC}/{ent}/cgroup") as f:
                for line in f:
                    if not line.startswith("0::"):
                        continue
                    parts = line[3:].strip().split("/")
                    for i, seg in enumerate(parts):
                        if any(k in seg for k in keys):
                            return "/".join(parts[: i + 1]), int(ent)
        except OSError:
            continue
    return None, None


class Api:
    def __init__(self):
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        self.ctx = ssl.create_default_context(cafile=f"{SA}/ca.crt")

    def call(self, method, path, body=None, ctype="application/json"):
        with open(f"{SA}/token") as f:
            token = f.read().strip()
        req = urllib.request.Request(self.base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        req.add_header("Authorization", "Bearer " + token)
        if body is not None:
            req.add_header("Content-Type", ctype)
        with urllib.request.urlopen(req, context=self.ctx, timeout=10) as r:
            return json.load(r)


# Capabilities that reach around the cgroup programs: AF_PACKET frames (NET_RAW), interfaces,
# routes and XDP (NET_ADMIN), mounts, namespaces and bpf() (SYS_ADMIN, BPF), kernel modules.
RISKY_CAPS = {"NET_RAW", "NET_ADMIN", "SYS_ADMIN", "BPF", "SYS_MODULE", "ALL"}
# Host paths no confined pod may mount: daemons' sockets, sluice's pins and cgroups, the kubelet's
# and runtimes' state.
SENSITIVE_HOST_PATHS = ("/run", "/var/run", "/proc", "/sys/fs/bpf", "/sys/fs/cgroup", "/var/lib/kubelet",
                        "/var/lib/docker", "/var/lib/containerd", "/var/lib/sluice", "/dev")


def pod_unsafe(pod):
    """Why sluice cannot confine this pod, or None. The cgroup programs see only IP sockets: a
    container that keeps NET_RAW (in every runtime's default set) sends raw frames past them, and
    one without a seccomp profile opens AF_VSOCK to the host. Checked on the spec, before attach."""
    spec = pod.get("spec", {})
    if spec.get("hostNetwork"):
        return "hostNetwork: true (the pod would share the node's loopback services)"
    for k in ("hostPID", "hostIPC"):
        if spec.get(k):
            return f"{k}: true (the pod would share the node's processes or IPC)"
    for v in spec.get("volumes") or []:
        if not v.get("hostPath"):
            continue
        # (normpath keeps a leading "//": POSIX lets it mean something else)
        path = "/" + posixpath.normpath("/" + (v["hostPath"].get("path") or "/")).lstrip("/")
        # The path itself, anything below a sensitive one, or an ancestor of one (/sys/fs holds
        # the pins, / holds everything): a bind mount brings the submounts along.
        if path.endswith(".sock") or any(path == p or path.startswith(p + "/") or p.startswith(path.rstrip("/") + "/")
                                         for p in SENSITIVE_HOST_PATHS):
            return f"hostPath volume {path} (host daemons' sockets or sluice's own state)"
    pod_seccomp = (spec.get("securityContext") or {}).get("seccompProfile", {}).get("type")
    for kind in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(kind) or []:
            sc = c.get("securityContext") or {}
            caps = sc.get("capabilities") or {}
            drop = {x.upper().removeprefix("CAP_") for x in caps.get("drop") or []}
            add = {x.upper().removeprefix("CAP_") for x in caps.get("add") or []}
            seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
            if sc.get("privileged"):
                return f"container {c.get('name')} is privileged"
            if add & RISKY_CAPS:
                return f"container {c.get('name')} adds {', '.join(sorted(add & RISKY_CAPS))}"
            if "ALL" not in drop and "NET_RAW" not in drop:
                return (f"container {c.get('name')} keeps NET_RAW; set securityContext.capabilities.drop: "
                        "[\"ALL\"]")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                return (f"container {c.get('name')} runs without a seccomp profile; set "
                        "securityContext.seccompProfile.type: RuntimeDefault")
    return None


WARNED = {}  # pod uid -> the reason last logged, so a blocked pod is not logged every round


def warn_once(uid, msg):
    if WARNED.get(uid) != msg:
        WARNED[uid] = msg
        log(msg)


def attach(api, pod, mnt, done):
    meta = pod["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    why = pod_unsafe(pod)
    if why:
        warn_once(uid, f"{ns}/{name}: not attached, the pod stays blocked: {why}")
        return
    ref = meta["annotations"][ANN_POLICY]
    cm, _, key = ref.partition("/")
    key = key or "policy.yaml"
    rel, pid = pod_cgroup(uid)
    if not rel:
        return  # no process yet (sandbox still starting): next round
    try:
        data = api.call("GET", f"/api/v1/namespaces/{ns}/configmaps/{cm}").get("data", {})
    except Exception as e:  # noqa: BLE001 - any API failure keeps the pod blocked
        log(f"{ns}/{name}: cannot read ConfigMap {cm}: {e}; grant get on configmaps or fix {ANN_POLICY}")
        return
    if key not in data:
        log(f"{ns}/{name}: ConfigMap {cm} has no key {key}; set {ANN_POLICY}: {cm}/<key>")
        return
    os.makedirs(STATE, mode=0o700, exist_ok=True)
    pfile = f"{STATE}/{uid}.yaml"
    with open(pfile, "w") as f:
        f.write(data[key])
    cmd = ["nsenter", f"--net={PROC}/{pid}/ns/net", "--", "sluice", "attach",
           "--cgroup", mnt + rel, "--policy", pfile, "--name", "pod-" + uid[:8]]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        log(f"{ns}/{name}: sluice attach failed ({r.returncode}): {r.stderr.strip()[-400:]}; the pod stays blocked")
        return
    api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}",
             {"metadata": {"annotations": {ANN_ATTACHED: uid}}}, "application/merge-patch+json")
    done[uid] = mnt + rel
    log(f"{ns}/{name}: attached to {mnt + rel}")


def main():
    node = os.environ.get("NODE_NAME")
    if not node:
        log("NODE_NAME is not set; give the container env NODE_NAME from fieldRef spec.nodeName")
        return 1
    mnt = cg2_mount()
    if not mnt:
        log("no cgroup2 filesystem in mountinfo; mount the host's /sys/fs/cgroup into the container")
        return 1
    api = Api()
    done = {}  # pod uid -> attached cgroup
    while True:
        try:
            pods = api.call("GET", f"/api/v1/pods?fieldSelector=spec.nodeName%3D{node}")["items"]
        except Exception as e:  # noqa: BLE001
            log(f"cannot list pods: {e}")
            time.sleep(5)
            continue
        reconcile(api, pods, mnt, done)
        time.sleep(2)


def reconcile(api, pods, mnt, done, run=subprocess.run):
    """One round over this node's pods: attach the new ones, warn about attached ones that
    became unsafe, detach the ones that are gone. done: pod uid -> attached cgroup."""
    live = set()
    for pod in pods:
        meta = pod["metadata"]
        live.add(meta["uid"])
        if ANN_POLICY not in meta.get("annotations", {}):
            continue
        if meta["uid"] in done:
            # An ephemeral container (kubectl debug) joins after the attach, with the
            # runtime's default capabilities: said, since it cannot be undone from here.
            why = pod_unsafe(pod)
            if why:
                warn_once(meta["uid"], f"{meta['namespace']}/{meta['name']}: attached, but now {why}; "
                          "its programs see IP sockets only: delete the pod")
            continue
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        attach(api, pod, mnt, done)
    for uid in list(WARNED):
        if uid not in live:
            WARNED.pop(uid)
    for uid in list(done):
        if uid not in live:
            # the pod's cgroup is gone with it; drop our pins and the policy copy
            run(["sluice", "detach", "--cgroup", done.pop(uid)], capture_output=True)
            try:
                os.unlink(f"{STATE}/{uid}.yaml")
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
