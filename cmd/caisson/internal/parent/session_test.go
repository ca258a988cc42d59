package parent

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestReadProc reads a /proc file into a buffer large enough and into one too small (it must then read it all).
func TestReadProc(t *testing.T) {
	want, err := os.ReadFile("/proc/self/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{4096, 16, 0} {
		got, err := readProc("/proc/self/cmdline", make([]byte, size))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("buffer of %d: %q, %v; want %q", size, got, err, want)
		}
	}
	if _, err := readProc("/proc/self/no-such-file", make([]byte, 64)); err == nil {
		t.Error("a missing file read without an error")
	}
}

// TestHostPID finds a shell's child by its PID in the shell's namespace, as hostPID finds the command among init's
// children (here both namespaces are the same; the shell, like init, forks from its main thread).
func TestHostPID(t *testing.T) {
	self := os.Getpid()
	for _, size := range []int{4096, 8} {
		if got := nspid(self, make([]byte, size)); len(got) == 0 || got[len(got)-1] != strconv.Itoa(self) {
			t.Fatalf("nspid(self) with a buffer of %d = %q; want it to end with %d", size, got, self)
		}
	}
	sh := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := sh.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sh.Process.Kill(); sh.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(child, syscall.SIGKILL)
	if got := hostPID(sh.Process.Pid, child); got != child {
		t.Fatalf("hostPID(%d, %d) = %d; want %d", sh.Process.Pid, child, got, child)
	}
	if got := hostPID(sh.Process.Pid, child+1<<20); got != 0 {
		t.Fatalf("hostPID of no such child = %d", got)
	}
}
