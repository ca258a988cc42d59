package tests

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// The seed's hands-on Part 1: every namespace of the sandbox differs from the host's.
func TestSeedPart1NamespacesDiffer(t *testing.T) {
	requireSandbox(t)
	kinds := "cgroup ipc mnt net pid time user uts"
	if !hasTimeNS() {
		kinds = "cgroup ipc mnt net pid user uts" // a kernel without time namespaces (User-Mode Linux 6.1)
	}
	out := mustRun(t, "run", "--", "sh", "-c", "for n in "+kinds+"; do echo $n $(readlink /proc/self/ns/$n); done")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != len(strings.Fields(kinds)) {
		t.Fatalf("want the namespaces %s, got %q", kinds, out)
	}
	for _, l := range lines {
		name, inside, _ := strings.Cut(l, " ")
		host, err := os.Readlink("/proc/self/ns/" + name)
		if err != nil {
			t.Fatal(err)
		}
		if inside == host || inside == "" {
			t.Errorf("namespace %s: inside %q, host %q: want different", name, inside, host)
		}
	}
}

// The seed's Part 2: a PID namespace that shows only the sandbox; the command is a child of caisson's init.
func TestSeedPart2PIDNamespace(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--", "sh", "-c", "echo self=$$; ps -e -o pid=,comm=; ls /proc | grep -c '^[0-9]'")
	if !strings.Contains(out, "1 caisson-init") {
		t.Errorf("PID 1 is not caisson's init:\n%s", out)
	}
	m := regexp.MustCompile(`self=(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no $$ in %q", out)
	}
	if pid, _ := strconv.Atoi(m[1]); pid < 2 || pid > 64 {
		t.Errorf("$$ = %d: want a low PID in the sandbox's own namespace", pid)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[1] != "caisson-init" && f[1] != "sh" && f[1] != "ps" {
			t.Errorf("unexpected process visible in the sandbox: %q", l)
		}
	}
	// The seed's exact exercise, with --as-pid-1: `echo $$` prints 1 and ps shows the shell as PID 1.
	out = mustRun(t, "run", "--as-pid-1", "--", "sh", "-c", "echo self=$$; ps -e -o pid=,comm=")
	if !strings.Contains(out, "self=1\n") || !regexp.MustCompile(`(?m)^\s*1 sh$`).MatchString(out) || strings.Contains(out, "caisson-init") {
		t.Errorf("--as-pid-1: want the shell as PID 1 and no init:\n%s", out)
	}
}

// --as-pid-1: the command replaces init and keeps what init set up (exit status, descriptors, time namespace,
// hardening); what needs init is refused with one line; the command still dies with caisson.
func TestAsPID1(t *testing.T) {
	requireSandbox(t)
	r := caisson(t, "run", "--as-pid-1", "--", "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '; exit 42")
	if r.code != 42 || r.stdout != "0 1 2 3 " {
		t.Errorf("exit status and descriptors: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if hasTimeNS() {
		out := mustRun(t, "run", "--as-pid-1", "--time-offset", "boottime=86400", "--", "cut", "-d", " ", "-f1", "/proc/uptime")
		if up, _ := strconv.ParseFloat(strings.TrimSpace(out), 64); up < 86400 {
			t.Errorf("--as-pid-1 with a boottime offset: uptime %q", out)
		}
	} else {
		requireNoTimeNS(t, "--as-pid-1")
	}
	if r := caisson(t, "run", "--as-pid-1", "--security", "strict", "--", "unshare", "-U", "true"); r.code == 0 {
		t.Errorf("--as-pid-1 --security strict: unshare succeeded")
	}
	if r := caisson(t, "run", "--as-pid-1", "--", "no-such-command"); r.code != 127 {
		t.Errorf("--as-pid-1, missing command: exit %d %q", r.code, r.stderr)
	}
	for _, bad := range [][]string{{"-p", "18081:80"}, {"--share", "pid"}, {"--map", "keep-id"}, {"--join", "x"}} {
		r := caisson(t, append(append([]string{"run", "--as-pid-1"}, bad...), "--", "true")...)
		if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("--as-pid-1 %v: want one caisson: line and 125, got %d %q", bad, r.code, r.stderr)
		}
	}
	// exec into it is refused; SIGKILL of caisson takes the command down.
	marker := fmt.Sprintf("caisson-aspid1-%d", time.Now().UnixNano())
	cmd := exec.Command(bin(t), "run", "--name", "aspid1", "--as-pid-1", "--", "bash", "-c", "exec -a "+marker+" sleep 300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for len(markerProcesses(t, marker)) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(markerProcesses(t, marker)) == 0 {
		t.Fatalf("the command never ran")
	}
	if r := caisson(t, "exec", "aspid1", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "--as-pid-1") {
		t.Errorf("exec into an --as-pid-1 sandbox: %d %q", r.code, r.stderr)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	waitGone(t, marker, 5*time.Second)
}

// The seed's Part 3: a network namespace with only lo, which `ip link set lo up` brings up; no way out.
func TestSeedPart3NetworkNamespace(t *testing.T) {
	requireSandbox(t)
	testenv.RequireCommand(t, "ip")
	out := mustRun(t, "run", "--", "sh", "-c", "ip link set lo up && ip -o link show | cut -d: -f2; ip -o addr show lo | grep -c 127.0.0.1")
	fields := strings.Fields(out)
	if len(fields) != 2 || fields[0] != "lo" || fields[1] != "1" {
		t.Fatalf("want only lo with 127.0.0.1, got %q", out)
	}
	// No route out (catalogue N12: fails at once, no packet leaves).
	r := caisson(t, "run", "--", "sh", "-c", "ip route get 192.0.2.1 2>&1; exit 0")
	if !strings.Contains(r.stdout, "unreachable") {
		t.Errorf("want the network unreachable from --net none, got %q", r.stdout)
	}
}

// The seed's Part 4: a tmpfs mounted inside is invisible outside; the host's mount table does not change.
func TestSeedPart4MountNamespace(t *testing.T) {
	requireSandbox(t)
	before := mountTable(t)
	out := mustRun(t, "run", "--", "sh", "-c",
		"mkdir -p /tmp/ns-test && mount -t tmpfs tmpfs /tmp/ns-test && echo 'namespace secret' > /tmp/ns-test/secret.txt && cat /tmp/ns-test/secret.txt")
	if strings.TrimSpace(out) != "namespace secret" {
		t.Fatalf("inside: %q", out)
	}
	if _, err := os.Stat("/tmp/ns-test/secret.txt"); err == nil {
		t.Errorf("the sandbox's file is visible on the host")
	}
	if after := mountTable(t); after != before {
		t.Errorf("host mount table changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// The seed's Part 5: `hostname x` inside leaves the host's host name alone.
func TestSeedPart5UTSNamespace(t *testing.T) {
	requireSandbox(t)
	host, _ := os.Hostname()
	out := mustRun(t, "run", "--", "sh", "-c", "hostname; hostname my-container; hostname")
	if got := strings.Fields(out); len(got) != 2 || got[0] != "caisson" || got[1] != "my-container" {
		t.Fatalf("inside: %q", out)
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("host name changed from %q to %q", host, now)
	}
	out = mustRun(t, "run", "--hostname", "build-7", "--", "cat", "/proc/sys/kernel/hostname")
	if strings.TrimSpace(out) != "build-7" {
		t.Errorf("--hostname: got %q", out)
	}
}

// Host IPC objects are invisible inside (catalogue P17).
func TestIPCNamespace(t *testing.T) {
	requireSandbox(t)
	id, err := unix.SysvShmGet(unix.IPC_PRIVATE, 4096, unix.IPC_CREAT|0o600)
	if err != nil {
		t.Skipf("skipping: cannot create a SysV segment on the host: %v", err)
	}
	defer unix.SysvShmCtl(id, unix.IPC_RMID, nil)
	out := mustRun(t, "run", "--", "cat", "/proc/sysvipc/shm")
	if strings.Contains(out, " "+strconv.Itoa(id)+" ") {
		t.Errorf("host segment %d visible inside:\n%s", id, out)
	}
}

// uid_map and gid_map are the caller's id plus every subordinate range (catalogue U1).
func TestIDMaps(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--", "sh", "-c", "cat /proc/self/uid_map; echo --; cat /proc/self/gid_map; echo --; id -u; cat /proc/self/setgroups")
	parts := strings.Split(out, "--\n")
	if len(parts) != 3 {
		t.Fatalf("output %q", out)
	}
	first := strings.Fields(parts[0])
	if len(first) < 6 || first[0] != "0" || first[1] != strconv.Itoa(os.Getuid()) || first[2] != "1" || first[3] != "1" {
		t.Errorf("uid_map: want 0 %d 1 then 1 SUB N, got %q", os.Getuid(), parts[0])
	}
	g := strings.Fields(parts[1])
	if len(g) < 6 || g[1] != strconv.Itoa(os.Getgid()) {
		t.Errorf("gid_map: %q", parts[1])
	}
	if f := strings.Fields(parts[2]); len(f) != 2 || f[0] != "0" || f[1] != "allow" {
		t.Errorf("want uid 0 and setgroups allow (a subgid range is mapped), got %q", parts[2])
	}

	out = mustRun(t, "run", "--map", "single", "--", "sh", "-c", "cat /proc/self/uid_map /proc/self/setgroups")
	if f := strings.Fields(out); len(f) != 4 || f[1] != strconv.Itoa(os.Getuid()) || f[3] != "deny" {
		t.Errorf("--map single: %q", out)
	}
	out = mustRun(t, "run", "--map", "keep-id", "--", "sh", "-c", "id -u; id -g")
	if f := strings.Fields(out); len(f) != 2 || f[0] != strconv.Itoa(os.Getuid()) || f[1] != strconv.Itoa(os.Getgid()) {
		t.Errorf("--map keep-id: want own ids inside, got %q", out)
	}
}

// `auto` falls back to a single-id map with a one-line notice when setuid helpers cannot work (no_new_privs).
func TestFallbackNoNewPrivs(t *testing.T) {
	requireSandbox(t)
	setpriv := testenv.RequireCommand(t, "setpriv")
	cmd := exec.Command(setpriv, "--no-new-privs", bin(t), "run", "--", "cat", "/proc/self/uid_map")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "caisson: notice:") || !strings.Contains(string(out), "no_new_privs") {
		t.Errorf("want a notice naming no_new_privs, got %q", out)
	}
	if n := strings.Count(strings.TrimSpace(string(out)), "\n"); n != 1 {
		t.Errorf("want exactly a notice line and one map line, got %q", out)
	}
	// keep-id cannot be honoured without the helpers: a clear error, exit 125.
	out, err = exec.Command(setpriv, "--no-new-privs", bin(t), "run", "--map", "keep-id", "--", "true").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 125 || !strings.HasPrefix(string(out), "caisson: ") {
		t.Errorf("keep-id under no_new_privs: want exit 125 with a caisson: error, got %v %q", err, out)
	}
}

// Every exit code 0-255 passes through, and death by signal N is 128+N (catalogue R5, R6).
func TestExitCodes(t *testing.T) {
	requireSandbox(t)
	// One sandbox per code would take a while; run them in a few batches concurrently.
	codes := make(chan error, 256)
	for c := 0; c < 256; c++ {
		go func(c int) {
			r := caisson(t, "run", "--map", "single", "--", "sh", "-c", fmt.Sprintf("exit %d", c))
			if r.code != c {
				codes <- fmt.Errorf("exit %d: caisson returned %d (%s)", c, r.code, r.stderr)
				return
			}
			codes <- nil
		}(c)
		if c%16 == 15 {
			for i := 0; i < 16; i++ {
				if err := <-codes; err != nil {
					t.Error(err)
				}
			}
		}
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGSEGV, syscall.SIGTERM} {
		r := caisson(t, "run", "--", "sh", "-c", fmt.Sprintf("kill -%d $$", sig))
		if r.code != 128+int(sig) {
			t.Errorf("killed by %v: want %d, got %d (%s)", sig, 128+int(sig), r.code, r.stderr)
		}
	}
}

// Exec failures: 127 not found, 126 cannot execute, with one caisson: line (catalogue R32, C10).
func TestExecFailures(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "noexec.sh")
	os.WriteFile(script, []byte("#!/bin/sh\necho hi\n"), 0o644)
	badShebang := filepath.Join(dir, "bad.sh")
	os.WriteFile(badShebang, []byte("#!/nonexistent/interpreter\n"), 0o755)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"not found", []string{"no-such-command-xyz"}, 127},
		{"missing path", []string{"/no/such/file"}, 127},
		{"directory", []string{"/etc"}, 126},
		{"not executable", []string{script}, 126},
		{"bad interpreter", []string{badShebang}, 127},
		{"options after -- are the command", []string{"--bind", "/", "/x"}, 127},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := caissonIn(t, dir, nil, append([]string{"run", "--"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("want exit %d, got %d (%s)", tc.code, r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 {
				t.Errorf("want one caisson: line, got %q", r.stderr)
			}
		})
	}
	// C5: after --, a program whose name looks like an option runs.
	if err := os.WriteFile(filepath.Join(dir, "--weird--"), []byte("#!/bin/sh\necho weird \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := caissonIn(t, dir, nil, "run", "-e", "PATH="+dir+":/usr/bin:/bin", "--", "--weird--", "--bind")
	if r.code != 0 || r.stdout != "weird --bind\n" {
		t.Errorf("a program named --weird--: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
}

// Bad input: one caisson: line, exit 125, nothing started (catalogue C1-C4, C11, C20).
func TestBadInput(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"run", "--no-such-flag", "--", "true"}, "--no-such-flag"},
		{"missing value", []string{"run", "--hostname"}, "hostname"},
		{"empty command", []string{"run"}, "no command"},
		{"empty command after --", []string{"run", "--"}, "no command"},
		{"missing bind source", []string{"run", "--bind", "/no/such/dir:/x", "--", "true"}, "/no/such/dir"},
		{"relative bind destination", []string{"run", "--bind", "/tmp:x", "--", "true"}, "absolute"},
		{"unknown namespace", []string{"run", "--share", "net,bogus", "--", "true"}, "bogus"},
		{"invalid hostname", []string{"run", "--hostname", "bad/name", "--", "true"}, "hostname"},
		{"hostname too long", []string{"run", "--hostname", strings.Repeat("a", 65), "--", "true"}, "hostname"},
		{"bad time offset", []string{"run", "--time-offset", "monotonic=12x", "--", "true"}, "monotonic"},
		{"unknown clock", []string{"run", "--time-offset", "realtime=1", "--", "true"}, "realtime"},
		{"time offset with shared time", []string{"run", "--share", "time", "--time-offset", "boottime=1", "--", "true"}, "--share time"},
		{"bad map mode", []string{"run", "--map", "all", "--", "true"}, "--map"},
		{"bad tmpfs size", []string{"run", "--tmpfs", "/x:size=123bogus", "--", "true"}, "size"},
		{"unknown command", []string{"frobnicate"}, "frobnicate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := caisson(t, tc.args...)
			if r.code != 125 {
				t.Errorf("want exit 125, got %d (%q)", r.code, r.stderr)
			}
			if !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want one caisson: line naming %q, got %q", tc.want, r.stderr)
			}
			if left := userProcesses(t, "caisson-init"); len(left) > 0 {
				t.Errorf("processes left: %v", left)
			}
		})
	}
}

// Signals caisson's caller left ignored (a shell's background job, nohup, an empty trap) are not ignored by the
// command: it starts with default dispositions, as a container's process does.
func TestIgnoredSignalsReset(t *testing.T) {
	requireSandbox(t)
	// Several rounds: caisson registers its own handlers concurrently with its setup, so whether init inherited
	// the caller's SIG_IGN depended on timing.
	for i := 0; i < 8; i++ {
		for _, sig := range []string{"INT", "QUIT", "HUP", "PIPE", "TERM"} {
			script := fmt.Sprintf(`trap '' %s; exec "$0" run -- sh -c 'kill -%s $$; echo survived'`, sig, sig)
			out, err := exec.Command("sh", "-c", script, bin(t)).CombinedOutput()
			ee, ok := err.(*exec.ExitError)
			if !ok || ee.ExitCode() < 129 || strings.Contains(string(out), "survived") {
				t.Fatalf("SIG%s ignored by the caller: the command survived its own signal (round %d): %v %q", sig, i, err, out)
			}
		}
	}
}

// Signals sent to caisson reach the command (catalogue R11).
func TestSignalForwarding(t *testing.T) {
	requireSandbox(t)
	sigs := []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}
	var script strings.Builder
	for _, s := range sigs {
		fmt.Fprintf(&script, "trap 'echo got %d' %d; ", s, s)
	}
	script.WriteString("echo ready; i=0; while [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done")
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", script.String())
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	buf := make([]byte, 6)
	if _, err := stdout.Read(buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("no ready line: %q %v", buf, err)
	}
	for _, s := range sigs {
		cmd.Process.Signal(s)
		time.Sleep(150 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	rest := make([]byte, 4096)
	n, _ := stdout.Read(rest)
	cmd.Wait()
	got := string(rest[:n])
	for _, s := range sigs {
		if !strings.Contains(got, fmt.Sprintf("got %d\n", s)) {
			t.Errorf("signal %v not delivered to the command; output %q", s, got)
		}
	}
}

// 100 orphaned grandchildren are reaped by init: no zombie remains (catalogue R8, X6).
func TestOrphansReaped(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--", "sh", "-c",
		"i=0; while [ $i -lt 100 ]; do (sh -c 'sleep 0.2' &) ; i=$((i+1)); done; sleep 1; ps -e -o stat= | grep -c '^Z' || true")
	if strings.TrimSpace(out) != "0" {
		t.Errorf("zombies left inside: %q", out)
	}
	// R10: 2000 orphans at once leave no zombie and init small; R7: the command's status comes through while
	// init is reaping them.
	r := caisson(t, "run", "--", "sh", "-c", "i=0; while [ $i -lt 2000 ]; do (true &); i=$((i+1)); done; sleep 0.5; "+
		"echo zombies=$(ps -e -o stat= | grep -c '^Z'); grep VmRSS /proc/1/status; "+
		"i=0; while [ $i -lt 60 ]; do (sleep 0.2 &); i=$((i+1)); done; exit 7")
	m := regexp.MustCompile(`VmRSS:\s+(\d+) kB`).FindStringSubmatch(r.stdout)
	if r.code != 7 || !strings.Contains(r.stdout, "zombies=0\n") || m == nil {
		t.Fatalf("2000 orphans: exit %d (want 7), %q", r.code, r.stdout)
	}
	if kb, _ := strconv.Atoi(m[1]); kb > 20<<10 {
		t.Errorf("init's resident memory after 2000 orphans: %d kB, want under 20 MB", kb)
	}
}

// When the command exits, nothing of the sandbox survives: a background child never keeps caisson waiting.
func TestNoSurvivors(t *testing.T) {
	requireSandbox(t)
	marker := fmt.Sprintf("caisson-survivor-%d", time.Now().UnixNano())
	start := time.Now()
	out := mustRun(t, "run", "--", "sh", "-c", bgMarker(marker))
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("caisson waited %v for a background child", d)
	}
	if !strings.Contains(out, "argv0="+marker) {
		t.Fatalf("the background child never started: %q", out)
	}
	waitGone(t, marker, 2*time.Second)
}

// caisson killed with SIGKILL takes the whole sandbox with it (catalogue R1).
func TestSIGKILLOfCaisson(t *testing.T) {
	requireSandbox(t)
	marker := fmt.Sprintf("caisson-sigkill-%d", time.Now().UnixNano())
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", bgMarker(marker)+"; echo ready; wait")
	stdout, _ := cmd.StdoutPipe()
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	got := readUntil(stdout, "ready")
	if len(markerProcesses(t, marker)) == 0 {
		cmd.Process.Kill()
		werr := cmd.Wait()
		t.Fatalf("the sandbox's process never appeared: read %q, caisson %v, stderr %q", got, werr, errb.String())
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitGone(t, marker, 2*time.Second)
}

// The binary's code and read-only data are mapped whole as it starts (package prefault, issue 14): a sandbox's
// parent has every page of them resident, where page faults alone leave about a tenth unmapped. Package trim unmaps
// them again after trim.Delay (1 s), so the check reads the parent's mappings well before that.
func TestPrefaultedStart(t *testing.T) {
	requireSandbox(t)
	if runtime.GOARCH != "amd64" {
		testenv.SkipOrFail(t, "package prefault has an entry point on amd64 only")
	}
	exe, err := filepath.EvalSymlinks(bin(t))
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; ; attempt++ {
		start := time.Now()
		cmd := exec.Command(exe, "run", "--", "sh", "-c", "echo ready; exec sleep 30")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		readUntil(stdout, "ready")
		smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", cmd.Process.Pid))
		elapsed := time.Since(start)
		cmd.Process.Signal(syscall.SIGTERM) // forwarded to sleep: the sandbox ends as a command's exit ends it
		cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if elapsed > 700*time.Millisecond && attempt < 3 {
			continue // too slow to be sure trim has not run yet: a loaded machine; try again
		}
		size, rss := readOnlyResident(string(smaps), exe)
		if size == 0 {
			t.Fatalf("no read-only mapping of %s in the parent's smaps:\n%s", exe, smaps)
		}
		if rss*1000 < size*995 {
			t.Errorf("the parent has %d of the %d KiB of the binary's read-only mappings resident %v after its start; want all of them", rss, size, elapsed)
		}
		return
	}
}

// readOnlyResident sums Size and Rss (KiB) over smaps' read-only mappings (r-xp, r--p) of the file path.
func readOnlyResident(smaps, path string) (size, rss int) {
	mine := false
	for _, line := range strings.Split(smaps, "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			mine = len(f) >= 6 && f[5] == path && (f[1] == "r-xp" || f[1] == "r--p")
			continue
		}
		if !mine || len(f) < 2 {
			continue
		}
		n, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "Size:":
			size += n
		case "Rss:":
			rss += n
		}
	}
	return size, rss
}

// caisson killed with SIGKILL at random moments of setup leaves nothing behind.
func TestSIGKILLDuringSetup(t *testing.T) {
	requireSandbox(t)
	marker := fmt.Sprintf("caisson-setupkill-%d", time.Now().UnixNano())
	for i := 0; i < 20; i++ {
		cmd := exec.Command(bin(t), "run", "--", "bash", "-c", "exec -a "+marker+" sleep 300")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
	}
	waitGone(t, marker, 3*time.Second)
	waitGone(t, "caisson-init", 3*time.Second)
}

// Only fds 0-2 reach the command, whatever caisson's caller leaked (CVE-2024-21626 class, catalogue F6).
func TestLeakedFDsClosed(t *testing.T) {
	requireSandbox(t)
	f, err := os.Open("/")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", "ls /proc/self/fd")
	cmd.ExtraFiles = []*os.File{f, f} // fds 3 and 4, not close-on-exec in caisson
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// ls itself holds one fd for the directory it reads.
	if got := strings.Fields(string(out)); len(got) > 4 {
		t.Errorf("fds leaked into the sandbox: %v", got)
	}
	// init holds no host directory: its cwd and root are the sandbox's own (seen with CAP_SYS_PTRACE, without which
	// /proc/1 is closed to the command).
	out2 := mustRun(t, "run", "--cap-add", "sys_ptrace", "--", "sh", "-c", "ls /proc/1/fd 2>&1; readlink /proc/1/cwd /proc/1/root")
	if !strings.HasSuffix(out2, "/\n/\n") {
		t.Errorf("init's cwd and root: %q, want / and /", out2)
	}
	for _, l := range strings.Split(out2, "\n") {
		if strings.HasPrefix(l, "/") && l != "/" {
			t.Errorf("init's cwd/root points at %q", l)
		}
	}
}

// D3: every writable mount of the sandbox is nosuid and nodev (a --bind and the working directory's bind
// included, as bubblewrap's binds are), except what /dev needs: its tmpfs, the device nodes bound from the host and
// the private devpts.
func TestBindsNosuidNodev(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	out := mustRun(t, "run", "--bind", dir+":/mnt", "--ro-bind", dir+":/opt", "--", "cat", "/proc/self/mountinfo")
	seen := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		mnt, opts := f[4], ","+f[5]+","
		seen[mnt] = f[5]
		if !strings.Contains(opts, ",rw,") || (strings.Contains(opts, ",nosuid,") && strings.Contains(opts, ",nodev,")) {
			continue
		}
		if mnt != "/dev" && !strings.HasPrefix(mnt, "/dev/") {
			t.Errorf("writable mount %s without nosuid or nodev: %s", mnt, f[5])
		}
	}
	cwd, _ := os.Getwd()
	for _, mnt := range []string{"/mnt", "/opt", cwd} {
		if o := "," + seen[mnt] + ","; !strings.Contains(o, ",nosuid,") || !strings.Contains(o, ",nodev,") {
			t.Errorf("bind %s: options %q, want nosuid and nodev", mnt, seen[mnt])
		}
	}
}

// The host's / is read-only inside; /tmp is private; the current directory is bound read-write (and --no-cwd
// opts out) (catalogue F9, F18).
func TestFilesystemView(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	private := fmt.Sprintf("/tmp/caisson-private-%d", time.Now().UnixNano())
	r := caissonIn(t, dir, nil, "run", "--", "sh", "-c", "touch /usr/caisson-x 2>&1; echo inside > here.txt; pwd; touch "+private+" && echo tmp-ok")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "Read-only file system") || !strings.Contains(r.stdout, dir) || !strings.Contains(r.stdout, "tmp-ok") {
		t.Errorf("unexpected: %q", r.stdout)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "here.txt")); err != nil || string(b) != "inside\n" {
		t.Errorf("write through the cwd bind: %q %v", b, err)
	}
	if _, err := os.Stat(private); err == nil {
		t.Errorf("the sandbox's /tmp is the host's")
	}
	r = caissonIn(t, dir, nil, "run", "--no-cwd", "--", "sh", "-c", "pwd; touch "+dir+"/nocwd 2>&1")
	if !strings.HasPrefix(r.stdout, "/\n") || !strings.Contains(r.stdout, "cannot touch") {
		t.Errorf("--no-cwd: %q", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "nocwd")); err == nil {
		t.Errorf("--no-cwd: the sandbox wrote into the current directory")
	}
	// Binds, read-only binds, tmpfs, workdir and env.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "f"), []byte("data"), 0o644)
	r = caissonIn(t, dir, nil, "run", "--ro-bind", other+":/mnt", "--tmpfs", "/opt:size=1m", "--workdir", "/opt",
		"--env", "FOO=bar baz", "--", "sh", "-c", "cat /mnt/f; touch /mnt/g 2>&1; pwd; echo $FOO; df -k /opt | tail -1")
	if !strings.Contains(r.stdout, "data") || !strings.Contains(r.stdout, "Read-only") || !strings.Contains(r.stdout, "/opt\n") ||
		!strings.Contains(r.stdout, "bar baz") || !regexp.MustCompile(`\s1024\s`).MatchString(r.stdout) {
		t.Errorf("binds: %q %s", r.stdout, r.stderr)
	}
	r = caissonIn(t, dir, nil, "run", "--bind", other+":/mnt", "--", "sh", "-c", "echo w > /mnt/g")
	if b, _ := os.ReadFile(filepath.Join(other, "g")); string(b) != "w\n" {
		t.Errorf("--bind is not writable: %q %s", b, r.stderr)
	}
	r = caisson(t, "run", "--clearenv", "--env", "A=1", "--", "env")
	if strings.Contains(r.stdout, "HOME=") || !strings.Contains(r.stdout, "A=1") || !strings.Contains(r.stdout, "PATH=") {
		t.Errorf("--clearenv: %q", r.stdout)
	}
}

// /proc is fresh, with kernel files masked and /proc/sys read-only; /dev is minimal (catalogue F10, F11, D1, P4).
func TestProcAndDev(t *testing.T) {
	requireSandbox(t)
	checked := 0
	for _, p := range rootfs.MaskedPaths {
		st, err := os.Stat(p)
		if err != nil {
			continue // this kernel has no such file
		}
		checked++
		if st.IsDir() {
			out := mustRun(t, "run", "--", "sh", "-c", "ls -A "+p+" | wc -l; touch "+p+"/x 2>&1; true")
			if !strings.HasPrefix(out, "0\n") || !strings.Contains(out, "Read-only") {
				t.Errorf("%s: want an empty read-only directory, got %q", p, out)
			}
		} else {
			out := mustRun(t, "run", "--", "stat", "-c", "%t:%T", p)
			if strings.TrimSpace(out) != "1:3" {
				t.Errorf("%s: want it covered by /dev/null (1:3), got %q", p, out)
			}
		}
	}
	if checked == 0 {
		t.Errorf("none of the masked paths exists on this host: the test checks nothing")
	}
	for _, p := range []string{"/proc/sys/kernel/core_pattern", "/proc/sys/net/ipv4/ip_forward", "/proc/sysrq-trigger"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		r := caisson(t, "run", "--", "sh", "-c", "echo 1 > "+p)
		if r.code == 0 || !strings.Contains(r.stderr, "Read-only") {
			t.Errorf("writing %s must fail with EROFS: %d %q", p, r.code, r.stderr)
		}
	}
	out := mustRun(t, "run", "--", "sh", "-c", "ls /dev | tr '\\n' ' '")
	want := "core fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero "
	if out != want {
		t.Errorf("/dev: want exactly %q, got %q", want, out)
	}
	out = mustRun(t, "run", "--", "sh", "-c", "exec 2>&1; mount -o remount,rw /; mknod /tmp/sda b 8 0; echo done")
	if strings.Count(out, "ermission denied")+strings.Count(out, "not permitted") < 2 {
		t.Errorf("remount rw / and mknod must fail: %q", out)
	}
}

// --time-offset shifts the sandbox's clocks only (catalogue P12).
func TestTimeNamespace(t *testing.T) {
	requireSandbox(t)
	want := map[bool]string{true: "ok    time namespace", false: "warn  time namespace"}[hasTimeNS()]
	if doc := caisson(t, "doctor").stdout; !strings.Contains(doc, want) {
		t.Errorf("doctor: want a line %q:\n%s", want, doc)
	}
	if !hasTimeNS() {
		requireNoTimeNS(t)
		return
	}
	out := mustRun(t, "run", "--time-offset", "boottime=86400,monotonic=-5", "--", "sh", "-c", "cat /proc/self/timens_offsets; cut -d' ' -f1 /proc/uptime")
	if !regexp.MustCompile(`monotonic\s+-5\s+0`).MatchString(out) || !regexp.MustCompile(`boottime\s+86400\s+0`).MatchString(out) {
		t.Errorf("offsets: %q", out)
	}
	var host float64
	b, _ := os.ReadFile("/proc/uptime")
	fmt.Sscan(string(b), &host)
	f := strings.Fields(out)
	inside, _ := strconv.ParseFloat(f[len(f)-1], 64)
	if inside-host < 86000 {
		t.Errorf("uptime inside %v, host %v: want +86400", inside, host)
	}
}

// hasTimeNS says whether this kernel has time namespaces (Linux 5.6+ built with CONFIG_TIME_NS; the User-Mode
// Linux kernel of TestKernelUML has none).
func hasTimeNS() bool {
	_, err := os.Stat("/proc/self/ns/time")
	return err == nil
}

// nsKinds lists the namespaces a sandbox has on this kernel: all eight, or seven without time namespaces.
func nsKinds() []string {
	kinds := []string{"mnt", "net", "pid", "uts", "ipc", "user", "cgroup", "time"}
	if !hasTimeNS() {
		kinds = kinds[:7]
	}
	return kinds
}

// requireNoTimeNS checks, on a kernel without time namespaces, that a sandbox still starts and that --time-offset
// (with extra flags) is one clear error line, exit 125.
func requireNoTimeNS(t *testing.T, extra ...string) {
	t.Helper()
	mustRun(t, append(append([]string{"run"}, extra...), "--", "true")...)
	r := caisson(t, append(append([]string{"run"}, extra...), "--time-offset", "boottime=60", "--", "true")...)
	want := "caisson: --time-offset: this kernel has no time namespaces"
	if r.code != 125 || !strings.HasPrefix(r.stderr, want) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("--time-offset without time namespaces: want exit 125 and one line %q..., got %d %q", want, r.code, r.stderr)
	}
}

// --share keeps chosen host namespaces.
func TestShare(t *testing.T) {
	requireSandbox(t)
	kinds := []string{"cgroup", "ipc", "net", "pid", "time", "uts"}
	if !hasTimeNS() {
		kinds = slices.DeleteFunc(kinds, func(k string) bool { return k == "time" })
	}
	out := mustRun(t, "run", "--share", "net,ipc,uts,cgroup,time,pid", "--", "sh", "-c",
		"for n in "+strings.Join(kinds, " ")+"; do readlink /proc/self/ns/$n; done")
	for i, n := range kinds {
		host, _ := os.Readlink("/proc/self/ns/" + n)
		if got := strings.Split(strings.TrimSpace(out), "\n"); len(got) != len(kinds) || got[i] != host {
			t.Errorf("--share %s: inside %q, host %q", n, got, host)
		}
	}
	// With the host's PID namespace, a background process still dies with the command.
	marker := fmt.Sprintf("caisson-sharepid-%d", time.Now().UnixNano())
	if out := mustRun(t, "run", "--share", "pid", "--", "sh", "-c", bgMarker(marker)); !strings.Contains(out, "argv0="+marker) {
		t.Fatalf("--share pid: the background child never started: %q", out)
	}
	waitGone(t, marker, 2*time.Second)
}

// -t gives the command a terminal with job control; without -t the command has no controlling terminal (D5, R30).
func TestTTY(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	out, err := exec.Command(script, "-qec", bin(t)+" run -t -- sh -c 'tty; stty size; echo $TERM; stat -c console=%t:%T /dev/console /dev/pts/0'", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "/dev/pts/0") {
		t.Errorf("-t: want /dev/pts/0, got %q", out)
	}
	// D10: /dev/console is the command's terminal (the same device as /dev/pts/0), and absent without one.
	if m := regexp.MustCompile(`console=(\w+:\w+)\s+console=(\w+:\w+)`).FindStringSubmatch(string(out)); m == nil || m[1] != m[2] {
		t.Errorf("-t: want /dev/console to be the terminal /dev/pts/0: %q", out)
	}
	out, _ = exec.Command(script, "-qec", bin(t)+" run -- sh -c 'tty; echo x > /dev/tty; test -e /dev/console || echo no-console'", "/dev/null").CombinedOutput()
	if !strings.Contains(string(out), "not a tty") || !strings.Contains(string(out), "No such device") || !strings.Contains(string(out), "no-console") {
		t.Errorf("without -t the command must have no controlling terminal and no /dev/console: %q", out)
	}
	out, _ = exec.Command(script, "-qec", "echo 'exit 3' | "+bin(t)+" run -t -- sh; echo code=$?", "/dev/null").CombinedOutput()
	if !strings.Contains(string(out), "not a terminal") {
		t.Errorf("-t without a terminal on stdin: want a warning, got %q", out)
	}
}

// stdin is passed through and EOF is seen (catalogue R17).
func TestStdin(t *testing.T) {
	requireSandbox(t)
	r := caissonIn(t, "", []byte("hello\n"), "run", "--", "cat")
	if r.stdout != "hello\n" {
		t.Errorf("stdin: %q", r.stdout)
	}
	cmd := exec.Command(bin(t), "run", "--", "cat")
	cmd.Stdin = nil // /dev/null
	if out, err := cmd.Output(); err != nil || len(out) != 0 {
		t.Errorf("stdin /dev/null: %q %v", out, err)
	}
}

// Init killed with SIGKILL from the host: the whole sandbox goes, caisson reports 137 (catalogue R4).
func TestInitKilledFromHost(t *testing.T) {
	requireSandbox(t)
	marker := fmt.Sprintf("caisson-initkill-%d", time.Now().UnixNano())
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", bgMarker(marker)+"; echo ready; wait")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if got := readUntil(stdout, "ready"); !strings.Contains(got, "argv0="+marker) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the background child never started: %q", got)
	}
	init := childOf(t, cmd.Process.Pid, "caisson-init")
	syscall.Kill(init, syscall.SIGKILL)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
		t.Errorf("want caisson to exit 137 when its init is killed, got %v", err)
	}
	waitGone(t, marker, 2*time.Second)
}

// -t: the sandbox's terminal has the caller's window size (catalogue R15).
func TestTTYWindowSize(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	out, err := exec.Command(script, "-qec", "stty rows 33 cols 77; "+bin(t)+" run -t -- stty size", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), "33 77") {
		t.Errorf("want the caller's 33x77 inside, got %q", out)
	}
}

// caisson inside caisson: the inner one sees it is nested (uid 0 there is not the host's root), maps only that
// id, and uses the outer sandbox's /proc when the kernel refuses a new one.
func TestNested(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "run", "--", "sh", "-c",
		"cat /proc/self/uid_map; echo nested-ok")
	if !strings.Contains(out, "nested-ok") || !regexp.MustCompile(`^\s*0\s+0\s+1\s*$`).MatchString(strings.Split(out, "\n")[0]) {
		t.Errorf("nested run: %q", out)
	}
	// P13: the kernel refuses the inner sandbox a fresh /proc (the outer one has masked files); it gets the outer
	// /proc, read-only, which refuses writes to its sysctls.
	out = mustRun(t, "run", "--no-cwd", "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "run", "--no-cwd", "--", "sh", "-c",
		"awk '$5 == \"/proc\" {print $6}' /proc/self/mountinfo | tail -1; { echo x >/proc/sys/kernel/core_pattern; } 2>/dev/null || echo refused")
	if f := strings.Fields(out); len(f) != 2 || !strings.HasPrefix(f[0], "ro,") || f[1] != "refused" {
		t.Errorf("nested /proc: want the top /proc read-only and core_pattern refused, got %q", out)
	}
}

// -t gives an interactive shell job control: no "cannot set terminal process group" (catalogue R30, D9).
func TestTTYJobControl(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	testenv.RequireCommand(t, "bash")
	out, err := exec.Command(script, "-qec", bin(t)+" run -t -- bash -ic 'sleep 0.2 & jobs; wait; echo job-done'", "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if strings.Contains(string(out), "cannot set terminal process group") || strings.Contains(string(out), "no job control") ||
		!strings.Contains(string(out), "Running") || !strings.Contains(string(out), "job-done") {
		t.Errorf("job control under -t: %q", out)
	}
}

// R12: init survives every catchable signal, sent from inside the sandbox (the command's `kill -TERM 1`) or from
// the host to its PID, and the sandbox still ends with the command's own status and nothing on stderr (the Go
// runtime under init would exit on TERM, HUP or INT and dump its goroutines on QUIT or a kill -SEGV).
func TestInitIgnoresSignals(t *testing.T) {
	requireSandbox(t)
	sigs := "HUP INT QUIT ILL TRAP ABRT BUS FPE USR1 SEGV USR2 PIPE ALRM TERM CONT TSTP TTIN TTOU XCPU XFSZ VTALRM WINCH IO PWR SYS"
	for _, posture := range []string{"default", "strict"} {
		r := caisson(t, "run", "--security", posture, "--", "sh", "-c",
			"for s in "+sigs+"; do kill -s $s 1 || echo failed $s; done; sleep 0.3; echo alive; exit 4")
		if r.code != 4 || r.stdout != "alive\n" || r.stderr != "" {
			t.Errorf("%s: signals to init from inside: exit %d, stdout %q, stderr %.300q; want 4, alive, nothing", posture, r.code, r.stdout, r.stderr)
		}
	}
	// From the host, to init's PID.
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", "echo ready; read x; exit 5")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	readUntil(stdout, "ready")
	init := childOf(t, cmd.Process.Pid, "caisson-init")
	for _, s := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGSEGV, syscall.SIGUSR1} {
		if err := syscall.Kill(init, s); err != nil {
			t.Errorf("kill %v %d: %v", s, init, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stdin.Write([]byte("x\n"))
	stdin.Close()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 5 || errb.Len() != 0 {
		t.Errorf("signals to init from the host: %v, stderr %.300q; want exit 5 and nothing", err, errb.String())
	}
}

// C8, C13, C19: the command line, the environment, a bind source and the working directory reach the sandbox
// byte for byte when they are not UTF-8, and a command line as long as the kernel takes (1.8 MB here, far above
// what one datagram of caisson's socket may carry) runs.
func TestCommandLineBytes(t *testing.T) {
	requireSandbox(t)
	odd := "d\xff\xfe"
	dir := filepath.Join(t.TempDir(), odd)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, odd), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin(t), "run", "--ro-bind", dir+":/mnt", "-e", "Y=y"+odd, "--", "sh", "-c",
		`printf '%s|%s|%s|%s|' "$1" "$X" "$Y" "$(pwd)"; ls /mnt`, "sh", "a"+odd)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "X=x"+odd)
	out, err := cmd.CombinedOutput()
	if want := "a" + odd + "|x" + odd + "|y" + odd + "|" + dir + "|" + odd + "\n"; err != nil || string(out) != want {
		t.Errorf("bytes that are not UTF-8: %v, got %q, want %q", err, out, want)
	}
	arg := strings.Repeat("a", 100000)
	args := []string{"run", "--no-cwd", "--", "sh", "-c", `echo $#`, "sh"}
	for i := 0; i < 18; i++ {
		args = append(args, arg)
	}
	if r := caisson(t, args...); r.code != 0 || r.stdout != "18\n" {
		t.Errorf("a 1.8 MB command line: exit %d, %q, %q", r.code, r.stdout, r.stderr)
	}
}

// R33: a command that stops itself and is continued keeps running and its status comes through; one stopped from
// the host (SIGSTOP to its PID) resumes when caisson is sent SIGCONT, which caisson forwards.
func TestStopAndContinue(t *testing.T) {
	requireSandbox(t)
	r := caisson(t, "run", "--", "sh", "-c", "(sleep 0.3; kill -CONT $$) & kill -STOP $$; echo resumed; exit 5")
	if r.code != 5 || r.stdout != "resumed\n" {
		t.Errorf("self-stopped command: exit %d %q %q, want 5 and resumed", r.code, r.stdout, r.stderr)
	}
	cmd := exec.Command(bin(t), "run", "--", "sh", "-c", "echo ready; read x; echo resumed; exit 6")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	readUntil(stdout, "ready")
	sh := childOf(t, childOf(t, cmd.Process.Pid, "caisson-init"), "sh")
	syscall.Kill(sh, syscall.SIGSTOP)
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(procState(sh), "T") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := procState(sh); !strings.Contains(st, "T") {
		t.Fatalf("the command did not stop: state %q", st)
	}
	cmd.Process.Signal(syscall.SIGCONT)
	stdin.Write([]byte("x\n"))
	stdin.Close()
	out, _ := io.ReadAll(stdout)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 6 || string(out) != "resumed\n" {
		t.Errorf("stopped from the host, continued through caisson: %v, %q; want exit 6 and resumed", err, out)
	}
}

// procState returns the State line of /proc/PID/status ("" when gone).
func procState(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "State:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// R16: Ctrl-C typed on the terminal interrupts the command, with and without -t: exit 130, and a command that
// traps SIGINT decides its own status. Without -t the SIGINT goes to the command's process only (caisson forwards
// it, as `docker run` does): a shell waiting for a child would act on it only once the child ends, hence exec.
func TestCtrlC(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	for _, tc := range []struct {
		flags, cmd string
		want       int
	}{
		{"-t", "echo ready; sleep 10", 130},
		{"", "echo ready; exec sleep 10", 130},
		{"-t", "trap 'exit 3' INT; echo ready; sleep 10 & wait", 3},
	} {
		c := exec.Command(script, "-qec", bin(t)+" run "+tc.flags+" -- sh -c \""+tc.cmd+"\"; echo code=$?", "/dev/null")
		stdin, _ := c.StdinPipe()
		stdout, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		readUntil(stdout, "ready")
		time.Sleep(100 * time.Millisecond)
		stdin.Write([]byte{3})
		out, _ := io.ReadAll(stdout)
		c.Wait()
		if !strings.Contains(string(out), fmt.Sprintf("code=%d", tc.want)) {
			t.Errorf("run %s -- %s, then Ctrl-C: want code=%d, got %q", tc.flags, tc.cmd, tc.want, out)
		}
	}
}

// X8: a large output stream through -t (caisson relays the sandbox's terminal) keeps caisson's memory bounded:
// its peak resident memory after 64 MiB stays under 32 MB.
func TestTTYStreamMemory(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	c := exec.Command(script, "-qec", bin(t)+" run -t -- sh -c 'head -c 67108864 /dev/zero; sleep 1; echo done'", "/dev/null")
	stdout, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Process.Kill()
	// Find caisson under script's shell while the stream runs, then read its peak once the stream is through.
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if found := descendants(c.Process.Pid, "caisson"); len(found) > 0 {
			pid = found[0]
		}
	}
	if pid == 0 {
		t.Fatalf("no caisson process under script")
	}
	var n int64
	buf := make([]byte, 1<<16)
	hwm := ""
	for {
		k, err := stdout.Read(buf)
		n += int64(k)
		if n >= 64<<20 && hwm == "" {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			if m := regexp.MustCompile(`VmHWM:\s+(\d+) kB`).FindSubmatch(b); m != nil {
				hwm = string(m[1])
			}
		}
		if err != nil {
			break
		}
	}
	c.Wait()
	kb, _ := strconv.Atoi(hwm)
	if n < 64<<20 || kb == 0 || kb > 32<<10 {
		t.Errorf("64 MiB through -t: %d bytes relayed, caisson's peak resident memory %q kB (want under 32 MB)", n, hwm)
	}
	t.Logf("caisson's peak resident memory after relaying %d MiB through -t: %d kB", n>>20, kb)
}
