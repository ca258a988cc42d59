package cgroup

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"github.com/caisson-sandbox/caisson/tests/testenv"
	"github.com/moby/sys/mountinfo"
)

// A hybrid host (this project's CI machines): v1 hierarchies for the controllers, v2 with hugetlb only.
var hybridSelf = `9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
2:cpuacct:/
1:cpu,cpuacct:/user/x
0::/caissontest/caisson-leaf
`

var hybridMounts = []*mountinfo.Info{
	{FSType: "cgroup", Root: "/", Mountpoint: "/sys/fs/cgroup/systemd", VFSOptions: "rw,name=systemd"},
	{FSType: "cgroup", Root: "/", Mountpoint: "/sys/fs/cgroup/pids", VFSOptions: "rw,pids"},
	{FSType: "cgroup", Root: "/", Mountpoint: "/sys/fs/cgroup/memory", VFSOptions: "rw,memory"},
	{FSType: "cgroup", Root: "/", Mountpoint: "/sys/fs/cgroup/cpuacct", VFSOptions: "rw,cpuacct"},
	{FSType: "cgroup", Root: "/", Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", VFSOptions: "rw,cpu,cpuacct"},
	{FSType: "cgroup2", Root: "/", Mountpoint: "/sys/fs/cgroup/unified", VFSOptions: "rw"},
}

func TestParseHostHybrid(t *testing.T) {
	h := ParseHost([]byte(hybridSelf), hybridMounts)
	if h.V2 == nil || h.V2.Dir != "/sys/fs/cgroup/unified/caissontest/caisson-leaf" {
		t.Errorf("v2: %+v", h.V2)
	}
	want := []Place{
		{Dir: "/sys/fs/cgroup/pids", Controllers: []string{"pids"}},
		{Dir: "/sys/fs/cgroup/memory/process_api/abc", Controllers: []string{"memory"}},
		{Dir: "/sys/fs/cgroup/cpuacct", Controllers: []string{"cpuacct"}},
		{Dir: "/sys/fs/cgroup/cpu,cpuacct/user/x", Controllers: []string{"cpu", "cpuacct"}},
	}
	if !reflect.DeepEqual(h.V1, want) {
		t.Errorf("v1:\n got %+v\nwant %+v", h.V1, want)
	}
}

// A pure v2 host seen from inside a cgroup namespace whose root is a bind of a subtree.
func TestParseHostV2Subtree(t *testing.T) {
	mounts := []*mountinfo.Info{{FSType: "cgroup2", Root: "/user.slice/u.service", Mountpoint: "/sys/fs/cgroup"}}
	h := ParseHost([]byte("0::/user.slice/u.service/app.slice/x.scope\n"), mounts)
	if h.V2 == nil || h.V2.Dir != "/sys/fs/cgroup/app.slice/x.scope" || len(h.V1) != 0 {
		t.Errorf("got %+v %+v", h.V2, h.V1)
	}
	// A group outside the mount's root is not reachable through it.
	h = ParseHost([]byte("0::/system.slice\n"), mounts)
	if h.V2 != nil {
		t.Errorf("group outside the mount: %+v", h.V2)
	}
	// Garbage lines are ignored.
	h = ParseHost([]byte("junk\n1:x\n0::relative\n"), mounts)
	if h.V2 != nil || len(h.V1) != 0 {
		t.Errorf("garbage: %+v", h)
	}
}

func TestPlan(t *testing.T) {
	h := &Host{
		V2: &Place{Dir: "/cg/me", Controllers: []string{"memory", "hugetlb"}},
		V1: []Place{{Dir: "/v1/pids/me", Controllers: []string{"pids"}}, {Dir: "/v1/cpu/me", Controllers: []string{"cpu", "cpuacct"}}},
	}
	v2, v1, err := h.plan(Limits{Memory: 1 << 30, Pids: 10, CPUs: 1})
	if err != nil || !reflect.DeepEqual(v2, []string{"memory"}) || v1["pids"].Dir != "/v1/pids/me" || v1["cpu"].Dir != "/v1/cpu/me" {
		t.Errorf("plan: %v %v %v", v2, v1, err)
	}
	// v2 wins when both have the controller.
	h.V2.Controllers = append(h.V2.Controllers, "pids")
	if v2, v1, _ := h.plan(Limits{Pids: 10}); !reflect.DeepEqual(v2, []string{"pids"}) || len(v1) != 0 {
		t.Errorf("v2 first: %v %v", v2, v1)
	}
	// Nowhere: the error names the flag, the group and what it offers.
	h = &Host{V2: &Place{Dir: "/cg/me", Controllers: []string{"hugetlb"}}}
	_, _, err = h.plan(Limits{CPUs: 0.5})
	if err == nil || !strings.HasPrefix(err.Error(), "--cpus: the cpu controller is not available in your cgroup /cg/me (it offers: hugetlb)") {
		t.Errorf("missing controller: %v", err)
	}
	_, _, err = (&Host{}).plan(Limits{Memory: 1})
	if err == nil || !strings.Contains(err.Error(), "--memory: no cgroup hierarchy") {
		t.Errorf("no hierarchy: %v", err)
	}
}

func TestCheckUndelegated(t *testing.T) {
	dir := t.TempDir()
	h := &Host{V2: &Place{Dir: filepath.Join(dir, "missing"), Controllers: []string{"pids"}}}
	if err := h.Check(Limits{Pids: 5}, false); err == nil || !strings.HasPrefix(err.Error(), "--pids: ") || !strings.Contains(err.Error(), "not delegated") {
		t.Errorf("undelegated --pids: %v", err)
	}
	if err := h.Check(Limits{}, true); err == nil || !strings.HasPrefix(err.Error(), "--cgroup: ") {
		t.Errorf("undelegated --cgroup: %v", err)
	}
	if err := (&Host{}).Check(Limits{}, true); err == nil || !strings.Contains(err.Error(), "no cgroup v2") {
		t.Errorf("no v2: %v", err)
	}
	// Nothing asked: nothing to check.
	if err := (&Host{}).Check(Limits{}, false); err != nil {
		t.Errorf("no limits: %v", err)
	}
}

func TestCPUQuota(t *testing.T) {
	for cpus, want := range map[float64]int64{1: 100000, 1.5: 150000, 0.25: 25000, 0.001: 1000, 0.01: 1000, 8: 800000} {
		if got := CPUQuota(cpus); got != want {
			t.Errorf("CPUQuota(%v) = %d, want %d", cpus, got, want)
		}
	}
}

func TestGroupName(t *testing.T) {
	n := GroupName(123, 456789)
	if n != "caisson-123-456789" {
		t.Errorf("GroupName: %s", n)
	}
	if pid, st, ok := ownerOf(n); !ok || pid != 123 || st != 456789 {
		t.Errorf("ownerOf(%s) = %d %d %v", n, pid, st, ok)
	}
	for _, bad := range []string{"caisson-leaf", "caisson-1", "caisson-x-1", "caisson-0-1", "other-1-2", "caisson--1"} {
		if _, _, ok := ownerOf(bad); ok {
			t.Errorf("ownerOf(%q) accepted", bad)
		}
	}
}

// Sweep removes groups of dead owners and keeps those of live ones, the leaf and anything else. (Plain
// directories stand in for empty groups: rmdir behaves the same on both.)
func TestSweep(t *testing.T) {
	dir := t.TempDir()
	st, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	live := GroupName(os.Getpid(), st)
	reused := GroupName(os.Getpid(), st+1) // same pid, another start time: the owner is gone
	dead := GroupName(1<<22+1, 1)          // above pid_max's ceiling: never alive
	z := testenv.Zombie(t)                 // killed, not reaped: it will never remove its group
	zst, err := proc.StartTime(z)
	if err != nil {
		t.Fatal(err)
	}
	zombie := GroupName(z, zst)
	for _, n := range []string{live, reused, dead, zombie, LeafName, "user-group"} {
		if err := os.Mkdir(filepath.Join(dir, n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A dead owner's group with its child, as New makes them: both go.
	if err := os.Mkdir(filepath.Join(dir, dead, InnerName), 0o755); err != nil {
		t.Fatal(err)
	}
	Sweep(dir)
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	want := []string{live, LeafName, "user-group"}
	if strings.Join(left, " ") != strings.Join(sorted(want), " ") {
		t.Errorf("after Sweep: %v, want %v", left, sorted(want))
	}
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestLimitsAny(t *testing.T) {
	if (Limits{}).Any() || !(Limits{Pids: 1}).Any() || !(Limits{CPUs: 0.5}).Any() || !(Limits{Memory: 1}).Any() {
		t.Error("Any")
	}
}
