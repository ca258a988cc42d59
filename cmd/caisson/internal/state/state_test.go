package state

import (
	"os"
	"testing"
	"time"
)

// A second Remove of an entry must not delete the directory a new sandbox of the same name created meanwhile.
func TestRemoveOnce(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	st, err := StartTime(os.Getpid())
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
