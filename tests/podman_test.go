package tests

// Helpers that run Debian's Podman (apt package podman) with runc, the host's own runtime (engine_podman_test.go
// has Podman with caisson-oci as its runtime), for the tests, as the test user (rootless) or as root, with state of
// its own and no network traffic leaving the machine. Each test gets its own storage, run
// root, tmp, volume and network-configuration directories, containers.conf and, rootless, HOME and
// XDG_RUNTIME_DIR; all are removed when the test ends, and Podman's rootless pause process with them.
//
// This machine's quirks, handled here: crun fails on its hybrid cgroup v1/v2 layout (runc is used), PID 1 is not
// systemd (cgroupfs manager, file events), and root lacks CAP_SYS_RESOURCE, so Podman's default rlimits for root
// containers (nofile and nproc of 1048576 and 4194304) cannot be set (containers get 4096 of each).
//
// Usage:
//
//	p := newRuncPodman(t)                       // skips (fails in strict mode) without podman and runc
//	img := p.importRootfs(t, dir, "localhost/x") // a root file system made by the test, e.g. with testenv.BusyboxRootfs
//	r := p.run(t, "run", "--rm", "--network", "none", img, "sh", "-c", "...")

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// runcPodman is one isolated Podman with runc (see the file comment).
type runcPodman struct {
	dir  string   // everything of this Podman lives beneath it
	args []string // global flags: state directories, storage driver, runtime, cgroup manager, events
	env  []string // the environment Podman runs with
	root bool     // rootful (the caller is root)
}

// podmanConf is the containers.conf of the tests' Podman.
const podmanConf = `[containers]
# Root here lacks CAP_SYS_RESOURCE: Podman's defaults for root would exceed the hard limits.
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "runc"
`

// newRuncPodman prepares an isolated Podman with runc for the test's user and registers its removal.
func newRuncPodman(t *testing.T) *runcPodman {
	t.Helper()
	exe := testenv.RequireCommand(t, "podman")
	testenv.RequireCommand(t, "runc")
	dir := t.TempDir()
	p := &runcPodman{dir: dir, root: os.Getuid() == 0}
	for _, d := range []string{"storage", "run", "tmp", "volumes", "net", "home", "xdg"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte(podmanConf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.args = []string{"--root", filepath.Join(dir, "storage"), "--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"), "--volumepath", filepath.Join(dir, "volumes"),
		"--network-config-dir", filepath.Join(dir, "net"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc"}
	p.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Join(dir, "home"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "xdg"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "home", ".config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "home", ".local", "share"), "CONTAINERS_CONF=" + conf,
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"), "TMPDIR=" + filepath.Join(dir, "tmp")}
	storage := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n", filepath.Join(dir, "storage"), filepath.Join(dir, "run"))
	if err := os.WriteFile(filepath.Join(dir, "storage.conf"), []byte(storage), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.remove(t) })
	if r := p.run(t, "version", "--format", "{{.Client.Version}}"); r.code != 0 {
		testenv.SkipOrFail(t, "%s cannot run here: %s", exe, strings.TrimSpace(r.stderr))
	}
	return p
}

// cmd is a podman command line with this Podman's state and environment, bounded by ctx.
func (p *runcPodman) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string{}, p.args...), args...)...)
	cmd.Env = p.env
	cmd.Dir = p.dir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs podman with args (at most two minutes) and returns its output and exit code.
func (p *runcPodman) run(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := p.cmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("podman %s: timed out; stderr: %s", strings.Join(args, " "), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.Sys().(syscall.WaitStatus).ExitStatus()
	} else if err != nil {
		t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), code}
}

// importRootfs makes image name (with PATH set, every file owned by root) from the root file system in dir,
// offline, and returns name.
// As root the import runs in a private mount namespace with a tmpfs on /var/lib, where Podman keeps a blob cache
// that no --root or flag moves.
func (p *runcPodman) importRootfs(t testing.TB, dir, name string) string {
	t.Helper()
	tarball := filepath.Join(p.dir, "tmp", filepath.Base(name)+".tar")
	if out, err := exec.Command("tar", "-C", dir, "--owner=0", "--group=0", "--numeric-owner", "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar %s: %v: %s", dir, err, out)
	}
	defer os.Remove(tarball)
	args := []string{"import", "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", tarball, name}
	if !p.root {
		if r := p.run(t, args...); r.code != 0 {
			t.Fatalf("podman import: exit %d: %s", r.code, r.stderr)
		}
		return name
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	inner := p.cmd(ctx, args...)
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--mount", "--propagation", "private", "--",
		"sh", "-c", `mount -t tmpfs caisson-test /var/lib && exec "$@"`, "sh"}, inner.Args...)...)
	cmd.Env, cmd.Dir = inner.Env, inner.Dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("podman import (as root, private /var/lib): %v: %s", err, out)
	}
	return name
}

// remove deletes everything this Podman made (resetPodman).
func (p *runcPodman) remove(t testing.TB) {
	t.Helper()
	resetPodman(t, p.dir, func(args ...string) result { return p.run(t, args...) })
}

// resetPodman deletes everything the Podman whose files live beneath dir made, through run (podman with that
// Podman's flags and environment): containers, images, storage (files of the user's subordinate ids included:
// `system reset` removes them from inside the user namespace); it stops the rootless pause process (whose PID file
// is in $XDG_RUNTIME_DIR, dir/xdg), then checks that none of its processes is left.
func resetPodman(t testing.TB, dir string, run func(args ...string) result) {
	t.Helper()
	pause := ""
	if b, err := os.ReadFile(filepath.Join(dir, "xdg", "libpod", "tmp", "pause.pid")); err == nil {
		pause = strings.TrimSpace(string(b))
	}
	if r := run("system", "reset", "--force"); r.code != 0 {
		t.Errorf("podman system reset: exit %d: %s", r.code, r.stderr)
	}
	if pause != "" {
		var pid int
		fmt.Sscan(pause, &pid)
		// reset signals it; it is not our child, so wait for it to go (bounded).
		deadline := time.Now().Add(10 * time.Second)
		for pid > 0 && syscall.Kill(pid, 0) == nil && processState(pid) != "Z" && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pid > 0 && syscall.Kill(pid, 0) == nil && processState(pid) != "Z" {
			t.Errorf("podman's pause process %d outlived system reset", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Processes of this Podman (conmon, slirp4netns) name its directory in their command line.
	if left := userProcesses(t, dir); len(left) > 0 {
		t.Errorf("processes of the test's Podman left: %v", left)
	}
}

// processState is the state letter of pid from /proc/PID/stat ("" when it cannot be read).
func processState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// copyProgram copies the host's dynamically linked program path, with the libraries ldd lists, into the root file
// system dir at the same paths; links names it too (e.g. pasta for passt).
func copyProgram(t testing.TB, dir, path string, links ...string) {
	t.Helper()
	out, err := exec.Command("ldd", path).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", path, err)
	}
	files := []string{path}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files = append(files, f)
				break
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, l := range links {
		if err := os.Symlink(filepath.Base(path), filepath.Join(dir, filepath.Dir(path), l)); err != nil {
			t.Fatal(err)
		}
	}
}
