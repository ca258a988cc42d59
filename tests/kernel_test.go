package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// umlTests are the tests run again on a second kernel, User-Mode Linux, in two runs of the test binary. The
// first starts in a delegated group that still holds processes, as a systemd scope does, and asks for --pids
// alone. The second has the other cgroup tests (that kernel offers cpu, memory and pids in a pure cgroup v2
// hierarchy, which this project's machines do not) and a subset of the others on that kernel's version (Debian 12's
// own, 6.1: no time namespaces, overlayfs options only as one string, no cloning of a detached mount). Each must
// pass there; none may skip. (Tests whose bounds are wall-clock times are left out: that kernel runs on one
// emulated CPU, several times slower than the host.)
var umlTests = [][]string{
	{"TestCgroupPids"},
	{"TestCgroupOwnGroup", "TestCgroupLimitsHold", "TestCgroupMemory", "TestCgroupCPUs", "TestCgroupSweepAfterKill",
		"TestSeedPart1NamespacesDiffer", "TestSeedPart2PIDNamespace", "TestSeedPart3NetworkNamespace",
		"TestSeedPart4MountNamespace", "TestSeedPart5UTSNamespace", "TestIDMaps", "TestTimeNamespace",
		"TestFilesystemView", "TestOverlayKernelFallback", "TestOverlayPersist", "TestSeccompMatrix",
		"TestNetPublishTCP", "TestLifeDetached", "TestLifeInspectByName", "TestHardenInitReach",
		"TestBindsNosuidNodev", "TestHardenCatalogueView"},
}

// umlInit is the User-Mode Linux kernel's init: it mounts what a distribution's init would (proc, sys, a tmpfs /tmp
// with the test directory carried over from the host, a cgroup v2 hierarchy), loads the tun, overlay, fuse and
// dummy modules, brings up a network that leads nowhere, delegates a cgroup v2 group with the cpu, memory and pids
// controllers to the test user as systemd's Delegate=yes does, runs the test binary as that user, prints its
// status and powers the kernel off. The host file system is the kernel's root (hostfs), accessed as the user who
// started it.
const umlInit = `#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
fail() { echo "caisson-uml: $*"; echo "caisson-uml-status: 125"; echo o >/proc/sysrq-trigger; sleep 10; exit 1; }
mount -n -t proc proc /proc || fail "mount /proc"
mount -n -t sysfs sys /sys || fail "mount /sys"
mount -n --bind "$WORK" /mnt || fail "bind $WORK"
mount -n -t tmpfs -o mode=1777 tmpfs /tmp || fail "mount /tmp"
mkdir -p "$WORK" && mount -n --move /mnt "$WORK" || fail "move $WORK"
mount -n -t tmpfs -o mode=0755 tmpfs /run || fail "mount /run"
mkdir -p /dev/pts && mount -n -t devpts -o mode=0620,ptmxmode=0666,gid=5 devpts /dev/pts || fail "mount /dev/pts"
ln -sf pts/ptmx /dev/ptmx
mkdir -p /dev/shm && mount -n -t tmpfs -o mode=1777 tmpfs /dev/shm || fail "mount /dev/shm"
mount -n -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
# The kernel's modules (tun for pasta and slirp4netns, overlay, fuse), with the device modes a distribution sets.
# None depends on another; busybox's insmod loads them (kmod is not installed here).
mods=/usr/lib/uml/modules/$(uname -r)/kernel
for m in drivers/net/tun fs/overlayfs/overlay fs/fuse/fuse; do busybox insmod "$mods/$m.ko" || fail "insmod $m"; done
chmod 0666 /dev/net/tun /dev/fuse 2>/dev/null
# A network like a host's: loopback up, and for pasta (which needs an interface with a default route to copy) a
# dummy one that leads nowhere: this kernel has no way out to any real network.
busybox insmod "$mods/drivers/net/dummy.ko" || fail "insmod dummy"
ip link set lo up && ip link add uml0 type dummy && ip addr add 192.0.2.1/24 dev uml0 && ip link set uml0 up &&
	ip route add default via 192.0.2.254 || fail "network"
echo "+cpu +memory +pids" >/sys/fs/cgroup/cgroup.subtree_control || fail "enable controllers"
g=/sys/fs/cgroup/user-$TEST_UID
mkdir "$g" && chown "$TEST_UID:$TEST_GID" "$g" "$g/cgroup.procs" "$g/cgroup.subtree_control" "$g/cgroup.threads" || fail "delegate $g"
echo $$ >"$g/cgroup.procs" || fail "enter $g"
echo "caisson-uml: kernel $(uname -r), cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
cd "$TEST_DIR" || fail "cd $TEST_DIR"
home=$(getent passwd "$TEST_UID" | cut -d: -f6)
run_tests() { # REGEXP
	setpriv --reuid="$TEST_UID" --regid="$TEST_GID" --init-groups --reset-env env PATH="$PATH" HOME="${home:-/tmp}" \
		CAISSON_BIN="$CAISSON_BIN" CAISSON_PROBE="$CAISSON_PROBE" CAISSON_PROFILES="$CAISSON_PROFILES" \
		CAISSON_TEST_STRICT="$CAISSON_TEST_STRICT" CAISSON_IN_UML=1 \
		"$TEST_BIN" -test.v -test.count=1 -test.timeout=5m -test.run "$1"
}
status=0
run_tests "$TEST_RUN1" || status=1
if [ -n "$TEST_RUN2" ]; then run_tests "$TEST_RUN2" || status=1; fi
echo "caisson-uml-status: $status"
echo o >/proc/sysrq-trigger
sleep 10
`

// TestKernelUML runs umlTests on a second, real Linux kernel: Debian's User-Mode Linux (Linux 6.1), a kernel that
// runs as an ordinary process of the test user, with the host's file system as its root. This project's machines
// boot a kernel whose cgroup v2 hierarchy offers only hugetlb (their init holds cpu, memory and pids in cgroup
// v1), so this is where caisson's cgroup v2 limits (memory.max, pids.max, cpu.max) are seen enforced by a kernel;
// it also checks caisson on the oldest kernel it supports, the one Debian 12 ships.
func TestKernelUML(t *testing.T) {
	if os.Getenv("CAISSON_IN_UML") != "" {
		t.Skip("already inside User-Mode Linux")
	}
	testenv.RequireUnprivileged(t)
	testenv.RequireSubIDs(t)
	uml := testenv.RequireCommand(t, "linux.uml")
	testenv.RequireCommand(t, "setpriv")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	caissonBin := bin(t)
	// The kernel sees the host's /tmp covered by its own tmpfs: the directory holding the binaries is carried over.
	work := filepath.Dir(caissonBin)
	if filepath.Dir(self) != work {
		testenv.SkipOrFail(t, "the test binary %s and caisson %s must share a directory (run through tests/run-integration.sh)", self, caissonBin)
	}
	testDir, err := os.Getwd()
	if err != nil || !strings.HasPrefix(testDir, work+"/") {
		testenv.SkipOrFail(t, "the working directory %s must lie below %s (run through tests/run-integration.sh)", testDir, work)
	}
	script := filepath.Join(testDir, fmt.Sprintf("uml-init-%d.sh", os.Getpid()))
	if err := os.WriteFile(script, []byte(umlInit), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(script)
	umlHome := t.TempDir() // the kernel keeps its control socket and pid file under $HOME/.uml
	runs := make([]string, 2)
	for i, names := range umlTests {
		runs[i] = "^(" + strings.Join(names, "|") + ")$"
	}
	want := slices.Concat(umlTests...)
	if r := os.Getenv("CAISSON_UML_RUN"); r != "" {
		runs, want = []string{r, ""}, nil // another selection, to try more of the suite there
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, uml, "mem=1G", "root=/dev/root", "rootfstype=hostfs", "rootflags=/", "rw",
		"init="+script, "con=null", "con0=null,fd:1", "quiet",
		"WORK="+work, "TEST_DIR="+testDir, "TEST_BIN="+self, "TEST_RUN1="+runs[0], "TEST_RUN2="+runs[1],
		"TEST_UID="+strconv.Itoa(os.Getuid()), "TEST_GID="+strconv.Itoa(os.Getgid()),
		"CAISSON_BIN="+caissonBin, "CAISSON_PROBE="+os.Getenv("CAISSON_PROBE"),
		"CAISSON_PROFILES="+os.Getenv("CAISSON_PROFILES"), "CAISSON_TEST_STRICT="+os.Getenv("CAISSON_TEST_STRICT"))
	// Its memory is a file it maps: on tmpfs when the host has /dev/shm.
	memDir := umlHome
	if unix.Access("/dev/shm", unix.W_OK) == nil {
		memDir = "/dev/shm"
	}
	cmd.Env = append(os.Environ(), "HOME="+umlHome, "TMPDIR="+memDir)
	// The kernel's processes (one per address space inside) form a process group: it goes as a whole.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	if cmd.Process != nil {
		// Its other processes end with it (they may need a moment to be reaped); none may stay.
		deadline := time.Now().Add(3 * time.Second)
		for syscall.Kill(-cmd.Process.Pid, 0) == nil {
			if time.Now().After(deadline) {
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				t.Errorf("processes of User-Mode Linux outlived its power-off by 3 s (killed)")
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("User-Mode Linux ran %s in %v (%v):\n%s", strings.Join(runs, " then "), time.Since(start).Round(time.Millisecond), err, out.String())
	m := regexp.MustCompile(`caisson-uml-status: (\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("User-Mode Linux ended without the tests' status (%v)", err)
	}
	if m[1] != "0" {
		t.Errorf("the tests failed on User-Mode Linux: status %s", m[1])
	}
	for _, name := range want {
		if !strings.Contains(out.String(), "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass on User-Mode Linux", name)
		}
	}
	if !strings.Contains(out.String(), "cgroup v2 controllers: cpu io memory pids") {
		t.Errorf("the User-Mode Linux kernel did not offer cpu, memory and pids in cgroup v2")
	}
}
