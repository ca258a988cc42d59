package tests

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// The fault sweep injects EPERM with `strace -f -e inject=SYSCALL:error=EPERM:when=N` into the N-th call of one
// system call in every traced process (caisson, its init, its network helper and the command), for the calls of
// each setup step: the clone of init, the capability and parent-death prctls, writing the ID maps, every mount
// call of the file system view and pivot_root, the time namespace, the host name, the loopback and the network
// helper (its setns, sockets and seccomp filter), the published-port listeners. strace -Y names the process each
// fault hit, so every run is judged by where its fault landed:
//
//   - in caisson or its init: the run either succeeds (the call's failure is tolerated) or exits 125 with exactly
//     one line of stderr, starting "caisson: "; init's fork of the command may also fail as 126 "cannot execute";
//   - in the network helper: the same (caisson reports the helper's failure; the helper's own output may precede
//     that line);
//   - in the command only: the command's own failure, and no "caisson:" line;
//   - in the Go runtime's own thread creation (clone with CLONE_THREAD) or poller (its eventfd, epoll): Go aborts
//     the process by design, which is no step of caisson's; only the leak checks apply.
//
// After every failed run the next run must work at once, and at the end nothing may be left on the host.
// Under ptrace the setuid newuidmap/newgidmap lose their privilege (the kernel ignores the setuid bit of a
// traced exec), so the sweep uses --map single, where caisson writes the maps itself: that makes the map-writing
// step visible to the sweep as caisson's own openat/write calls.

// faultSyscalls are the system calls of each setup step, per network mode.
var faultSyscalls = map[string][]string{
	"none": {"clone", "prctl", "openat", "write", "socketpair", "pidfd_open", "setsid", "sethostname", "socket",
		"sendto", "mount", "umount2", "open_tree", "mount_setattr", "move_mount", "fsopen", "fsconfig", "fsmount",
		"openat2", "mkdirat", "symlinkat", "pivot_root", "unshare", "chdir", "seccomp", "sendmsg", "execve"},
	"pasta":       {"setns", "socket", "bind", "listen", "unshare", "mount", "pivot_root", "prctl", "clone", "seccomp", "openat"},
	"slirp4netns": {"setns", "socket", "bind", "listen", "socketpair", "unshare", "mount", "pivot_root", "seccomp", "openat", "prctl"},
}

// faultCriticalSteps must each have been hit by at least one injected fault in caisson's own processes or in the
// helper: the sweep would otherwise miss a setup step (a change of the call order, or strace's counting).
var faultCriticalSteps = map[string]*regexp.Regexp{
	"clone of init with CLONE_NEWUSER":  regexp.MustCompile(`^clone.*CLONE_NEWUSER`),
	"parent-death signal of init":       regexp.MustCompile(`^prctl\(PR_SET_PDEATHSIG`),
	"ambient capabilities of init":      regexp.MustCompile(`^prctl\(PR_CAP_AMBIENT`),
	"uid_map written":                   regexp.MustCompile(`^(openat|write)\(.*uid_map`),
	"gid_map written":                   regexp.MustCompile(`^(openat|write)\(.*gid_map`),
	"setgroups denied":                  regexp.MustCompile(`^(openat|write)\(.*setgroups`),
	"host name":                         regexp.MustCompile(`^sethostname`),
	"loopback (netlink socket)":         regexp.MustCompile(`^socket\(AF_NETLINK`),
	"mount propagation":                 regexp.MustCompile(`^mount\(.*MS_PRIVATE`),
	"bind of the host's / (open_tree)":  regexp.MustCompile(`^open_tree\(AT_FDCWD[^,]*, "/",`),
	"read-only attributes":              regexp.MustCompile(`^mount_setattr`),
	"new file systems (fsopen)":         regexp.MustCompile(`^fsopen`),
	"file system options (fsconfig)":    regexp.MustCompile(`^fsconfig`),
	"fsmount":                           regexp.MustCompile(`^fsmount`),
	"move_mount":                        regexp.MustCompile(`^move_mount`),
	"path resolution in the new root":   regexp.MustCompile(`^openat2`),
	"pivot_root":                        regexp.MustCompile(`^pivot_root`),
	"detach of the old root (umount2)":  regexp.MustCompile(`^umount2`),
	"time namespace":                    regexp.MustCompile(`^unshare\(CLONE_NEWTIME`),
	"network helper joins the sandbox":  regexp.MustCompile(`^setns`),
	"published port listener (bind)":    regexp.MustCompile(`^bind\(.*127\.0\.0\.1`),
	"published port listener (listen)":  regexp.MustCompile(`^listen`),
	"helper sandboxing (seccomp/prctl)": regexp.MustCompile(`^(seccomp|prctl\(PR_SET_SECCOMP)`),
}

// straceLine is one line of `strace -f -Y` output: thread id, command name, and the call.
var straceLine = regexp.MustCompile(`^(\d+)<([^>]*)> (\w+)\((.*)$`)

// faultRun is the outcome of one strace-injected run.
type faultRun struct {
	mode, syscall string
	when          int
	code          int
	stderr        string
	hits          []faultHit // the injected calls
	hung          bool
	left          []testenv.Proc // what the run left to its non-reaping subreaper, alive or zombie
}

// faultHit is one call that got the injected error.
type faultHit struct{ comm, call string }

func (r faultRun) String() string {
	return fmt.Sprintf("--net %s, %s:when=%d", r.mode, r.syscall, r.when)
}

// processKind classifies a traced process by its command name.
func processKind(comm string) string {
	switch {
	case comm == "caisson" || comm == "caisson-init" || comm == "exe": // exe: init before it renames itself
		return "caisson"
	case isHelperComm(comm):
		return "helper"
	case comm == "busybox" || comm == "true":
		return "command"
	}
	return "other:" + comm
}

// straceArgs is the strace command line around caisson for one mode.
func straceArgs(t testing.TB, log, trace, inject, mode, command string) []string {
	a := []string{"-f", "-Y", "-y", "-qq", "--seccomp-bpf", "-o", log, "-e", "trace=" + trace}
	if inject != "" {
		a = append(a, "-e", "inject="+inject)
	}
	a = append(a, bin(t), "run", "--map", "single", "--net", mode)
	if mode != "none" {
		a = append(a, "-p", fmt.Sprintf("127.0.0.1:%d:8080", loopbackPort(t)))
	}
	return append(a, "--", command, "true")
}

// loopbackPort returns a TCP port of 127.0.0.1 that was free a moment ago.
func loopbackPort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// straceResumed is the second half of a call that strace printed in two parts.
var straceResumed = regexp.MustCompile(`^(\d+)<([^>]*)> <\.\.\. (\w+) resumed>(.*)$`)

// readStrace parses a strace log into (thread, comm, syscall, call text) tuples, joining the halves of
// interrupted calls and skipping signals and exits.
func readStrace(path string) [][4]string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][4]string
	pending := map[string][4]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := straceResumed.FindStringSubmatch(line); m != nil {
			c, ok := pending[m[1]]
			if !ok {
				c = [4]string{m[1], m[2], m[3], m[3] + "("}
			}
			delete(pending, m[1])
			c[1] = m[2]
			c[3] = strings.TrimSuffix(c[3], " <unfinished ...>") + m[4]
			out = append(out, c)
			continue
		}
		m := straceLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		c := [4]string{m[1], m[2], m[3], m[3] + "(" + m[4]}
		if strings.HasSuffix(line, "<unfinished ...>") {
			pending[m[1]] = c
			continue
		}
		out = append(out, c)
	}
	for _, c := range pending {
		out = append(out, c)
	}
	return out
}

// TestFaultInjection sweeps injected EPERM failures over every setup step (catalogue R19-R26) and checks the exit
// status and message of each aborted run, that the next run works, and that nothing is left behind.
func TestFaultInjection(t *testing.T) {
	requireSandbox(t)
	strace := testenv.RequireCommand(t, "strace")
	testenv.RequireCommand(t, "pasta")
	testenv.RequireCommand(t, "slirp4netns")
	testenv.RequireTun(t)
	// A static command makes no openat/prctl/mmap of its own: faults land in caisson's processes.
	command := "/bin/busybox"
	if _, err := os.Stat(command); err != nil {
		command = "/bin/true"
		t.Logf("no /bin/busybox (busybox-static): the command is %s, whose loader calls may take some faults", command)
	}
	if probe, err := exec.Command(strace, "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "inject=sethostname:error=EPERM", "true").CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "strace cannot inject faults here: %v: %s", err, probe)
	}
	perStep := envInt(t, "CAISSON_FAULT_PER_SYSCALL", 12)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	harness := testenv.SubreaperPath(t)
	before := snapshotHost(t)
	start := time.Now()

	type job struct {
		mode, syscall string
		when          int
	}
	var jobs []job
	modes := []string{"none", "pasta", "slirp4netns"}
	for _, mode := range modes {
		// Count each traced thread's calls of every syscall of the mode in an undisturbed run.
		log := filepath.Join(dir, "count-"+mode)
		trace := strings.Join(faultSyscalls[mode], ",")
		if r := runHarnessed(harness, dir, 60*time.Second, append([]string{strace}, straceArgs(t, log, trace, "", mode, command)...), nil); r.err != nil || r.status.ExitCode() != 0 || len(r.left) > 0 {
			t.Fatalf("--net %s under strace without faults: %v %v; %s; stderr %q", mode, r.status, r.err, describeLeft(r.left), r.stderr)
		}
		perThread := map[[2]string]int{} // (thread, syscall) -> calls so far
		most := map[string]int{}
		must := map[string]map[int]bool{} // syscall -> positions of the critical steps' calls
		for _, c := range readStrace(log) {
			if processKind(c[1]) == "command" {
				continue
			}
			k := [2]string{c[0], c[2]}
			perThread[k]++
			most[c[2]] = max(most[c[2]], perThread[k])
			for _, re := range faultCriticalSteps {
				if re.MatchString(c[3]) {
					if must[c[2]] == nil {
						must[c[2]] = map[int]bool{}
					}
					must[c[2]][perThread[k]] = true
				}
			}
		}
		for _, sc := range faultSyscalls[mode] {
			n := most[sc]
			if n == 0 {
				t.Logf("--net %s: no %s call in caisson or its helper: nothing to inject", mode, sc)
				continue
			}
			// At most perStep positions, evenly spread, always with the first and the last call, plus the
			// position of every call of a critical step.
			picks := map[int]bool{}
			for _, w := range spread(n, perStep) {
				picks[w] = true
			}
			for w := range must[sc] {
				// The Go runtime creates threads from whichever thread it runs on, so the position of a critical
				// call varies from run to run: take every position up to a few past it when that is a handful,
				// its neighbours otherwise.
				lo, hi := w-2, w+3
				if w <= 12 {
					lo = 1
				}
				if sc == "clone" {
					hi = w + 8 // the main thread also starts the runtime's threads, a varying number of them
				}
				for p := max(lo, 1); p <= hi; p++ {
					picks[p] = true
				}
			}
			ws := make([]int, 0, len(picks))
			for w := range picks {
				ws = append(ws, w)
			}
			sort.Ints(ws)
			for _, w := range ws {
				jobs = append(jobs, job{mode, sc, w})
			}
		}
	}
	t.Logf("fault sweep: %d runs", len(jobs))

	var (
		mu      sync.Mutex
		results []faultRun
		wg      sync.WaitGroup
	)
	sem := make(chan struct{}, 2)
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int, j job) {
			defer func() { <-sem; wg.Done() }()
			r := injectOne(t, harness, strace, dir, command, i, j.mode, j.syscall, j.when)
			if straceFailed(r.stderr) {
				// strace itself lost track of a tracee (seen with pasta's group stops): once more.
				r = injectOne(t, harness, strace, dir, command, i, j.mode, j.syscall, j.when)
			}
			if r.code != 0 && !r.hung {
				// The next run works at once (no half-built state in the way).
				if code, stderr := nextRun(t, harness, dir, "run", "--map", "single", "--net", j.mode, "--", command, "true"); code != 0 {
					r.stderr += fmt.Sprintf("\n[next run failed: exit %d: %s]", code, stderr)
					r.code = -1000 - code
				}
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}(i, j)
	}
	wg.Wait()

	stats := map[string]int{}
	covered := map[string]bool{}
	var problems []string
	judge := func(r faultRun) {
		kinds := map[string]bool{}
		for _, h := range r.hits {
			k := processKind(h.comm)
			if k == "caisson" && isRuntimeCall(h.call) {
				k = "runtime"
			}
			kinds[k] = true
			if k == "caisson" || k == "helper" {
				for name, re := range faultCriticalSteps {
					if re.MatchString(h.call) {
						covered[name] = true
					}
				}
			}
		}
		// Notices (a refused default done without, as inside a container) are not errors: they may precede one.
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(r.stderr), "\n") {
			// strace's own diagnostics ("strace: Failed to tamper with process N: unexpectedly got no error", when
			// the injected call of a process that just forked or exec'd slipped through) are not caisson's output.
			if l != "" && !strings.HasPrefix(l, "caisson: notice: ") && !isStraceLine(l) {
				lines = append(lines, l)
			}
		}
		cLines := caissonLines(r.stderr)
		switch {
		case straceFailed(r.stderr):
			stats["strace-error"]++
			t.Logf("%v: strace failed twice, not counted: %q", r, r.stderr)
		case r.hung:
			problems = append(problems, fmt.Sprintf("%v: hung (killed after 30 s); hits %v; stderr %q", r, r.hits, r.stderr))
		case r.code <= -1000:
			problems = append(problems, fmt.Sprintf("%v: the next run did not work; hits %v; stderr %q", r, r.hits, r.stderr))
		case kinds["runtime"]:
			stats["go-runtime-abort"]++
		case len(r.hits) == 0:
			stats["no-fault"]++
			if r.code != 0 {
				problems = append(problems, fmt.Sprintf("%v: no fault injected, yet exit %d; stderr %q", r, r.code, r.stderr))
			}
		case kinds["caisson"] || kinds["helper"]:
			switch {
			case r.code == 0:
				stats["tolerated"]++
			case (r.code == 125 || (r.code == 126 && forkOfCommand(r.hits))) && len(cLines) == 1 && (kinds["helper"] || len(lines) == 1):
				stats["aborted-125"]++
			case r.code == 125 && len(cLines) == 2 && strings.HasPrefix(cLines[1], "caisson: hint: ") && (kinds["helper"] || len(lines) == 2):
				// One error line and a hint about the fix.
				stats["aborted-125"]++
			default:
				problems = append(problems, fmt.Sprintf("%v: want exit 0 or 125 with one caisson: line, got exit %d; hits %v; stderr %q", r, r.code, r.hits, r.stderr))
			}
		default: // only the command (or another program) was hit: its own failure, never caisson's
			stats["command-failed"]++
			if len(cLines) > 0 {
				problems = append(problems, fmt.Sprintf("%v: fault in the command only, yet caisson printed %q", r, cLines))
			}
		}
	}
	// Nothing may be left behind, not even a zombie, except after an abort of the Go runtime (which exits at once,
	// reaping nothing) or a hung run (killed): then only zombies, whose parent-death signal killed them.
	judgeLeft := func(r faultRun) {
		aborted := r.hung || straceFailed(r.stderr)
		for _, h := range r.hits {
			if processKind(h.comm) == "caisson" && isRuntimeCall(h.call) {
				aborted = true
			}
		}
		var bad []testenv.Proc
		for _, p := range r.left {
			if !aborted || !p.Zombie() {
				bad = append(bad, p)
			}
		}
		if len(bad) > 0 {
			problems = append(problems, fmt.Sprintf("%v: exit %d, %s", r, r.code, describeLeft(bad)))
		}
	}
	for _, r := range results {
		judge(r)
		judgeLeft(r)
	}
	// A critical call whose position moved out of the sweep's picks (the Go runtime's thread creations shift it)
	// gets a bounded sweep of its own, one position after another until it is hit.
	for name, re := range faultCriticalSteps {
		sc := strings.TrimPrefix(re.String(), "^")
		if i := strings.IndexFunc(sc, func(c rune) bool { return !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') }); i >= 0 {
			sc = sc[:i]
		}
		for w := 1; w <= 40 && !covered[name] && contains(faultSyscalls["none"], sc); w++ {
			r := injectOne(t, harness, strace, dir, command, 100000+w, "none", sc, w)
			if r.code != 0 && !r.hung {
				if code, stderr := nextRun(t, harness, dir, "run", "--map", "single", "--", command, "true"); code != 0 {
					r.stderr += fmt.Sprintf("\n[next run failed: exit %d: %s]", code, stderr)
					r.code = -1000 - code
				}
			}
			results = append(results, r)
			judge(r)
			judgeLeft(r)
		}
	}
	if diffs := waitHostClean(t, before, 8*time.Second); len(diffs) > 0 {
		problems = append(problems, "the host is not as it was before:\n  "+strings.Join(diffs, "\n  "))
	}
	var missing []string
	for name := range faultCriticalSteps {
		if !covered[name] {
			missing = append(missing, name)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		problems = append(problems, "setup step never hit by an injected fault: "+m)
	}
	sort.Strings(problems)
	for i, p := range problems {
		if i == 40 {
			t.Errorf("... and %d more", len(problems)-40)
			break
		}
		t.Error(p)
	}
	t.Logf("fault sweep: %d runs in %v: %v", len(results), time.Since(start).Round(time.Millisecond), stats)
}

// nextRun runs caisson under a harness of its own and returns its exit code and stderr, with a note on anything it
// left behind.
func nextRun(t testing.TB, harness, dir string, args ...string) (int, string) {
	r := runHarnessed(harness, dir, 30*time.Second, append([]string{bin(t)}, args...), nil)
	switch {
	case r.err != nil:
		return -2, fmt.Sprintf("%v: %s", r.err, r.stderr)
	case len(r.left) > 0:
		return -3, describeLeft(r.left) + ": " + r.stderr
	}
	return r.status.ExitCode(), r.stderr
}

// isStraceLine reports whether a stderr line is strace's own diagnostic ("/usr/bin/strace: ...").
func isStraceLine(l string) bool {
	prog, _, ok := strings.Cut(l, ": ")
	return ok && (prog == "strace" || strings.HasSuffix(prog, "/strace"))
}

// straceFailed reports whether strace itself failed (its own error lines name it).
func straceFailed(stderr string) bool {
	return strings.Contains(stderr, "strace: ptrace(") || strings.Contains(stderr, "strace: Process ") && strings.Contains(stderr, "detached")
}

// spread returns at most k call positions in 1..n, evenly spaced, always with 1 and n.
func spread(n, k int) []int {
	if n <= k {
		out := make([]int, n)
		for i := range out {
			out[i] = i + 1
		}
		return out
	}
	seen := map[int]bool{}
	var out []int
	for i := 0; i < k; i++ {
		w := 1 + i*(n-1)/(k-1)
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	return out
}

// isRuntimeCall reports whether a call is the Go runtime's own (thread creation, memory naming, waking its
// network poller through an eventfd), whose failure Go turns into a fatal error by design.
func isRuntimeCall(call string) bool {
	return (strings.HasPrefix(call, "clone(") && strings.Contains(call, "CLONE_THREAD")) ||
		strings.HasPrefix(call, "prctl(PR_SET_VMA") ||
		(strings.HasPrefix(call, "write(") && strings.Contains(call, "<anon_inode:[eventfd]>")) ||
		strings.HasPrefix(call, "epoll_ctl(")
}

// forkOfCommand reports whether a fault hit init's fork of the command (a clone without namespace flags), which
// caisson reports as 126 "cannot execute".
func forkOfCommand(hits []faultHit) bool {
	for _, h := range hits {
		if h.comm == "caisson-init" && strings.HasPrefix(h.call, "clone(") && !strings.Contains(h.call, "CLONE_NEW") {
			return true
		}
	}
	return false
}

// injectOne runs caisson under strace with one injected fault and collects what happened.
func injectOne(t testing.TB, harness, strace, dir, command string, i int, mode, sc string, when int) faultRun {
	r := faultRun{mode: mode, syscall: sc, when: when}
	log := filepath.Join(dir, "fault-"+strconv.Itoa(i))
	argv := append([]string{strace}, straceArgs(t, log, sc, fmt.Sprintf("%s:error=EPERM:when=%d", sc, when), mode, command)...)
	h := runHarnessed(harness, dir, 30*time.Second, argv, nil)
	r.code, r.left, r.stderr = h.status.ExitCode(), h.left, h.stderr
	switch {
	case h.err != nil && strings.Contains(h.err.Error(), "has not exited"):
		r.hung = true
	case h.err != nil:
		r.code, r.stderr = -1, h.err.Error()
	}
	for _, c := range readStrace(log) {
		if strings.Contains(c[3], "(INJECTED)") {
			r.hits = append(r.hits, faultHit{c[1], c[3]})
		}
	}
	os.Remove(log)
	return r
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// On a kernel before 5.14 the entry point's madvise(MADV_POPULATE_READ) (package prefault) fails with EINVAL: both
// of caisson's processes, and the sandbox, must go on as if it had never been made. strace makes the first madvise
// of every process fail so; that it was the entry's is checked in its log.
func TestPrefaultRefused(t *testing.T) {
	requireSandbox(t)
	strace := testenv.RequireCommand(t, "strace")
	if runtime.GOARCH != "amd64" {
		testenv.SkipOrFail(t, "package prefault has an entry point on amd64 only")
	}
	dir := t.TempDir()
	// --map single: under ptrace the setuid newuidmap/newgidmap lose their privilege. -ff: one log per process, so
	// that no call's line is split by another process's.
	out, err := exec.Command(strace, "-ff", "-qq", "-o", filepath.Join(dir, "strace"), "-e", "trace=madvise",
		"-e", "inject=madvise:error=EINVAL:when=1", bin(t), "run", "--map", "single", "--", "sh", "-c", "echo inside").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "inside" {
		t.Fatalf("caisson run with its first madvise refused: %v, output %q", err, out)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "strace.*"))
	refused := 0
	var all strings.Builder
	for _, l := range logs {
		b, err := os.ReadFile(l)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
		if strings.Contains(string(b), "MADV_POPULATE_READ) = -1 EINVAL (Invalid argument) (INJECTED)") {
			refused++
		}
	}
	if refused < 2 {
		t.Fatalf("want the entry's MADV_POPULATE_READ refused in caisson and in its init, got %d processes of %d:\n%s", refused, len(logs), all.String())
	}
}
