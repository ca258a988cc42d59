package parent

import "testing"

func TestParseProcStat(t *testing.T) {
	for line, want := range map[string]procStat{
		"42 (sh) S 1 42 40 34816 42 4194304 0": {42, 1, 42, 40},
		"7 (a) b) (c) R 6 5 4 0 -1":            {7, 6, 5, 4}, // the name ends at the last ')'
		"9 (x y) T 8 9 9 0 -1 0":               {9, 8, 9, 9},
	} {
		got, ok := parseProcStat(line)
		if !ok || got != want {
			t.Errorf("parseProcStat(%q) = %+v, %v; want %+v", line, got, ok, want)
		}
	}
	for _, bad := range []string{"", "42 sh S 1 2 3", "42 (sh) S 1", "x (sh) S 1 2 3", "42 (sh) S a 2 3"} {
		if got, ok := parseProcStat(bad); ok {
			t.Errorf("parseProcStat(%q) = %+v, want a failure", bad, got)
		}
	}
}

func TestOrphaned(t *testing.T) {
	// An interactive shell (pid 10, its own group, session 10) started caisson (20) in group 20: the shell, in
	// another group of the same session, can continue it.
	shell := []procStat{{1, 0, 1, 1}, {10, 1, 10, 10}, {20, 10, 20, 10}, {21, 20, 21, 10}}
	if orphaned(shell, 20, 10) {
		t.Errorf("a job of an interactive shell is not orphaned")
	}
	// `script -c 'caisson ...'`: sh -c (10) leads session 10 and its group; caisson (20) stays in that group; sh's
	// parent (script, 5) is in another session.
	script := []procStat{{5, 1, 5, 5}, {10, 5, 10, 10}, {20, 10, 10, 10}, {21, 20, 21, 10}}
	if !orphaned(script, 10, 10) {
		t.Errorf("the group of script's shell is orphaned")
	}
	// sh -c started as a job of an interactive shell (pid 3, group 3), with caisson in sh's group: sh's parent
	// keeps the group non-orphaned although caisson's own parent is in it.
	nested := []procStat{{3, 1, 3, 10}, {10, 3, 10, 10}, {20, 10, 10, 10}}
	if orphaned(nested, 10, 10) {
		t.Errorf("a group whose member's parent is in another group of the session is not orphaned")
	}
	// A parent that cannot be read counts as absent.
	if !orphaned([]procStat{{20, 999, 20, 10}}, 20, 10) {
		t.Errorf("a group with no known parent outside is orphaned")
	}
}
