package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Children lists the children of process pid, from /proc/PID/task/*/children (every thread's, since a child
// belongs to the thread that forked it). A process that is gone has none.
func Children(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
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

// ProcStat reads /proc/PID/stat: the command name, the state (R, S, Z...), the parent's PID and the start time.
func ProcStat(pid int) (comm string, state byte, ppid int, start uint64, err error) {
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

// WaitState waits (at most limit) until process pid is in state want (e.g. 'Z'), and reports whether it got there.
func WaitState(pid int, want byte, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		if _, st, _, _, err := ProcStat(pid); err == nil && st == want {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Zombie starts a child (sleep), kills it and returns its PID once it is a zombie: exited, and held unreaped by
// this process until the test ends.
func Zombie(t testing.TB) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a child to make a zombie of: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Wait() })
	_ = cmd.Process.Kill()
	if !WaitState(cmd.Process.Pid, 'Z', 10*time.Second) {
		t.Fatalf("child %d did not become a zombie", cmd.Process.Pid)
	}
	return cmd.Process.Pid
}
