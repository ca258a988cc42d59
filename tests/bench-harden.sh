#!/usr/bin/env bash
# Benchmarks of caisson's hardening (make bench calls it after make build): start-up of the default posture against
# --seccomp unconfined, --security strict without and with its own Landlock (the default; --landlock=off takes it
# away) and --landlock, and of a caller-writable binary (init from a sealed copy)
# against a root-owned one; then the cost of a system call under each filter (getpid, and stat("/"), which also
# walks Landlock's rules), measured by tests/probe inside the sandbox. Read the ratios: the machines are noisy.
# As root it runs everything as the unprivileged test user (TEST_USER, default caissontest).
set -euo pipefail
cd "$(dirname "$0")/.."
user=${TEST_USER:-caissontest}
runs=${BENCH_RUNS:-50}
dir=$(mktemp -d /tmp/caisson-bench-harden.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
cp bin/caisson "$dir/caisson"
CGO_ENABLED=0 go build -o "$dir/probe" ./tests/probe
as_user=()
if [ "$(id -u)" = 0 ]; then
	as_user=(setpriv --reuid="$user" --regid="$user" --init-groups --reset-env env HOME="$(getent passwd "$user" | cut -d: -f6)"
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
	# The caller-owned copy: what sealing is for.
	install -o "$user" -m 0755 bin/caisson "$dir/caisson-own"
else
	cp bin/caisson "$dir/caisson-own"
	echo "note: not root: $dir/caisson is also yours, so both start-up rows below run sealed"
fi
chmod -R a+rX "$dir"
cd /
c="$dir/caisson"
p="--ro-bind $dir/probe:/tmp/probe"

echo "== start-up: postures (hyperfine, $runs runs)"
"${as_user[@]}" hyperfine -N -w 5 -r "$runs" \
	"$c run --no-cwd -- true" \
	"$c run --no-cwd --seccomp unconfined -- true" \
	"$c run --no-cwd --security strict --landlock=off -- true" \
	"$c run --no-cwd --security strict -- true" \
	"$c run --no-cwd --landlock -- true" \
	"$c run --no-cwd --security strict --landlock -- true"

echo "== start-up: init from the binary (root-owned) vs from a sealed copy (caller-owned binary)"
"${as_user[@]}" hyperfine -N -w 5 -r "$runs" "$c run --no-cwd -- true" "$dir/caisson-own run --no-cwd -- true"

echo "== start-up: a cgroup of the sandbox's own, and limits (from the cgroups provision.sh delegates to $user)"
(
	# As root, enter the delegated groups first, as run-integration.sh does (a v2 group whose processes caisson
	# moved into its leaf takes new ones there).
	if [ "$(id -u)" = 0 ] && [ -f /run/caisson-test.$user.cgroups ]; then
		while read -r d; do
			[ -d "$d/caisson-leaf" ] && d=$d/caisson-leaf
			echo "$BASHPID" >"$d/cgroup.procs"
		done </run/caisson-test.$user.cgroups
	fi
	"${as_user[@]}" hyperfine -N -w 5 -r "$runs" "$c run --no-cwd -- true" "$c run --no-cwd --cgroup -- true" \
		"$c run --no-cwd --pids 1000 -- true" "$c run --no-cwd --pids 1000 --memory 1g --cpus 1 -- true"
) || echo "(cgroup start-up not measured: no cgroup delegated to $user; see caisson doctor)"

echo "== system-call cost inside (ns/op; ratio to unconfined)"
loop() { # NAME N FLAGS...
	local what=$1 n=$2
	shift 2
	# shellcheck disable=SC2086
	"${as_user[@]}" "$c" run --no-cwd "$@" $p -- /tmp/probe "$what" "$n" | awk '{print $2}'
}
for what in bench-getpid bench-stat; do
	n=2000000
	[ "$what" = bench-stat ] && n=500000
	base=$(loop "$what" "$n" --seccomp unconfined)
	for flags in "--seccomp unconfined" "" "--security strict --landlock=off" "--security strict" "--landlock" "--security strict --landlock"; do
		# shellcheck disable=SC2086
		v=$(loop "$what" "$n" $flags)
		printf '%-14s %-32s %8s ns/op  x%s\n' "$what" "${flags:-(default)}" "$v" "$(awk -v a="$v" -v b="$base" 'BEGIN{printf "%.2f", a/b}')"
	done
done
