#!/usr/bin/env bash
# Runs the integration tests of bin/caisson. As root it first provisions the machine (tests/provision.sh) and then
# runs the tests as the unprivileged test user, the way a real user runs caisson. As an ordinary user it runs them
# as the caller; missing prerequisites are skipped with a reason unless CAISSON_TEST_STRICT=1.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${TEST_USER:-caissontest}
run=${CAISSON_TEST_RUN:-.}
dir=$(mktemp -d /tmp/caisson-it.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
cp bin/caisson "$dir/caisson"
go test -c -o "$dir/tests.test" ./tests
if [ "$(id -u)" = 0 ]; then
	./tests/provision.sh "$user"
	home=$(getent passwd "$user" | cut -d: -f6)
	cd "$dir"
	exec setpriv --reuid="$user" --regid="$user" --init-groups --reset-env \
		env HOME="$home" USER="$user" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		CAISSON_BIN="$dir/caisson" CAISSON_TEST_STRICT="${CAISSON_TEST_STRICT:-}" \
		"$dir/tests.test" -test.v -test.count=1 -test.timeout=20m -test.run "$run"
fi
cd "$dir"
CAISSON_BIN="$dir/caisson" "$dir/tests.test" -test.v -test.count=1 -test.timeout=20m -test.run "$run"
