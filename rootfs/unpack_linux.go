package rootfs

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Unpacker applies image layers (tar streams with OCI whiteouts) to a directory. Every path is resolved inside
// the directory with openat2(RESOLVE_IN_ROOT), so symlinks in the tree (absolute or with "..") are followed the
// way the image means them, inside the root, and never lead out of it; the last component is never followed.
type Unpacker struct {
	root int
	// Chown sets each entry's owner from the archive (run as root of a user namespace with the caller's subordinate
	// range, ids land in that range); ids the namespace does not map are left as they are and counted.
	Chown bool
	// Skipped counts device nodes and other entries left out; Unmapped counts entries whose owner was kept.
	Skipped, Unmapped int
	created           map[string]bool // paths written by the current layer (an opaque whiteout spares them)
	dirs              []dirTime
}

type dirTime struct {
	path  string
	mtime time.Time
}

// NewUnpacker opens dir (an existing directory) as the root of the extraction.
func NewUnpacker(dir string) (*Unpacker, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("rootfs: open %s: %w", dir, err)
	}
	return &Unpacker{root: fd}, nil
}

// Close releases the root.
func (u *Unpacker) Close() error { return unix.Close(u.root) }

// inRoot opens p (relative to the root) with flags, resolved inside the root.
func (u *Unpacker) inRoot(p string, flags int) (int, error) {
	if p == "" {
		p = "."
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for {
		fd, err := unix.Openat2(u.root, p, &how)
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return fd, err
		}
	}
}

// mkdirAll makes sure directory p exists inside the root and returns an O_PATH fd of it.
func (u *Unpacker) mkdirAll(p string) (int, error) {
	fd, err := u.inRoot(p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) || p == "" {
		return fd, err
	}
	parent, name := path.Split(p)
	pfd, err := u.mkdirAll(strings.TrimSuffix(parent, "/"))
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	if err := unix.Mkdirat(pfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	return u.inRoot(p, unix.O_PATH|unix.O_DIRECTORY)
}

// ApplyLayer applies one uncompressed layer.
func (u *Unpacker) ApplyLayer(r io.Reader) error {
	u.created = map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read layer: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

// entry applies one tar entry.
func (u *Unpacker) entry(hdr *tar.Header, r io.Reader) error {
	p, err := EntryPath(hdr.Name)
	if err != nil {
		return err
	}
	if target, opaque := Whiteout(p); opaque {
		return u.opaque(target)
	} else if target != "" {
		dir, name := path.Split(target)
		dfd, err := u.inRoot(strings.TrimSuffix(dir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			return nil
		} else if err != nil {
			return err
		}
		defer unix.Close(dfd)
		return removeAt(dfd, name)
	}
	if p == "" {
		return u.attrs(u.root, ".", hdr, -1)
	}
	switch hdr.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		u.Skipped++
		return nil
	case tar.TypeDir, tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		u.Skipped++
		return nil
	}
	u.created[p] = true
	dir, name := path.Split(p)
	dfd, err := u.mkdirAll(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	// Replace what is there, except a directory by a directory (its contents stay).
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		if !(hdr.Typeflag == tar.TypeDir && st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			if err := removeAt(dfd, name); err != nil {
				return err
			}
		}
	}
	fd := -1
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(dfd, name, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
		u.dirs = append(u.dirs, dirTime{p, hdr.ModTime})
	case tar.TypeReg:
		fd, err = unix.Openat(dfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), name)
		defer f.Close()
		if _, err := io.Copy(f, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		return u.owner(dfd, name, hdr, unix.Symlinkat(hdr.Linkname, dfd, name))
	case tar.TypeLink:
		lp, err := EntryPath(hdr.Linkname)
		if err != nil || lp == "" {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, ErrEscape)
		}
		ldir, lname := path.Split(lp)
		lfd, err := u.inRoot(strings.TrimSuffix(ldir, "/"), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link to %s: %w", hdr.Linkname, err)
		}
		defer unix.Close(lfd)
		return unix.Linkat(lfd, lname, dfd, name, 0)
	case tar.TypeFifo:
		if err := unix.Mkfifoat(dfd, name, 0o600); err != nil {
			return err
		}
	}
	return u.attrs(dfd, name, hdr, fd)
}

// owner sets a symlink's owner after creating it (err is the creation's result).
func (u *Unpacker) owner(dfd int, name string, hdr *tar.Header, err error) error {
	if err != nil {
		return err
	}
	return u.chown(dfd, name, hdr, unix.AT_SYMLINK_NOFOLLOW)
}

func (u *Unpacker) chown(dfd int, name string, hdr *tar.Header, flags int) error {
	if !u.Chown {
		return nil
	}
	err := unix.Fchownat(dfd, name, hdr.Uid, hdr.Gid, flags)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
		u.Unmapped++
		return nil
	}
	return err
}

// attrs sets owner, mode (with setuid bits, after the chown that would clear them), user xattrs and mtime of the
// entry name in dfd; fd is its open descriptor when there is one.
func (u *Unpacker) attrs(dfd int, name string, hdr *tar.Header, fd int) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "." {
		flags = 0
	}
	if err := u.chown(dfd, name, hdr, flags); err != nil {
		return err
	}
	mode := uint32(hdr.Mode & 0o7777)
	var err error
	if fd >= 0 {
		err = unix.Fchmod(fd, mode)
	} else {
		err = unix.Fchmodat(dfd, name, mode, 0) // a directory or fifo this unpacker just made, never a symlink
	}
	if err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		if x, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && fd >= 0 &&
			(strings.HasPrefix(x, "user.") || x == "security.capability") {
			_ = unix.Fsetxattr(fd, x, []byte(v), 0) // best effort: the file system may not take it
		}
	}
	if hdr.Typeflag == tar.TypeDir || name == "." {
		return nil // set at the end, once nothing more is written into it
	}
	ts := []unix.Timespec{unix.NsecToTimespec(hdr.ModTime.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	_ = unix.UtimesNanoAt(dfd, name, ts, unix.AT_SYMLINK_NOFOLLOW)
	return nil
}

// opaque removes from directory dir everything the current layer did not write itself.
func (u *Unpacker) opaque(dir string) error {
	dfd, err := u.inRoot(dir, unix.O_RDONLY|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		return nil
	} else if err != nil {
		return err
	}
	defer unix.Close(dfd)
	names, err := readDirNames(dfd)
	if err != nil {
		return err
	}
	for _, n := range names {
		if u.created[path.Join(dir, n)] {
			continue
		}
		if err := removeAt(dfd, n); err != nil {
			return err
		}
	}
	return nil
}

// Finish sets the directories' modification times, deepest first.
func (u *Unpacker) Finish() error {
	for i := len(u.dirs) - 1; i >= 0; i-- {
		d := u.dirs[i]
		fd, err := u.inRoot(d.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if err != nil {
			continue // replaced or removed by a later layer
		}
		ts := []unix.Timespec{unix.NsecToTimespec(d.mtime.UnixNano()), unix.NsecToTimespec(d.mtime.UnixNano())}
		_ = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
		unix.Close(fd)
	}
	return nil
}

// Clear removes everything in the root (after a failed extraction).
func (u *Unpacker) Clear() error {
	fd, err := u.inRoot("", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return removeChildren(fd)
}
