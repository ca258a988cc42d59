// Package reap makes sure that a caisson process leaves no child behind when it exits, neither alive nor as a
// zombie. A child that its parent never waits for is re-parented, once the parent exits, to the nearest child
// subreaper or to PID 1, which must reap it; in a CI container whose PID 1 is a shell, a language runtime or the
// runner itself, or under a subreaper that does not reap (issue 18), it stays a zombie for ever and holds a slot
// of the container's pids.max.
//
// Each child is normally waited for by the code that started it; Children is the last step before exit, which
// finds what was missed.
package reap

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Adopt makes this process the child subreaper of its descendants (PR_SET_CHILD_SUBREAPER): a process that one of
// its children (a network helper) forked and orphaned is re-parented to this process rather than to the caller's
// subreaper or PID 1, so that Children ends it too. The setting is not inherited by children.
func Adopt() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
	}
	return nil
}

// Children reaps every child this process still has: the zombies at once, and the ones still running after a
// SIGKILL, waiting at most limit for them. Call it when nothing else waits for a child any more (a concurrent
// exec.Cmd.Wait would see its child vanish). When there is no child, as on every normal exit, it costs one system
// call. It returns the number of children it had to kill, and an error naming those it could not reap in time.
func Children(limit time.Duration) (killed int, err error) {
	deadline := time.Now().Add(limit)
	signalled := map[int]bool{}
	for pause := 100 * time.Microsecond; ; {
		pid, err := reapOne()
		switch {
		case err == unix.ECHILD:
			return killed, nil
		case err != nil:
			return killed, fmt.Errorf("reap: wait4: %w", err)
		case pid > 0:
			continue // one zombie less; look again
		}
		// Some children are still running: kill those not killed yet (a PID cannot be reused while it is our
		// unreaped child), then poll for their exits.
		for _, c := range children() {
			if !signalled[c] {
				signalled[c] = true
				if unix.Kill(c, unix.SIGKILL) == nil {
					killed++
				}
			}
		}
		if time.Now().After(deadline) {
			var left []string
			for _, c := range children() {
				left = append(left, describe(c))
			}
			if len(left) == 0 {
				continue // they exited meanwhile
			}
			return killed, fmt.Errorf("reap: children still running %v after SIGKILL: %s", limit, strings.Join(left, ", "))
		}
		time.Sleep(pause)
		pause = min(2*pause, 10*time.Millisecond)
	}
}

// reapOne reaps one exited child, of any kind (__WALL); 0 when every child is still running, ECHILD when there is
// none.
func reapOne() (int, error) {
	var ws unix.WaitStatus
	for {
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
		if !errors.Is(err, unix.EINTR) {
			return pid, err
		}
	}
}

// children lists this process's children, from every thread's /proc/self/task/TID/children (a child belongs to
// the thread that forked it, or to which it was re-parented).
func children() []int {
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	var out []int
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// describe names a child for an error message: its PID and command name.
func describe(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return fmt.Sprintf("%d (%s)", pid, strings.TrimSpace(string(b)))
}
