#!/usr/bin/env bash
# Runs the tests that need an unprivileged user and the real host: the integration tests of bin/caisson (./tests)
# and the kernel-facing tests of the idmap, seccomp and slirp packages. As root it first provisions the machine
# (tests/provision.sh) and then runs every test binary as the unprivileged test user, the way a real user runs
# caisson. As an ordinary user it runs them as the caller. Missing prerequisites are skipped with a reason unless
# CAISSON_TEST_STRICT=1, which turns every skip into a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${TEST_USER:-caissontest}
run=${CAISSON_TEST_RUN:-.}
pkgs=${CAISSON_TEST_PKGS:-"./idmap ./seccomp ./slirp ./tests"}
dir=$(mktemp -d /tmp/caisson-it.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
cp bin/caisson bin/caisson-image bin/caisson-oci "$dir/"
# The hardening tests' static probe (tests/probe), and as root a setuid-root copy of it (catalogue U7).
CGO_ENABLED=0 go build -o "$dir/probe" ./tests/probe
# The image registry of the rootfs pull tests (go-containerregistry's, on 127.0.0.1).
CGO_ENABLED=0 go build -o "$dir/registry" ./tests/registry
if [ "$(id -u)" = 0 ]; then install -m 4755 -o root -g root "$dir/probe" "$dir/probe-suid"; fi
# The non-reaping child-subreaper harness (tests/subreaper) that the leak checks run caisson under.
CGO_ENABLED=0 go build -o "$dir/subreaper" ./tests/subreaper
cp -r cmd/caisson/profiles "$dir/profiles"
for p in $pkgs; do
	go test -c -o "$dir/$(basename "$p").test" "$p"
done
as_user=()
home=$HOME
runuser=$(id -un)
if [ "$(id -u)" = 0 ]; then
	./tests/provision.sh "$user"
	home=$(getent passwd "$user" | cut -d: -f6)
	as_user=(setpriv --reuid="$user" --regid="$user" --init-groups --reset-env)
	runuser=$user
fi
enter_cgroups() {
	[ "$(id -u)" = 0 ] && [ -f /run/caisson-test.$user.cgroups ] || return 0
	local d
	# A v2 group whose processes caisson moved into its leaf (to enable controllers) takes new ones there only.
	while read -r d; do
		if [ -d "$d/caisson-leaf" ]; then d=$d/caisson-leaf; fi
		echo "$BASHPID" >"$d/cgroup.procs" || { echo "run-integration.sh: cannot enter cgroup $d" >&2; return 1; }
	done </run/caisson-test.$user.cgroups
}
status=0
for p in $pkgs; do
	name=$(basename "$p")
	echo "=== $p (as $runuser)"
	# Each package's tests run in a directory of their own that the test user can read.
	mkdir -p "$dir/run-$name" && chmod 0777 "$dir/run-$name"
	cp -r "$p/testdata" "$dir/run-$name/" 2>/dev/null || true
	chmod -R a+rX "$dir"
	# As root, the test user's processes start in the cgroups provision.sh delegated to it (the way a systemd
	# user session starts in user@UID.service), so the cgroup tests can create groups beneath them.
	(cd "$dir/run-$name" && enter_cgroups && "${as_user[@]}" env HOME="$home" USER="$runuser" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		CAISSON_BIN="$dir/caisson" CAISSON_OCI_BIN="$dir/caisson-oci" CAISSON_PROBE="$dir/probe" CAISSON_SUBREAPER="$dir/subreaper" CAISSON_REGISTRY="$dir/registry" CAISSON_PROFILES="$dir/profiles" CAISSON_TEST_STRICT="${CAISSON_TEST_STRICT:-}" \
		CAISSON_SOAK_N="${CAISSON_SOAK_N:-}" CAISSON_SOAK_PAR="${CAISSON_SOAK_PAR:-}" CAISSON_SOAK_SEED="${CAISSON_SOAK_SEED:-}" CAISSON_UML_RUN="${CAISSON_UML_RUN:-}" \
		"$dir/$name.test" -test.v -test.count="${CAISSON_TEST_COUNT:-1}" -test.timeout=20m -test.run "$run" -test.skip '^TestRootMode|^TestRootWriteDirect$') || status=1
done
if [ "$(id -u)" = 0 ] && [ -x "$dir/idmap.test" ]; then
	echo "=== ./idmap (as root: maps written without the helpers)"
	(cd "$dir/run-idmap" && CAISSON_TEST_STRICT="${CAISSON_TEST_STRICT:-}" \
		"$dir/idmap.test" -test.v -test.count=1 -test.run '^TestRootWriteDirect$') || status=1
fi
if [ "$(id -u)" = 0 ] && [ -x "$dir/tests.test" ]; then
	echo "=== ./tests (as root: the host-root mode, and caisson-oci as a rootful runtime)"
	(cd "$dir/run-tests" && CAISSON_BIN="$dir/caisson" CAISSON_OCI_BIN="$dir/caisson-oci" CAISSON_PROBE="$dir/probe" CAISSON_PROFILES="$dir/profiles" CAISSON_TEST_STRICT="${CAISSON_TEST_STRICT:-}" CAISSON_TEST_USER="$user" CAISSON_REGISTRY="$dir/registry" \
		"$dir/tests.test" -test.v -test.count=1 -test.timeout=20m -test.run "${CAISSON_ROOT_RUN:-^TestRootMode|^TestOCI}") || status=1
fi
exit $status
