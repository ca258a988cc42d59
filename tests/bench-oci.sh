#!/usr/bin/env bash
# The OCI runtime's section of `make bench` (tests/bench.sh runs it as root; it also runs alone, as root, printing
# markdown): caisson-oci against runc (and crun where it runs) in the same run, as a bundle's lifecycle and under
# each engine (Podman, containerd's ctr, the CRI plugin, Docker), plus what a running container leaves resident of
# the runtime. Every engine is a daemon of this script's own (state under a temporary directory, stopped at the
# end); images are made offline from busybox-static. Traffic: none (containers without a network, or the node's).
#
# Environment: BENCH_RUNS (hyperfine runs, default 30), BENCH_ENGINE_RUNS (default 15).
set -euo pipefail
[ -n "${BENCH_TRACE:-}" ] && set -x
cd "$(dirname "$0")/.."
root=$(pwd)
runs=${BENCH_RUNS:-30}
eruns=${BENCH_ENGINE_RUNS:-15}
[ "$(id -u)" = 0 ] || { echo "bench-oci.sh: run as root (runtimes and engines as root)" >&2; exit 2; }
oci=$root/bin/caisson-oci
[ -x "$oci" ] || { echo "bench-oci.sh: build first (make build)" >&2; exit 2; }
# (not "caisson" in the path: benchreport tells caisson's rows from the peers' by that word)
dir=$(mktemp -d /tmp/ocibench.XXXXXX)
daemons=()
cleanup() {
	for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${daemons[@]}"; do for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
	ip link del cni-caissonb 2>/dev/null || true
	umount -R "$dir/docker/data" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT
br=$dir/benchreport
CGO_ENABLED=0 go build -o "$br" ./tests/benchreport
have() { command -v "$1" >/dev/null 2>&1; }
hf() { hyperfine -N --style none "$@" >/dev/null; }

# A busybox root file system, as the tests make it, and a bundle of `true`.
mkdir -p "$dir/rootfs/bin" "$dir/bundle"
for d in dev proc sys tmp etc; do mkdir -p "$dir/rootfs/$d"; done
cp /bin/busybox "$dir/rootfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$dir/rootfs/etc/passwd"
tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
mv "$dir/rootfs" "$dir/bundle/rootfs"
"$oci" spec --bundle "$dir/bundle"
# runc 1.1 and crun 1.8 know runtime-spec 1.0.2, not caisson-oci's 1.3.0; the rest is the same config (made one
# line first, so that sed sees each array whole).
tr -d '\n\t' <"$dir/bundle/config.json" |
	sed 's/"ociVersion": *"[^"]*"/"ociVersion": "1.0.2"/; s/"terminal": *true/"terminal": false/; s/"args": *\[[^]]*\]/"args": ["true"]/' >"$dir/true.json"
cp "$dir/true.json" "$dir/bundle/config.json"

echo "### The OCI runtime: caisson-oci against runc"
echo
echo "A bundle's lifecycle, \`RUNTIME run --bundle B ID\` of \`/bin/true\` (create, start, wait, delete in one"
echo "command), as root, $runs runs each; CPU is the runtime's and the container's, user+system per run."
echo
# Each runtime with a state directory of this run's own.
cmds=(-n "caisson-oci run" "$oci --root $dir/state-k run --bundle $dir/bundle k")
have runc && cmds+=(-n "runc run" "runc --root $dir/state-r run --bundle $dir/bundle r")
crun_note=""
if have crun; then
	if crun run --bundle "$dir/bundle" crun-probe >/dev/null 2>"$dir/crun.err"; then
		cmds+=(-n "crun run" "crun run --bundle $dir/bundle c")
	else
		crun_note="crun $(crun --version | head -1 | awk '{print $3}') does not run here: $(head -1 "$dir/crun.err")"
	fi
fi
hf -w 5 -r "$runs" --export-json "$dir/life.json" "${cmds[@]}"
"$br" table -cpu "$dir/life.json"
[ -n "$crun_note" ] && echo "$crun_note (this machine's hybrid cgroup layout)." && echo

# Resident memory a running container leaves of its runtime: none of runc's or caisson-oci's processes stay.
echo "What a running container leaves resident of its runtime (10 containers of \`sleep\` created and started):"
echo
echo "| runtime | runtime processes left | RSS of the container's own process (kB) |"
echo "|---|---:|---:|"
sed 's/"args": *\["true"\]/"args": ["sleep", "1000"]/' "$dir/true.json" >"$dir/bundle/config.json"
for rt in "$oci" $(have runc && echo runc); do
	name=$(basename "$rt")
	pids=()
	st="$dir/state-m-$name"
	for i in $(seq 10); do
		"$rt" --root "$st" create --bundle "$dir/bundle" --pid-file "$dir/pid" "m$i" >/dev/null 2>&1 </dev/null
		"$rt" --root "$st" start "m$i"
		pids+=("$(cat "$dir/pid")")
	done
	left=$(pgrep -c -f "(caisson-oci|runc)( |$).*(create|start|init)" || true)
	rss=$(awk '/VmRSS/ {print $2}' "/proc/${pids[0]}/status")
	echo "| $name | $left | $rss |"
	for i in $(seq 10); do "$rt" --root "$st" delete --force "m$i" >/dev/null 2>&1; done
done
cp "$dir/true.json" "$dir/bundle/config.json"
echo

# Podman (rootful, cgroupfs), caisson-oci against runc.
if have podman && have conmon; then
	cat >"$dir/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
[engine.runtimes]
caisson-oci = ["$oci"]
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
EOF
	export CONTAINERS_CONF=$dir/containers.conf
	P="podman --root $dir/podman/root --runroot $dir/podman/run --tmpdir $dir/podman/tmp"
	$P import --change 'ENV PATH=/bin' "$dir/rootfs.tar" localhost/bb >/dev/null 2>&1
	echo "Podman $(podman version --format '{{.Client.Version}}'), \`podman run --rm --network none IMAGE true\`, $eruns runs:"
	echo
	hf -w 2 -r "$eruns" --export-json "$dir/podman.json" -n "podman run --runtime caisson-oci" "$P --runtime caisson-oci run --rm --network none localhost/bb true" \
		-n "podman run --runtime runc" "$P --runtime runc run --rm --network none localhost/bb true"
	"$br" table "$dir/podman.json"
	$P rm -af >/dev/null 2>&1 || true
	unset CONTAINERS_CONF
fi

# containerd: ctr run, and the CRI pod sandbox + one container to running.
if have containerd && have ctr; then
	c=$dir/ctrd
	mkdir -p "$c/cni"
	cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
[grpc]
  address = "$c/c.sock"
[ttrpc]
  address = "$c/c.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:latest"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.caisson]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.caisson.options]
      BinaryName = "$oci"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$c/cni"
EOF
	echo '{"cniVersion": "1.0.0", "name": "caisson-bench", "plugins": [{"type": "bridge", "bridge": "cni-caissonb", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.214.0.0/24"}]]}}]}' >"$c/cni/10.conflist"
	containerd --config "$c/config.toml" >"$c/log" 2>&1 &
	daemons+=($!)
	for _ in $(seq 300); do ctr --address "$c/c.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
	# Images as docker-save archives, made with caisson's own image code path: podman when installed.
	if have podman; then
		export CONTAINERS_CONF=$dir/containers.conf
		P="podman --root $dir/podman/root --runroot $dir/podman/run --tmpdir $dir/podman/tmp"
		$P import --change 'CMD ["/bin/sleep","infinity"]' --change 'ENV PATH=/bin' "$dir/rootfs.tar" localhost/pause >/dev/null 2>&1
		$P save -o "$dir/bb.tar" localhost/bb >/dev/null 2>&1
		$P save -o "$dir/pause.tar" localhost/pause >/dev/null 2>&1
		unset CONTAINERS_CONF
		for ns in bench k8s.io; do
			ctr --address "$c/c.sock" -n $ns images import "$dir/bb.tar" >/dev/null
			ctr --address "$c/c.sock" -n $ns images import "$dir/pause.tar" >/dev/null
		done
		C="ctr --address $c/c.sock -n bench run --rm --runtime io.containerd.runc.v2"
		echo "containerd $(containerd --version | awk '{print $3}'), \`ctr run --rm IMAGE true\` (the runc shim with --runc-binary), $eruns runs:"
		echo
		hf -w 2 -r "$eruns" --export-json "$dir/ctr.json" -n "ctr run --runc-binary caisson-oci" "$C --runc-binary $oci localhost/bb:latest k true" \
			-n "ctr run --runc-binary runc" "$C --runc-binary $(command -v runc) localhost/bb:latest r true"
		"$br" table "$dir/ctr.json"
		if have crictl; then
			printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n' "$c/c.sock" "$c/c.sock" >"$c/crictl.yaml"
			echo '{"metadata": {"name": "b", "namespace": "default", "uid": "b", "attempt": 1}, "log_directory": "'"$c"'/logs", "linux": {}}' >"$c/pod.json"
			echo '{"metadata": {"name": "c"}, "image": {"image": "localhost/bb:latest"}, "command": ["sleep", "100"], "log_path": "c.log", "linux": {}}' >"$c/ctr.json"
			cat >"$c/podcycle.sh" <<EOF
#!/bin/sh
set -e
cr="crictl --config $c/crictl.yaml"
pod=\$(\$cr runp --runtime \$1 $c/pod.json 2>/dev/null)
ctr=\$(\$cr create \$pod $c/ctr.json $c/pod.json 2>/dev/null)
\$cr start \$ctr >/dev/null 2>&1
\$cr stopp \$pod >/dev/null 2>&1
\$cr rmp \$pod >/dev/null 2>&1
EOF
			chmod +x "$c/podcycle.sh"
			echo "The CRI path (containerd's CRI plugin, a RuntimeClass handler): a pod sandbox (CNI bridge network) and one"
			echo "container started, then the pod stopped and removed, $eruns runs:"
			echo
			hf -w 2 -r "$eruns" --export-json "$dir/cri.json" -n "CRI pod + container, handler caisson" "$c/podcycle.sh caisson" \
				-n "CRI pod + container, handler runc" "$c/podcycle.sh runc"
			"$br" table "$dir/cri.json"
		fi
	fi
fi

# Docker, with both runtimes added to one daemon.
if have dockerd && have docker; then
	d=$dir/docker
	mkdir -p "$d"
	dockerd --data-root "$d/data" --exec-root "$d/exec" --pidfile "$d/pid" -H "unix://$d/d.sock" --bridge none \
		--iptables=false --ip6tables=false --ip-masq=false --storage-driver overlay2 \
		--add-runtime "caisson=$oci" >"$d/log" 2>&1 &
	daemons+=($!)
	D="docker -H unix://$d/d.sock"
	for _ in $(seq 300); do $D version >/dev/null 2>&1 && break; sleep 0.1; done
	$D import --change 'ENV PATH=/bin' "$dir/rootfs.tar" localhost/bb >/dev/null
	echo "Docker $($D version --format '{{.Server.Version}}'), \`docker run --rm --network none IMAGE true\`, $eruns runs:"
	echo
	hf -w 2 -r "$eruns" --export-json "$dir/docker.json" -n "docker run --runtime caisson" "$D run --rm --runtime caisson --network none localhost/bb true" \
		-n "docker run --runtime runc" "$D run --rm --runtime runc --network none localhost/bb true"
	"$br" table "$dir/docker.json"
fi
