package proc

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// leaderExitEnv makes the test binary the helper of TestAliveMainThreadExited.
const leaderExitEnv = "CAISSON_PROC_TEST_LEADER_EXIT"

func TestMain(m *testing.M) {
	if os.Getenv(leaderExitEnv) == "1" {
		// The main thread exits alone (exit, not exit_group) while another thread sleeps on: the process's
		// /proc/PID/stat then shows Z, the state of its main thread.
		runtime.LockOSThread()
		go func() {
			runtime.LockOSThread()
			for {
				time.Sleep(time.Hour)
			}
		}()
		time.Sleep(50 * time.Millisecond)
		unix.RawSyscall(unix.SYS_EXIT, 0, 0, 0)
	}
	os.Exit(m.Run())
}

func TestParseStat(t *testing.T) {
	s, err := ParseStat([]byte("42 (a) (Z) b) Z 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 0 18446744073709551615\n"))
	if err != nil || s.State != 'Z' || s.StartTime != 987654 || !s.Exited() {
		t.Errorf("ParseStat = %+v, %v; want state Z, start time 987654", s, err)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S 1 2", "42 (x) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 notanumber 1"} {
		if _, err := ParseStat([]byte(bad)); err == nil {
			t.Errorf("ParseStat(%q) accepted", bad)
		}
	}
}

// A running process is alive, the same PID with another start time is not, nor a PID that does not exist, nor a
// process that has exited and is held as a zombie by its parent (this test, which reaps it only at the end).
func TestAlive(t *testing.T) {
	st, err := StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(os.Getpid(), st) {
		t.Errorf("this process is not alive")
	}
	if Alive(os.Getpid(), st+1) {
		t.Errorf("a reused PID (another start time) is alive")
	}
	if Alive(1<<22+1, st) || Alive(0, 0) || Alive(-1, st) {
		t.Errorf("a PID that cannot exist is alive")
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	cst, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !Alive(pid, cst) {
		t.Errorf("a running child is not alive")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !testenv.WaitState(pid, 'Z', 10*time.Second) { // not reaped until cmd.Wait
		t.Fatalf("child %d did not become a zombie", pid)
	}
	if s, err := ReadStat(pid); err != nil || s.StartTime != cst {
		t.Fatalf("the zombie's stat: %+v %v, want start time %d", s, err, cst)
	}
	if Alive(pid, cst) {
		t.Errorf("a zombie (killed, not reaped) is alive")
	}
}

// A process whose main thread has exited while another thread runs shows Z in /proc/PID/stat, but is alive.
func TestAliveMainThreadExited(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), leaderExitEnv+"=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pid := cmd.Process.Pid
	st, err := StartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !testenv.WaitState(pid, 'Z', 10*time.Second) {
		t.Fatalf("helper %d: its main thread did not exit", pid)
	}
	if !Alive(pid, st) {
		t.Errorf("a process whose main thread exited but whose other threads run is not alive")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for Alive(pid, st) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after SIGKILL", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
