#!/usr/bin/env bash
# make bench: one comparative report of caisson and every peer installed here (bubblewrap, unshare, RootlessKit
# built from the Go module proxy at bench time, Podman when installed), generated from one run on this machine:
# bench/report.md and the charts bench/*.png. Every row carries its ratio to the best peer of the same run (the
# machines are noisy: read the ratios, not a lone absolute figure). As root it installs the tools (hyperfine,
# bubblewrap, iperf3, gnuplot-nox) and runs every measurement as the unprivileged test user; as an ordinary user it
# uses what is installed. Network traffic goes only to 127.0.0.1 (published ports and the host loopback baseline);
# every loop is bounded in count and time.
#
# Environment: BENCH_RUNS (hyperfine runs per command, default 40), BENCH_CONC (concurrency levels, default
# 1,5,10,20,50), BENCH_MEM (sandbox counts for memory, default 1,10,30), BENCH_SECS (seconds per throughput
# measurement, default 3), BENCH_RELAY_RUNS (runs per command of the stdio relay's 1 GiB, default 10),
# ROOTLESSKIT_VERSION (default: the version in go.mod, else v3.3.0), BENCH_OUT (where the
# report and charts go, default bench/).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
user=${TEST_USER:-caissontest}
runs=${BENCH_RUNS:-40}
conc=${BENCH_CONC:-1,5,10,20,50}
memn=${BENCH_MEM:-1,10,30}
secs=${BENCH_SECS:-3}
outdir=${BENCH_OUT:-$root/bench}
rkver=${ROOTLESSKIT_VERSION:-$(awk '$1 ~ /rootless-containers\/rootlesskit/ {print $2; exit}' go.mod)}
rkver=${rkver:-v3.3.0}

dir=$(mktemp -d /tmp/caisson-bench.XXXXXX)
cleanup() {
	# Bounded: stop whatever a measurement left running in our process group, then remove the work directory.
	jobs -p | xargs -r kill 2>/dev/null || true
	rm -rf "$dir"
}
relaydir=""
trap 'cleanup; [ -z "$relaydir" ] || rm -rf "$relaydir"' EXIT
chmod 0755 "$dir"
mkdir -p "$dir/out" "$outdir"
chmod 0777 "$dir/out"
cp bin/caisson bin/caisson-image "$dir/"
# A copy owned by the user who runs the sandboxes, as a developer's own build is: init must not run from it as it
# is (CVE-2019-5736 class), and caisson executes it from a read-only bind (issue 14).
mkdir -p "$dir/own"
cp bin/caisson "$dir/own/caisson"
CGO_ENABLED=0 go build -o "$dir/benchreport" ./tests/benchreport
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$dir/emptygo" ./tests/emptygo
# The same caisson without its exit wait for the network helper (build tag caisson_nowait): what that wait costs.
# make bench builds it as it builds bin/caisson (make bin/caisson-nowait).
cp bin/caisson-nowait "$dir/"
# The registry on 127.0.0.1 that bench-rootfs.sh pulls from.
CGO_ENABLED=0 go build -o "$dir/registry" ./tests/registry

as_user=()
if [ "$(id -u)" = 0 ]; then
	./tests/provision.sh "$user" >/dev/null
	need=()
	for p in hyperfine bubblewrap iperf3 gnuplot-nox skopeo; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
	if [ "${#need[@]}" -gt 0 ]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	fi
	as_user=(setpriv --reuid="$user" --regid="$user" --init-groups --reset-env)
	uhome=$(getent passwd "$user" | cut -d: -f6)
	chown "$user" "$dir/own/caisson"
else
	uhome=$HOME
fi
# RootlessKit from the Go module proxy, at bench time (never vendored).
rk=""
if GOBIN="$dir" GOFLAGS=-buildvcs=false CGO_ENABLED=0 timeout 300 \
	go install "github.com/rootless-containers/rootlesskit/v3/cmd/rootlesskit@$rkver" >"$dir/rk-build.log" 2>&1; then
	rk=./rootlesskit
fi
chmod -R a+rX "$dir"
run() { (cd "$dir" && "${as_user[@]}" env HOME="$uhome" USER="$user" PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"); }
c=./caisson # commands run in $dir
br=./benchreport
out=$dir/out
report=$dir/report.md
# Published ports below the ephemeral range (32768+ here): the connection-rate runs leave tens of thousands of
# client ports in TIME_WAIT, and a listener cannot bind a port that one of those still holds.
port=$((20000 + RANDOM % 10000))
nextport() { port=$((port + 1)); }
have() { command -v "$1" >/dev/null 2>&1; }

# Podman, when installed: rootless podman needs an image; with no registry, import one from busybox-static.
podman_ok=""
podman_note="not installed (apt package podman)"
if have podman; then
	mkdir -p "$dir/bb/bin"
	cp /bin/busybox "$dir/bb/bin/busybox" 2>/dev/null && for a in sh true sleep; do ln -sf busybox "$dir/bb/bin/$a"; done
	tar -C "$dir/bb" -cf "$dir/bb.tar" . && chmod a+r "$dir/bb.tar"
	if msg=$(run timeout 120 podman import "$dir/bb.tar" localhost/caisson-bench-busybox 2>&1) &&
		msg=$(run timeout 60 podman run --rm --network=none localhost/caisson-bench-busybox /bin/true 2>&1); then
		podman_ok=1
		podman_note="$(podman --version), rootless, image imported from busybox-static"
	else
		podman_note="$(podman --version) installed but rootless podman cannot run here: $(echo "$msg" | tail -2 | tr '\n' ' ')"
	fi
fi
rk_note="RootlessKit $rkver built from the Go module proxy"
[ -n "$rk" ] || rk_note="RootlessKit $rkver could not be built: $(tail -1 "$dir/rk-build.log")"

{
echo "# caisson benchmarks"
echo
echo "Generated by \`make bench\` (tests/bench.sh) in one run on $(date -u +%Y-%m-%d), as the unprivileged user \`$user\`."
echo "Every row's last column is its ratio to the best peer of the same table in the same run: below 1 caisson is"
echo "better for times and memory, above 1 better for throughput and rates. Absolute figures vary between runs on"
echo "this shared machine; ratios are the result."
echo
echo "## Machine and versions"
echo
echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
echo "- kernel: $(uname -sr); $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "- caisson: $("$dir/caisson" version | cut -d' ' -f2-)"
echo "- bubblewrap: $(bwrap --version 2>/dev/null || echo 'not installed')"
echo "- unshare: $(unshare --version | head -1)"
echo "- $rk_note"
echo "- Podman: $podman_note"
echo "- pasta: $(dpkg-query -W -f '${Version}' passt 2>/dev/null || echo '?'); slirp4netns: $(slirp4netns --version 2>/dev/null | head -1 | awk '{print $3}'); uidmap: $(dpkg-query -W -f '${Version}' uidmap 2>/dev/null || echo '?')"
echo "- $(hyperfine --version); $(iperf3 --version | head -1 | cut -d' ' -f1-2); $(go version | cut -d' ' -f3); $(gnuplot --version 2>/dev/null || echo 'no gnuplot')"
echo
} >"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: start-up" >&2
cmds=("$c run -- true" "$c run --map single -- true" "$c run --net pasta -- true" "$c run --net slirp4netns -- true")
have bwrap && cmds+=("bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --die-with-parent true")
cmds+=("unshare -Urmpfiun --mount-proc true" "unshare --map-auto --map-root-user -mpfiun --mount-proc true")
if [ -n "$rk" ]; then
	cmds+=("$rk --net=host --pidns true" "$rk --net=slirp4netns --disable-host-loopback --pidns true"
		"$rk --net=pasta --disable-host-loopback --pidns true")
fi
[ -n "$podman_ok" ] && cmds+=("podman run --rm --network=none localhost/caisson-bench-busybox /bin/true")
run timeout 900 hyperfine -N -w 3 -r "$runs" --export-json "$out/startup.json" "${cmds[@]}" >/dev/null 2>&1
# RootlessKit's pasta driver leaves its pasta running after every sandbox (rootlesskit-guide.md §10): count them for
# the report, then end them so they do not weigh on the rest of the run (caisson's own helpers use -T/-U flags, not
# the --tcp-ns= spelling matched here).
runner=$user
[ "$(id -u)" = 0 ] || runner=$(id -un)
rk_leaked=$(pgrep -u "$runner" -f -- '--tcp-ns=none' | wc -l)
pkill -u "$runner" -f -- '--tcp-ns=none' 2>/dev/null || true
{
echo "## Start-up: run \`true\` in a sandbox ($runs runs each, after 3 warm-ups)"
echo
echo "caisson per network mode and ID map against the peers (bwrap and unshare set up no network and no init;"
echo "RootlessKit with the same driver is the peer of each of caisson's user-mode networks)."
echo
"$dir/benchreport" table -tsv "$out/startup.tsv" "$out/startup.json"
echo "![start-up](startup.png)"
echo
[ -n "$rk" ] && echo "RootlessKit \`--net=pasta\` left $rk_leaked pasta processes running after its $((runs + 3)) runs (ended by the bench)." && echo
echo "The start-up targets (issue 14; the user-mode networks': issue 4), as ratios of medians from this run (RootlessKit"
echo "with the same driver):"
echo
bw="bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --die-with-parent true"
"$dir/benchreport" targets "$out/startup.json" "$c run -- true" "$bw" 2.0 "$c run --map single -- true" "$bw" 1.6 \
	"$c run --net pasta -- true" "$rk --net=pasta --disable-host-loopback --pidns true" 0.25 \
	"$c run --net slirp4netns -- true" "$rk --net=slirp4netns --disable-host-loopback --pidns true" 0.25
} >>"$report"

# The parts a caisson sandbox cannot do without, timed alone in one run: caisson's static Go binary started once
# (`caisson version`: the parent and init each pay it), newuidmap (run without arguments: its usage; exit status 1,
# hence -i), the command, and bwrap with its own start (`bwrap --version`) for the floor.
parts=("$c version" "./emptygo" "newuidmap" "true")
have bwrap && parts+=("bwrap --version" "$bw")
run timeout 600 hyperfine -N -i -w 3 -r "$runs" --export-json "$out/parts.json" "${parts[@]}" >/dev/null 2>&1
{
echo "### What the mandated parts cost alone ($runs runs each)"
echo
echo "caisson re-executes its own binary as the sandbox's init (a Go runtime cannot create namespaces for itself)"
echo "and writes the ID maps with the setuid newuidmap/newgidmap (run side by side, while init starts)."
echo
"$dir/benchreport" table "$out/parts.json"
if have bwrap; then
	echo "A sandbox does at least the kernel work bwrap does, but starts a Go program twice in series (the parent, then"
	echo "init) where bwrap starts one C program: caisson cannot beat bwrap − \`bwrap --version\` + 2 × a Go start, even"
	echo "if everything else it does cost nothing (benchreport floor):"
	echo
	"$dir/benchreport" floor "$out/parts.json" "$bw" "bwrap --version" "$c version" "./emptygo"
fi
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: CPU per sandbox" >&2
# benchreport cpu runs the commands in turn, round after round; as root it also splits each one's CPU by process
# from the kernel's taskstats exit records (it then runs the commands as the user itself).
cpucmds=("$c run -- true" "$c run --map single -- true" "$c run --net pasta -- true" "./own/caisson run -- true")
have bwrap && cpucmds+=("$bw" "bwrap --version")
cpucmds+=("unshare -Urmpfiun --mount-proc true" "./emptygo" "$c version" "newuidmap" "true")
if [ "$(id -u)" = 0 ]; then
	(cd "$dir" && timeout 1200 ./benchreport cpu -n "$runs" -procs -user "$user" -tsv "$out/cpu.tsv" -ref "$bw" "${cpucmds[@]}") >"$out/cpu.md" 2>&1 || echo "(not measured)" >>"$out/cpu.md"
else
	run timeout 1200 $br cpu -n "$runs" -tsv "$out/cpu.tsv" -ref "${bw:-true}" "${cpucmds[@]}" >"$out/cpu.md" 2>&1 || echo "(not measured)" >>"$out/cpu.md"
fi
{
echo "## CPU per sandbox ($runs runs of each command, in turn)"
echo
echo "User + system CPU of one run: the command and every process it waited for (rusage, how issue 14 measured it),"
echo "and, measured as root, the sum of the kernel's account of every process of the run's tree (taskstats exit"
echo "records: the scheduler's run time, orphans included — bwrap does not wait for its pid 1, so its rusage misses"
echo "it). \`./own/caisson\` is a copy of the binary owned by the user (a developer's own build). Then each command's"
echo "CPU by process: the parent, init (\`exe\` before it names itself \`caisson-init\`), the ID-map helpers, the"
echo "network helper, the command, with threads, minor page faults and context switches."
echo
sed -n '/^| command/,$p' "$out/cpu.md"
if have bwrap; then
	echo "The CPU targets of issue 14, from this run: the absolute figure (set on a machine where bwrap's run cost 1.8 ms),"
	echo "the ratio to bwrap's CPU that figure means, and the ratio to the floor: bwrap's CPU − \`bwrap --version\`'s + 2 ×"
	echo "an empty Go program's (+ 2 × newuidmap's with the helpers): the kernel work bwrap also does and the two Go starts"
	echo "and helpers this design needs (benchreport cputargets):"
	echo
	"$dir/benchreport" cputargets "$out/cpu.tsv" "$bw" "bwrap --version" "./emptygo" \
		"$c run --map single -- true" 8 - "$c run -- true" 10 newuidmap || echo "(not measured)"
fi
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: exit wait" >&2
{
echo "### What leaving nothing behind costs (issue 18)"
echo
echo "Before it exits, caisson waits until its network helper, killed as soon as init reports the sandbox's end,"
echo "has been reaped, and reaps any other child: it leaves no zombie to a parent that never reaps. The comparison"
echo "build \`caisson-nowait\` (build tag \`caisson_nowait\`) skips that wait and leaves its helper to its parent, as"
echo "caisson did before. Run $runs times as a child subreaper's command (benchreport tail), each build shows in how"
echo "many runs it left something and how long that lived on after caisson's exit: for \`caisson-nowait\`, what the"
echo "wait costs."
echo
echo "| command | runs that left something | median ms it lived on | p90 ms |"
echo "|---|---:|---:|---:|"
for n in pasta slirp4netns; do
	for b in "$c" ./caisson-nowait; do
		run timeout 600 $br tail -n "$runs" -label "$b run --net $n -- true" -- $b run --net $n -- true || echo "| \`$b run --net $n\` | not measured | | |"
	done
done
echo
echo "The same builds run alternately $runs times each (benchreport pair): the paired difference of the end-to-end"
echo "times (\`--net none\` has no helper: its row shows the noise)."
echo
run timeout 900 $br pair -n "$runs" -a "$c run -- true" -b "./caisson-nowait run -- true" \
	-a "$c run --net pasta -- true" -b "./caisson-nowait run --net pasta -- true" \
	-a "$c run --net slirp4netns -- true" -b "./caisson-nowait run --net slirp4netns -- true" || echo "(not measured)"
echo "The wait is short because init creates the sandbox's tap device as a persistent one before the helper attaches"
echo "to it (slirp.PrepareTap): when the helper dies the device stays and goes with the network namespace in the"
echo "kernel's background clean-up. A helper that creates the device itself removes it in its own exit, which waits"
echo "for RCU grace periods (\`rcu_barrier\` in \`netdev_run_todo\`): 15-25 ms more per sandbox here."
echo
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: concurrent start-up" >&2
: >"$out/conc.tsv"
run timeout 600 $br conc -label "caisson run" -n "$conc" -- $c run -- true >>"$out/conc.tsv"
run timeout 600 $br conc -label "caisson run --net pasta" -n "$conc" -- $c run --net pasta -- true >>"$out/conc.tsv"
have bwrap && run timeout 600 $br conc -label "bwrap --unshare-all" -n "$conc" -- bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --die-with-parent true >>"$out/conc.tsv"
run timeout 600 $br conc -label "unshare --map-auto -mpfiun" -n "$conc" -- unshare --map-auto --map-root-user -mpfiun --mount-proc true >>"$out/conc.tsv"
[ -n "$rk" ] && run timeout 600 $br conc -label "rootlesskit --net=slirp4netns" -n "$conc" -- $rk --net=slirp4netns --disable-host-loopback --pidns true >>"$out/conc.tsv" 2>/dev/null
{
echo "## Start-up of N sandboxes at once (wall time of each, 3 rounds per N)"
echo
echo "| command | N | p50 ms | p99 ms | failed | p50 ratio to best peer at N |"
echo "|---|---:|---:|---:|---:|---:|"
awk -F'\t' '{ rows[NR]=$0; if ($1 !~ /caisson/ && $3 > 0 && (best[$2] == "" || $3 < best[$2])) best[$2]=$3 }
	END { for (i = 1; i <= NR; i++) { split(rows[i], f, "\t"); r = best[f[2]] ? sprintf("%.2f", f[3]/best[f[2]]) : "n/a";
		printf "| `%s` | %d | %.1f | %.1f | %d | %s |\n", f[1], f[2], f[3], f[4], f[5], r } }' "$out/conc.tsv"
echo
echo "![concurrent start-up](concurrency.png)"
echo
awk -F'\t' '$1 == "caisson run" && $2 == 50 {c=$3} $1 == "bwrap --unshare-all" && $2 == 50 {b=$3}
	END { if (c > 0 && b > 0) printf "50 sandboxes at once, p50: caisson %.1f ms / bwrap %.1f ms = %.2f× (issue 14 target ≤ 2.5×: %s)\n\n", c, b, c/b, (c/b <= 2.5 ? "met" : "not met") }' "$out/conc.tsv"
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: published ports" >&2
# iperf3 from the host's 127.0.0.1 to a server: on the host loopback (baseline), in caisson through -p, in
# RootlessKit through its builtin port driver. The server serves one client (-1) and every step is bounded.
iperf() { # label, then the server command with PORT in it
	local label=$1 p
	shift
	nextport
	p=$port
	run timeout $((secs + 30)) "${@//PORT/$p}" >/dev/null 2>&1 &
	local srv=$!
	local bps=""
	for _ in $(seq 1 50); do
		if bps=$(run timeout $((secs + 10)) iperf3 -c 127.0.0.1 -p "$p" -t "$secs" -J 2>/dev/null |
			awk '/"sum_received"/ {f=1} f && /bits_per_second/ {gsub(/[,]/, ""); print $2/1e9; exit}') && [ -n "$bps" ]; then
			break
		fi
		sleep 0.2
	done
	wait "$srv" 2>/dev/null || true
	printf '%s\t%s\n' "$label" "${bps:-NaN}"
}
{
	iperf "host loopback (no sandbox)" iperf3 -s -1 -p PORT
	iperf "caisson --net pasta -p" $c run --net pasta -p 127.0.0.1:PORT:5201 -- iperf3 -s -1
	iperf "caisson --net slirp4netns -p" $c run --net slirp4netns -p 127.0.0.1:PORT:5201 -- iperf3 -s -1
	[ -n "$rk" ] && iperf "rootlesskit slirp4netns, builtin port driver" $rk --net=slirp4netns --disable-host-loopback --port-driver=builtin -p 127.0.0.1:PORT:5201/tcp iperf3 -s -1
} >"$out/iperf.txt"
connrate() { # label, then the server command with PORT in it
	local label=$1 p
	shift
	nextport
	p=$port
	run timeout $((secs + 40)) "${@//PORT/$p}" >/dev/null 2>&1 &
	local srv=$!
	local r
	r=$(run timeout $((secs + 30)) $br connrate -addr "127.0.0.1:$p" -d "${secs}s" -c 4 2>/dev/null) || r=NaN
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
	printf '%s\t%s\n' "$label" "$r"
}
serve="$br serve -d $((secs + 15))s -addr"
{
	connrate "host loopback (no sandbox)" $serve 127.0.0.1:PORT
	connrate "caisson --net pasta -p" $c run --net pasta -p 127.0.0.1:PORT:8080 -- $serve 0.0.0.0:8080
	connrate "caisson --net slirp4netns -p" $c run --net slirp4netns -p 127.0.0.1:PORT:8080 -- $serve 0.0.0.0:8080
	[ -n "$rk" ] && connrate "rootlesskit slirp4netns, builtin port driver" $rk --net=slirp4netns --disable-host-loopback --port-driver=builtin -p 127.0.0.1:PORT:8080/tcp $serve 0.0.0.0:8080
} >"$out/connrate.txt"
{
echo "## Published ports: throughput and connection rate from the host's 127.0.0.1"
echo
echo "iperf3 for ${secs} s through each path (one stream); the ratio's reference is the best peer, i.e. the host"
echo "loopback without any sandbox when it is the fastest."
echo
"$dir/benchreport" rows -head path -unit Gbit/s -higher -tsv "$out/iperf.tsv" <"$out/iperf.txt"
echo "TCP connections per second (connect, read one byte, close; 4 clients, ${secs} s; benchreport connrate):"
echo
"$dir/benchreport" rows -head path -unit conn/s -higher -tsv "$out/connrate.tsv" <"$out/connrate.txt"
echo "![published ports](ports.png)"
echo
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: memory" >&2
: >"$out/mem.tsv"
run timeout 300 $br mem -label "caisson run" -n "$memn" -- $c run -- sleep 60 >>"$out/mem.tsv"
run timeout 300 $br mem -label "caisson run --net pasta" -n "$memn" -- $c run --net pasta -- sleep 60 >>"$out/mem.tsv"
run timeout 300 $br mem -label "caisson run --net slirp4netns" -n "$memn" -- $c run --net slirp4netns -- sleep 60 >>"$out/mem.tsv"
have bwrap && run timeout 300 $br mem -label "bwrap --unshare-all" -n "$memn" -- bwrap --unshare-all --ro-bind / / --proc /proc --dev /dev --die-with-parent sleep 60 >>"$out/mem.tsv"
[ -n "$rk" ] && run timeout 300 $br mem -label "rootlesskit --net=slirp4netns" -n "$memn" -- $rk --net=slirp4netns --disable-host-loopback --pidns sleep 60 >>"$out/mem.tsv" 2>/dev/null
{
echo "## Memory of the sandbox's own processes (PSS per sandbox, N sandboxes running \`sleep\`)"
echo
echo "The tool's processes only (caisson, its init and network helper; bwrap; rootlesskit, its child and"
echo "slirp4netns), without the payload, once all N have run 2 s (the steady state; caisson's processes unmap the"
echo "binary's code and tables they needed only to start after 1 s). PSS shares the pages of N copies of one binary,"
echo "so it falls as N grows."
echo
echo "| command | N | KiB per sandbox | processes per sandbox | ratio to best peer at N |"
echo "|---|---:|---:|---:|---:|"
awk -F'\t' '{ rows[NR]=$0; if ($1 !~ /caisson/ && $3 > 0 && (best[$2] == "" || $3 < best[$2])) best[$2]=$3 }
	END { for (i = 1; i <= NR; i++) { split(rows[i], f, "\t"); r = best[f[2]] ? sprintf("%.2f", f[3]/best[f[2]]) : "n/a";
		printf "| `%s` | %d | %d | %s | %s |\n", f[1], f[2], f[3], f[4], r } }' "$out/mem.tsv"
echo
echo "![memory](memory.png)"
echo
awk -F'\t' '$1 == "caisson run" && $2 == 30 { printf "PSS per sandbox at 30 sandboxes: %.2f MB (issue 14 target ≤ 2 MB: %s)\n\n", $3/1024, ($3 <= 2048 ? "met" : "not met") }' "$out/mem.tsv"
echo "Resident memory (VmRSS, shared pages counted in full) of each of caisson's processes after one sandbox has run"
echo "\`sleep\` 2 s with \`--net pasta\` (issue 14 target: ≤ 5 MB for the supervising parent):"
echo
run timeout 60 $br rss -- $c run --net pasta -- sleep 60 || echo "(not measured)"
} >>"$report"

# ---------------------------------------------------------------------------------------------------------------
echo "bench: strict stdio relay" >&2
# 1 GiB through the command's stdin, its stdout, and both, in the strict posture (caisson relays a file given as
# stdio through a pipe) against the same command fed by a plain pipe (cat | caisson | cat), and against the default
# posture (the command gets the file itself). The data lives on a tmpfs when /dev/shm is one, so that the disk
# does not decide.
relayruns=${BENCH_RELAY_RUNS:-10}
relaydir=$(run mktemp -d /dev/shm/caisson-bench-relay.XXXXXX 2>/dev/null) || relaydir=$(run mktemp -d "$dir/out/relay.XXXXXX")
gib=$((1 << 30))
run sh -c "head -c $gib /dev/urandom > $relaydir/in && chmod a+r $relaydir/in"
# The commands name the files $F and $O (set in hyperfine's environment), so that the report's rows stay short.
rs="$c run --security strict --no-cwd"
rd="$c run --no-cwd"
for way in stdin stdout both; do
	case $way in
	stdin) cmds=("$rs -- cat < \$F > /dev/null" "cat \$F | $rs -- cat > /dev/null" "$rd -- cat < \$F > /dev/null") ;;
	stdout) cmds=("$rs --ro-bind \$F:/tmp/in -- cat /tmp/in > \$O" "$rs --ro-bind \$F:/tmp/in -- cat /tmp/in | cat > \$O"
		"$rd --ro-bind \$F:/tmp/in -- cat /tmp/in > \$O") ;;
	both) cmds=("$rs -- cat < \$F > \$O" "cat \$F | $rs -- cat | cat > \$O" "$rd -- cat < \$F > \$O") ;;
	esac
	run env F="$relaydir/in" O="$relaydir/out" timeout 1200 hyperfine -w 1 -r "$relayruns" --export-json "$out/relay-$way.json" \
		"${cmds[@]}" >/dev/null 2>&1 || echo "bench: the relay's $way runs failed" >&2
	rm -f "$relaydir/out"
done
{
echo "## The strict posture's stdio relay: 1 GiB through stdin, stdout and both ($relayruns runs each)"
echo
echo "In \`--security strict\` a file given as stdin or stdout reaches the command as a pipe that caisson relays"
echo "(splice); the reference of each table is the same command fed by a plain pipe, and the last row is the default"
echo "posture, where the command gets the file itself. \$F and \$O are on $(stat -f -c %T "$relaydir") ($relaydir)."
echo
for way in stdin stdout both; do
	echo "### $way"
	echo
	case $way in
	stdin) base="cat \$F | $rs -- cat > /dev/null" ;;
	stdout) base="$rs --ro-bind \$F:/tmp/in -- cat /tmp/in | cat > \$O" ;;
	both) base="cat \$F | $rs -- cat | cat > \$O" ;;
	esac
	"$dir/benchreport" throughput -bytes "$gib" -base "$base" "$out/relay-$way.json" || echo "(not measured)"
done
} >>"$report"
rm -rf "$relaydir"
relaydir=""

# ---------------------------------------------------------------------------------------------------------------
for extra in rootfs harden; do
	script=tests/bench-$extra.sh
	[ -x "$script" ] || continue
	echo "bench: $script" >&2
	cp "$script" "$dir/bench-$extra.sh"
	chmod a+rx "$dir/bench-$extra.sh"
	{
	echo "## From tests/bench-$extra.sh"
	echo
	echo '```'
	if [ "$extra" = harden ]; then
		# bench-harden.sh builds its probe from the repository and switches to the test user itself.
		timeout 900 "$script" 2>&1 | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | tail -n 120 || echo "(tests/bench-$extra.sh failed)"
	else
		run env CAISSON_BIN="$dir/caisson" CAISSON_REGISTRY="$dir/registry" timeout 900 bash "$dir/bench-$extra.sh" 2>&1 | sed 's/\x1b\[[0-9;]*[A-Za-z]//g' | tail -n 200 || echo "(tests/bench-$extra.sh failed)"
	fi
	echo '```'
	echo
	} >>"$report"
done

# ---------------------------------------------------------------------------------------------------------------
# caisson-oci against runc, alone and under each engine (as root only: the runtimes and engines run as root).
if [ "$(id -u)" = 0 ] && [ -x bin/caisson-oci ]; then
	echo "bench: tests/bench-oci.sh" >&2
	{
	echo "## caisson-oci (tests/bench-oci.sh)"
	echo
	timeout 1800 ./tests/bench-oci.sh 2>/dev/null || echo "(tests/bench-oci.sh failed)"
	echo
	} >>"$report"
fi

# ---------------------------------------------------------------------------------------------------------------
echo "bench: charts" >&2
if have gnuplot; then
	(cd "$out" && gnuplot) <<'EOF' || echo "bench: gnuplot failed" >&2
set terminal pngcairo size 1000,520 noenhanced font ",10"
set style fill solid 0.8 border -1
set grid ytics
set key top left
set datafile separator "\t"
array C[5] = ["caisson run", "caisson run --net pasta", "bwrap --unshare-all", "unshare --map-auto -mpfiun", "rootlesskit --net=slirp4netns"]
array M[5] = ["caisson run", "caisson run --net pasta", "caisson run --net slirp4netns", "bwrap --unshare-all", "rootlesskit --net=slirp4netns"]

set output "startup.png"
set title "Start-up of one sandbox: median ms (bars) and p90 (points)"
set boxwidth 0.7
set xtics rotate by -30 left
set ylabel "ms"
set bmargin 8
plot "startup.tsv" using 0:2:xticlabels(1) with boxes lc rgb "#4477aa" title "median", \
	"" using 0:3 with points pt 7 lc rgb "#aa3377" title "p90"

set output "concurrency.png"
set title "N sandboxes started at once: p50 (solid) and p99 (dashed) wall time per sandbox"
set xtics norotate
set bmargin 4
set xlabel "N"
set ylabel "ms"
set logscale y
plot for [i=1:|C|] "conc.tsv" using (strcol(1) eq C[i] ? $2 : NaN):3 with linespoints lw 2 lc i title C[i], \
	for [i=1:|C|] "conc.tsv" using (strcol(1) eq C[i] ? $2 : NaN):4 with linespoints dt 2 lc i notitle
unset logscale y

set output "ports.png"
set multiplot layout 1,2 title "Published ports from 127.0.0.1"
set xtics rotate by -30 left
set bmargin 10
set xlabel ""
set title "iperf3 throughput (Gbit/s)"
set ylabel "Gbit/s"
plot "iperf.tsv" using 0:2:xticlabels(1) with boxes lc rgb "#228833" notitle
set title "TCP connections per second"
set ylabel "conn/s"
plot "connrate.tsv" using 0:2:xticlabels(1) with boxes lc rgb "#ccbb44" notitle
unset multiplot

set output "memory.png"
set title "PSS of the sandbox's own processes per sandbox, N sandboxes running"
set xtics norotate
set bmargin 4
set xlabel "N"
set ylabel "KiB per sandbox"
plot for [i=1:|M|] "mem.tsv" using (strcol(1) eq M[i] ? $2 : NaN):3 with linespoints lw 2 lc i title M[i]
EOF
else
	echo "(gnuplot not installed: no charts)" >>"$report"
fi

cp "$report" "$outdir/report.md"
for f in startup concurrency ports memory; do
	[ -s "$out/$f.png" ] && cp "$out/$f.png" "$outdir/$f.png"
done
cat "$outdir/report.md"
echo "bench: wrote $outdir/report.md and its charts" >&2
