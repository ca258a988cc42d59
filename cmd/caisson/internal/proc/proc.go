// Package proc tells whether a host process that caisson recorded by PID and start time is still running. It is
// the one liveness check behind the state records (ps, stop, exec, logs, inspect, --join, name reuse and the state
// sweep) and the cgroup sweep: a PID alone may have been reused by another process, and a process that has exited
// but that its parent has not reaped yet (a zombie) keeps its PID and start time in /proc until it is reaped, which
// a container's PID 1 that is a shell or an application never does.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Stat is what caisson reads of /proc/PID/stat.
type Stat struct {
	// State is field 3: R, S, D, T, t, Z (zombie: exited, not reaped), X (dead), I, ...
	State byte
	// StartTime is field 22: the start time in clock ticks since boot, which tells a reused PID apart.
	StartTime uint64
}

// Exited reports whether the state is that of a process (or thread) that has exited: Z or X.
func (s Stat) Exited() bool { return s.State == 'Z' || s.State == 'X' }

// ParseStat parses the contents of /proc/PID/stat. The command name (field 2) may hold spaces and parentheses, so
// the fields are counted after its last ')'.
func ParseStat(b []byte) (Stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, errors.New("no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return Stat{}, errors.New("too few fields")
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return Stat{}, fmt.Errorf("start time: %w", err)
	}
	return Stat{State: f[0][0], StartTime: st}, nil
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	return readStat("/proc/" + strconv.Itoa(pid) + "/stat")
}

func readStat(path string) (Stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Stat{}, err
	}
	s, err := ParseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// StartTime returns the start time of process pid (field 22 of /proc/PID/stat), which caisson records next to a
// PID so that Alive can tell a reused PID apart.
func StartTime(pid int) (uint64, error) {
	s, err := ReadStat(pid)
	return s.StartTime, err
}

// Alive reports whether the process pid that started at startTime (field 22 of /proc/PID/stat, as StartTime
// returns it) is still running. It is false when the PID is gone, when it now belongs to another process (another
// start time), and when the process has exited but is not reaped yet (state Z or X: its PID and start time are
// still in /proc, but it runs nothing and holds no file, lock or socket). A process whose main thread has exited
// while other threads run on shows Z too: it is alive while any of its threads is.
func Alive(pid int, startTime uint64) bool {
	if pid <= 0 {
		return false
	}
	s, err := ReadStat(pid)
	if err != nil || s.StartTime != startTime {
		return false
	}
	return !s.Exited() || anyThreadRunning(pid)
}

// anyThreadRunning reports whether a thread of process pid has not exited (its main thread may have).
func anyThreadRunning(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if t, err := readStat(dir + "/" + e.Name() + "/stat"); err == nil && !t.Exited() {
			return true
		}
	}
	return false
}
