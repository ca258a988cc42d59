package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// podmanEnv is Podman with state directories of its own (storage, run root, XDG_RUNTIME_DIR, HOME) and a
// containers.conf that names caisson-oci as a runtime; rootless when the test runs as an ordinary user.
type podmanEnv struct {
	t        testing.TB
	dir      string
	env      []string
	global   []string
	rootless bool
}

// newPodman prepares Podman and imports the busybox image as localhost/bb (PATH set, no command).
func newPodman(t testing.TB) *podmanEnv {
	t.Helper()
	testenv.RequireCommand(t, "podman")
	testenv.RequireCommand(t, "conmon")
	oci := ociBin(t)
	dir := t.TempDir()
	p := &podmanEnv{t: t, dir: dir, rootless: os.Getuid() != 0}
	for _, d := range []string{"xdg", "home", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// This machine's quirks: a hybrid cgroup layout (Podman's default systemd manager is not there: cgroupfs) and
	// a hard RLIMIT_NOFILE/NPROC that root cannot raise (no CAP_SYS_RESOURCE): Podman's default ulimits (2^20)
	// fail with every runtime, so ask for what the host allows.
	var nofile, nproc syscall.Rlimit
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile)
	_ = syscall.Getrlimit(6 /* RLIMIT_NPROC */, &nproc)
	conf := fmt.Sprintf(`[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
runtime = "caisson-oci"
runtime_supports_json = ["crun", "runc", "caisson-oci"]
[engine.runtimes]
caisson-oci = [%q]
[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
`, oci, min(nofile.Max, 4096), min(nofile.Max, 4096), min(nproc.Max, 4096), min(nproc.Max, 4096))
	confPath := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	p.env = append(os.Environ(), "CONTAINERS_CONF="+confPath, "XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"),
		"HOME="+filepath.Join(dir, "home"), "TMPDIR="+filepath.Join(dir, "tmp"))
	p.global = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"),
		"--tmpdir", filepath.Join(dir, "tmp")}
	t.Cleanup(p.cleanup)
	tarPath := rootfsTar(t, t.TempDir())
	p.must("import", "--change", "ENV PATH=/bin", tarPath, "localhost/bb")
	return p
}

// cmd runs podman with the test's global flags.
func (p *podmanEnv) cmd(stdin []byte, args ...string) result {
	p.t.Helper()
	return runCmd(p.t, 120*time.Second, stdin, p.env, append(append([]string{"podman"}, p.global...), args...)...)
}

func (p *podmanEnv) must(args ...string) string {
	p.t.Helper()
	r := p.cmd(nil, args...)
	if r.code != 0 {
		p.t.Fatalf("podman %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// cleanup removes every container and pod, then everything else of this Podman, its rootless pause process
// included (resetPodman); no container process of caisson-oci is left.
func (p *podmanEnv) cleanup() {
	p.cmd(nil, "pod", "rm", "--all", "--force", "--time", "0")
	p.cmd(nil, "rm", "--all", "--force", "--time", "0")
	resetPodman(p.t, p.dir, func(args ...string) result { return p.cmd(nil, args...) })
	noRuntimeLeft(p.t, "")
}

// The Podman suite, run rootful (TestRootModePodman) and rootless (TestPodmanRootless).
func podmanSuite(t *testing.T) {
	p := newPodman(t)
	t.Run("run-rm-status", func(t *testing.T) {
		r := p.cmd(nil, "run", "--rm", "--network", "none", "localhost/bb", "sh", "-c", "echo out; echo err >&2; exit 3")
		if r.code != 3 || r.stdout != "out\n" || !strings.Contains(r.stderr, "err") {
			t.Errorf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// The runtime named by path on the command line works as well as by name.
		r = p.cmd(nil, "--runtime", ociBin(t), "run", "--rm", "--network", "none", "localhost/bb", "true")
		if r.code != 0 {
			t.Errorf("--runtime PATH: exit %d %s", r.code, r.stderr)
		}
		// A command the image lacks: Podman's 127 with runc's wording, and nothing left.
		r = p.cmd(nil, "run", "--rm", "--network", "none", "localhost/bb", "no-such-command")
		if r.code != 127 || !strings.Contains(r.stderr, "executable file not found in $PATH") {
			t.Errorf("missing command: exit %d %q", r.code, r.stderr)
		}
		if out := p.must("ps", "-aq"); out != "" {
			t.Errorf("containers left: %q", out)
		}
	})
	t.Run("run-it", func(t *testing.T) {
		script := testenv.RequireCommand(t, "script")
		cmdline := "stty rows 33 cols 77; podman " + strings.Join(p.global, " ") +
			" run -it --rm --network none localhost/bb sh -c 'stty size; trap \"echo got-int; exit 5\" INT; echo ready; sleep 30'"
		c := exec.Command(script, "-qec", cmdline, "/dev/null")
		c.Env = p.env
		var out bytes.Buffer
		c.Stdout, c.Stderr = &out, &out
		in, err := c.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(out.String(), "ready") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		in.Write([]byte{3}) // Ctrl-C on the terminal
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-done
			t.Fatalf("podman run -it did not end after Ctrl-C: %q", out.String())
		}
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		s := strings.ReplaceAll(out.String(), "\r", "")
		if !strings.Contains(s, "33 77") || !strings.Contains(s, "got-int") || code != 5 {
			t.Errorf("exit %d, terminal output %q: want the 33x77 size, the trap's line and exit 5", code, s)
		}
	})
	t.Run("detach-exec-logs-stop-kill-rm", func(t *testing.T) {
		id := strings.TrimSpace(p.must("run", "-d", "--name", "d1", "--network", "none", "localhost/bb", "sh", "-c",
			`echo started; trap "echo got-term; exit 0" TERM; while :; do sleep 0.2; done`))
		if id == "" {
			t.Fatal("no container id")
		}
		r := p.cmd(nil, "exec", "d1", "sh", "-c", "echo exec-$$; exit 4")
		if r.code != 4 || !strings.HasPrefix(r.stdout, "exec-") || r.stdout == "exec-1\n" {
			t.Errorf("exec: exit %d %q %q", r.code, r.stdout, r.stderr)
		}
		start := time.Now()
		p.must("stop", "-t", "10", "d1")
		if time.Since(start) > 8*time.Second {
			t.Errorf("stop of a container that handles SIGTERM took %v", time.Since(start))
		}
		if logs := p.must("logs", "d1"); !strings.Contains(logs, "started") || !strings.Contains(logs, "got-term") {
			t.Errorf("logs %q", logs)
		}
		// A process that ignores SIGTERM is killed after the grace period.
		p.must("run", "-d", "--name", "d2", "--network", "none", "localhost/bb", "sh", "-c", `trap "" TERM; echo x; while :; do sleep 0.2; done`)
		time.Sleep(300 * time.Millisecond)
		start = time.Now()
		p.must("stop", "-t", "1", "d2")
		if el := time.Since(start); el < 900*time.Millisecond || el > 15*time.Second {
			t.Errorf("stop -t 1 of a container ignoring SIGTERM took %v", el)
		}
		if st := strings.TrimSpace(p.must("inspect", "--format", "{{.State.ExitCode}}", "d2")); st != "137" {
			t.Errorf("exit code after SIGKILL %q, want 137", st)
		}
		p.must("run", "-d", "--name", "d3", "--network", "none", "localhost/bb", "sleep", "100")
		p.must("kill", "d3")
		p.must("rm", "-f", "d1", "d2", "d3")
		if out := p.must("ps", "-aq"); out != "" {
			t.Errorf("containers left: %q", out)
		}
	})
	t.Run("pod", func(t *testing.T) {
		testenv.RequireCommand(t, "catatonit")
		p.must("pod", "create", "--name", "p1", "--network", "none")
		p.must("run", "-d", "--pod", "p1", "--name", "srv", "localhost/bb", "sh", "-c", "while :; do echo pod-ok | nc -l -p 8080; done")
		var r result
		for i := 0; i < 50; i++ {
			if r = p.cmd(nil, "run", "--rm", "--pod", "p1", "localhost/bb", "sh", "-c", "nc 127.0.0.1 8080 </dev/null"); r.stdout == "pod-ok\n" {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.stdout != "pod-ok\n" {
			t.Errorf("a container reaching its pod's server on localhost: %q %q", r.stdout, r.stderr)
		}
		p.must("pod", "rm", "-f", "-t", "0", "p1")
	})
	t.Run("read-only-volume-caps-seccomp", func(t *testing.T) {
		r := p.cmd(nil, "run", "--rm", "--read-only", "--network", "none", "localhost/bb", "sh", "-c", "touch /x; echo ok > /tmp/y && cat /tmp/y")
		if !strings.Contains(r.stderr, "Read-only file system") || r.stdout != "ok\n" {
			t.Errorf("--read-only: %q %q", r.stdout, r.stderr)
		}
		vol := filepath.Join(p.dir, "vol")
		os.Mkdir(vol, 0o755)
		p.must("run", "--rm", "-v", vol+":/data", "--network", "none", "localhost/bb", "sh", "-c", "echo hi > /data/f")
		st, err := os.Stat(filepath.Join(vol, "f"))
		if err != nil || int(st.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
			t.Errorf("a file written to a volume: %v, want it owned by the caller (%d)", err, os.Getuid())
		}
		if out := p.must("run", "--rm", "--cap-drop", "all", "--network", "none", "localhost/bb", "grep", "CapEff", "/proc/self/status"); !strings.Contains(out, "0000000000000000") {
			t.Errorf("--cap-drop all: %q", out)
		}
		prof := filepath.Join(p.dir, "seccomp.json")
		os.WriteFile(prof, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}`), 0o644)
		r = p.cmd(nil, "run", "--rm", "--security-opt", "seccomp="+prof, "--network", "none", "localhost/bb", "sh", "-c", "mkdir /tmp/d 2>&1; echo rc=$?")
		if !strings.Contains(r.stdout, "Operation not permitted") {
			t.Errorf("--security-opt seccomp=PROFILE: %q %q", r.stdout, r.stderr)
		}
	})
	t.Run("networks", func(t *testing.T) {
		for _, mode := range []string{"slirp4netns", "pasta"} {
			if mode == "pasta" && (!p.rootless || !podmanHasPasta(p)) {
				t.Logf("--network pasta: not offered by this Podman (rootless Podman 4.4+ has it)")
				continue
			}
			testenv.RequireCommand(t, map[string]string{"slirp4netns": "slirp4netns", "pasta": "pasta"}[mode])
			port := loopbackPort(t)
			name := "web-" + mode
			r := p.cmd(nil, "run", "-d", "--name", name, "--network", mode, "-p", fmt.Sprintf("127.0.0.1:%d:8080", port),
				"localhost/bb", "sh", "-c", "echo served-"+mode+" > /tmp/i; while :; do nc -l -p 8080 < /tmp/i; done")
			if r.code != 0 {
				t.Errorf("--network %s -p: exit %d %s", mode, r.code, r.stderr)
				continue
			}
			if got := dialRead(t, port); got != "served-"+mode {
				t.Errorf("--network %s: the published port answered %q", mode, got)
			}
			p.must("rm", "-f", "-t", "0", name)
		}
	})
	t.Run("conmon-killed-mid-create", func(t *testing.T) {
		// A prestart hook holds create mid-way; conmon (the runtime's parent) is killed with SIGKILL then. The
		// runtime goes with it, no container process is left, and the name can be used again.
		hooks := filepath.Join(p.dir, "hooks")
		os.Mkdir(hooks, 0o755)
		marker := filepath.Join(p.dir, "hook-in")
		hook := fmt.Sprintf(`{"version": "1.0.0", "hook": {"path": "/bin/sh", "args": ["sh", "-c", "touch %s; exec sleep 60"]},
 "when": {"always": true}, "stages": ["prestart"]}`, marker)
		os.WriteFile(filepath.Join(hooks, "hold.json"), []byte(hook), 0o644)
		c := exec.Command("podman", append(append([]string{}, p.global...), "--hooks-dir", hooks, "run", "-d", "--name", "k1",
			"--network", "none", "localhost/bb", "sleep", "100")...)
		c.Env = p.env
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := os.Stat(marker); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		conmons := pidsMatching("conmon", "k1")
		if len(conmons) == 0 {
			t.Fatalf("no conmon of k1 found while its create was held")
		}
		for _, pid := range conmons {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		// The runtime's create and its stage end with conmon, while the hook still runs.
		noRuntimeLeft(t, "create --bundle")
		for _, pid := range pidsMatching("sleep 60", "") {
			syscall.Kill(pid, syscall.SIGKILL) // the hook, which belongs to the test
		}
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = c.Process.Kill()
			<-done
			t.Errorf("podman run did not end after its conmon was killed")
		}
		noRuntimeLeft(t, "sleep 100")
		p.cmd(nil, "rm", "-f", "-t", "0", "k1")
		if r := p.cmd(nil, "run", "--rm", "--name", "k1", "--network", "none", "localhost/bb", "true"); r.code != 0 {
			t.Errorf("the name after the killed create: exit %d %s", r.code, r.stderr)
		}
	})
	if !p.rootless {
		t.Run("limits", func(t *testing.T) {
			out := p.must("run", "--rm", "--memory", "64m", "--pids-limit", "50", "--network", "none", "localhost/bb", "sh", "-c",
				"cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max")
			if !strings.Contains(out, "50") || !strings.Contains(out, strconv.Itoa(64<<20)) {
				t.Errorf("--memory 64m --pids-limit 50: the container sees %q", out)
			}
		})
	} else {
		t.Run("keep-id", func(t *testing.T) {
			out := p.must("run", "--rm", "--userns", "keep-id", "--network", "none", "localhost/bb", "id", "-u")
			if strings.TrimSpace(out) != strconv.Itoa(os.Getuid()) {
				t.Errorf("--userns keep-id: uid %q, want %d", out, os.Getuid())
			}
		})
	}
}

// pidsMatching returns the PIDs whose command line contains both a and b (b may be empty).
func pidsMatching(a, b string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := atoiOr(e.Name())
		if pid == 0 || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		s := strings.ReplaceAll(string(cl), "\x00", " ")
		if strings.Contains(s, a) && strings.Contains(s, b) {
			out = append(out, pid)
		}
	}
	return out
}

// podmanHasPasta reports whether this Podman knows the pasta network mode (4.4 and later).
func podmanHasPasta(p *podmanEnv) bool {
	v := strings.TrimSpace(p.must("version", "--format", "{{.Client.Version}}"))
	var major, minor int
	fmt.Sscanf(v, "%d.%d", &major, &minor)
	return major > 4 || major == 4 && minor >= 4
}

// Rootful Podman (Debian's 4.3 with conmon) runs its containers on caisson-oci.
func TestRootModePodman(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	podmanSuite(t)
}

// Rootless Podman runs caisson-oci inside its own user namespace.
func TestPodmanRootless(t *testing.T) {
	testenv.RequireUnprivileged(t)
	testenv.RequireSubIDs(t)
	podmanSuite(t)
}
