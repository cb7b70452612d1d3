#!/bin/sh
# SPDX-License-Identifier: MIT
# Installs the Debian packages sluice builds, tests and benchmarks with; only what is missing.
set -eu
PKGS="make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libssl-dev libyaml-dev
      libcmocka-dev node-llhttp iproute2 curl openssl ca-certificates procps psmisc
      python3 python3-requests python3-yaml nodejs wrk nginx-light haproxy mitmproxy valgrind
      libclang-rt-14-dev dnsutils strace"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "sluice: missing packages:$missing" >&2
	echo "sluice: run 'make deps' as root (it uses apt-get), or install them yourself." >&2
	exit 1
fi
echo "sluice: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
