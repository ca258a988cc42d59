package relay

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNeedsRelay(t *testing.T) {
	for _, c := range []struct {
		mode uint32
		want bool
	}{
		{unix.S_IFREG | 0o644, true}, {unix.S_IFDIR | 0o755, true}, {unix.S_IFBLK | 0o660, true},
		{unix.S_IFLNK | 0o777, true}, // an O_PATH|O_NOFOLLOW descriptor of a symlink
		{unix.S_IFCHR | 0o620, false}, {unix.S_IFIFO | 0o600, false}, {unix.S_IFSOCK | 0o777, false},
	} {
		if got := NeedsRelay(c.mode); got != c.want {
			t.Errorf("NeedsRelay(%#o) = %v, want %v", c.mode, got, c.want)
		}
	}
}

func TestIsInput(t *testing.T) {
	for _, c := range []struct {
		fd, flags int
		want      bool
	}{
		{0, unix.O_RDONLY, true}, {1, unix.O_RDONLY, true}, {2, unix.O_RDONLY, true},
		{0, unix.O_WRONLY, false}, {1, unix.O_WRONLY | unix.O_APPEND, false},
		{0, unix.O_RDWR, true}, {1, unix.O_RDWR, false}, {2, unix.O_RDWR, false},
		{0, unix.O_PATH, true}, {1, unix.O_PATH, true},
	} {
		if got := IsInput(c.fd, c.flags); got != c.want {
			t.Errorf("IsInput(%d, %#x) = %v, want %v", c.fd, c.flags, got, c.want)
		}
	}
}

// open opens path with flags and closes it when the test ends.
func open(t *testing.T, path string, flags int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// pipeFile returns a pipe's write end standing for a terminal-like descriptor that passes unchanged, and closes
// both ends when the test ends.
func pipeFile(t *testing.T) *os.File {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return w
}

// runWith runs argv with s's files as its standard descriptors and finishes s once it exited.
func runWith(t *testing.T, s *Stdio, argv ...string) error {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	files := s.Files()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Started()
	err := cmd.Wait()
	if ferr := s.Finish(); ferr != nil {
		t.Fatalf("Finish: %v", ferr)
	}
	return err
}

func randomFile(t *testing.T, n int) (string, []byte) {
	t.Helper()
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// Without relaying (the default posture) the caller's files are passed on as they are.
func TestPassThrough(t *testing.T) {
	in := open(t, filepath.Join(t.TempDir(), "f"), os.O_RDWR|os.O_CREATE)
	std := [3]*os.File{in, in, in}
	s, err := New(std, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range s.Files() {
		if f != std[i] {
			t.Errorf("file %d replaced without relaying", i)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
}

// A file in, a file out (> and >>), a pipe passing unchanged: the command reads the data and its output lands in
// the file through the caller's description, whose offset moves on as the file's own would.
func TestRelayCopies(t *testing.T) {
	src, data := randomFile(t, 3<<20+17)
	dir := t.TempDir()
	for _, c := range []struct {
		name   string
		flags  int
		before []byte
	}{
		{"truncate", os.O_WRONLY | os.O_CREATE | os.O_TRUNC, nil},
		{"append", os.O_WRONLY | os.O_CREATE | os.O_APPEND, []byte("earlier\n")},
		{"read-write", os.O_RDWR | os.O_CREATE, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dst := filepath.Join(dir, c.name)
			if c.before != nil {
				if err := os.WriteFile(dst, c.before, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			out := open(t, dst, c.flags)
			errPipe := pipeFile(t)
			s, err := New([3]*os.File{open(t, src, os.O_RDONLY), out, errPipe}, true)
			if err != nil {
				t.Fatal(err)
			}
			files := s.Files()
			if files[2] != errPipe {
				t.Error("a pipe on stderr was replaced")
			}
			if files[0] == nil || files[1] == out {
				t.Fatal("the files were not replaced")
			}
			if err := runWith(t, s, "cat"); err != nil {
				t.Fatal(err)
			}
			// The caller's description moved on: what it writes next follows the command's output.
			if _, err := out.Write([]byte("next\n")); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			want := append(append(append([]byte{}, c.before...), data...), "next\n"...)
			if !bytes.Equal(got, want) {
				t.Fatalf("%d bytes in the file, want %d", len(got), len(want))
			}
		})
	}
}

// stdout and stderr on one description (> f 2>&1) share one pipe, so their lines keep the command's order.
func TestRelaySharedOutput(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "out")
	out := open(t, dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	s, err := New([3]*os.File{pipeFile(t), out, out}, true)
	if err != nil {
		t.Fatal(err)
	}
	if f := s.Files(); f[1] != f[2] || f[1] == out {
		t.Fatal("stdout and stderr of one description did not get one pipe")
	}
	if err := runWith(t, s, "sh", "-c", "for i in 1 2 3 4 5 6 7 8; do echo o$i; echo e$i >&2; done"); err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for i := 1; i <= 8; i++ {
		want.WriteString("o" + string(rune('0'+i)) + "\ne" + string(rune('0'+i)) + "\n")
	}
	if got, _ := os.ReadFile(dst); string(got) != want.String() {
		t.Fatalf("got %q, want %q", got, want.String())
	}
	if !SameFile(int(out.Fd()), int(out.Fd())) {
		t.Error("SameFile of a descriptor with itself is false")
	}
}

// A command that reads 10 bytes and exits, and one that reads nothing: Finish returns at once, and the caller's
// offset is just past what the command read.
func TestRelayEarlyExit(t *testing.T) {
	src, _ := randomFile(t, 8<<20)
	for _, c := range []struct {
		argv []string
		off  int64
	}{
		{[]string{"head", "-c", "10"}, 10},
		{[]string{"true"}, 0},
	} {
		in := open(t, src, os.O_RDONLY)
		s, err := New([3]*os.File{in, pipeFile(t), pipeFile(t)}, true)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := runWith(t, s, c.argv...); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("%v: the relay held on for %v", c.argv, d)
		}
		if off, err := in.Seek(0, 1); err != nil || off != c.off {
			t.Errorf("%v: offset %d (%v), want %d", c.argv, off, err, c.off)
		}
	}
}

// A directory as stdin reads as an empty pipe.
func TestRelayDirectory(t *testing.T) {
	dir := open(t, t.TempDir(), os.O_RDONLY)
	dst := filepath.Join(t.TempDir(), "out")
	s, err := New([3]*os.File{dir, open(t, dst, os.O_WRONLY|os.O_CREATE), pipeFile(t)}, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := runWith(t, s, "sh", "-c", "cat; echo rc=$?"); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "rc=0\n" {
		t.Fatalf("got %q", got)
	}
}

// A write to the caller's file that fails is returned by Finish, and the command's further output is refused
// (EPIPE) rather than left to fill the pipe.
func TestRelayWriteError(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(full.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	c, child, err := newCopier(int(full.Fd()), "stdout", false, unix.O_WRONLY, st)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stdio{copiers: []*copier{c}, child: []*os.File{child}}
	go c.run()
	cmd := exec.Command("sh", "-c", "trap '' PIPE; i=0; while [ $i -lt 200 ]; do head -c 4096 /dev/zero || exit 3; i=$((i+1)); done")
	cmd.Stdout = child
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.Started()
	werr := cmd.Wait()
	ferr := s.Finish()
	if ferr == nil || !strings.Contains(ferr.Error(), "no space left on device") {
		t.Fatalf("Finish = %v, want the ENOSPC of /dev/full", ferr)
	}
	if ee, ok := werr.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("the writer ended with %v, want exit 3 (its write refused)", werr)
	}
}
