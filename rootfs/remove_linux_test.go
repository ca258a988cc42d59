package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openDirs opens p and its parent directory (O_PATH), as rm-tree's parent side does.
func openDirs(t *testing.T, p string) (parent, dir int) {
	t.Helper()
	parent, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	dir, err = unix.Openat(parent, filepath.Base(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(parent); unix.Close(dir) })
	return parent, dir
}

// makePersist makes dir look like a --persist directory.
func makePersist(t *testing.T, dir string) {
	t.Helper()
	for _, d := range []string{PersistUpper + "/%2F/etc", PersistWork + "/%2F"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, PersistLock), nil, 0o600)
	os.WriteFile(filepath.Join(dir, PersistMeta), []byte(`{"version": 1, "lower": "/"}`), 0o600)
	os.WriteFile(filepath.Join(dir, PersistUpper, "%2F/etc/issue"), []byte("x"), 0o644)
}

// holdLock takes dir's --persist lock as a running sandbox's init does, until the test ends.
func holdLock(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, PersistLock), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
}

func TestRemoveTree(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	os.MkdirAll(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "keep"), []byte("x"), 0o644)
	top := filepath.Join(base, "top")
	deep := top
	for i := 0; i < 40; i++ {
		deep = filepath.Join(deep, "d")
	}
	os.MkdirAll(deep, 0o755)
	os.WriteFile(filepath.Join(deep, "f"), []byte("x"), 0o644)
	os.Symlink(outside, filepath.Join(top, "link-to-outside"))
	os.Symlink(outside, filepath.Join(deep, "link"))
	os.MkdirAll(filepath.Join(top, "empty"), 0o755)
	busy := filepath.Join(top, "nested", "busy")
	makePersist(t, busy)
	holdLock(t, busy)
	idle := filepath.Join(top, "idle")
	makePersist(t, idle)

	parent, dir := openDirs(t, top)
	errs := RemoveTree(parent, dir, top)
	if len(errs) != 1 || !errors.Is(errs[0], ErrPersistInUse) || !strings.Contains(errs[0].Error(), busy) {
		t.Fatalf("want one error naming the --persist directory in use %s, got %v", busy, errs)
	}
	// The directory in use is kept whole, with the directories above it; everything else is gone.
	for _, p := range []string{filepath.Join(busy, PersistUpper, "%2F/etc/issue"), filepath.Join(busy, PersistLock)} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s must be kept: %v", p, err)
		}
	}
	for _, p := range []string{filepath.Join(top, "d"), filepath.Join(top, "link-to-outside"), filepath.Join(top, "empty"), idle} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s must be gone", p)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Fatalf("a symlink was followed out of the tree: %v", err)
	}
	// Once the sandbox is gone, the rest goes.
	if err := os.Remove(filepath.Join(busy, PersistLock)); err != nil {
		t.Fatal(err)
	}
	if errs := RemoveTree(parent, dir, top); errs != nil {
		t.Fatalf("second removal: %v", errs)
	}
	if _, err := os.Lstat(top); err == nil {
		t.Errorf("%s must be gone", top)
	}
}

// The directory is removed by its name only while the name still is the directory that was opened.
func TestRemoveTreeReplaced(t *testing.T) {
	base := t.TempDir()
	top := filepath.Join(base, "top")
	os.MkdirAll(filepath.Join(top, "sub"), 0o755)
	parent, dir := openDirs(t, top)
	os.Rename(top, filepath.Join(base, "moved"))
	os.MkdirAll(filepath.Join(top, "other"), 0o755)
	errs := RemoveTree(parent, dir, top)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "moved or replaced") {
		t.Errorf("want a moved-or-replaced error, got %v", errs)
	}
	for _, p := range []string{filepath.Join(top, "other"), filepath.Join(base, "moved", "sub")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s must be untouched: %v", p, err)
		}
	}
}

func TestLockPersist(t *testing.T) {
	plain := t.TempDir()
	os.WriteFile(filepath.Join(plain, PersistLock), nil, 0o600) // a lone file named lock: not a --persist directory
	fd, err := unix.Open(plain, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if l, err := LockPersist(fd); l != -1 || err != nil {
		t.Errorf("a plain directory: %d %v, want -1 and no error", l, err)
	}
	pdir := t.TempDir()
	makePersist(t, pdir)
	pfd, err := unix.Open(pdir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	l, err := LockPersist(pfd)
	if l < 0 || err != nil {
		t.Fatalf("a free --persist directory: %d %v", l, err)
	}
	if l2, err := LockPersist(pfd); l2 != -1 || !errors.Is(err, ErrPersistInUse) {
		t.Errorf("a held lock: %d %v, want ErrPersistInUse", l2, err)
	}
	// The lock a sandbox takes is the same one.
	b := &builder{spec: Spec{Persist: pdir}, persist: -1}
	if err := b.openPersist(); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a sandbox must be refused while rm-tree holds the lock: %v", err)
	}
	unix.Close(l)
	if l3, err := LockPersist(pfd); l3 < 0 || err != nil {
		t.Errorf("after release: %d %v", l3, err)
	} else {
		unix.Close(l3)
	}
}

// removeAt names the entry it could not remove and the real cause (it used to report the directory's unlink
// error, "is a directory", when the directory could not be opened).
func TestRemoveAtNamesEntry(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("skipping: root can open a mode-000 directory")
	}
	base := t.TempDir()
	os.MkdirAll(filepath.Join(base, "d", "locked", "x"), 0o755)
	os.Chmod(filepath.Join(base, "d", "locked"), 0)
	defer os.Chmod(filepath.Join(base, "d", "locked"), 0o755)
	fd, err := unix.Open(base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = removeAt(fd, "d")
	if !errors.Is(err, unix.EACCES) || !strings.Contains(err.Error(), "d/locked") {
		t.Errorf("want permission denied naming d/locked, got %v", err)
	}
}

func TestShellQuoteAndHint(t *testing.T) {
	for in, want := range map[string]string{
		"/home/u/p1": "/home/u/p1", "/tmp/keep me": "'/tmp/keep me'", "/a'b": `'/a'\''b'`, "": "''", "/x$y": "'/x$y'",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if h := PersistHint("/p", unix.EACCES); !strings.Contains(h, "caisson rm-tree /p") {
		t.Errorf("hint for EACCES: %q", h)
	}
	if h := PersistHint("/p", unix.ENOSPC); h != "" {
		t.Errorf("no hint for ENOSPC: %q", h)
	}
}
