#!/usr/bin/env bash
# Provisions this machine for caisson's integration tests. Run as root (make test does it when run as root):
# installs the real helpers the tests use, creates an unprivileged test user with subordinate ID ranges, and makes
# /dev/net/tun usable by ordinary users (0666, the distribution default).
set -euo pipefail
user=${1:-caissontest}
[ "$(id -u)" = 0 ] || { echo "provision.sh: must run as root" >&2; exit 1; }

pkgs=(uidmap slirp4netns passt busybox-static iproute2 procps psmisc socat strace util-linux bsdutils iperf3 libcap2-bin fuse-overlayfs user-mode-linux bash-completion zsh fish man-db groff-base
	# The engines caisson-oci runs under (tests/engine_*_test.go), runc beside it, file(1) for BusyboxRootfs.
	podman conmon catatonit containerd docker.io containernetworking-plugins runc file
	# The install tests (TestInstallApt, TestInstallPip).
	dpkg-dev python3-pip)
# npm for the install tests (TestInstallNpm), unless a Node.js install (nodesource's) brings its own.
command -v npm >/dev/null || pkgs+=(npm)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get -o DPkg::Lock::Timeout=600 update -qq
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# crictl (the Kubernetes CRI client the CRI tests drive containerd with) from the Go module proxy, once.
if ! command -v crictl >/dev/null; then
	(cd / && GOBIN=/usr/local/bin GOFLAGS=-mod=mod CGO_ENABLED=0 PATH=/usr/local/go/bin:$PATH \
		go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)
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
# A supplementary group, as most users have one (catalogue U5; TestHardenGroupDenied).
getent group caisson-extra >/dev/null || groupadd caisson-extra
id -nG "$user" | grep -qw caisson-extra || usermod -aG caisson-extra "$user"
# A file that denies the user's own group what it allows everyone else (catalogue U4; TestHardenGroupDenied).
install -d -m 0755 /var/lib/caisson-test
# One per test user (several may be provisioned side by side); the test reads the one named after its user.
printf 'group-denied\n' >"/var/lib/caisson-test/group-denied.$user"
chown root:"$(id -g "$user")" "/var/lib/caisson-test/group-denied.$user"
chmod 0604 "/var/lib/caisson-test/group-denied.$user"
# Entries the user cannot read, for the overlay's stand-ins (TestOverlayUnreadable): a file, a directory it cannot
# enter, and one it can enter but not list, holding a file it may read by name.
fx=/var/lib/caisson-test/unreadable.$user
install -d -m 0755 "$fx"
printf 'host-secret\n' >"$fx/secret" && chmod 0600 "$fx/secret"
install -d -m 0700 "$fx/closed" && printf 'closed-secret\n' >"$fx/closed/inner"
install -d -m 0711 "$fx/unlisted" && printf 'known\n' >"$fx/unlisted/known" && chmod 0644 "$fx/unlisted/known"
echo "provision.sh: $user ($(id -u "$user")) ready: subuid $(grep "^$user:" /etc/subuid | head -1), /dev/net/tun $(stat -c %a /dev/net/tun)"

# Delegate cgroups to the test user, as systemd's Delegate=yes does for user@.service: a group in the cgroup v2
# hierarchy, and on hybrid hosts one in each cgroup v1 hierarchy of cpu, memory and pids, each under root's
# current group there and owned by the user. run-integration.sh moves the test processes into the groups listed in
# $cgfile. Idempotent.
cgfile=/run/caisson-test.$user.cgroups
: >"$cgfile"
delegate() { # DIR FILES...
	local dir=$1
	shift
	[ -d "$dir" ] || mkdir "$dir" || return 0
	chown "$user:" "$dir"
	for f in "$@"; do [ -e "$dir/$f" ] && chown "$user:" "$dir/$f"; done
	echo "$dir" >>"$cgfile"
}
while IFS=: read -r _ ctrls path; do
	if [ -z "$ctrls" ]; then
		for mnt in /sys/fs/cgroup /sys/fs/cgroup/unified; do
			if [ -e "$mnt/cgroup.controllers" ]; then
				# Offer the user every controller the parent has, as systemd does (EBUSY when the parent is not
				# the root group and holds processes: then the user gets what is already on).
				for c in $(cat "$mnt$path/cgroup.controllers"); do
					echo "+$c" >"$mnt$path/cgroup.subtree_control" 2>/dev/null || true
				done
				delegate "$mnt${path%/}/$user" cgroup.procs cgroup.threads cgroup.subtree_control
				break
			fi
		done
		continue
	fi
	case ",$ctrls," in *,cpu,* | *,memory,* | *,pids,*) ;; *) continue ;; esac
	mnt=$(awk -v c="$ctrls" '$0 ~ / - cgroup / { n = split($NF, o, ","); for (i = 1; i <= n; i++) if (o[i] == c) print $5 }' /proc/self/mountinfo | head -1)
	[ -n "$mnt" ] && delegate "$mnt${path%/}/$user" cgroup.procs tasks
done </proc/self/cgroup
echo "provision.sh: cgroups delegated to $user: $(tr '\n' ' ' <"$cgfile")"
