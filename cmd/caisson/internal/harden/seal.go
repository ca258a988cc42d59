package harden

import (
	"fmt"
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// initPath caches InitPath's answer: the sealed copy is made once per process.
var initPath = sync.OnceValue(func() string {
	p, err := initExecutable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "caisson: warning: %v; the sandbox's init runs from the binary itself\n", err)
		return "/proc/self/exe"
	}
	return p
})

// binaryWritable caches BinaryWritable's answer.
var binaryWritable = sync.OnceValue(func() bool {
	need, err := NeedsSeal("/proc/self/exe")
	return need || err != nil
})

// BinaryWritable reports whether the caller could write caisson's binary (or it cannot tell): then init must not
// run from the binary as it is (CVE-2019-5736 class): the command, root of the sandbox, is the caller, and could
// write it through /proc/1/exe. The parent then executes init from a read-only bind of the binary made in init's
// new mount namespace (spawn.Attr.ReadOnlyExec: nothing is copied), or where that is refused, from InitPath's
// sealed copy.
func BinaryWritable() bool { return binaryWritable() }

// ExecutablePath returns the path of caisson's binary as this process's mount namespace names it, when that path
// still names the very file this process runs (not a newer build written there since, nor a deleted file).
func ExecutablePath() (string, bool) {
	p, err := os.Readlink("/proc/self/exe")
	if err != nil || len(p) == 0 || p[0] != '/' {
		return "", false
	}
	var self, there unix.Stat_t
	if unix.Stat("/proc/self/exe", &self) != nil || unix.Stat(p, &there) != nil {
		return "", false
	}
	return p, self.Dev == there.Dev && self.Ino == there.Ino
}

// InitPath returns the path the parent executes as the sandbox's init when it cannot use a read-only bind of the
// binary (see BinaryWritable).
//
// The command must not be able to modify caisson's binary through /proc/1/exe (CVE-2019-5736 class). When the
// caller cannot write the binary (a root-owned /usr/local/bin/caisson: the sandbox's root is the caller, so it
// cannot either), init runs from it directly. When the caller can (a caisson in ~/bin), init runs from a sealed
// copy: a memfd holding the binary with F_SEAL_WRITE, F_SEAL_GROW, F_SEAL_SHRINK and F_SEAL_SEAL, which nothing
// can change, kept open (close-on-exec) for the parent's lifetime and executed as /proc/self/fd/N. Init is also
// non-dumpable (harden.Apply), which keeps a command without CAP_SYS_PTRACE away from /proc/1/exe entirely.
func InitPath() string { return initPath() }

// NeedsSeal reports whether the caller could write the file at path (its owner, or write access).
func NeedsSeal(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Uid == uint32(os.Geteuid()) || unix.Access(path, unix.W_OK) == nil, nil
}

// initExecutable returns /proc/self/exe, or the /proc/self/fd path of a sealed copy when the caller could write the
// binary.
func initExecutable() (string, error) {
	need, err := NeedsSeal("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("check the caisson binary: %w", err)
	}
	if !need {
		return "/proc/self/exe", nil
	}
	fd, err := SealedCopy("/proc/self/exe")
	if err != nil {
		return "", err
	}
	return "/proc/self/fd/" + strconv.Itoa(fd), nil
}

// SealedCopy copies the file at path into a new sealed, close-on-exec memfd and returns its fd.
func SealedCopy(path string) (int, error) {
	src, err := os.Open(path)
	if err != nil {
		return -1, fmt.Errorf("seal the caisson binary: %w", err)
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return -1, fmt.Errorf("seal the caisson binary: %w", err)
	}
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate("caisson", flags|unix.MFD_EXEC)
	if err == unix.EINVAL { // before Linux 6.3: no MFD_EXEC, and memfds are executable
		fd, err = unix.MemfdCreate("caisson", flags)
	}
	if err != nil {
		return -1, fmt.Errorf("seal the caisson binary: memfd_create: %w", err)
	}
	for off, size := int64(0), st.Size(); off < size; {
		n, err := unix.Sendfile(fd, int(src.Fd()), nil, int(size-off))
		if err != nil || n == 0 {
			unix.Close(fd)
			return -1, fmt.Errorf("seal the caisson binary: copy: %v (%d of %d bytes)", err, off, size)
		}
		off += int64(n)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("seal the caisson binary: F_ADD_SEALS: %w", err)
	}
	return fd, nil
}
