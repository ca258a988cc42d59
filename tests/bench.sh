#!/usr/bin/env bash
# make bench: caisson side by side with its peers from Debian's packages, in one run on this machine, printed as
# medians and ratios (the machines are noisy: read the ratios, not a lone absolute time). As root it installs the
# tools and runs everything as the unprivileged test user; as an ordinary user it uses what is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
user=${TEST_USER:-caissontest}
runs=${BENCH_RUNS:-60}
out=$(pwd)/bench/out
mkdir -p "$out"
dir=$(mktemp -d /tmp/caisson-bench.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 0755 "$dir"
cp bin/caisson "$dir/caisson"
go build -o "$dir/benchreport" ./tests/benchreport
as_user=()
if [ "$(id -u)" = 0 ]; then
	./tests/provision.sh "$user" >/dev/null
	need=()
	for p in hyperfine bubblewrap iperf3; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
	if [ "${#need[@]}" -gt 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	as_user=(setpriv --reuid="$user" --regid="$user" --init-groups)
fi
chmod -R a+rX "$dir"
chmod 0777 "$out"
run() { (cd "$dir" && "${as_user[@]}" env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp "$@"); }
c=./caisson # commands run in $dir

echo "# caisson benchmarks ($(date -u +%Y-%m-%dT%H:%MZ))"
echo
echo "machine: $(nproc) cores, $(uname -sr), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "caisson $("$dir/caisson" version | cut -d' ' -f2-), $(bwrap --version 2>/dev/null || echo 'no bwrap'), $(hyperfine --version)"
echo

echo "## Start-up: run \`true\` in a sandbox ($runs runs)"
echo
run hyperfine -N -w 5 -r "$runs" --export-json "$out/startup.json" \
	"$c run -- true" \
	"$c run --map single -- true" \
	"bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --die-with-parent true" \
	"unshare --map-auto --map-root-user -mpf --mount-proc true" >/dev/null 2>&1
"$dir/benchreport" -ref bwrap "$out/startup.json"

echo "## Memory of caisson's own processes while a sandbox runs"
echo
run sh -c '
	"$1" run -- sleep 3 & p=$!
	sleep 1
	i=$(cat /proc/$p/task/*/children | tr " " "\n" | head -1)
	printf "| process | VmRSS | VmHWM |\n|---|---:|---:|\n"
	for pid in $p $i; do
		printf "| %s | %s | %s |\n" "$(cat /proc/$pid/comm)" "$(grep VmRSS /proc/$pid/status | tr -s " " | cut -d" " -f2-3)" "$(grep VmHWM /proc/$pid/status | tr -s " " | cut -d" " -f2-3)"
	done
	wait $p' sh "$c"
echo
