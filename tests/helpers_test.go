// Package tests holds caisson's integration tests: they run the built binary (CAISSON_BIN, default ../bin/caisson)
// as an unprivileged user with the real newuidmap/newgidmap, kernel mounts, pasta and slirp4netns.
package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// bin is the caisson binary under test.
func bin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CAISSON_BIN")
	if p == "" {
		p, _ = filepath.Abs("../bin/caisson")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFail(t, "caisson binary %s: %v (run make build, or set CAISSON_BIN)", p, err)
	}
	return p
}

// result is one finished caisson run.
type result struct {
	stdout, stderr string
	code           int
}

// caisson runs the binary with args and a bounded time, and returns its output and exit code.
func caisson(t testing.TB, args ...string) result {
	t.Helper()
	return caissonIn(t, "", nil, args...)
}

// caissonIn is caisson with a working directory and stdin.
func caissonIn(t testing.TB, dir string, stdin []byte, args ...string) result {
	t.Helper()
	return caissonFor(t, 60*time.Second, dir, stdin, args...)
}

// caissonFor is caissonIn with a time limit other than a minute (package installs).
func caissonFor(t testing.TB, limit time.Duration, dir string, stdin []byte, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin(t), args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("caisson %s: timed out; stderr: %s", strings.Join(args, " "), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if err != nil {
		t.Fatalf("caisson %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), code}
}

// mustRun runs caisson and fails unless it exits 0; it returns stdout.
func mustRun(t testing.TB, args ...string) string {
	t.Helper()
	r := caisson(t, args...)
	if r.code != 0 {
		t.Fatalf("caisson %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// requireSandbox checks what every sandbox test needs.
func requireSandbox(t testing.TB) {
	t.Helper()
	testenv.RequireUnprivileged(t)
	testenv.RequireSubIDs(t)
	bin(t)
}

// userProcesses lists the caller's processes whose command line contains marker.
func userProcesses(t testing.TB, marker string) []string {
	t.Helper()
	var out []string
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	uid := uint32(os.Getuid())
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' || e.Name() == strconv.Itoa(self) {
			continue
		}
		// Other users' sandboxes (several test users share a machine) are not this test's.
		var st syscall.Stat_t
		if syscall.Stat("/proc/"+e.Name(), &st) != nil || st.Uid != uid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		if strings.Contains(string(b), marker) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

// waitGone waits (bounded) until no process carries marker.
func waitGone(t testing.TB, marker string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		left := userProcesses(t, marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes survived: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mountTable returns the caller's mount table without the fields that change between reads.
func mountTable(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// bgMarker is a shell snippet (for dash or bash) that starts `sleep 300` in the background with argv[0] set to
// marker (through bash's exec -a: dash has none), waits (bounded) until the exec has happened, and prints
// "argv0=<the background process's argv[0]>", so a test can check the process it later expects gone existed.
func bgMarker(marker string) string {
	return fmt.Sprintf(`bash -c 'exec -a %[1]s sleep 300' </dev/null >/dev/null 2>&1 & p=$!; i=0; `+
		`while [ $i -lt 300 ] && [ "$(head -c %[2]d /proc/$p/cmdline 2>/dev/null)" != %[1]s ]; do sleep 0.01; i=$((i+1)); done; `+
		`echo "argv0=$(head -c %[2]d /proc/$p/cmdline 2>/dev/null)"`, marker, len(marker))
}

// markerProcesses returns the processes whose argv[0] is exactly marker (see bgMarker).
func markerProcesses(t testing.TB, marker string) []string {
	t.Helper()
	var out []string
	for _, p := range userProcesses(t, marker) {
		if _, cmdline, _ := strings.Cut(p, ": "); strings.HasPrefix(cmdline, marker+" ") {
			out = append(out, p)
		}
	}
	return out
}

// readUntil reads r until the text read so far contains want, or r ends; it returns the text.
func readUntil(r io.Reader, want string) string {
	var b strings.Builder
	buf := make([]byte, 256)
	for !strings.Contains(b.String(), want) {
		n, err := r.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return b.String()
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
