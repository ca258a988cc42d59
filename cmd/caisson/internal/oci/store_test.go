package oci

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// A command that looks a container up must not create its lock file: in a directory that a failed create (or a
// delete) is removing, after RemoveAll unlinked the lock and before its rmdir, a new lock file would keep the
// directory for ever (the OCI fault sweep met this: a concurrent `state` during a failed create).
func TestLoadCreatesNothing(t *testing.T) {
	st := &store{root: t.TempDir()}
	h, err := st.reserve("c1")
	if err != nil {
		t.Fatal(err)
	}
	// The moment of the race: the directory is there, its lock file already unlinked.
	if err := os.Remove(filepath.Join(h.dir, lockFile)); err != nil {
		t.Fatal(err)
	}
	h.unlock()
	h2, err := st.load("c1")
	if !errors.Is(err, errNotExist) {
		t.Fatalf("load of a directory without a lock: %v, want %v", err, errNotExist)
	}
	if _, err := os.Lstat(filepath.Join(h.dir, lockFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("load created the lock file (%v)", err)
	}
	// delete --force's path: the half-made directory goes.
	if h2 == nil {
		t.Fatal("load returned no handle for the half-made directory")
	}
	if err := h2.remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(h.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory is still there: %v", err)
	}
	// A new create of the same ID works, and a lookup of a reserved container waits for its lock, then finds it.
	h3, err := st.reserve("c1")
	if err != nil {
		t.Fatal(err)
	}
	h3.unlock()
	h4, err := st.load("c1")
	if !errors.Is(err, errNotExist) || h4 == nil || h4.lock == nil {
		t.Fatalf("load of a reserved container without a record: %v, handle %+v", err, h4)
	}
	h4.unlock()
}
