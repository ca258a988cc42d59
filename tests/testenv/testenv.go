// Package testenv holds the requirement checks of caisson's integration tests, the process-tree helpers the
// tests and the benchmark report share, and the client of the non-reaping subreaper harness (Subreaper,
// tests/subreaper) under which the leak checks run commands. Each check skips the test with a precise reason when the host lacks
// something, and fails it instead when CAISSON_TEST_STRICT=1 (as CI sets), so a green CI run cannot hide a skipped
// test.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Strict reports whether skips are failures.
func Strict() bool { return os.Getenv("CAISSON_TEST_STRICT") == "1" }

// SkipOrFail skips the test with reason, or fails it in strict mode.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("requirement not met (CAISSON_TEST_STRICT=1): "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// RequireUnprivileged skips tests that must run as an ordinary user (run them through `make test`, which switches
// to the test user when started as root).
func RequireUnprivileged(t testing.TB) {
	t.Helper()
	if os.Getuid() == 0 {
		SkipOrFail(t, "running as root; caisson's integration tests run as an unprivileged user (use make test)")
	}
}

// RequireCommand skips unless name is on PATH.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "%s not found in $PATH", name)
	}
	return p
}

// RequireSubIDs skips unless the caller has a line in /etc/subuid and /etc/subgid.
func RequireSubIDs(t testing.TB) {
	t.Helper()
	name := os.Getenv("USER")
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
		b, err := os.ReadFile(f)
		if err != nil {
			SkipOrFail(t, "cannot read %s: %v", f, err)
			return
		}
		found := false
		for _, line := range strings.Split(string(b), "\n") {
			owner, _, _ := strings.Cut(line, ":")
			if owner != "" && (owner == name || owner == strconv.Itoa(os.Getuid())) {
				found = true
			}
		}
		if !found {
			SkipOrFail(t, "no %s entry for user %q (uid %d)", f, name, os.Getuid())
		}
	}
}

// RequireTun skips unless /dev/net/tun can be opened.
func RequireTun(t testing.TB) {
	t.Helper()
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		SkipOrFail(t, "/dev/net/tun is not usable: %v (as root: chmod 0666 /dev/net/tun)", err)
		return
	}
	unix.Close(fd)
}
