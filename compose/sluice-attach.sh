#!/bin/sh
# SPDX-License-Identifier: MIT
# Sidecar entrypoint: put a running container under sluice.
#
# The sidecar runs privileged with the host's PID namespace and cgroup namespace (pid: host,
# cgroup: host), /sys/fs/bpf and the cgroup filesystem mounted. It finds the agent container
# by a marker in its environment (SLUICE_SANDBOX=<name>, set in the agent's service), reads that
# process's cgroup, and runs `sluice attach` on it. Then it publishes the CA bundle the agent
# trusts and the ready file the agent's entrypoint waits for, so that no agent code runs before
# enforcement is in place.
#
# It never detaches on exit: the links stay pinned, so a stopped sidecar leaves the agent with
# connects that fail (no broker) instead of an open network. The agent's cgroup and with it
# the programs go away when the agent container stops.
#
# Env: SLUICE_TARGET (the agent's SLUICE_SANDBOX value, default "agent"), SLUICE_POLICY (/etc/sluice/policy.yaml),
#      SLUICE_SHARE (dir shared read-only with the agent, /run/sluice-share), SLUICE_TIMEOUT (s, 120),
#      PROC (/proc; tests point it elsewhere). With --find-only it prints the cgroup and exits.
set -eu
SANDBOX=${SLUICE_TARGET:-agent}
# the marker must only ever be in the agent's environment, never in ours or our children's
unset SLUICE_SANDBOX
POLICY=${SLUICE_POLICY:-/etc/sluice/policy.yaml}
SHARE=${SLUICE_SHARE:-/run/sluice-share}
TIMEOUT=${SLUICE_TIMEOUT:-120}
PROC=${PROC:-/proc}
SLUICE=${SLUICE:-sluice}

die() { echo "sluice-attach: $*" >&2; exit 1; }

# cgroup v2 mount point, from mountinfo (hosts mount it at different places)
cg2_mount() {
	awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") { print $5; exit } break } }' \
		"$PROC/self/mountinfo"
}

# pid of a process whose environment carries SLUICE_SANDBOX=$SANDBOX, other than ourselves, in
# our network namespace: the agent shares it (network_mode: service:sluice). With pid: host another
# compose project's agent carries the same marker; attaching to that one would leave ours unconfined.
find_agent_pid() {
	mynet=$(readlink "$PROC/self/ns/net") || die "can't read $PROC/self/ns/net"
	for d in "$PROC"/[0-9]*; do
		p=${d##*/}
		[ "$p" = "$$" ] && continue
		[ "$(readlink "$d/ns/net" 2>/dev/null)" = "$mynet" ] || continue
		# environ is NUL-separated; an exact line match avoids prefixes (agent vs agent2)
		if tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qx "SLUICE_SANDBOX=$SANDBOX"; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# the process's cgroup v2 path, "0::/path" in /proc/PID/cgroup
cgroup_of() {
	sed -n 's/^0::\(.*\)$/\1/p' "$PROC/$1/cgroup" | head -n 1
}

mnt=$(cg2_mount)
[ -n "$mnt" ] || die "no cgroup2 filesystem mounted; mount the host's cgroup fs into the sidecar (volume /sys/fs/cgroup)"

i=0
while ! pid=$(find_agent_pid); do
	i=$((i + 1))
	[ "$i" -le $((TIMEOUT * 5)) ] || die "no process with SLUICE_SANDBOX=$SANDBOX after ${TIMEOUT}s; set it in the agent's environment and give the sidecar pid: host"
	sleep 0.2
done
rel=$(cgroup_of "$pid")
case $rel in
/*) ;;
*) die "pid $pid has no cgroup v2 path in $PROC/$pid/cgroup; the sidecar needs cgroup: host" ;;
esac
case $rel in
*/../* | /..*) die "pid $pid's cgroup '$rel' is outside our cgroup namespace; give the sidecar cgroup: host" ;;
esac
cg=$mnt$rel
[ -d "$cg" ] || die "$cg does not exist; mount the host's cgroup fs at $mnt"
# The cgroup programs see IP sockets only: an agent that can gain NET_RAW (AF_PACKET frames),
# NET_ADMIN, SYS_ADMIN, SYS_MODULE or BPF could reach around them. Docker grants NET_RAW by default.
capbnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' "$PROC/$pid/status")
[ -n "$capbnd" ] || die "can't read the capabilities of pid $pid ($PROC/$pid/status)"
[ $((0x$capbnd & 0x8000213000)) = 0 ] ||
	die "the agent (pid $pid) can gain NET_RAW, NET_ADMIN, SYS_ADMIN, SYS_MODULE or BPF (CapBnd $capbnd), which reach around sluice's hooks; give its service cap_drop: [ALL]"

if [ "${1:-}" = --find-only ]; then
	echo "$cg"
	exit 0
fi

rm -f "$SHARE/ready"
[ -r "$POLICY" ] || die "no policy at $POLICY; mount one (see compose/policy.yaml)"
echo "sluice-attach: attaching to $cg (pid $pid, SLUICE_SANDBOX=$SANDBOX)"
"$SLUICE" attach --cgroup "$cg" --policy "$POLICY" --name "$SANDBOX" ||
	die "sluice attach failed; the agent stays blocked (it waits for $SHARE/ready)"
mkdir -p "$SHARE"
# sluiced writes the bundle (system roots + sluice CA) into its run dir
cp /run/sluice/ca-bundle.pem "$SHARE/ca-bundle.pem"
touch "$SHARE/ready"
echo "sluice-attach: ready"
# stay up while the broker runs; the pinned links outlive us either way
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
