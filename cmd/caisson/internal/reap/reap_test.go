package reap

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// exists reports whether pid is still a process (alive or zombie).
func exists(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil
}

// state returns the state letter of pid from /proc/PID/stat.
func state(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
}

// TestChildrenNone: with no child, Children returns at once and kills nothing.
func TestChildrenNone(t *testing.T) {
	start := time.Now()
	killed, err := Children(time.Second)
	if err != nil || killed != 0 {
		t.Fatalf("Children() = %d, %v; want 0, nil", killed, err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("Children with no child took %v", d)
	}
}

// TestChildrenZombieAndRunning: an exited child that nobody waited for is reaped; a running one is killed and
// reaped; neither is left, not even as a zombie.
func TestChildrenZombieAndRunning(t *testing.T) {
	done := exec.Command("true")
	if err := done.Start(); err != nil {
		t.Fatal(err)
	}
	running := exec.Command("sleep", "60")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	zpid, rpid := done.Process.Pid, running.Process.Pid
	for i := 0; i < 500 && state(t, zpid) != "Z"; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if s := state(t, zpid); s != "Z" {
		t.Fatalf("true (pid %d) is in state %q, want a zombie", zpid, s)
	}
	killed, err := Children(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Errorf("killed %d children, want 1 (the sleep)", killed)
	}
	for _, pid := range []int{zpid, rpid} {
		if exists(pid) {
			t.Errorf("pid %d (state %s) still exists after Children", pid, state(t, pid))
		}
	}
}

// TestAdoptOrphan: with Adopt, a grandchild orphaned by its parent comes back to this process, and Children ends it.
func TestAdoptOrphan(t *testing.T) {
	if err := Adopt(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	// sh starts a sleep in the background, prints its PID and exits: the sleep is orphaned.
	out, err := exec.Command("sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!").Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatalf("sh printed %q", out)
	}
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(orphan) + "/stat")
	s := string(b)
	if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) < 2 || f[1] != strconv.Itoa(os.Getpid()) {
		t.Fatalf("orphan %d was not re-parented to this process: stat %q", orphan, s)
	}
	if _, err := Children(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if exists(orphan) {
		t.Errorf("orphan %d (state %s) still exists after Children", orphan, state(t, orphan))
	}
}
