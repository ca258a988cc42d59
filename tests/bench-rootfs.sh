#!/usr/bin/env bash
# Benchmarks of caisson's root file systems (run as an unprivileged user with subordinate ids, after make build):
# start-up of --overlay and --rootfs against a plain run (and bwrap when it has --overlay-src), file metadata and
# large-read throughput inside an overlay against a host directory, unpack of a ~100 MB image against tar -x, and
# rootfs pull of it from a registry on 127.0.0.1 (CAISSON_REGISTRY) against podman pull and skopeo copy.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CAISSON_BIN:-$PWD/bin/caisson}
# Under $HOME, not /tmp: the sandbox has a private /tmp, and the overlay runs read the files through the host view.
work=$(mktemp -d "$HOME/.caisson-bench.XXXXXX")
trap '"$bin" run --no-cwd --bind "$work:/tmp/w" -- rm -rf /tmp/w/img-root >/dev/null 2>&1 || true; "$bin" rm-tree "$work/pulled" >/dev/null 2>&1 || true; kill "${REGISTRY_PID:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/rfs/bin"
cp /bin/busybox "$work/rfs/bin/busybox"
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$work/rfs/bin/$a"; done

echo "== start-up"
cmds=("$bin run -- true" "$bin run --overlay -- true" "$bin run --rootfs $work/rfs -- /bin/true")
if bwrap --help 2>&1 | grep -q -- --overlay-src; then
	cmds+=("bwrap --unshare-all --overlay-src / --tmp-overlay / --proc /proc --dev /dev -- true")
else
	echo "bwrap $(bwrap --version | cut -d' ' -f2) has no --overlay-src (added in 0.11): not compared"
fi
hyperfine -N -w 5 -r 50 "${cmds[@]}"

echo "== metadata (create, stat, read, unlink 2000 files) and a 512 MiB read: overlay vs host directory"
meta='cd "$0" && i=0; while [ $i -lt 2000 ]; do echo x > f$i; i=$((i+1)); done; ls -l >/dev/null; cat f* >/dev/null; rm -f f*'
mkdir -p "$work/host"
dd if=/dev/urandom of="$work/big" bs=1M count=512 status=none
hyperfine -w 2 -r 10 \
	"$bin run --no-cwd --bind $work/host:/tmp/h -- sh -c '$meta' /tmp/h" \
	"$bin run --no-cwd --overlay -- sh -c 'mkdir -p \$HOME/m && $meta' \$HOME/m" \
	"$bin run --no-cwd --bind $work:/tmp/h -- cat /tmp/h/big" \
	"$bin run --no-cwd --overlay -- cat $work/big"

echo "== overlay drivers: kernel overlayfs vs fuse-overlayfs (the host view; CAISSON_OVERLAY_DRIVER forces one)"
if command -v fuse-overlayfs >/dev/null && [ -r /dev/fuse ] && [ -w /dev/fuse ]; then
	k="env CAISSON_OVERLAY_DRIVER=kernel $bin run --no-cwd --overlay"
	f="env CAISSON_OVERLAY_DRIVER=fuse-overlayfs $bin run --no-cwd --overlay"
	hyperfine -N -w 5 -r 50 "$k -- true" "$f -- true"
	# Metadata in a new directory, a 512 MiB read of a lower file, and its copy-up (append one byte).
	hyperfine -w 2 -r 10 \
		"$k -- sh -c 'mkdir -p \$HOME/m && $meta' \$HOME/m" \
		"$f -- sh -c 'mkdir -p \$HOME/m && $meta' \$HOME/m" \
		"$k -- cat $work/big" \
		"$f -- cat $work/big" \
		"$k -- sh -c 'echo >> $work/big'" \
		"$f -- sh -c 'echo >> $work/big'"
	# What only fuse-overlayfs can do: the issue's example (the host's root owns /etc/motd and /usr/local).
	hyperfine -N -w 3 -r 30 "$f -- sh -c 'echo x > /etc/motd; mkdir /usr/local/new'"
else
	echo "fuse-overlayfs or a usable /dev/fuse missing: drivers not compared"
fi

echo "== unpack of a ~100 MB image (docker-save) vs tar -x of its layers"
if [ -x "$work/../caisson-mkimage" ] || true; then
	mkdir -p "$work/layer/data"
	for i in $(seq 1 50); do head -c 2M /dev/urandom > "$work/layer/data/f$i"; done
	tar -C "$work/layer" -cf "$work/layer.tar" .
	cfg=$(printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$(sha256sum "$work/layer.tar" | cut -d' ' -f1)")
	echo "$cfg" > "$work/config.json"
	printf '[{"Config":"config.json","RepoTags":["bench:1"],"Layers":["layer.tar"]}]' > "$work/manifest.json"
	tar -C "$work" -cf "$work/image.tar" manifest.json config.json layer.tar
	hyperfine -w 1 -r 5 \
		--prepare "$bin run --no-cwd --bind $work:/tmp/w -- rm -rf /tmp/w/img-root; rm -rf $work/tar-root" \
		"$bin rootfs unpack $work/image.tar $work/img-root" \
		"mkdir -p $work/tar-root && tar -C $work/tar-root -xf $work/layer.tar"
fi

echo "== rootfs pull of that image from a registry on 127.0.0.1 (tests/registry) vs podman pull and skopeo copy"
# caisson rootfs pull fetches and unpacks (as podman pull does into its storage); skopeo copy only fetches, into
# an OCI layout. The layer is 100 MB of random data, gzip-compressed by the registry's push.
reg=${CAISSON_REGISTRY:-}
if [ -n "$reg" ] && [ -x "$reg" ] && [ -f "$work/image.tar" ]; then
	coproc REGISTRY { exec "$reg" -push "bench/img:1=$work/image.tar"; }
	read -r url <&"${REGISTRY[0]}"
	host=${url#http://}
	img=$host/bench/img:1
	# No credentials: an empty auth file keeps skopeo and podman off /run/containers/UID (a root podman may have
	# made /run/containers unreadable).
	echo '{}' >"$work/auth.json"
	export REGISTRY_AUTH_FILE=$work/auth.json
	args=(--prepare "$bin rm-tree $work/pulled >/dev/null 2>&1 || true" "$bin rootfs pull $img $work/pulled")
	if command -v podman >/dev/null && podman pull -q --tls-verify=false "$img" >/dev/null 2>&1; then
		args+=(--prepare "podman rmi -f $img >/dev/null 2>&1 || true" "podman pull -q --tls-verify=false $img")
	else
		echo "podman: not installed or cannot pull here: not compared"
	fi
	if command -v skopeo >/dev/null; then
		args+=(--prepare "rm -rf $work/skopeo" "skopeo copy -q --src-tls-verify=false docker://$img oci:$work/skopeo:img")
	else
		echo "skopeo: not installed (apt package skopeo): not compared"
	fi
	hyperfine -w 1 -r 5 "${args[@]}"
	"$bin" rm-tree "$work/pulled" >/dev/null 2>&1 || true
	podman rmi -f "$img" >/dev/null 2>&1 || true
	kill "$REGISTRY_PID" 2>/dev/null || true
else
	echo "the test registry (CAISSON_REGISTRY, built from tests/registry) is missing: rootfs pull not measured"
fi
