package rootfs

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// openBeneath opens name below dirfd without following any symlink and without leaving dirfd (openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS). Files it creates get mode 0600; it is close-on-exec.
func openBeneath(dirfd int, name string, flags int) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&unix.O_CREAT != 0 {
		how.Mode = 0o600
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		if !errors.Is(err, unix.EINTR) && !errors.Is(err, unix.EAGAIN) {
			return fd, err
		}
	}
}

// readBeneath reads the regular file name below dirfd (at most 1 MiB).
func readBeneath(dirfd int, name string) ([]byte, error) {
	fd, err := openBeneath(dirfd, name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 1<<20))
}

// writeBeneath replaces the file name below dirfd atomically (a temporary file renamed over it).
func writeBeneath(dirfd int, name string, data []byte) error {
	tmp := name + ".tmp"
	_ = unix.Unlinkat(dirfd, tmp, 0)
	fd, err := openBeneath(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return unix.Renameat(dirfd, tmp, dirfd, name)
}

// removeAt removes name in dirfd and, when it is a directory, everything below it, never following a symlink. It
// stops at the first entry it cannot remove.
func removeAt(dirfd int, name string) error {
	return (&remover{}).removeAt(dirfd, name, name)
}

// removeChildren empties the directory open at dirfd (an fd opened for reading), stopping at the first entry it
// cannot remove.
func removeChildren(dirfd int) error {
	return (&remover{}).removeChildren(dirfd, "")
}

// readDirNames lists the entries of the directory dirfd (without "." and "..").
func readDirNames(dirfd int) ([]string, error) {
	dup, err := openBeneath(dirfd, ".", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dup), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}
