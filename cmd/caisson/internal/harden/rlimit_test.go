package harden

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// ReserveThreads leaves the process with at least n threads besides the caller's.
func TestReserveThreads(t *testing.T) {
	ReserveThreads(8)
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			if n, _ := strconv.Atoi(strings.TrimSpace(v)); n < 9 {
				t.Errorf("%d threads after ReserveThreads(8), want at least 9", n)
			}
			return
		}
	}
	t.Error("no Threads line in /proc/self/status")
}
