package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// lifeEnv gives the test its own state root, so sandboxes of other tests never show up.
func lifeEnv(t *testing.T) string {
	t.Helper()
	requireSandbox(t)
	dir := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", dir)
	t.Cleanup(func() {
		// Stop whatever a failed test left running.
		ents, _ := os.ReadDir(filepath.Join(dir, "caisson"))
		for _, e := range ents {
			exec.Command(bin(t), "stop", "--time", "0", e.Name()).Run()
		}
	})
	return filepath.Join(dir, "caisson")
}

type psRow struct {
	Name       string            `json:"name"`
	PID        int               `json:"pid"`
	InitPID    int               `json:"init_pid"`
	CommandPID int               `json:"command_pid"`
	Command    []string          `json:"command"`
	Net        string            `json:"net"`
	Ports      []string          `json:"ports"`
	Detached   bool              `json:"detached"`
	Namespaces map[string]string `json:"namespaces"`
}

func ps(t *testing.T) map[string]psRow {
	t.Helper()
	var rows []psRow
	if err := json.Unmarshal([]byte(mustRun(t, "ps", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]psRow{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out
}

// A detached sandbox: started, listed, logged, exec'd into, stopped; its state directory goes with it.
func TestLifeDetached(t *testing.T) {
	root := lifeEnv(t)
	out := mustRun(t, "run", "-d", "--name", "svc", "--hostname", "svc-host", "--", "sh", "-c",
		"echo hello-from-svc; mkdir -p /tmp/m && mount -t tmpfs x /tmp/m && touch /tmp/m/mark; trap 'echo got-term' TERM; while :; do sleep 0.1; done")
	if strings.TrimSpace(out) != "svc" {
		t.Fatalf("run -d printed %q", out)
	}
	row, ok := ps(t)["svc"]
	if !ok || !row.Detached || row.InitPID <= 0 {
		t.Fatalf("ps: %+v", row)
	}
	// ps --json: namespace ids are those of /proc/PID/ns (time: the one init gives its children).
	for ns, id := range row.Namespaces {
		link := ns
		if ns == "time" {
			link = "time_for_children"
		}
		host, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", row.InitPID, link))
		if err != nil || !strings.Contains(host, "["+id+"]") {
			t.Errorf("ps namespace %s = %s, /proc says %q (%v)", ns, id, host, err)
		}
	}
	if want := nsKinds(); len(row.Namespaces) != len(want) {
		t.Errorf("want the namespaces %v, got %v", want, row.Namespaces)
	}
	// exec sees the same PID 1, host name, mounts and namespaces as the command.
	deadline := time.Now().Add(5 * time.Second)
	var got string
	for time.Now().Before(deadline) {
		got = mustRun(t, "exec", "svc", "--", "sh", "-c", "ps -o comm= -p 1; hostname; ls /tmp/m; for n in "+strings.Join(nsKinds(), " ")+"; do readlink /proc/self/ns/$n; done")
		if strings.Contains(got, "mark") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{"caisson-init", "svc-host", "mark"} {
		if !strings.Contains(got, want) {
			t.Errorf("exec: want %q in %q", want, got)
		}
	}
	for ns, id := range row.Namespaces {
		if !strings.Contains(got, ns+":["+id+"]") {
			t.Errorf("exec: namespace %s is not the sandbox's %s: %q", ns, id, got)
		}
	}
	// Exit codes through exec.
	for _, tc := range []struct {
		cmd  string
		code int
	}{{"exit 0", 0}, {"exit 7", 7}, {"exit 255", 255}, {"kill -9 $$", 137}, {"kill -TERM $$", 143}} {
		if r := caisson(t, "exec", "svc", "--", "sh", "-c", tc.cmd); r.code != tc.code {
			t.Errorf("exec %q: want %d, got %d (%s)", tc.cmd, tc.code, r.code, r.stderr)
		}
	}
	if r := caisson(t, "exec", "svc", "--", "no-such-command"); r.code != 127 || !strings.HasPrefix(r.stderr, "caisson: ") {
		t.Errorf("exec of a missing command: %d %q", r.code, r.stderr)
	}
	if r := caissonIn(t, "", []byte("through-stdin\n"), "exec", "svc", "--", "cat"); r.stdout != "through-stdin\n" {
		t.Errorf("exec stdin: %q", r.stdout)
	}
	logs := mustRun(t, "logs", "svc")
	if !strings.Contains(logs, "hello-from-svc") {
		t.Errorf("logs: %q", logs)
	}
	// stop: SIGTERM reaches the command (it traps it and goes on), SIGKILL after the grace period: 137.
	start := time.Now()
	out = mustRun(t, "stop", "--time", "1", "svc")
	if !strings.Contains(out, "exited with status 137") || time.Since(start) < time.Second {
		t.Errorf("stop: %q after %v", out, time.Since(start))
	}
	if _, ok := ps(t)["svc"]; ok {
		t.Errorf("stopped sandbox still listed")
	}
	if _, err := os.Stat(filepath.Join(root, "svc")); err == nil {
		t.Errorf("state directory left behind")
	}
	waitGone(t, "hello-from-svc", 2*time.Second)
}

// stop of a command that honours SIGTERM returns its own status.
func TestLifeStopGraceful(t *testing.T) {
	lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "graceful", "--", "sh", "-c", "trap 'exit 42' TERM; while :; do sleep 0.1; done")
	time.Sleep(200 * time.Millisecond)
	if out := mustRun(t, "stop", "--time", "10", "graceful"); !strings.Contains(out, "status 42") {
		t.Errorf("stop: %q", out)
	}
}

// Pod-style sharing: a sidecar in its own PID and mount namespaces reaches the web server on localhost.
func TestLifePod(t *testing.T) {
	lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "pod", "--hostname", "podhost", "--", "sh", "-c",
		"socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo from-web' & wait")
	var out string
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		out = caisson(t, "run", "--join", "pod", "--", "sh", "-c",
			"socat -T2 - TCP4:127.0.0.1:80 </dev/null; hostname; echo pid=$$; ps -e -o comm= | sort -u | tr '\\n' ' '").stdout
		if strings.Contains(out, "from-web") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(out, "from-web") || !strings.Contains(out, "podhost") {
		t.Errorf("sidecar: want the web server on localhost and the pod's host name, got %q", out)
	}
	if strings.Contains(out, "socat") && !strings.Contains(out, "sh ") {
		t.Errorf("sidecar sees the pod's processes: %q", out)
	}
	rows := ps(t)
	r := caisson(t, "run", "--join-net", "pod", "--", "sh", "-c", "readlink /proc/self/ns/net /proc/self/ns/pid /proc/self/ns/mnt /proc/self/ns/uts")
	if !strings.Contains(r.stdout, rows["pod"].Namespaces["net"]) {
		t.Errorf("--join-net: not the pod's network namespace: %q vs %v", r.stdout, rows["pod"].Namespaces)
	}
	for _, ns := range []string{"pid", "mnt", "uts"} {
		if strings.Contains(r.stdout, "["+rows["pod"].Namespaces[ns]+"]") {
			t.Errorf("--join-net: shares the pod's %s namespace: %q", ns, r.stdout)
		}
	}
	// Exit status of a joined sandbox.
	if r := caisson(t, "run", "--join", "pod", "--", "sh", "-c", "exit 9"); r.code != 9 {
		t.Errorf("joined exit status: %d %s", r.code, r.stderr)
	}
	if r := caisson(t, "run", "--join", "no-such-pod", "--", "true"); r.code != 125 || !strings.Contains(r.stderr, "no-such-pod") {
		t.Errorf("join of a missing sandbox: %d %q", r.code, r.stderr)
	}
	// A pod whose command dropped capabilities can be joined; the sidecar holds no more than the pod's command.
	mustRun(t, "run", "-d", "--name", "pod-capped", "--cap-drop", "net_admin", "--", "sleep", "60")
	r = caisson(t, "run", "--join", "pod-capped", "--", "sh", "-c", "grep CapBnd /proc/self/status")
	bnd, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(r.stdout, "CapBnd:")), 16, 64)
	if r.code != 0 || err != nil || bnd&(1<<12) != 0 || bnd&(1<<19) != 0 || bnd&(1<<21) == 0 {
		t.Errorf("join of a pod without net_admin: exit %d %q %q (%v): want CAP_SYS_ADMIN, not CAP_NET_ADMIN or CAP_SYS_PTRACE",
			r.code, r.stdout, r.stderr, err)
	}
}

// A killed supervisor leaves a stale state directory: the next command detects and removes it (also when the
// PID was reused by another process), and the name can be used again.
func TestLifeStaleState(t *testing.T) {
	root := lifeEnv(t)
	cmd := exec.Command(bin(t), "run", "--name", "stale", "--", "sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(root, "stale", "state.json")); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if _, err := os.Stat(filepath.Join(root, "stale")); err != nil {
		t.Fatalf("want the stale directory for the test: %v", err)
	}
	if _, ok := ps(t)["stale"]; ok {
		t.Errorf("ps lists a sandbox whose supervisor is dead")
	}
	if _, err := os.Stat(filepath.Join(root, "stale")); err == nil {
		t.Errorf("ps did not clean the stale directory")
	}
	// PID reuse: a record naming a live process with another start time is stale too.
	dir := filepath.Join(root, "reused")
	os.MkdirAll(dir, 0o700)
	rec := fmt.Sprintf(`{"name":"reused","pid":%d,"start_time":1,"init_pid":%d}`, os.Getpid(), os.Getpid())
	os.WriteFile(filepath.Join(dir, "state.json"), []byte(rec), 0o600)
	if _, ok := ps(t)["reused"]; ok {
		t.Errorf("ps trusts a record whose PID was reused")
	}
	mustRun(t, "run", "--name", "stale", "--", "true")
}

// zombie is a detached sandbox whose processes were killed and are held as zombies (see zombieSandbox).
type zombie struct {
	dir    string // its state directory, left by its killed caisson
	record []byte // the state.json its caisson wrote
	row    psRow
}

// restore puts the sandbox's state directory back as its killed caisson left it (a command that found the sandbox
// dead removed it).
func (z zombie) restore(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(z.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(z.dir, "state.json"), z.record, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newZombieKeeper makes the test process a child subreaper that reaps no orphan until t ends: an orphan that exits
// stays a zombie, as under a container's PID 1 that is a shell or an application and never waits. At the end it
// kills and reaps what it holds, and stops being a subreaper.
func newZombieKeeper(t testing.TB) {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for kids := testenv.Children(os.Getpid()); len(kids) > 0 && time.Now().Before(deadline); kids = testenv.Children(os.Getpid()) {
			for _, pid := range kids {
				_ = unix.Kill(pid, unix.SIGKILL)
				var ws unix.WaitStatus
				_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
}

// zombieSandbox starts a detached sandbox named name (with more run flags), then kills its caisson, its init and
// its command with SIGKILL, as an OOM killer or an operator's kill -9 does, and returns once its caisson and init
// are zombies: this test process is made their child subreaper, and does not reap them until the test ends (as a
// container's PID 1 that is a shell never does).
func zombieSandbox(t *testing.T, root, name string, flags ...string) zombie {
	t.Helper()
	newZombieKeeper(t)
	args := append(append([]string{"run", "-d", "--name", name}, flags...), "--", "sleep", "1000")
	mustRun(t, args...)
	z := zombie{dir: filepath.Join(root, name)}
	var err error
	if z.record, err = os.ReadFile(filepath.Join(z.dir, "state.json")); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(z.record, &z.row); err != nil {
		t.Fatal(err)
	}
	cmdPID := z.row.CommandPID
	if cmdPID <= 0 {
		if kids := testenv.Children(z.row.InitPID); len(kids) > 0 {
			cmdPID = kids[0]
		}
	}
	if z.row.PID <= 0 || z.row.InitPID <= 0 || cmdPID <= 0 {
		t.Fatalf("record %s: want the caisson, init and command PIDs", z.record)
	}
	if _, _, ppid, _, err := testenv.ProcStat(z.row.PID); err != nil || ppid != os.Getpid() {
		t.Fatalf("the sandbox's caisson %d: parent %d (%v), want this test process %d (its subreaper)", z.row.PID, ppid, err, os.Getpid())
	}
	for _, pid := range []int{z.row.PID, z.row.InitPID, cmdPID} {
		// ESRCH: already gone with what was killed before it (init dies with caisson, and the command, killed and
		// reaped by the kernel with its PID namespace, with init).
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatalf("kill %d: %v", pid, err)
		}
	}
	for _, pid := range []int{z.row.PID, z.row.InitPID} {
		if !testenv.WaitState(pid, 'Z', 10*time.Second) {
			_, st, ppid, _, err := testenv.ProcStat(pid)
			t.Fatalf("process %d of the sandbox is not a zombie of this test's: state %q, parent %d (%v)", pid, st, ppid, err)
		}
	}
	return z
}

// A sandbox whose processes are all dead but not reaped (zombies of a parent that never waits) is dead at once:
// ps does not list it; stop, exec, logs, inspect and --join say there is no such sandbox and remove its state
// directory; its name can be used again; its --persist directory is free (the kernel released its lock when the processes exited).
func TestLifeZombieSandbox(t *testing.T) {
	root := lifeEnv(t)
	persist := filepath.Join(t.TempDir(), "persist")
	z := zombieSandbox(t, root, "dead", "--persist", persist)
	noSandbox := regexp.MustCompile(`no running sandbox named "?dead"?`)
	if _, ok := ps(t)["dead"]; ok {
		t.Errorf("ps lists a sandbox whose processes are zombies")
	}
	if _, err := os.Stat(z.dir); err == nil {
		t.Errorf("ps did not remove the dead sandbox's state directory")
	}
	for _, args := range [][]string{
		{"stop", "--time", "0", "dead"},
		{"exec", "dead", "true"},
		{"logs", "dead"},
		{"inspect", "dead"},
		{"run", "--join", "dead", "--", "true"},
	} {
		z.restore(t)
		r := caisson(t, args...)
		if r.code != 125 || !noSandbox.MatchString(r.stderr) {
			t.Errorf("caisson %s on a dead sandbox: exit %d, stderr %q; want 125 and %q",
				strings.Join(args, " "), r.code, r.stderr, noSandbox)
		}
		if _, err := os.Stat(z.dir); err == nil {
			t.Errorf("caisson %s left the dead sandbox's state directory", strings.Join(args, " "))
		}
	}
	z.restore(t)
	if out := mustRun(t, "run", "-d", "--name", "dead", "--persist", persist, "--", "sleep", "1000"); strings.TrimSpace(out) != "dead" {
		t.Errorf("run -d --name dead printed %q", out)
	}
	if row, ok := ps(t)["dead"]; !ok || row.PID == z.row.PID {
		t.Errorf("ps after reusing the name: %+v (listed %v), want the new sandbox", row, ok)
	}
	mustRun(t, "stop", "--time", "0", "dead")
}

// Twenty named sandboxes at once, each listed with its own namespaces, then all stopped.
func TestLifeMany(t *testing.T) {
	lifeEnv(t)
	const n = 20
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			r := caisson(t, "run", "-d", "--name", fmt.Sprintf("many-%02d", i), "--", "sleep", "60")
			if r.code != 0 {
				errs <- fmt.Errorf("sandbox %d: %d %s", i, r.code, r.stderr)
				return
			}
			errs <- nil
		}(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	rows := ps(t)
	nets := map[string]bool{}
	for i := 0; i < n; i++ {
		r, ok := rows[fmt.Sprintf("many-%02d", i)]
		if !ok {
			t.Errorf("many-%02d not listed", i)
			continue
		}
		nets[r.Namespaces["net"]] = true
	}
	if len(nets) != n {
		t.Errorf("want %d distinct network namespaces, got %d", n, len(nets))
	}
	for i := 0; i < n; i++ {
		go func(i int) { errs <- exec.Command(bin(t), "stop", "-t", "0", fmt.Sprintf("many-%02d", i)).Run() }(i)
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if left := len(ps(t)); left != 0 {
		t.Errorf("%d sandboxes left", left)
	}
}

// Bad input: one caisson: line, exit 125, nothing changed.
func TestLifeBadInput(t *testing.T) {
	root := lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "dup", "--", "sleep", "30")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"duplicate name", []string{"run", "--name", "dup", "--", "true"}, "dup"},
		{"invalid name", []string{"run", "--name", "../x", "--", "true"}, "name"},
		{"exec unknown", []string{"exec", "nope", "--", "true"}, "nope"},
		{"stop unknown", []string{"stop", "nope"}, "nope"},
		{"logs unknown", []string{"logs", "nope"}, "nope"},
		{"exec without command", []string{"exec", "dup"}, "command"},
		{"stop bad time", []string{"stop", "--time", "-1", "dup"}, "--time"},
		{"detach with tty", []string{"run", "-d", "-t", "--", "true"}, "--detach"},
		{"join two sandboxes", []string{"run", "--join-net", "a", "--join-ipc", "b", "--", "true"}, "one sandbox"},
		{"join with map", []string{"run", "--join", "dup", "--map", "single", "--", "true"}, "--map"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := caisson(t, tc.args...)
			if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("want exit 125 with one caisson: line naming %q, got %d %q", tc.want, r.code, r.stderr)
			}
		})
	}
	if _, ok := ps(t)["dup"]; !ok {
		t.Errorf("the running sandbox was disturbed")
	}
	// A non-detached sandbox has no log.
	cmd := exec.Command(bin(t), "run", "--name", "fg", "--", "sleep", "5")
	cmd.Start()
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	for i := 0; i < 100; i++ {
		if _, ok := ps(t)["fg"]; ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := caisson(t, "logs", "fg"); r.code != 125 || !strings.Contains(r.stderr, "not detached") {
		t.Errorf("logs of a foreground sandbox: %d %q", r.code, r.stderr)
	}
	// A state root that is not ours (wrong mode) is refused.
	os.Chmod(root, 0o755)
	defer os.Chmod(root, 0o700)
	if r := caisson(t, "ps"); r.code != 125 || !strings.Contains(r.stderr, "0700") {
		t.Errorf("ps with a 0755 state root: %d %q", r.code, r.stderr)
	}
}

// Profiles: flags from TOML, the command line wins, errors name the file, line and key.
func TestLifeProfile(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "p.toml")
	os.WriteFile(good, []byte("# a profile\nhostname = \"from-profile\"\nenv = [\"A=1\", \"B=2\"]\nno-cwd = true\ncommand = [\"sh\", \"-c\", \"hostname; echo $A$B; pwd\"]\n"), 0o644)
	if out := mustRun(t, "run", "--profile", good); out != "from-profile\n12\n/\n" {
		t.Errorf("profile: %q", out)
	}
	if out := mustRun(t, "run", "--profile", good, "--hostname", "cli", "--", "hostname"); out != "cli\n" {
		t.Errorf("command line must win: %q", out)
	}
	for _, tc := range []struct{ body, want string }{
		{"\n\nnot-a-flag = 1\n", ":3: unknown key \"not-a-flag\""},
		{"hostname = 5\n", ":1: key \"hostname\" wants a string"},
		{"overlay = \"yes\"\n", "key \"overlay\" wants true or false"},
		{"bind = [1]\n", "key \"bind\" wants a string or an array"},
		{"x = [\n", "p.toml:1"},
	} {
		os.WriteFile(good, []byte(tc.body), 0o644)
		r := caisson(t, "run", "--profile", good, "--", "true")
		if r.code != 125 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("profile %q: want one line with %q, got %d %q", tc.body, tc.want, r.code, r.stderr)
		}
	}
	// The repository's example profiles work.
	lifeEnv(t)
	profiles := os.Getenv("CAISSON_PROFILES")
	if profiles == "" {
		profiles, _ = filepath.Abs(filepath.Join("..", "cmd", "caisson", "profiles"))
	}
	path := func(name string) string { return filepath.Join(profiles, name) }
	if out := mustRun(t, "run", "--profile", path("ci-untrusted.toml"), "--", "sh", "-c", "hostname; grep CapEff /proc/self/status"); !strings.Contains(out, "ci\n") || !strings.Contains(out, "0000000000000000") {
		t.Errorf("ci-untrusted.toml: %q", out)
	}
	if out := mustRun(t, "run", "--profile", path("dev-shell.toml"), "--", "sh", "-c", "hostname; touch /opt/dev-x && echo writable"); out != "devbox\nwritable\n" {
		t.Errorf("dev-shell.toml: %q", out)
	}
	port := freePort(t, "tcp")
	if out := mustRun(t, "run", "--profile", path("service.toml"), "--publish", fmt.Sprintf("%d:8000", port), "--", "socat", "TCP-LISTEN:8000,fork,reuseaddr", "SYSTEM:echo served"); strings.TrimSpace(out) != "web" {
		t.Errorf("service.toml: %q", out)
	}
	if got := dialRead(t, port); got != "served" {
		t.Errorf("service.toml: %q", got)
	}
	mustRun(t, "stop", "-t", "0", "web")
	requireNet(t, "pasta")
	out := mustRun(t, "run", "--profile", path("ci-online.toml"), "--", "sh", "-c", "hostname; "+routeDecision("192.168.1.1", "10.1.1.1", "169.254.169.254", "192.0.2.1"))
	if out != "ci\nREFUSED-192.168.1.1\nREFUSED-10.1.1.1\nREFUSED-169.254.169.254\nROUTE-192.0.2.1\n" {
		t.Errorf("ci-online.toml: %q", out)
	}
}

// caisson inspect NAME from outside: the command's isolation, compared with the caller's namespaces.
func TestLifeInspectByName(t *testing.T) {
	lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "insp", "--security", "strict", "--share", "uts", "--", "sleep", "30")
	var rep struct {
		Namespaces     map[string]string `json:"namespaces"`
		SharedWithHost []string          `json:"shared_with_host"`
		Seccomp        string            `json:"seccomp"`
		NoNewPrivs     bool              `json:"no_new_privs"`
		Capabilities   struct {
			Effective []string `json:"effective"`
		} `json:"capabilities"`
		Record *struct {
			Posture string `json:"posture"`
		} `json:"record"`
	}
	var out string
	for i := 0; i < 50; i++ { // the command's PID is recorded once it started
		if r := caisson(t, "inspect", "--json", "insp"); r.code == 0 {
			out = r.stdout
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %q", err, out)
	}
	if strings.Join(rep.SharedWithHost, ",") != "uts" || len(rep.Namespaces) != len(nsKinds()) {
		t.Errorf("namespaces: %v shared %v", rep.Namespaces, rep.SharedWithHost)
	}
	if rep.Seccomp != "filter" || !rep.NoNewPrivs || len(rep.Capabilities.Effective) != 0 || rep.Record == nil || rep.Record.Posture != "strict" {
		t.Errorf("inspect: %+v", rep)
	}
	if r := caisson(t, "inspect", "no-such"); r.code != 125 || !strings.Contains(r.stderr, "no-such") {
		t.Errorf("inspect of a missing sandbox: %d %q", r.code, r.stderr)
	}
}

// R25: a state directory on a full file system: caisson fails with one line naming the file, exit 125, and
// leaves no state behind (run inside a sandbox, on a 16 KiB tmpfs filled first).
func TestLifeStateDiskFull(t *testing.T) {
	requireSandbox(t)
	script := `chmod 700 /tmp/st; dd if=/dev/zero of=/tmp/st/fill bs=4k count=100 2>/dev/null
XDG_RUNTIME_DIR=/tmp/st /tmp/caisson run --name full -- true 2>/tmp/err; echo "exit $?"; tail -1 /tmp/err; ls -A /tmp/st/caisson`
	out := mustRun(t, "run", "--no-cwd", "--tmpfs", "/tmp/st:size=16k", "--ro-bind", bin(t)+":/tmp/caisson", "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[0] != "exit 125" ||
		!strings.HasPrefix(lines[1], "caisson: save the sandbox's state: write /tmp/st/caisson/full/") ||
		!strings.HasSuffix(lines[1], "no space left on device") {
		t.Errorf("want exit 125, one line naming the state file and ENOSPC, and no state left; got %q", out)
	}
}
