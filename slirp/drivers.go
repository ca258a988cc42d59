package slirp

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pastaArgs is the pasta command line. pasta runs in the foreground (so it
// stays our child and keeps Pdeathsig) and writes its PID file to fd 3, a
// pipe: that line is the readiness signal, written after --config-net has
// configured tap0 and just before the event loop starts.
//
//   - -t none -u none: no host→sandbox forwarding by pasta (no "auto", which
//     would publish every sandbox listener on 0.0.0.0); published ports use
//     this package's forwarder instead.
//   - -T none -U none: no sandbox→host loopback forwarding. pasta's default
//     "auto" splices the sandbox's own 127.0.0.1:PORT to the host's loopback
//     for every port bound on the host, even with --no-map-gw.
//   - --no-map-gw unless host loopback is allowed: the gateway address does
//     not lead to the host.
//   - --ipv4-only: the guest network is IPv4 (10.0.2.0/24) only.
func pastaArgs(path string, pid, mtu int, allowHostLoopback bool) []string {
	args := []string{path,
		"--foreground", "--quiet", "--stderr",
		"--pid", "/proc/self/fd/3",
		"--config-net", "--ns-ifname", guestIfName, "--mtu", strconv.Itoa(mtu),
		"--address", guestIP, "--netmask", strconv.Itoa(guestPrefixLen),
		"--gateway", guestGateway, "--dns-forward", guestDNS,
		"--ipv4-only",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
	}
	if !allowHostLoopback {
		args = append(args, "--no-map-gw")
	}
	if os.Geteuid() == 0 {
		// Started as root, pasta drops to the user "nobody" before it opens the sandbox's namespaces, which
		// belong to root (init has not taken its mapped ids yet): "Couldn't open user namespace: Permission
		// denied", and in a root file system without /etc/passwd (a CI job's container) "getpwnam" fails first.
		// It keeps root's ids, as slirp4netns does; it still isolates itself once it has joined them.
		args = append(args, "--runas", "0:0")
	}
	return append(args, strconv.Itoa(pid))
}

// pastaExecutable returns the binary to run for pasta at path: its ".avx2" build when the CPU has AVX2 and the
// package ships one (Debian's pasta.avx2), else path. pasta started as itself would re-execute that build anyway
// (passt's arch_avx2_exec): naming it directly saves an exec and a dynamic link, about 1 ms of start-up. The name
// still contains "pasta", which is how the binary chooses its pasta mode.
func pastaExecutable(path string, hasAVX2 bool) string {
	if !hasAVX2 || strings.HasSuffix(path, ".avx2") {
		return path
	}
	if unix.Access(path+".avx2", unix.X_OK) == nil {
		return path + ".avx2"
	}
	return path
}

// cpuHasAVX2 reports whether /proc/cpuinfo lists the avx2 flag (the kernel lists it only when it enables the
// registers' state). Read when pasta starts: golang.org/x/sys/cpu would probe the CPU in its package
// initialisation, at every start of caisson and of its init (CPUID traps to the hypervisor on virtual machines).
// Only the first CPU's lines are read: the kernel generates the file as it is read, a block per CPU.
func cpuHasAVX2() bool {
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "386" {
		return false
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "flags" {
			return slices.Contains(strings.Fields(v), "avx2")
		}
	}
	return false
}

// pastaArgsHook lets tests alter the pasta command line (nil otherwise).
var pastaArgsHook func([]string) []string

func startPasta(ctx context.Context, path string, pid, mtu int, allowHostLoopback bool, timeout time.Duration) (*helper, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("slirp: pasta: %w", err)
	}
	argv := pastaArgs(pastaExecutable(path, cpuHasAVX2()), pid, mtu, allowHostLoopback)
	if pastaArgsHook != nil {
		argv = pastaArgsHook(argv)
	}
	h, err := startHelper("pasta", argv, []*os.File{w})
	w.Close()
	if err != nil {
		r.Close()
		return nil, err
	}
	if err := h.waitReady(ctx, timeout, r, readLine); err != nil {
		return h, err
	}
	return h, nil
}

// slirp4netnsArgs is the slirp4netns command line: it configures tap0
// itself (--configure), writes "1" to fd 3 when ready and exits when fd 4
// (a pipe whose write end only the parent holds) polls readable or hung up.
// --disable-host-loopback unless host loopback is allowed; --enable-sandbox
// and --enable-seccomp when this slirp4netns has them.
func slirp4netnsArgs(path string, pid, mtu int, allowHostLoopback bool, f Features) []string {
	args := []string{path, "--configure", "--mtu=" + strconv.Itoa(mtu), "--ready-fd=3", "--exit-fd=4"}
	if !allowHostLoopback {
		args = append(args, "--disable-host-loopback")
	}
	if f.Have["--enable-sandbox"] {
		args = append(args, "--enable-sandbox")
	}
	if f.Have["--enable-seccomp"] {
		args = append(args, "--enable-seccomp")
	}
	return append(args, strconv.Itoa(pid), guestIfName)
}

func startSlirp4netns(ctx context.Context, path string, pid, mtu int, allowHostLoopback bool, timeout time.Duration) (*helper, error) {
	f := cachedDetect(ModeSlirp4netns, path)
	if f.Err != nil {
		return nil, f.Err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("slirp: slirp4netns: %w", err)
	}
	exitR, exitW, err := os.Pipe()
	if err != nil {
		readyR.Close()
		readyW.Close()
		return nil, fmt.Errorf("slirp: slirp4netns: %w", err)
	}
	h, err := startHelper("slirp4netns", slirp4netnsArgs(path, pid, mtu, allowHostLoopback, f), []*os.File{readyW, exitR})
	readyW.Close()
	exitR.Close()
	if err != nil {
		readyR.Close()
		exitW.Close()
		return nil, err
	}
	h.exitW = exitW
	if err := h.waitReady(ctx, timeout, readyR, readByte); err != nil {
		return h, err
	}
	return h, nil
}
