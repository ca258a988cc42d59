#!/usr/bin/env bash
# Provisions this machine for caisson's integration tests. Run as root (make test does it when run as root):
# installs the real helpers the tests use, creates an unprivileged test user with subordinate ID ranges, and makes
# /dev/net/tun usable by ordinary users (0666, the distribution default).
set -euo pipefail
user=${1:-caissontest}
[ "$(id -u)" = 0 ] || { echo "provision.sh: must run as root" >&2; exit 1; }

pkgs=(uidmap slirp4netns passt busybox-static iproute2 procps psmisc socat strace util-linux bsdutils iperf3 libcap2-bin fuse-overlayfs)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! id "$user" >/dev/null 2>&1; then
	useradd --create-home --shell /bin/bash "$user"
fi
# Debian's useradd adds subordinate ranges itself; add them when it did not.
grep -q "^$user:" /etc/subuid || usermod --add-subuids 100000-165535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 100000-165535 "$user"
chmod 0666 /dev/net/tun
# fuse-overlayfs (--overlay of the host view) needs /dev/fuse, 0666 by udev on a distribution host.
if [ -c /dev/fuse ]; then chmod 0666 /dev/fuse; fi
echo "provision.sh: $user ($(id -u "$user")) ready: subuid $(grep "^$user:" /etc/subuid | head -1), /dev/net/tun $(stat -c %a /dev/net/tun)"
