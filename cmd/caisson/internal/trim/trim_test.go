package trim

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

var written = []int{1, 2, 3} // in a writable segment: Idle must not touch it (the test changes it first)

// exeRss returns the resident KiB of this binary's mappings, read-only ones and writable ones apart.
func exeRss(t *testing.T) (ro, rw int) {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var mine, writable bool
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			mine = len(fields) >= 6 && fields[5] == exe
			writable = strings.Contains(fields[1], "w")
			continue
		}
		if mine && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.Atoi(fields[1])
			if writable {
				rw += n
			} else {
				ro += n
			}
		}
	}
	return ro, rw
}

// Idle unmaps the binary's read-only pages from this process (most of them: those in use fault back in), leaves
// its writable segment and its contents alone, and the process goes on.
func TestIdle(t *testing.T) {
	written[1] = 5 // dropped pages of the segment would read back as the file's 2
	roBefore, rwBefore := exeRss(t)
	Idle()
	roAfter, rwAfter := exeRss(t)
	if roAfter*4 > roBefore*3 { // what this test runs faults back at once; most stays unmapped
		t.Errorf("read-only pages of the binary: %d KiB before Idle, %d KiB after", roBefore, roAfter)
	}
	if rwAfter < rwBefore {
		t.Errorf("writable pages of the binary were dropped: %d KiB -> %d KiB", rwBefore, rwAfter)
	}
	if written[0]+written[1]+written[2] != 9 {
		t.Errorf("a variable changed: %v", written)
	}
}
