package harden

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// threads returns the process's thread count.
func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

// After ReserveThreads(n), n goroutines that each need an OS thread of their own at once get the reserved ones:
// the process creates no new thread (which a process limit could refuse).
func TestReserveThreads(t *testing.T) {
	const n = 16
	ReserveThreads(n)
	before := threads(t)
	release := holdThreads(n)
	during := threads(t)
	release()
	t.Logf("%d threads before, %d while %d goroutines held one each", before, during, n)
	// A few more threads are tolerated: the runtime (and the race detector) may start some of its own meanwhile,
	// and the thread that ran the test may be one of those locked. Without the reserve, nearly n are created.
	if during > before+n/4 {
		t.Errorf("%d threads while %d goroutines held one each, %d before: the reserve was not used", during, n, before)
	}
}
