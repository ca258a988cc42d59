package tests

import (
	"bufio"
	"encoding/json"
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

// callerCgroups returns the caller's cgroup directories: key "v2" for the unified hierarchy (the parent of
// caisson's leaf when an earlier caisson moved the caller there, as caisson itself does) and the controller name
// for each cgroup v1 hierarchy of cpu, memory and pids.
func callerCgroups(t testing.TB) map[string]string {
	t.Helper()
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	v1 := map[string]string{} // controller -> mount point
	v2 := ""
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, "-")
		if i < 0 || i+3 >= len(f) {
			continue
		}
		switch f[i+1] {
		case "cgroup2":
			if v2 == "" && f[3] == "/" {
				v2 = f[4]
			}
		case "cgroup":
			if f[3] != "/" {
				continue
			}
			for _, o := range strings.Split(f[i+3], ",") {
				if o == "cpu" || o == "memory" || o == "pids" {
					v1[o] = f[4]
				}
			}
		}
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(self)))
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" && v2 != "" {
			dir := filepath.Join(v2, parts[2])
			if filepath.Base(dir) == "caisson-leaf" {
				dir = filepath.Dir(dir)
			}
			out["v2"] = dir
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if mnt, ok := v1[c]; ok {
				out[c] = filepath.Join(mnt, parts[2])
			}
		}
	}
	return out
}

// offered lists the controllers of the v2 group dir.
func offered(dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	return strings.Fields(string(b))
}

// requireCgroup returns the delegated directory where a limit on controller ctrl ("v2" for a v2 group of its
// own) is enforced: the v2 group when it offers ctrl, else the v1 hierarchy's.
func requireCgroup(t testing.TB, ctrl string) string {
	t.Helper()
	requireSandbox(t)
	cg := callerCgroups(t)
	dir := ""
	switch {
	case ctrl == "v2":
		dir = cg["v2"]
	case cg["v2"] != "" && slices.Contains(offered(cg["v2"]), ctrl):
		dir = cg["v2"]
	default:
		dir = cg[ctrl]
	}
	if dir == "" {
		testenv.SkipOrFail(t, "no cgroup hierarchy offers %s to this process (cgroups: %v)", ctrl, cg)
	}
	if err := unix.Access(dir, unix.W_OK); err != nil {
		testenv.SkipOrFail(t, "%s is not delegated to this user (run make test as root, which delegates it)", dir)
	}
	return dir
}

// sandboxGroups lists the caisson-<pid>-<start> groups in dir.
func sandboxGroups(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.IsDir() && regexp.MustCompile(`^caisson-\d+-\d+$`).MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// --cgroup: the sandbox runs in a v2 group of its own under the delegated one, its cgroup namespace is rooted
// there, the delegated group's processes were moved into caisson-leaf so its controllers could be enabled, and
// the group is gone when the sandbox ends.
func TestCgroupOwnGroup(t *testing.T) {
	dir := requireCgroup(t, "v2")
	before := sandboxGroups(dir)
	cmd := exec.Command(bin(t), "run", "--cgroup", "--", "sh", "-c", "cat /proc/self/cgroup; echo ready; read x; exit 0")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	inside := readUntil(stdout, "ready")
	if !strings.Contains(inside, "0::/\n") {
		t.Errorf("inside, /proc/self/cgroup must show the group as the namespace's root: %q", inside)
	}
	var mine []string
	for _, g := range sandboxGroups(dir) {
		if !slices.Contains(before, g) {
			mine = append(mine, g)
		}
	}
	if len(mine) != 1 || !strings.HasPrefix(mine[0], "caisson-"+strconv.Itoa(cmd.Process.Pid)+"-") {
		t.Fatalf("want one new group named after caisson (pid %d) in %s, got %v", cmd.Process.Pid, dir, mine)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, mine[0], "sandbox", "cgroup.procs"))
	if len(strings.Fields(string(procs))) == 0 {
		t.Errorf("the sandbox's group holds no process in its child \"sandbox\"")
	}
	if ctrls := offered(dir); len(ctrls) > 0 {
		sub, _ := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
		own, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if !slices.Equal(strings.Fields(string(sub)), ctrls) || len(own) != 0 {
			t.Errorf("delegated group %s: controllers %q enabled (want %v), processes %q (want none: moved to caisson-leaf)",
				dir, sub, ctrls, own)
		}
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("caisson: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, mine[0])); !os.IsNotExist(err) {
		t.Errorf("group %s outlived its sandbox: %v", mine[0], err)
	}
}

// --pids caps the processes of the sandbox: a shell that forks 50 children runs out of them; a higher limit lets
// it run them all.
func TestCgroupPids(t *testing.T) {
	dir := requireCgroup(t, "pids")
	before := sandboxGroups(dir)
	script := "i=0; while [ $i -lt 50 ]; do sleep 5 & i=$((i+1)); echo $i; done"
	r := caisson(t, "run", "--pids", "20", "--", "sh", "-c", script)
	n := len(strings.Fields(r.stdout))
	if r.code == 0 || n >= 20 || n == 0 || !strings.Contains(r.stderr, "fork") {
		t.Errorf("--pids 20: want the shell to run out of processes before 20 children; exit %d, %d started, stderr %q", r.code, n, r.stderr)
	}
	r = caisson(t, "run", "--pids", "200", "--", "sh", "-c", script)
	if n := len(strings.Fields(r.stdout)); r.code != 0 || n != 50 {
		t.Errorf("--pids 200: want 50 children, got %d (exit %d, %q)", n, r.code, r.stderr)
	}
	if after := sandboxGroups(dir); !slices.Equal(after, before) {
		t.Errorf("groups left in %s: before %v, after %v", dir, before, after)
	}
}

// Root inside owns its cgroup's files on the host (it is the caller), but it cannot raise its limits: its cgroup
// namespace is rooted at the group's child, so every cgroup file system it can mount (v1 or v2, or a remount of
// /sys/fs/cgroup) shows only limits that bind nothing beyond the group's.
func TestCgroupLimitsHold(t *testing.T) {
	requireCgroup(t, "pids")
	script := `mkdir -p /tmp/cg1 /tmp/cg2
mount -t cgroup -o pids none /tmp/cg1 2>/dev/null
mount -t cgroup2 none /tmp/cg2 2>/dev/null
mount -o remount,rw /sys/fs/cgroup 2>/dev/null
for f in /tmp/cg1/pids.max /tmp/cg1/*/pids.max /tmp/cg2/pids.max /tmp/cg2/*/pids.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/*/pids.max; do
	[ -f "$f" ] && echo max 2>/dev/null >"$f" && echo "raised $f" >&2
done
i=0; while [ $i -lt 50 ]; do sleep 5 & i=$((i+1)); echo $i; done`
	r := caisson(t, "run", "--pids", "30", "--", "sh", "-c", script)
	n := len(strings.Fields(r.stdout))
	if r.code == 0 || n >= 30 || !strings.Contains(r.stderr, "fork") {
		t.Errorf("--pids 30 after trying to raise it from inside: exit %d, %d children started (want fewer than 30); stderr %q", r.code, n, r.stderr)
	}
	t.Logf("inside: %s", strings.TrimSpace(strings.ReplaceAll(r.stderr, "\n", "; ")))
	// The limit also holds against unmounting /sys to reach the host's cgroup files beneath and remounting them
	// read-write: the default posture's filter refuses the remount, the strict one the unmount too.
	undo := `umount -l /sys 2>/dev/null; for m in /sys/fs/cgroup/*; do mount -o remount,rw,bind "$m" 2>/dev/null; done
for f in /sys/fs/cgroup/*/pids.max /sys/fs/cgroup/*/*/pids.max /sys/fs/cgroup/*/*/*/pids.max /sys/fs/cgroup/*/*/*/*/pids.max; do
	[ -f "$f" ] && echo max 2>/dev/null >"$f" && echo "raised $f" >&2
done
` + script
	for _, posture := range []string{"default", "strict"} {
		r = caisson(t, "run", "--security", posture, "--pids", "30", "--", "sh", "-c", undo)
		if n := len(strings.Fields(r.stdout)); r.code == 0 || n >= 30 || strings.Contains(r.stderr, "raised /sys/fs/cgroup") {
			t.Errorf("%s posture, --pids 30 after trying to undo the view: exit %d, %d children started; stderr %q", posture, r.code, n, r.stderr)
		}
	}
}

// --memory: a command that needs more is killed by the kernel's OOM killer (exit 137); under the limit it runs.
func TestCgroupMemory(t *testing.T) {
	dir := requireCgroup(t, "memory")
	before := sandboxGroups(dir)
	// dd touches its whole 64 MiB buffer.
	dd := []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"}
	r := caisson(t, append([]string{"run", "--memory", "16m", "--"}, dd...)...)
	if r.code != 137 {
		t.Errorf("--memory 16m, 64 MiB buffer: want exit 137 (OOM kill), got %d %q", r.code, r.stderr)
	}
	r = caisson(t, append([]string{"run", "--memory", "256m", "--"}, dd...)...)
	if r.code != 0 {
		t.Errorf("--memory 256m, 64 MiB buffer: want exit 0, got %d %q", r.code, r.stderr)
	}
	if after := sandboxGroups(dir); !slices.Equal(after, before) {
		t.Errorf("groups left in %s: before %v, after %v", dir, before, after)
	}
}

// --cpus 0.2: a busy loop given one second of wall time gets about 0.2 s of CPU.
func TestCgroupCPUs(t *testing.T) {
	requireCgroup(t, "cpu")
	testenv.RequireCommand(t, "timeout")
	r := caisson(t, "run", "--cpus", "0.2", "--", "sh", "-c", `timeout 1 sh -c 'while :; do :; done'; times`)
	// times prints the shell's user and system time, then its children's: "0m0.190000s 0m0.000000s".
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	m := regexp.MustCompile(`^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$`).FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		t.Fatalf("times: %q (stderr %q)", r.stdout, r.stderr)
	}
	secs := func(min, sec string) float64 {
		a, _ := strconv.ParseFloat(min, 64)
		b, _ := strconv.ParseFloat(sec, 64)
		return a*60 + b
	}
	used := secs(m[1], m[2]) + secs(m[3], m[4])
	if used > 0.45 || used < 0.02 {
		t.Errorf("--cpus 0.2 for 1 s of a busy loop: %.2f s of CPU used, want about 0.2", used)
	}
	t.Logf("CPU used with --cpus 0.2 in 1 s: %.2f s", used)
}

// caisson killed with SIGKILL cannot remove its group; the sandbox dies with it and the next caisson that creates
// a group there removes the empty one.
func TestCgroupSweepAfterKill(t *testing.T) {
	dir := requireCgroup(t, "pids")
	before := sandboxGroups(dir)
	cmd := exec.Command(bin(t), "run", "--name", "cg-sweep", "--pids", "100", "--", "sh", "-c", "echo ready; exec sleep 300")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	readUntil(stdout, "ready")
	// inspect from outside reads the limit from the kernel.
	var rep struct {
		CgroupLimits map[string]string `json:"cgroup_limits"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "inspect", "--json", "cg-sweep")), &rep); err != nil || rep.CgroupLimits["pids.max"] != "100" {
		t.Errorf("inspect: cgroup_limits %v (%v), want pids.max=100", rep.CgroupLimits, err)
	}
	group := filepath.Join(dir, "caisson-"+strconv.Itoa(cmd.Process.Pid)+"-")
	var stale string
	for _, g := range sandboxGroups(dir) {
		if strings.HasPrefix(filepath.Join(dir, g), group) {
			stale = filepath.Join(dir, g)
		}
	}
	if stale == "" {
		t.Fatalf("no group for caisson %d in %s", cmd.Process.Pid, dir)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(stale, "sandbox", "cgroup.procs"))
		if len(strings.Fields(string(b))) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox outlived caisson killed with SIGKILL: %s holds %q", stale, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mustRun(t, "run", "--pids", "100", "--", "true")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale group %s was not removed by the next run: %v", stale, err)
	}
	if after := sandboxGroups(dir); !slices.Equal(after, before) {
		t.Errorf("groups left in %s: before %v, after %v", dir, before, after)
	}
}

// A group whose owning caisson is a zombie (killed with its sandbox, not reaped by a parent that never waits) is
// removed by the next caisson that creates a group beside it: its owner will never remove it.
func TestCgroupSweepZombieOwner(t *testing.T) {
	dir := requireCgroup(t, "pids")
	root := lifeEnv(t)
	z := zombieSandbox(t, root, "cg-zombie", "--pids", "100")
	var stale string
	for _, g := range sandboxGroups(dir) {
		if strings.HasPrefix(g, "caisson-"+strconv.Itoa(z.row.PID)+"-") {
			stale = filepath.Join(dir, g)
		}
	}
	if stale == "" {
		t.Fatalf("no group for caisson %d in %s", z.row.PID, dir)
	}
	mustRun(t, "run", "--pids", "100", "--", "true")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the group %s of a zombie caisson was not removed by the next run: %v", stale, err)
	}
}

// Limits that cannot be enforced are errors, never silent no-ops: inside a sandbox, /sys/fs/cgroup is read-only
// and offers no pids controller.
func TestCgroupUndelegated(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--pids", "64"}, "caisson: --pids: the pids controller"},
		{[]string{"--cgroup"}, "caisson: --cgroup: "},
	} {
		args := append([]string{"run", "--ro-bind", bin(t) + ":/tmp/caisson", "--", "/tmp/caisson", "run"}, tc.flags...)
		r := caisson(t, append(args, "--", "true")...)
		if r.code != 125 || !strings.HasPrefix(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("nested %v: want exit 125 and one line %q..., got %d %q", tc.flags, tc.want, r.code, r.stderr)
		}
	}
	r := caisson(t, "run", "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "run", "--cgroup", "--", "true")
	if !strings.Contains(r.stderr, "not delegated") || !strings.Contains(r.stderr, "Delegate=yes") {
		t.Errorf("nested --cgroup: want the reason and the systemd-run hint: %q", r.stderr)
	}
}
