package idmap

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// skipOrFail skips the test, or fails it when CAISSON_TEST_STRICT=1 (CI),
// so a missing requirement cannot hide a broken setup.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CAISSON_TEST_STRICT") == "1" {
		t.Fatalf("requirement not met (CAISSON_TEST_STRICT=1): "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// startUserNSChild starts "sleep 30" in a new, unmapped user namespace and
// returns it. It is killed when the test ends.
func startUserNSChild(t *testing.T) *exec.Cmd {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		skipOrFail(t, "sleep not found: %v", err)
	}
	cmd := exec.Command(sleep, "30")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		skipOrFail(t, "cannot create a user namespace (user.max_user_namespaces, kernel.unprivileged_userns_clone, AppArmor?): %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// readMap reads /proc/PID/{uid,gid}_map as seen from this (parent) namespace.
func readMap(t *testing.T, pid int, name string) []Mapping {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, name))
	if err != nil {
		t.Fatal(err)
	}
	var maps []Mapping
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("%s: bad line %q", name, line)
		}
		var v [3]uint64
		for i := range f {
			if v[i], err = strconv.ParseUint(f[i], 10, 32); err != nil {
				t.Fatal(err)
			}
		}
		maps = append(maps, Mapping{uint32(v[0]), uint32(v[1]), uint32(v[2])})
	}
	return maps
}

// TestRealHelpersAndWriteDirect applies maps to a real child in a new user
// namespace, through newuidmap/newgidmap and through WriteDirect, and reads
// them back. It needs an unprivileged user with /etc/subuid and /etc/subgid
// entries and setuid helpers, e.g.:
//
//	go test -c -o /tmp/idmap.test ./idmap && chmod 755 /tmp/idmap.test
//	su caissontest -c 'cd /tmp && CAISSON_TEST_STRICT=1 /tmp/idmap.test -test.v -test.run Real'
func TestRealHelpersAndWriteDirect(t *testing.T) {
	if os.Geteuid() == 0 {
		skipOrFail(t, "running as root; needs an unprivileged user")
	}
	if NoNewPrivs() {
		skipOrFail(t, "no_new_privs is set; setuid newuidmap cannot work")
	}
	u, err := user.Current()
	if err != nil {
		skipOrFail(t, "uid %d has no user name: %v", os.Getuid(), err)
	}
	uid, gid := uint32(os.Getuid()), uint32(os.Getgid())
	uh, gh := FindHelper("newuidmap"), FindHelper("newgidmap")
	for _, h := range []Helper{uh, gh} {
		if !h.Usable() {
			skipOrFail(t, "%s not usable: %v", h.Name, h.Err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resolve := ReadPasswd("/etc/passwd").UID
	plan, err := NewPlan(ctx, PlanOptions{Mode: ModeAuto, UID: uid, GID: gid, User: u.Username,
		Resolve: resolve, NoNewPrivs: NoNewPrivs()})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.UseHelpers {
		skipOrFail(t, "no usable /etc/subuid and /etc/subgid entries for user %s: %s", u.Username, plan.Notice)
	}
	t.Logf("plan: uid_map %v gid_map %v warnings %q", plan.UIDMap, plan.GIDMap, plan.Warnings)

	t.Run("helpers auto", func(t *testing.T) {
		child := startUserNSChild(t)
		pid := child.Process.Pid
		if err := plan.Apply(ctx, pid); err != nil {
			t.Fatalf("%v\nhint: %s", err, HintFor(err))
		}
		if got := readMap(t, pid, "uid_map"); !reflect.DeepEqual(got, plan.UIDMap) {
			t.Errorf("uid_map = %v, want %v", got, plan.UIDMap)
		}
		if got := readMap(t, pid, "gid_map"); !reflect.DeepEqual(got, plan.GIDMap) {
			t.Errorf("gid_map = %v, want %v", got, plan.GIDMap)
		}
		// A second write must fail (M7) and come back as a quoted HelperError.
		err := RunHelpers(ctx, pid, uh, gh, plan.UIDMap, plan.GIDMap)
		if err == nil || !strings.Contains(err.Error(), strconv.Itoa(pid)) || !strings.Contains(err.Error(), `: "`) {
			t.Errorf("second RunHelpers: %v", err)
		}
	})

	t.Run("helpers keep-id", func(t *testing.T) {
		kp, err := NewPlan(ctx, PlanOptions{Mode: ModeKeepID, UID: uid, GID: gid, User: u.Username, Resolve: resolve})
		if err != nil {
			t.Skipf("skipping: keep-id not possible here: %v", err)
		}
		child := startUserNSChild(t)
		pid := child.Process.Pid
		if err := kp.Apply(ctx, pid); err != nil {
			t.Fatalf("%v\nhint: %s", err, HintFor(err))
		}
		if got := readMap(t, pid, "uid_map"); !reflect.DeepEqual(got, kp.UIDMap) {
			t.Errorf("uid_map = %v, want %v", got, kp.UIDMap)
		}
	})

	t.Run("write direct single", func(t *testing.T) {
		child := startUserNSChild(t)
		pid := child.Process.Pid
		single := []Mapping{{0, uid, 1}}
		gsingle := []Mapping{{0, gid, 1}}
		if err := WriteDirect(pid, single, gsingle, true); err != nil {
			t.Fatalf("%v\nhint: %s", err, HintFor(err))
		}
		if got := readMap(t, pid, "uid_map"); !reflect.DeepEqual(got, single) {
			t.Errorf("uid_map = %v, want %v", got, single)
		}
		if got := readMap(t, pid, "gid_map"); !reflect.DeepEqual(got, gsingle) {
			t.Errorf("gid_map = %v, want %v", got, gsingle)
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/setgroups", pid))
		if err != nil || strings.TrimSpace(string(b)) != "deny" {
			t.Errorf("setgroups = %q, %v; want deny", b, err)
		}
	})

	t.Run("write direct refuses other ids", func(t *testing.T) {
		child := startUserNSChild(t)
		err := WriteDirect(child.Process.Pid, plan.UIDMap, nil, true)
		if err == nil {
			t.Fatal("unprivileged WriteDirect of subordinate ids succeeded")
		}
		if HintFor(err) == "" {
			t.Errorf("no hint for %v", err)
		}
	})
}

// TestRootWriteDirect is the host-root counterpart: BuildRoot's maps written
// by WriteDirect. It is skipped (never failed, even in strict mode) when not
// root, because the unprivileged test covers that case.
func TestRootWriteDirect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs host root; TestRealHelpersAndWriteDirect covers unprivileged users")
	}
	maps, err := BuildRoot(nil)
	if err != nil {
		t.Fatal(err)
	}
	child := startUserNSChild(t)
	pid := child.Process.Pid
	if err := WriteDirect(pid, maps, maps, false); err != nil {
		t.Fatalf("%v\nhint: %s", err, HintFor(err))
	}
	for _, f := range []string{"uid_map", "gid_map"} {
		if got := readMap(t, pid, f); !reflect.DeepEqual(got, maps) {
			t.Errorf("%s = %v, want %v", f, got, maps)
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/setgroups", pid))
	if err == nil && strings.TrimSpace(string(b)) != "allow" {
		t.Errorf("setgroups = %q, want allow", b)
	}
}
