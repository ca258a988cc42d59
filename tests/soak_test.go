package tests

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// soakPlan is one sandbox of the soak: what it runs, how it is disturbed, and what it must end with.
type soakPlan struct {
	i          int
	net        string         // none, pasta or slirp4netns
	publish    int            // host port published to the sandbox's port 8080, 0 for none
	overlay    bool           // --overlay: the command writes into /etc and reads it back
	single     bool           // --map single
	limits     bool           // --cgroup --pids 200: a cgroup of its own (removed at the end, swept after a SIGKILL)
	code       int            // the command's exit code (when sig is 0)
	sig        syscall.Signal // the command kills itself with this signal
	sleep      time.Duration  // how long the command sleeps before it exits
	killAfter  time.Duration  // SIGKILL caisson after this delay (0: not killed)
	killHelper helperKill     // SIGKILL the sandbox's pasta/slirp4netns during setup or while the command runs
}

func (p soakPlan) want() int {
	if p.sig != 0 {
		return 128 + int(p.sig)
	}
	return p.code
}

func (p soakPlan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d net=%s", p.i, p.net)
	if p.publish != 0 {
		fmt.Fprintf(&b, " -p %d", p.publish)
	}
	if p.overlay {
		b.WriteString(" --overlay")
	}
	if p.single {
		b.WriteString(" --map single")
	}
	if p.limits {
		b.WriteString(" --cgroup --pids 200")
	}
	fmt.Fprintf(&b, " want=%d sleep=%v", p.want(), p.sleep)
	if p.killAfter > 0 {
		fmt.Fprintf(&b, " kill-caisson-after=%v", p.killAfter)
	}
	if p.killHelper != helperAlive {
		fmt.Fprintf(&b, " kill-helper-%s", p.killHelper)
	}
	return b.String()
}

// args is the caisson command line of the plan.
func (p soakPlan) args() []string {
	a := []string{"run", "--net", p.net}
	if p.publish != 0 {
		a = append(a, "-p", fmt.Sprintf("127.0.0.1:%d:8080", p.publish))
	}
	if p.overlay {
		a = append(a, "--overlay")
	}
	if p.single {
		a = append(a, "--map", "single")
	}
	if p.limits {
		a = append(a, "--cgroup", "--pids", "200")
	}
	var s strings.Builder
	fmt.Fprintf(&s, "echo soak-%d", p.i)
	if p.net != "none" {
		s.WriteString("; [ -e /sys/class/net/tap0 ] && echo net-ok")
	}
	if p.overlay {
		fmt.Fprintf(&s, "; echo %d > /etc/caisson-soak-%d && [ \"$(cat /etc/caisson-soak-%d)\" = %d ] && echo overlay-ok", p.i, p.i, p.i, p.i)
	}
	if p.sleep > 0 {
		fmt.Fprintf(&s, "; sleep %.3f", p.sleep.Seconds())
	}
	if p.sig != 0 {
		fmt.Fprintf(&s, "; kill -%d $$", int(p.sig))
	} else {
		fmt.Fprintf(&s, "; exit %d", p.code)
	}
	return append(a, "--", "sh", "-c", s.String())
}

// soakSignals are the signals a soak command kills itself with (none of them dumps core).
var soakSignals = []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGKILL, syscall.SIGUSR1, syscall.SIGUSR2,
	syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTERM}

// envInt reads a positive integer from the environment.
func envInt(t testing.TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// overlayWorks reports whether `caisson run --overlay` is available and works here; it fails the test when the
// flag exists but cannot work, since a sandbox with --overlay must run on any host that passes `caisson doctor`.
func overlayWorks(t *testing.T) bool {
	t.Helper()
	help, _ := exec.Command(bin(t), "run", "--help").Output()
	if !bytes.Contains(help, []byte("--overlay")) {
		t.Logf("soak: caisson run has no --overlay flag yet: overlays are not part of the mix")
		return false
	}
	r := caisson(t, "run", "--overlay", "--", "sh", "-c", "echo x > /etc/caisson-soak-probe && cat /etc/caisson-soak-probe")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "x" {
		t.Errorf("soak: --overlay exists but does not work (exit %d): %s; overlays left out of the mix", r.code, strings.TrimSpace(r.stderr))
		return false
	}
	return true
}

// TestSoak runs many sandboxes at once, mixing network modes, overlays, ID maps, exit codes and signals, kills a
// random share of the caisson processes with SIGKILL at random moments (during setup and while the command runs)
// and of their network helpers mid-run, then checks every surviving exit status and that nothing is left behind:
// no process, mount, descriptor, state or temporary directory (catalogue R1, R19-R26). CAISSON_SOAK_N sandboxes
// (default 150), CAISSON_SOAK_PAR at a time (default 20); `make soak` runs 1000, 50 at a time.
// CAISSON_SOAK_SEED replays a run.
func TestSoak(t *testing.T) {
	requireSandbox(t)
	testenv.RequireCommand(t, "pasta")
	testenv.RequireCommand(t, "slirp4netns")
	testenv.RequireTun(t)
	n := envInt(t, "CAISSON_SOAK_N", 150)
	par := envInt(t, "CAISSON_SOAK_PAR", 20)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CAISSON_SOAK_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("soak: %d sandboxes, %d at a time, CAISSON_SOAK_SEED=%d", n, par, seed)
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	overlay := overlayWorks(t)
	cg := callerCgroups(t)
	limits := cg["v2"] != "" && cg["pids"] != "" && unix.Access(cg["v2"], unix.W_OK) == nil && unix.Access(cg["pids"], unix.W_OK) == nil
	if !limits {
		t.Logf("soak: no delegated cgroups (%v): no sandbox gets --cgroup --pids", cg)
	}

	// Budget: the whole soak must end in a few minutes; per sandbox 2 s of wall time at full parallelism is
	// already 10x what a sandbox costs here.
	budget := time.Duration(n/par+1)*2*time.Second + 30*time.Second
	if budget > 8*time.Minute {
		budget = 8 * time.Minute
	}
	plans := make([]soakPlan, n)
	nets := []string{"none", "pasta", "slirp4netns"}
	for i := range plans {
		p := soakPlan{i: i, net: nets[rng.IntN(len(nets))], code: rng.IntN(256)}
		if p.net != "none" && rng.IntN(3) == 0 {
			p.publish = -1 // a free port is chosen when the sandbox starts
		}
		p.overlay = overlay && rng.IntN(3) == 0
		p.single = rng.IntN(5) == 0
		p.limits = limits && rng.IntN(4) == 0
		if rng.IntN(5) == 0 {
			p.sig = soakSignals[rng.IntN(len(soakSignals))]
		}
		p.sleep = time.Duration(rng.IntN(200)) * time.Millisecond
		switch r := rng.IntN(100); {
		case r < 15: // caisson killed at a random moment: during setup or while the command runs
			p.killAfter = time.Duration(1+rng.IntN(400)) * time.Millisecond
			p.sleep = time.Duration(rng.IntN(600)) * time.Millisecond
		case r < 21 && p.net != "none": // the network helper killed as soon as it runs, during setup
			p.killHelper = helperInSetup
		case r < 30 && p.net != "none": // the network helper killed while the command runs
			p.killHelper = helperWhileRunning
			p.sleep = 300*time.Millisecond + time.Duration(rng.IntN(400))*time.Millisecond
		}
		plans[i] = p
	}

	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	harness := testenv.SubreaperPath(t)
	before := snapshotHost(t)
	start := time.Now()
	deadline := start.Add(budget)

	var (
		mu       sync.Mutex
		failures []string
		stats    = map[string]int{}
		wg       sync.WaitGroup
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	count := func(key string) {
		mu.Lock()
		stats[key]++
		mu.Unlock()
	}
	sem := make(chan struct{}, par)
	launched := 0
	for _, p := range plans {
		if time.Now().After(deadline) {
			break
		}
		sem <- struct{}{}
		launched++
		wg.Add(1)
		go func(p soakPlan) {
			defer func() { <-sem; wg.Done() }()
			soakOne(t, harness, dir, p, fail, count)
		}(p)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if launched < n {
		t.Errorf("soak: only %d of %d sandboxes started within %v", launched, n, budget)
	}

	// Nothing may be left: no process or zombie (each sandbox's harness counted those), no mount, fd, state or
	// /tmp entry.
	if diffs := waitHostClean(t, before, 8*time.Second); len(diffs) > 0 {
		t.Errorf("soak: the host is not as it was before:\n  %s", strings.Join(diffs, "\n  "))
	}
	if limits {
		// Groups of the sandboxes whose caisson was killed stay until the next caisson that creates one sweeps them.
		r := runHarnessed(harness, dir, 30*time.Second, []string{bin(t), "run", "--cgroup", "--pids", "50", "--", "true"}, nil)
		if r.err != nil || r.status.ExitCode() != 0 || len(r.left) > 0 {
			t.Errorf("soak: the sweeping run: %v %v: %s; %s", r.status, r.err, r.stderr, describeLeft(r.left))
		}
		for _, d := range []string{cg["v2"], cg["pids"]} {
			if left := sandboxGroups(d); len(left) > 0 {
				t.Errorf("soak: cgroups left in %s: %v", d, left)
			}
		}
	}
	if matches, _ := filepath.Glob("/etc/caisson-soak-*"); len(matches) > 0 {
		t.Errorf("soak: overlay writes reached the host: %v", matches)
	}
	sort.Strings(failures)
	for i, f := range failures {
		if i == 30 {
			t.Errorf("... and %d more", len(failures)-30)
			break
		}
		t.Error(f)
	}
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var sum strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&sum, " %s=%d", k, stats[k])
	}
	t.Logf("soak: %d sandboxes in %v (%.1f/s):%s", launched, elapsed.Round(time.Millisecond),
		float64(launched)/elapsed.Seconds(), sum.String())
}

// soakOne runs one sandbox of the soak under a non-reaping subreaper of its own and checks its outcome, and that
// it left nothing behind, not even a zombie (unless the soak SIGKILLed caisson: then its zombies are expected, but
// nothing may still run).
func soakOne(t *testing.T, harness, dir string, p soakPlan, fail func(string, ...any), count func(string)) {
	if p.publish < 0 {
		p.publish = freeLowPort()
	}
	count("net-" + p.net)
	if p.limits {
		count("cgroup")
	}
	helperKilled, inSetup, missed := false, false, false
	r := runHarnessed(harness, dir, 60*time.Second, append([]string{bin(t)}, p.args()...), func(c *testenv.Process) {
		if p.killAfter > 0 {
			time.AfterFunc(p.killAfter, func() { _ = c.Signal(syscall.SIGKILL) })
		} else if p.killHelper != helperAlive {
			helperKilled, inSetup = killHelper(c.PID, p.killHelper)
			missed = !helperKilled
		}
	})
	stdout, stderr := r.stdout, r.stderr
	if r.err != nil {
		fail("%v: %v; stderr %q", p, r.err, stderr)
		return
	}
	code := r.status.ExitCode()
	if p.killAfter > 0 && r.status.Signal == int(syscall.SIGKILL) {
		count("caisson-killed")
		if running := slices.DeleteFunc(r.left, testenv.Proc.Zombie); len(running) > 0 {
			fail("%v: caisson SIGKILLed, yet %d processes still run: %s", p, len(running), testenv.FormatProcs(running))
		}
		return // killed by us: the zombies are its caller's to reap; only the host checks at the end apply
	}
	if len(r.left) > 0 {
		fail("%v: exit %d, %s", p, code, describeLeft(r.left))
	}
	if missed {
		// Its outcome says why the helper was not found. A sandbox that ended as wanted with its network up had
		// a helper: the 2 ms poll missed it on a loaded machine (a short command); anything else is caisson's
		// failure.
		if code == p.want() && strings.Contains(stdout, "net-ok") {
			count("helper-missed")
			return
		}
		fail("%v: the sandbox's %s never appeared among caisson's children; stdout %q stderr %q", p, p.net, stdout, stderr)
		return
	}
	if helperKilled {
		count("helper-killed")
	} else {
		count("completed")
	}
	if inSetup && code == 125 {
		// The helper died before the sandbox was ready: caisson must abort with one line.
		if lines := caissonLines(stderr); len(lines) != 1 {
			fail("%v: helper killed during setup: want one caisson: line, got %q", p, stderr)
		}
		return
	}
	if code != p.want() {
		fail("%v: exit %d, want %d; stdout %q stderr %q", p, code, p.want(), stdout, stderr)
		return
	}
	out := stdout
	for _, want := range []string{fmt.Sprintf("soak-%d\n", p.i)} {
		if !strings.Contains(out, want) {
			fail("%v: stdout %q lacks %q; stderr %q", p, out, want, stderr)
		}
	}
	// A killed helper takes the sandbox's tap device with it (the sandbox runs on without a network, as caisson's
	// message says), possibly before the command looked for it; otherwise the interface must be there.
	if p.net != "none" && !strings.Contains(out, "net-ok") && !helperKilled {
		fail("%v: no tap0 in the sandbox; stdout %q stderr %q", p, out, stderr)
	}
	if p.overlay && !strings.Contains(out, "overlay-ok") {
		fail("%v: overlay write failed; stdout %q stderr %q", p, out, stderr)
	}
	// caisson says nothing on a successful run, except that the helper died when it was killed.
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if l == "" || (helperKilled && !strings.HasPrefix(l, "caisson:")) {
			continue
		}
		if helperKilled && strings.HasPrefix(l, "caisson: network helper exited") {
			continue
		}
		fail("%v: unexpected stderr line %q", p, l)
	}
}

// helperKill says when the soak kills a sandbox's network helper.
type helperKill int

const (
	helperAlive        helperKill = iota // not killed
	helperInSetup                        // as soon as it appears among caisson's children
	helperWhileRunning                   // once init has started the command
)

func (h helperKill) String() string {
	return [...]string{"never", "in-setup", "while-running"}[h]
}

// killHelper finds the network helper among the children of caisson (pid) and kills it with SIGKILL, at once or
// after init has started the command (and a random pause). It reports whether it killed one, and whether the
// command had not started yet when it did. It gives up when caisson ends or after 10 s.
func killHelper(pid int, when helperKill) (killed, inSetup bool) {
	limit := time.Now().Add(10 * time.Second)
	for time.Now().Before(limit) {
		if _, state, _, _, err := testenv.ProcStat(pid); err != nil || state == 'Z' {
			return false, false
		}
		helper, running := 0, false
		for _, c := range testenv.Children(pid) {
			comm, _, _, _, err := testenv.ProcStat(c)
			switch {
			case err != nil:
			case isNetworkHelper(c):
				helper = c
			case comm == "caisson-init":
				// The command has started once init has a child other than its fuse-overlayfs daemon (and other
				// than a child init has forked but not executed yet, which still has init's name).
				for _, k := range testenv.Children(c) {
					if kc, _, _, _, err := testenv.ProcStat(k); err == nil && kc != "fuse-overlayfs" && kc != "caisson-init" {
						running = true
					}
				}
			}
		}
		if helper != 0 && (when == helperInSetup || running) {
			if when == helperWhileRunning {
				time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
			}
			return unix.Kill(helper, unix.SIGKILL) == nil, !running
		}
		time.Sleep(2 * time.Millisecond)
	}
	return false, false
}

// caissonLines returns the lines of stderr that caisson itself wrote, but its notices: a step refused by what
// confines caisson (an injected fault looks like an outer sandbox's filter) and skipped says so on a line of its
// own before the run goes on, and may precede the one line of a later failure.
func caissonLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "caisson:") && !strings.HasPrefix(l, "caisson: notice: ") {
			out = append(out, l)
		}
	}
	return out
}

// handedOut are the ports freeLowPort returned in this run: sandboxes started at once must not pick the same
// free port before either has bound it.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freeLowPort returns a port of 127.0.0.1 below the kernel's ephemeral range (so that no outgoing connection of
// the machine takes it meanwhile) that was free a moment ago and was not returned before in this run.
func freeLowPort() int {
	handedOut.Lock()
	defer handedOut.Unlock()
	p := 0
	for i := 0; i < 100; i++ {
		p = 10000 + rand.IntN(22000)
		if handedOut.ports[p] {
			continue
		}
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			l.Close()
			break
		}
	}
	handedOut.ports[p] = true
	return p
}

// isHelperComm reports whether a command name is a network helper's: Debian's pasta runs as pasta.avx2 on CPUs
// with AVX2 (started so by caisson, or re-executed as passt.avx2 when started as pasta), so its name is pasta,
// pasta.avx2, passt or passt.avx2.
func isHelperComm(comm string) bool {
	return strings.HasPrefix(comm, "pasta") || strings.HasPrefix(comm, "passt") || comm == "slirp4netns"
}

// isNetworkHelper reports whether pid is a sandbox's network helper: a helper's name and the arguments caisson
// gives the helper it runs for a sandbox, not those of its slirp4netns feature probe (--help, --version), which
// runs, briefly, while the sandbox is created.
func isNetworkHelper(pid int) bool {
	comm, _, _, _, err := testenv.ProcStat(pid)
	if err != nil || !isHelperComm(comm) {
		return false
	}
	args := cmdline(pid)
	return strings.Contains(args, "--ready-fd") || strings.Contains(args, "--config-net")
}
