package harden

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSealedCopy(t *testing.T) {
	exe, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := SealedCopy("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	got, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !bytes.Equal(got, exe) {
		t.Fatalf("copy differs from the binary (%d vs %d bytes): %v", len(got), len(exe), err)
	}
	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	want := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if err != nil || seals&want != want {
		t.Fatalf("seals %#x, want %#x: %v", seals, want, err)
	}
	if _, err := unix.Pwrite(fd, []byte("x"), 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("write to the sealed copy: want EPERM, got %v", err)
	}
	// Reopening through /proc for writing gives a new file description; the seals still hold.
	f, err := os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_WRONLY, 0)
	if err == nil {
		_, err = f.Write([]byte("x"))
		f.Close()
	}
	if err == nil {
		t.Errorf("writing the sealed copy through /proc/self/fd succeeded")
	}
	if err := unix.Ftruncate(fd, 0); !errors.Is(err, unix.EPERM) {
		t.Errorf("truncate the sealed copy: want EPERM, got %v", err)
	}
}

func TestNeedsSeal(t *testing.T) {
	f := t.TempDir() + "/bin"
	if err := os.WriteFile(f, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if need, err := NeedsSeal(f); err != nil || !need {
		t.Errorf("own file: NeedsSeal = %v, %v; want true", need, err)
	}
	if os.Geteuid() != 0 {
		// A root-owned binary that the caller cannot write.
		if need, err := NeedsSeal("/bin/sh"); err != nil || need {
			t.Errorf("/bin/sh: NeedsSeal = %v, %v; want false", need, err)
		}
	}
	if _, err := NeedsSeal(f + ".missing"); err == nil {
		t.Errorf("missing file: want an error")
	}
}

// BenchmarkSealedCopy measures what sealing adds to a sandbox's start-up (the test binary stands in for caisson's).
func BenchmarkSealedCopy(b *testing.B) {
	st, _ := os.Stat("/proc/self/exe")
	b.SetBytes(st.Size())
	for b.Loop() {
		fd, err := SealedCopy("/proc/self/exe")
		if err != nil {
			b.Fatal(err)
		}
		unix.Close(fd)
	}
}
