package testenv

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
