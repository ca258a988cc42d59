package tests

// Helpers shared by the soak and fault-injection tests: a snapshot of everything a sandbox could leave behind on
// the host (processes, mounts, descriptors, state and temporary directories), and runHarnessed, which runs each
// caisson under a child subreaper that never reaps (tests/subreaper), so that a helper or init that caisson leaves
// behind cannot hide by being re-parented to the host's PID 1 and reaped there: it stays, alive or as a zombie,
// and is counted.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// hostState is what the sandboxes of a test may not change on the host.
type hostState struct {
	taken    time.Time
	mounts   map[string]bool // lines of the test process's mountinfo (the host's mount namespace)
	fds      map[string]bool // "fd -> target" of the test process
	procs    map[string]bool // "pid starttime" of every process of the caller's uid
	runtime  map[string]bool // entries of caisson's state root ($XDG_RUNTIME_DIR/caisson or /tmp/caisson-UID)
	tmp      map[string]bool // names in /tmp owned by the caller
	devShm   map[string]bool // names in /dev/shm owned by the caller
	caissonP []string        // caisson-related processes of the caller's uid when the snapshot was taken
}

// caissonComms are the command names of caisson's own processes and of its network helpers.
var caissonComms = map[string]bool{
	"caisson": true, "caisson-init": true, "pasta": true, "pasta.avx2": true, "passt": true, "passt.avx2": true,
	"slirp4netns": true, "newuidmap": true, "newgidmap": true, "fuse-overlayfs": true,
}

// procStat returns a process's command name, state, parent PID and start time (in clock ticks since boot).
func procStat(pid int) (comm string, state byte, ppid int, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", 0, 0, 0, err
	}
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return "", 0, 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	comm = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	if len(f) < 20 {
		return "", 0, 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	state = f[0][0]
	ppid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return comm, state, ppid, start, nil
}

// userPIDs lists the PIDs of the processes whose real uid is the caller's.
func userPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	uid := uint32(os.Getuid())
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat("/proc/"+e.Name(), &st) != nil || st.Uid != uid {
			continue
		}
		out = append(out, pid)
	}
	return out
}

// cmdline returns a process's command line with spaces for NULs (bounded).
func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if len(b) > 200 {
		b = b[:200]
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

func dirNames(dir string, ownedOnly bool) map[string]bool {
	out := map[string]bool{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	uid := uint32(os.Getuid())
	for _, e := range ents {
		if ownedOnly {
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(dir, e.Name()), &st) != nil || st.Uid != uid {
				continue
			}
		}
		out[e.Name()] = true
	}
	return out
}

func selfFDs() map[string]bool {
	out := map[string]bool{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own fd, closed by now
		}
		out[e.Name()+" -> "+target] = true
	}
	return out
}

// snapshotHost records the host state that sandboxes must leave as they found it.
func snapshotHost(t testing.TB) hostState {
	t.Helper()
	s := hostState{taken: time.Now(), mounts: map[string]bool{}, procs: map[string]bool{}}
	for _, l := range strings.Split(mountTable(t), "\n") {
		if l != "" {
			s.mounts[l] = true
		}
	}
	s.fds = selfFDs()
	for _, pid := range userPIDs() {
		comm, _, _, start, err := procStat(pid)
		if err != nil {
			continue
		}
		s.procs[fmt.Sprintf("%d %d", pid, start)] = true
		if caissonComms[comm] {
			s.caissonP = append(s.caissonP, fmt.Sprintf("%d %s: %s", pid, comm, cmdline(pid)))
		}
	}
	s.runtime = dirNames(stateRoot(), false)
	s.tmp = dirNames("/tmp", true)
	s.devShm = dirNames("/dev/shm", true)
	return s
}

// tmpNoise are /tmp names created by the Go toolchain and by test drivers, never by caisson; a test run elsewhere
// on the machine may create them while the soak runs.
var tmpNoise = []string{"Test", "go-build", "caisson-it.", "caisson-bench.", "gopath", "go."}

// compareHost reports every difference between before and the current state of the host: new mounts, new
// descriptors of the test process, new caisson-related processes of the caller (alive or zombie) that are not
// in before, new state directory entries, new /tmp and /dev/shm entries of the caller.
func compareHost(t testing.TB, before hostState) []string {
	t.Helper()
	now := snapshotHost(t)
	var diffs []string
	for l := range now.mounts {
		if !before.mounts[l] {
			diffs = append(diffs, "new mount: "+l)
		}
	}
	for l := range before.mounts {
		if !now.mounts[l] {
			diffs = append(diffs, "mount gone: "+l)
		}
	}
	for fd := range now.fds {
		if !before.fds[fd] {
			diffs = append(diffs, "new descriptor of the test process: "+fd)
		}
	}
	for _, pid := range userPIDs() {
		if pid == os.Getpid() {
			continue
		}
		comm, state, ppid, start, err := procStat(pid)
		if err != nil || before.procs[fmt.Sprintf("%d %d", pid, start)] {
			continue
		}
		// Any process descending from this test (the harnesses keep the sandboxes' orphans there), and orphans of
		// caisson or its helpers re-parented to the host's PID 1, alive or zombie: other work of the same user
		// elsewhere on the machine is not the sandboxes' doing.
		if isDescendant(pid, os.Getpid()) || (caissonComms[comm] && ppid == 1) {
			diffs = append(diffs, fmt.Sprintf("process left: pid %d (%s, state %c, parent %d): %s", pid, comm, state, ppid, cmdline(pid)))
		}
	}
	for n := range dirNames(stateRoot(), false) {
		if !before.runtime[n] {
			diffs = append(diffs, "state left: "+filepath.Join(stateRoot(), n))
		}
	}
next:
	for n := range now.tmp {
		if before.tmp[n] {
			continue
		}
		for _, p := range tmpNoise {
			if strings.HasPrefix(n, p) {
				continue next
			}
		}
		diffs = append(diffs, "temporary entry left: /tmp/"+n)
	}
	for n := range now.devShm {
		if !before.devShm[n] {
			diffs = append(diffs, "shared memory entry left: /dev/shm/"+n)
		}
	}
	sort.Strings(diffs)
	return diffs
}

// isDescendant reports whether pid descends from ancestor (bounded walk up the parent chain).
func isDescendant(pid, ancestor int) bool {
	for i := 0; i < 64 && pid > 1; i++ {
		_, _, ppid, _, err := procStat(pid)
		if err != nil {
			return false
		}
		if ppid == ancestor {
			return true
		}
		pid = ppid
	}
	return false
}

// waitHostClean waits (bounded) until the host is back to before, and returns the differences left.
// The state directories of caissons killed with SIGKILL are removed by the next caisson command of the user (a
// directory still without a record only once it is 5 s old): while some are left, `caisson ps` is run once a
// second to do so (any later `caisson run` would too). limit must leave room for that.
func waitHostClean(t testing.TB, before hostState, limit time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(limit)
	var swept time.Time
	for {
		diffs := compareHost(t, before)
		if len(diffs) == 0 || time.Now().After(deadline) {
			return diffs
		}
		if time.Since(swept) > time.Second && slices.ContainsFunc(diffs, func(d string) bool { return strings.HasPrefix(d, "state left") }) {
			swept = time.Now()
			if out, err := exec.Command(bin(t), "ps").CombinedOutput(); err != nil {
				t.Errorf("caisson ps: %v: %s", err, out)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stateRoot is caisson's state root for the test user, as state.Root finds it.
func stateRoot() string {
	if rt := os.Getenv("XDG_RUNTIME_DIR"); rt != "" {
		if st, err := os.Stat(rt); err == nil && st.IsDir() {
			return filepath.Join(rt, "caisson")
		}
	}
	return filepath.Join(os.TempDir(), "caisson-"+strconv.Itoa(os.Getuid()))
}

// harnessed is one command run under a non-reaping subreaper harness of its own (tests/subreaper): how it ended,
// what it printed, and every process it left behind, alive or zombie. One harness per command attributes what is
// left to that command even when many run at once.
type harnessed struct {
	status         testenv.Status
	stdout, stderr string
	err            error          // the harness's own: the command could not start, or did not end in time
	left           []testenv.Proc // the harness's children once the command had ended
}

// runHarnessed runs argv in dir under a harness of its own (harness is the path of tests/subreaper), bounded by
// limit. during, when not nil, runs once the command has started, with the command (to disturb it). The harness is
// closed before it returns (which kills and reaps what was left, after it was recorded).
func runHarnessed(harness, dir string, limit time.Duration, argv []string, during func(p *testenv.Process)) harnessed {
	var r harnessed
	out, err := os.MkdirTemp(dir, "harness.")
	if err != nil {
		r.err = err
		return r
	}
	defer os.RemoveAll(out)
	h, err := testenv.StartSubreaper(harness, out)
	if err != nil {
		r.err = err
		return r
	}
	defer h.Close()
	p, err := h.Start(testenv.Command{Args: argv, Dir: dir})
	if err != nil {
		r.err = err
		return r
	}
	if during != nil {
		during(p)
	}
	r.status, r.err = p.Wait(limit)
	if r.err != nil {
		_ = p.Signal(unix.SIGKILL)
		_, _ = p.Wait(10 * time.Second)
	}
	r.stdout, r.stderr = p.Stdout(), p.Stderr()
	r.left, err = h.Left()
	if err != nil && r.err == nil {
		r.err = err
	}
	if slices.ContainsFunc(r.left, func(p testenv.Proc) bool { return !p.Zombie() }) {
		// A process still running may be on its way out (a child of a SIGKILLed caisson dies by its parent-death
		// signal): give it a moment. Whatever is left then, zombie or not, is reported.
		r.left = settled(h, 5*time.Second)
	}
	return r
}

// settled waits (bounded) until every process left to h is a zombie, and returns what is left then.
func settled(h *testenv.Subreaper, limit time.Duration) []testenv.Proc {
	deadline := time.Now().Add(limit)
	for {
		left, err := h.Left()
		if err != nil || time.Now().After(deadline) || !slices.ContainsFunc(left, func(p testenv.Proc) bool { return !p.Zombie() }) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// describeLeft describes what a command left behind, for a failure message.
func describeLeft(left []testenv.Proc) string {
	return fmt.Sprintf("%d processes left to the subreaper: %s", len(left), testenv.FormatProcs(left))
}
