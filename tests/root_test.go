package tests

import (
	"os"
	"os/exec"
	osuser "os/user"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// Run as host root, caisson still maps the sandbox's root to an unprivileged host range, never to host uid 0.
// tests/run-integration.sh runs this test as root (and skips it in the unprivileged run).
func TestRootModeNeverMapsHostRoot(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs to run as host root (tests/run-integration.sh runs it so)")
	}
	// The sandbox's root is an unprivileged host id: give it a directory it may write.
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	os.Chmod(filepath.Dir(dir), 0o755)
	r := caissonIn(t, dir, nil, "run", "--", "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch made-inside")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, l := range lines[:len(lines)-1] {
		f := strings.Fields(l)
		if len(f) == 3 && f[1] == "0" {
			t.Errorf("a map line sends inside %s to host id 0: %q", f[0], l)
		}
	}
	if lines[len(lines)-1] != "0" {
		t.Errorf("want root inside, got uid %q", lines[len(lines)-1])
	}
	st, err := os.Stat(filepath.Join(dir, "made-inside"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; uid == 0 {
		t.Errorf("a file made by the sandbox's root belongs to host root")
	}
}

// A host mount below a directory the user cannot enter (another user's mount, such as a root podman's under
// /tmp) does not stop --overlay of the host view with fuse-overlayfs: the user cannot see it, and neither does
// the sandbox. Root makes the mount, the test user runs caisson (CAISSON_TEST_USER, set by run-integration.sh).
func TestRootModeOverlayUnreachableMount(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs to run as host root (tests/run-integration.sh runs it so)")
	}
	user := os.Getenv("CAISSON_TEST_USER")
	if user == "" {
		testenv.SkipOrFail(t, "CAISSON_TEST_USER is not set (tests/run-integration.sh sets it)")
	}
	testenv.RequireCommand(t, "fuse-overlayfs")
	setpriv := testenv.RequireCommand(t, "setpriv")
	dir, err := os.MkdirTemp("/tmp", "caisson-unreachable-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o700)
	m := filepath.Join(dir, "m")
	os.Mkdir(m, 0o755)
	if err := syscall.Mount("caisson-test", m, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(m, syscall.MNT_DETACH)
	u, err := osuser.Lookup(user)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(setpriv, "--reuid="+user, "--regid="+user, "--init-groups", "--reset-env", "env", "HOME="+u.HomeDir,
		"PATH=/usr/local/bin:/usr/bin:/bin", bin(t), "run", "--no-cwd", "--overlay", "--", "sh", "-c",
		"grep -c ' / / .*fuse' /proc/self/mountinfo").CombinedOutput()
	if err != nil || string(out) != "1\n" {
		t.Errorf("--overlay as %s with a mount it cannot reach: %v %q", user, err, out)
	}
}
