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
#      SLUICE_RUN_DIR (sluice's run dir, /run/sluice),
#      PROC (/proc; tests point it elsewhere). With --find-only it prints the cgroup and exits.
set -eu
SANDBOX=${SLUICE_TARGET:-agent}
# the marker must only ever be in the agent's environment, never in ours or our children's
unset SLUICE_SANDBOX
POLICY=${SLUICE_POLICY:-/etc/sluice/policy.yaml}
SHARE=${SLUICE_SHARE:-/run/sluice-share}
RUN=${SLUICE_RUN_DIR:-/run/sluice}
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

# locate: sets pid and cg for the agent, or says why not (WHY) and returns 1.
locate() {
	pid=$(find_agent_pid) || { WHY="no process with SLUICE_SANDBOX=$SANDBOX in this network namespace; set it in the agent's environment and give the sidecar pid: host"; return 1; }
	rel=$(cgroup_of "$pid")
	case $rel in
	/*) ;;
	*) WHY="pid $pid has no cgroup v2 path in $PROC/$pid/cgroup; the sidecar needs cgroup: host"; return 1 ;;
	esac
	case $rel in
	*/../* | /..*) WHY="pid $pid's cgroup '$rel' is outside our cgroup namespace; give the sidecar cgroup: host"; return 1 ;;
	esac
	cg=$mnt$rel
	[ -d "$cg" ] || { WHY="$cg does not exist; mount the host's cgroup fs at $mnt"; return 1; }
	# The cgroup programs see IP sockets only: an agent that can gain NET_RAW (AF_PACKET frames),
	# NET_ADMIN, SYS_ADMIN, SYS_MODULE or BPF could reach around them. Docker grants NET_RAW by default.
	capbnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' "$PROC/$pid/status")
	[ -n "$capbnd" ] || { WHY="can't read the capabilities of pid $pid ($PROC/$pid/status)"; return 1; }
	[ $((0x$capbnd & 0x8000213000)) = 0 ] || {
		WHY="the agent (pid $pid) can gain NET_RAW, NET_ADMIN, SYS_ADMIN, SYS_MODULE or BPF (CapBnd $capbnd), which reach around sluice's hooks; give its service cap_drop: [ALL]"
		return 1
	}
	# Nor does it see AF_VSOCK (a way to the host on VMs) and other families, which Docker's
	# default seccomp profile refuses: an agent with no filter at all (seccomp=unconfined) is not run.
	[ "$(sed -n 's/^Seccomp:[[:space:]]*//p' "$PROC/$pid/status")" != 0 ] || {
		WHY="the agent (pid $pid) runs without a seccomp filter (security_opt seccomp=unconfined?), so AF_VSOCK and other non-IP sockets pass beside sluice's hooks; keep Docker's default profile"
		return 1
	}
	return 0
}

i=0
until locate; do
	case $WHY in no\ process*) ;; *) die "$WHY" ;; esac
	i=$((i + 1))
	[ "$i" -le $((TIMEOUT * 5)) ] || die "$WHY (waited ${TIMEOUT}s)"
	sleep 0.2
done

if [ "${1:-}" = --find-only ]; then
	echo "$cg"
	exit 0
fi
# The token the agent's entrypoint waits for: its cgroup's inode number, which it reads as
# `stat -c %i /sys/fs/cgroup` (its cgroup namespace's root). A restarted agent has a new
# cgroup, without the programs, and so a new number: it waits until that one is attached too.
if [ "${1:-}" = --token-only ]; then
	stat -c %i "$cg"
	exit 0
fi
[ -r "$POLICY" ] || die "no policy at $POLICY; mount one (see compose/policy.yaml)"

attach_once() {
	rm -f "$SHARE/ready"
	echo "sluice-attach: attaching to $cg (pid $pid, SLUICE_SANDBOX=$SANDBOX)"
	"$SLUICE" attach --cgroup "$cg" --policy "$POLICY" --name "$SANDBOX" &&
		mkdir -p "$SHARE" &&
		# sluiced writes the bundle (system roots + sluice CA) into its run dir
		cp "$RUN/ca-bundle.pem" "$SHARE/ca-bundle.pem" &&
		token=$(stat -c %i "$cg") && [ -n "$token" ] &&
		echo "$token" >"$SHARE/ready.tmp" && mv "$SHARE/ready.tmp" "$SHARE/ready" &&
		echo "sluice-attach: ready (cgroup $cg, inode $token)"
}

# The supervisor `sluice attach` left for a cgroup that is gone: stopped by its pid file, once
# that pid is still a sluice process (pid: host: a reused pid may be anyone's), and waited for,
# so that its teardown cannot land after the next attach.
stop_old_supervisor() {
	sp=$(cat "$RUN/$SANDBOX.pid" 2>/dev/null) || return 0
	case $sp in '' | *[!0-9]*) return 0 ;; esac
	tr '\0' ' ' <"$PROC/$sp/cmdline" 2>/dev/null | grep -q "sluice attach .*--name $SANDBOX" || return 0
	kill "$sp" 2>/dev/null || return 0
	n=0
	while [ -d "$PROC/$sp" ] && [ "$n" -lt 100 ]; do sleep 0.1; n=$((n + 1)); done
	return 0
}

attach_once || die "sluice attach failed; the agent stays blocked (it waits for $SHARE/ready)"
trap 'exit 0' TERM INT
# Watch for a restarted or recreated agent: a new cgroup (the same path after `docker restart`,
# another inode) starts without the programs, and its entrypoint waits for its own token. Only
# once the attached cgroup is gone: another container carrying the marker (compose run, --scale)
# must never take the programs away from the one attached.
while :; do
	sleep 1 & wait $!
	[ "$(stat -c %i "$cg" 2>/dev/null)" = "$token" ] && continue
	old_cg=$cg old_token=$token
	if ! locate; then
		[ "$WHY" = "${last_why:-}" ] || echo "sluice-attach: waiting for the agent: $WHY" >&2
		last_why=$WHY
		continue
	fi
	last_why=
	echo "sluice-attach: the attached cgroup is gone; the agent is in $cg now: attaching it"
	"$SLUICE" detach --cgroup "$old_cg" --name "$SANDBOX" >/dev/null 2>&1 || true
	stop_old_supervisor
	attach_once || { echo "sluice-attach: attach failed; the agent stays blocked, retrying" >&2; cg=$old_cg token=$old_token; }
done
