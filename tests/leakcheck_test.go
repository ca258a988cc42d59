package tests

// Helpers shared by the soak and fault-injection tests: a snapshot of everything a sandbox could leave behind on
// the host (processes, mounts, descriptors, state and temporary directories), and a child-subreaper guard that
// makes every orphan of the sandboxes a child of the test process, so that a leaked helper or init cannot hide by
// being re-parented to the host's PID 1.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
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
		comm, _, _, start, err := testenv.ProcStat(pid)
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
		comm, state, ppid, start, err := testenv.ProcStat(pid)
		if err != nil || before.procs[fmt.Sprintf("%d %d", pid, start)] {
			continue
		}
		// Any process descending from this test (the subreaper keeps the sandboxes' orphans there), and orphans of
		// caisson or its helpers re-parented to the host's PID 1: other work of the same user elsewhere on the
		// machine is not the sandboxes' doing.
		if isDescendant(pid, os.Getpid()) || (caissonComms[comm] && ppid == 1 && state != 'Z') {
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
		_, _, ppid, _, err := testenv.ProcStat(pid)
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

// subreaper makes the test process the child subreaper of everything it starts, so that every orphan of a
// sandbox (an init whose caisson was killed, a helper that outlived its caisson) becomes its child and is seen,
// instead of being re-parented to the host's PID 1. Orphans that exited are reaped in the background; Start must
// be used for every child started while the subreaper is on, so that the reaper never collects a status that
// exec.Cmd.Wait is waiting for.
type subreaper struct {
	mu      sync.Mutex
	started map[int]bool // children started (and not yet waited for) through Start
	stop    chan struct{}
	done    chan struct{}
}

// newSubreaper turns the test process into a child subreaper until t ends.
func newSubreaper(t testing.TB) *subreaper { return startSubreaper(t, true) }

// newZombieKeeper turns the test process into a child subreaper that reaps no orphan until t ends: an orphan that
// exits stays a zombie, as under a container's PID 1 that is a shell or an application and never waits.
func newZombieKeeper(t testing.TB) *subreaper { return startSubreaper(t, false) }

// startSubreaper turns the test process into a child subreaper, which reaps the exited orphans as they come when
// reaping is set, and all of them at the end of t in any case.
func startSubreaper(t testing.TB, reaping bool) *subreaper {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	r := &subreaper{started: map[int]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	if reaping {
		go r.loop()
	} else {
		close(r.done)
	}
	t.Cleanup(func() {
		close(r.stop)
		<-r.done
		// Kill and reap whatever is still there, so that no test after this one inherits it.
		for _, pid := range r.orphans() {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(r.orphans()) > 0 && time.Now().Before(deadline) {
			r.reap()
			time.Sleep(10 * time.Millisecond)
		}
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	})
	return r
}

// Start starts a child under the reaper's lock: fn must start exactly one process and return its PID (0 when it
// failed to start). Done must be called once the child was waited for.
func (r *subreaper) Start(fn func() int) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid := fn()
	if pid > 0 {
		r.started[pid] = true
	}
	return pid
}

// Done forgets a child that exec.Cmd.Wait has collected.
func (r *subreaper) Done(pid int) {
	r.mu.Lock()
	delete(r.started, pid)
	r.mu.Unlock()
}

// orphans lists the children that were not started through Start (re-parented orphans), alive or zombie.
func (r *subreaper) orphans() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, pid := range testenv.Children(os.Getpid()) {
		if !r.started[pid] {
			out = append(out, pid)
		}
	}
	return out
}

// reap collects the orphans that have exited.
func (r *subreaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, pid := range testenv.Children(os.Getpid()) {
		if r.started[pid] {
			continue
		}
		if _, state, _, _, err := testenv.ProcStat(pid); err == nil && state == 'Z' {
			var ws unix.WaitStatus
			for {
				_, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
				if !errors.Is(err, unix.EINTR) {
					break
				}
			}
		}
	}
}

func (r *subreaper) loop() {
	defer close(r.done)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-tick.C:
			r.reap()
		}
	}
}

// aliveOrphans waits (bounded) until every orphan has exited and been reaped, and describes those still alive.
func (r *subreaper) aliveOrphans(limit time.Duration) []string {
	deadline := time.Now().Add(limit)
	for {
		r.reap()
		var alive []string
		for _, pid := range r.orphans() {
			comm, state, _, _, err := testenv.ProcStat(pid)
			if err != nil || state == 'Z' {
				continue
			}
			alive = append(alive, fmt.Sprintf("pid %d (%s, state %c): %s", pid, comm, state, cmdline(pid)))
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			return alive
		}
		time.Sleep(20 * time.Millisecond)
	}
}
