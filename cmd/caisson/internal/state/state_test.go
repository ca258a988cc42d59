package state

import (
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"github.com/caisson-sandbox/caisson/tests/testenv"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A second Remove of an entry must not delete the directory a new sandbox of the same name created meanwhile.
func TestRemoveOnce(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	st, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	rec := Record{Name: "twice", PID: os.Getpid(), StartTime: st, Created: time.Now()}
	old, err := Create(rec)
	if err != nil {
		t.Fatal(err)
	}
	old.Remove()
	if _, err := os.Stat(old.Dir); !os.IsNotExist(err) {
		t.Fatalf("Remove left %s: %v", old.Dir, err)
	}
	fresh, err := Create(rec)
	if err != nil {
		t.Fatal(err)
	}
	old.Remove()
	if _, err := os.Stat(fresh.Dir); err != nil {
		t.Errorf("the old entry's second Remove deleted the new sandbox's state: %v", err)
	}
	fresh.Remove()
}

// Sweep removes the directories of dead supervisors and old directories without a record, and keeps the live ones
// and those being created.
func TestSweep(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	st, err := proc.StartTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	live, err := Create(Record{Name: "live", PID: os.Getpid(), StartTime: st, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// A supervisor that is gone: this process's pid with another start time (as after a pid reuse), and a pid
	// that no longer exists.
	reused, err := Create(Record{Name: "reused", PID: os.Getpid(), StartTime: st + 1, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := Create(Record{Name: "gone", PID: 1 << 30, StartTime: 1, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// A supervisor killed and not reaped yet (its parent does not wait): a zombie is dead.
	z := testenv.Zombie(t)
	zst, err := proc.StartTime(z)
	if err != nil {
		t.Fatal(err)
	}
	zombie, err := Create(Record{Name: "zombie", PID: z, StartTime: zst, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	// Their supervisors are gone: the kernel released their locks.
	for _, e := range []*Entry{reused, gone, zombie} {
		e.lock.Close()
		e.lock = nil
	}
	root := filepath.Dir(live.Dir)
	creating, old := filepath.Join(root, "creating"), filepath.Join(root, "old")
	for _, d := range []string{creating, old} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	past := time.Now().Add(-time.Minute)
	if err := os.Chtimes(old, past, past); err != nil {
		t.Fatal(err)
	}
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{live.Dir: true, creating: true, reused.Dir: false, gone.Dir: false, zombie.Dir: false, old: false} {
		_, err := os.Stat(dir)
		if got := err == nil; got != want {
			t.Errorf("%s: exists %v after Sweep, want %v", filepath.Base(dir), got, want)
		}
	}
	live.Remove()
}

// A directory whose lock is held is live for Sweep, which does not read its record (here one naming a process that
// does not exist); once the lock is released, as when its caisson dies, the record decides and it goes. List reads
// the records whatever the locks.
func TestSweepTrustsLocks(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	e, err := Create(Record{Name: "locked", PID: 1 << 30, StartTime: 1, Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if e.lock == nil {
		t.Fatal("the entry's directory is not locked")
	}
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Dir); err != nil {
		t.Fatalf("Sweep removed a locked directory: %v", err)
	}
	e.lock.Close()
	e.lock = nil
	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Dir); !os.IsNotExist(err) {
		t.Errorf("Sweep kept an unlocked directory of a dead caisson: %v", err)
	}
}
