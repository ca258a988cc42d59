package idmap

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrNotProcfs is wrapped when a /proc path that WriteDirect opened is not
// on procfs (catalogue F17, CVE-2025-52881).
var ErrNotProcfs = errors.New("not on procfs")

// WriteDirect writes the maps of process pid itself, with no helper. Use it
// for --map single and when caisson runs as host root. In order it writes:
//
//  1. /proc/PID/setgroups = "deny", only when denySetgroups is true. An
//     unprivileged gid_map write requires this. A kernel without the file
//     (before 3.19) is tolerated.
//  2. /proc/PID/uid_map = Format(uidMaps), in one write.
//  3. /proc/PID/gid_map = Format(gidMaps), in one write.
//
// An empty map slice leaves that file alone. Both maps are validated before
// anything is written. To stop a swapped /proc from redirecting the writes
// (runc CVE-2025-52881), /proc/PID is opened as a directory fd and fstatfs
// must show PROC_SUPER_MAGIC. Each file is opened with openat(dirfd, name,
// O_WRONLY|O_NOFOLLOW|O_CLOEXEC) and checked the same way. Errors wrap an
// *fs.PathError carrying the errno.
func WriteDirect(pid int, uidMaps, gidMaps []Mapping, denySetgroups bool) error {
	if pid <= 0 {
		return fmt.Errorf("idmap: invalid pid %d", pid)
	}
	for _, m := range [][]Mapping{uidMaps, gidMaps} {
		if len(m) == 0 {
			continue
		}
		if err := Validate(m); err != nil {
			return err
		}
	}
	dir := "/proc/" + strconv.Itoa(pid)
	dfd, err := openProcDir(dir)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)

	if denySetgroups {
		err := writeProcFile(dfd, dir, "setgroups", "deny")
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	if len(uidMaps) > 0 {
		if err := writeProcFile(dfd, dir, "uid_map", Format(uidMaps)); err != nil {
			return err
		}
	}
	if len(gidMaps) > 0 {
		if err := writeProcFile(dfd, dir, "gid_map", Format(gidMaps)); err != nil {
			return err
		}
	}
	return nil
}

func openProcDir(dir string) (int, error) {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("idmap: %w", &fs.PathError{Op: "open", Path: dir, Err: err})
	}
	if err := checkProcfs(dfd, dir); err != nil {
		unix.Close(dfd)
		return -1, err
	}
	return dfd, nil
}

// checkProcfs returns an error unless fd is on a procfs mount.
func checkProcfs(fd int, path string) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("idmap: %w", &fs.PathError{Op: "fstatfs", Path: path, Err: err})
	}
	if st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("idmap: %s: filesystem type %#x: %w", path, st.Type, ErrNotProcfs)
	}
	return nil
}

func writeProcFile(dfd int, dir, name, data string) error {
	path := dir + "/" + name
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("idmap: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unix.Close(fd)
	if err := checkProcfs(fd, path); err != nil {
		return err
	}
	var n int
	for {
		n, err = unix.Write(fd, []byte(data))
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("idmap: write %q: %w", data, &fs.PathError{Op: "write", Path: path, Err: err})
	}
	if n != len(data) {
		return fmt.Errorf("idmap: write %q: %w", data, &fs.PathError{Op: "write", Path: path, Err: fmt.Errorf("short write (%d of %d bytes)", n, len(data))})
	}
	return nil
}
