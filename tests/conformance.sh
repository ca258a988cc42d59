#!/usr/bin/env bash
# Runs the OCI runtime-tools validation suite (../shared/conformance, vendored, offline) against caisson-oci and, in
# the same run, runc when it is installed, prints the side-by-side table, and fails when caisson-oci passes fewer
# files or assertions than the floor (a regression). As root: the suite creates containers as a root engine does.
#
#   CONFORMANCE_MIN_FILES   files caisson-oci must pass (default below: 28 pass here, one less allowed because
#                           killsig races the test's own kill against the container's shell setting its trap)
#   CONFORMANCE_MIN_OK      assertions that must be ok
#   CONFORMANCE_ONLY        a regex of test names (default: all)
set -uo pipefail
cd "$(dirname "$0")/.."
min_files=${CONFORMANCE_MIN_FILES:-27}
min_ok=${CONFORMANCE_MIN_OK:-3690}
suite=${CONFORMANCE_SUITE:-../shared/conformance/run-runtime-tools}
[ "$(id -u)" = 0 ] || { echo "conformance.sh: run as root (the suite creates containers as a root engine does)" >&2; exit 2; }
[ -x "$suite" ] || { echo "conformance.sh: $suite not found (the shared conformance suite)" >&2; exit 2; }
runtimes=()
if command -v runc >/dev/null; then runtimes+=(runc); else echo "conformance.sh: runc is not installed: caisson-oci alone"; fi
runtimes+=("$PWD/bin/caisson-oci")
out=$(mktemp -d /tmp/caisson-conformance.XXXXXX)
trap 'rm -rf "$out"' EXIT
"$suite" -o "$out" ${CONFORMANCE_ONLY:+-t "$CONFORMANCE_ONLY"} "${runtimes[@]}" | tee "$out/summary"
line=$(grep '^caisson-oci: ' "$out/summary" | tail -1)
files=$(sed -n 's/^caisson-oci: \([0-9]*\) files passed.*/\1/p' <<<"$line")
ok=$(sed -n 's/.*, \([0-9]*\) assertions ok.*/\1/p' <<<"$line")
echo
printf '| runtime | files passed | assertions ok / not ok |\n|---|---:|---:|\n'
grep -E '^[^ ]+: [0-9]+ files passed' "$out/summary" | sed -E 's/^([^:]+): ([0-9]+) files passed of ([0-9]+), ([0-9]+) assertions ok, ([0-9]+) not ok/| \1 | \2 of \3 | \4 \/ \5 |/'
if [ -z "$files" ] || [ -z "$ok" ]; then
	echo "conformance.sh: no result line for caisson-oci" >&2
	exit 1
fi
if [ -z "${CONFORMANCE_ONLY:-}" ] && { [ "$files" -lt "$min_files" ] || [ "$ok" -lt "$min_ok" ]; }; then
	echo "conformance.sh: caisson-oci passed $files files and $ok assertions: below the floor of $min_files and $min_ok" >&2
	exit 1
fi
echo "conformance.sh: caisson-oci passed $files files and $ok assertions (floor $min_files and $min_ok)"
