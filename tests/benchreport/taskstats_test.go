package main

import (
	"sort"
	"testing"
)

// A run's processes are the root's tree, threads summed into their process and named by its leader, orphans adopted
// by this program included; other processes of the machine are not.
func TestDescendants(t *testing.T) {
	const self, root = 10, 100
	recs := []taskExit{
		{pid: 300, tgid: 300, ppid: 200, comm: "true", cpuNS: 1e6},         // grandchild, exits first
		{pid: 201, tgid: 200, ppid: 100, comm: "exe", cpuNS: 2e6},          // a thread of init, named before init renamed itself
		{pid: 200, tgid: 200, ppid: 100, comm: "caisson-init", cpuNS: 3e6}, // init
		{pid: 400, tgid: 400, ppid: self, comm: "pasta", cpuNS: 5e6},       // an orphan adopted by this program
		{pid: 500, tgid: 500, ppid: 1, comm: "other", cpuNS: 7e6},          // another process of the machine
		{pid: 101, tgid: 100, ppid: self, comm: "caisson", cpuNS: 4e6},     // a thread of the root
		{pid: 100, tgid: 100, ppid: self, comm: "caisson", cpuNS: 6e6},
	}
	got := descendants(recs, root, self)
	sort.Slice(got, func(i, j int) bool { return got[i].comm < got[j].comm })
	want := []procCPU{{"caisson", 10e6, 0, 0, 2}, {"caisson-init", 5e6, 0, 0, 2}, {"pasta", 5e6, 0, 0, 1}, {"true", 1e6, 0, 0, 1}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got %+v, want %+v", got[i], want[i])
		}
	}
}
