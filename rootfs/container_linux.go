package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// Container builds an OCI container's root file system in place, on the bundle's root directory, step by step in
// the order config.json gives them: the same primitives as Setup (new file systems with fsopen, binds with
// open_tree, mount points resolved inside the root with openat2(RESOLVE_IN_ROOT), pivot_root), called by the OCI
// runtime's init (package ociinit) instead of caisson run's fixed layout.
//
// Preconditions: the calling process is alone in a mount namespace of its own and holds CAP_SYS_ADMIN over it.
type Container struct {
	b *builder
	// pivoted is set once the root is the process's root: paths then resolve inside it from "/".
	pivoted bool
}

// OpenContainer prepares root (a host directory, absolute) to become the root: the propagation of "/" is set to
// prop (MS_SLAVE|MS_REC when 0, so that nothing the container mounts reaches the host while the host's new mounts
// still reach it), and root is bind-mounted onto itself (recursively) so that it is a mount point pivot_root
// accepts, and an anchor for every resolution inside it.
func OpenContainer(root string, prop uintptr) (*Container, error) {
	if prop == 0 {
		prop = unix.MS_SLAVE | unix.MS_REC
	}
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return nil, &MountError{Op: "set propagation", Target: "/", Err: err}
	}
	st, err := os.Stat(root)
	if err != nil {
		return nil, &MountError{Op: "open root", Source: root, Err: unwrapPath(err)}
	}
	if !st.IsDir() {
		return nil, &MountError{Op: "open root", Source: root, Err: unix.ENOTDIR}
	}
	// The root's parent mount must not be shared, or pivot_root refuses (EINVAL).
	if err := privateParent(root); err != nil {
		return nil, err
	}
	if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return nil, &MountError{Op: "bind root", Source: root, Target: root, Err: err}
	}
	b := &builder{root: root, srcs: map[int]int{}, persist: -1, rootfd: -1, fuseDev: -1}
	if err := b.openRoot(); err != nil {
		return nil, err
	}
	return &Container{b: b}, nil
}

// privateParent makes the mount that holds dir private when it is shared.
func privateParent(dir string) error {
	mounts, err := visibleMounts("/")
	if err != nil {
		return err
	}
	best := ""
	shared := false
	for _, m := range mounts {
		mp := m.Mountpoint
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best = mp
			shared = strings.Contains(m.Optional, "shared:")
		}
	}
	if best != "" && shared {
		if err := unix.Mount("", best, "", unix.MS_PRIVATE, ""); err != nil {
			return &MountError{Op: "make private", Target: best, Err: err}
		}
	}
	return nil
}

// Close releases the root's descriptor.
func (c *Container) Close() {
	if c.b.rootfd >= 0 {
		unix.Close(c.b.rootfd)
		c.b.rootfd = -1
	}
}

// procAllowed are the /proc entries a container may mount over (what LXCFS provides), as runc allows: any other
// destination under /proc could cover the kernel's protections (/proc/self, /proc/sys) with a file of the
// container's choosing.
var procAllowed = map[string]bool{
	"/proc/cpuinfo": true, "/proc/diskstats": true, "/proc/meminfo": true, "/proc/stat": true, "/proc/swaps": true,
	"/proc/uptime": true, "/proc/loadavg": true, "/proc/slabinfo": true, "/proc/net/dev": true,
	"/proc/sys/kernel/ns_last_pid": true,
}

// Mount performs one mount of config.json: a bind of a host path or a new file system, at m.Destination inside the
// root (created when missing: a directory, or a file for a bind of a file), with its attributes and propagation.
func (c *Container) Mount(m Mount) error {
	dst := m.Destination
	if strings.HasPrefix(dst, "/proc/") && !procAllowed[dst] {
		return &MountError{Op: "mount " + m.Type, Target: dst, Err: errors.New("a mount under /proc is allowed only over " +
			"the files LXCFS provides (cpuinfo, meminfo, stat, uptime, ...)")}
	}
	if m.Type == "proc" && dst != "/proc" {
		return &MountError{Op: "mount proc", Target: dst, Err: errors.New("proc may only be mounted on /proc")}
	}
	var mfd int
	var err error
	if m.Type == "bind" {
		mfd, err = c.bindSource(m)
	} else {
		if err := c.b.ensure(dst, true); err != nil {
			return err
		}
		attrs := uint(m.AttrSet)
		mfd, err = newFS(m.Type, m.Source, m.Data, m.SBFlags, attrs, dst)
	}
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if m.CopyUp {
		if err := c.copyUp(mfd, dst); err != nil {
			return err
		}
	}
	if m.RecAttrSet != 0 || m.RecAttrClr != 0 {
		if err := setattr(mfd, m.RecAttrSet, m.RecAttrClr, true, dst); err != nil {
			return err
		}
	}
	if m.Propagation != 0 {
		attr := unix.MountAttr{Propagation: m.Propagation}
		flags := uint(unix.AT_EMPTY_PATH)
		if m.RecPropagation {
			flags |= unix.AT_RECURSIVE
		}
		if err := unix.MountSetattr(mfd, "", flags, &attr); err != nil {
			return &MountError{Op: "set propagation", Target: dst, Err: err}
		}
	}
	return c.b.attach(mfd, dst, m.Type)
}

// bindSource clones the bind source (with its sub-mounts for rbind), creates the mount point to match it and sets
// the mount's attributes: options that set a bit always apply; options that clear one (rw, suid, dev, exec) are
// dropped when the kernel refuses them because the source's own flag is locked (a read-only host mount seen from a
// user namespace), as runc does.
func (c *Container) bindSource(m Mount) (int, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if m.Recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, m.Source, flags)
	if err != nil {
		return -1, &MountError{Op: "bind", Source: m.Source, Target: m.Destination, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(tree, &st); err != nil {
		unix.Close(tree)
		return -1, &MountError{Op: "bind", Source: m.Source, Target: m.Destination, Err: err}
	}
	if err := c.b.ensure(m.Destination, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
		unix.Close(tree)
		return -1, err
	}
	if m.AttrSet != 0 || m.AttrClr != 0 {
		err := setattr(tree, m.AttrSet, m.AttrClr, false, m.Destination)
		if errors.Is(err, unix.EPERM) && m.AttrClr&^unix.MOUNT_ATTR__ATIME != 0 {
			err = setattr(tree, m.AttrSet, m.AttrClr&unix.MOUNT_ATTR__ATIME, false, m.Destination)
		}
		if err != nil {
			unix.Close(tree)
			return -1, err
		}
	}
	return tree, nil
}

// setattr sets and clears MOUNT_ATTR_* bits on the detached mount fd (and its sub-mounts when recursive).
func setattr(fd int, set, clr uint64, recursive bool, dst string) error {
	flags := uint(unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	attr := unix.MountAttr{Attr_set: set, Attr_clr: clr}
	if err := unix.MountSetattr(fd, "", flags, &attr); err != nil {
		return &MountError{Op: "set mount attributes", Target: dst, Err: err}
	}
	return nil
}

// copyUp copies the directory that the new tmpfs mfd will cover into it (tmpcopyup): regular files, directories
// and symbolic links, with their modes and owners.
func (c *Container) copyUp(mfd int, dst string) error {
	src, err := c.b.resolve(dst)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	from, err := unix.Openat(src, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &MountError{Op: "tmpcopyup", Target: dst, Err: err}
	}
	defer unix.Close(from)
	to, err := unix.Openat(mfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &MountError{Op: "tmpcopyup", Target: dst, Err: err}
	}
	defer unix.Close(to)
	if err := copyTree(from, to, 0); err != nil {
		return &MountError{Op: "tmpcopyup", Target: dst, Err: err}
	}
	return nil
}

// copyTree copies the directory from into the directory to, at most 64 levels deep.
func copyTree(from, to, depth int) error {
	if depth > 64 {
		return unix.ELOOP
	}
	dup, err := unix.Dup(from)
	if err != nil {
		return err
	}
	dir := os.NewFile(uintptr(dup), "copyup")
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(from, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		mode := st.Mode & 0o7777
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			if err := unix.Mkdirat(to, name, mode); err != nil && !errors.Is(err, unix.EEXIST) {
				return err
			}
			sub, err := unix.Openat(from, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			dsub, err := unix.Openat(to, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				unix.Close(sub)
				return err
			}
			err = copyTree(sub, dsub, depth+1)
			unix.Close(sub)
			unix.Close(dsub)
			if err != nil {
				return err
			}
		case unix.S_IFLNK:
			target, err := readlinkat(from, name)
			if err != nil {
				return err
			}
			if err := unix.Symlinkat(target, to, name); err != nil {
				return err
			}
		case unix.S_IFREG:
			if err := copyFile(from, to, name, mode); err != nil {
				return err
			}
		default:
			continue // device nodes, sockets and FIFOs are not copied
		}
		_ = unix.Fchownat(to, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil
}

// copyFile copies the regular file name from the directory from to the directory to.
func copyFile(from, to int, name string, mode uint32) error {
	in, err := unix.Openat(from, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(in)
	out, err := unix.Openat(to, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, mode)
	if err != nil {
		return err
	}
	defer unix.Close(out)
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(in, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		for off := 0; off < n; {
			w, err := unix.Write(out, buf[off:n])
			if err != nil {
				return err
			}
			off += w
		}
	}
}

// Device describes a device node of the container's /dev (config.json's linux.devices, or a default one).
type Device struct {
	// Path is the node's absolute path inside the container.
	Path string
	// Type is 'c' (character), 'b' (block) or 'p' (FIFO).
	Type         byte
	Major, Minor uint32
	// Mode is the file mode's permission bits (0666 when 0); UID and GID its owner.
	Mode     uint32
	UID, GID uint32
}

// DefaultDevices are the nodes every container gets in a /dev it does not bind from the host (the OCI runtime
// spec's default devices).
var DefaultDevices = []Device{
	{Path: "/dev/null", Type: 'c', Major: 1, Minor: 3, Mode: 0o666},
	{Path: "/dev/zero", Type: 'c', Major: 1, Minor: 5, Mode: 0o666},
	{Path: "/dev/full", Type: 'c', Major: 1, Minor: 7, Mode: 0o666},
	{Path: "/dev/random", Type: 'c', Major: 1, Minor: 8, Mode: 0o666},
	{Path: "/dev/urandom", Type: 'c', Major: 1, Minor: 9, Mode: 0o666},
	{Path: "/dev/tty", Type: 'c', Major: 5, Minor: 0, Mode: 0o666},
}

// Device creates the node d: with mknod when bind is false (and the owner given), or, in a user namespace that
// cannot create nodes, by binding the host's node of the same path (checked to have d's type and numbers) onto an
// empty file. An existing node at the path is replaced.
func (c *Container) Device(d Device, bind bool) error {
	if !strings.HasPrefix(d.Path, "/dev/") || path.Clean(d.Path) != d.Path {
		return &MountError{Op: "create device", Target: d.Path, Err: errors.New("device paths must be below /dev")}
	}
	parent, name := path.Split(d.Path)
	if err := c.b.ensure(path.Clean(parent), true); err != nil {
		return err
	}
	pfd, err := c.b.resolve(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Unlinkat(pfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return &MountError{Op: "create device", Target: d.Path, Err: err}
	}
	mode := d.Mode & 0o7777
	if mode == 0 {
		mode = 0o666
	}
	if bind {
		if d.Type != 'c' && d.Type != 'b' {
			return &MountError{Op: "create device", Target: d.Path, Err: fmt.Errorf("type %q cannot be bound from the host", d.Type)}
		}
		var st unix.Stat_t
		if err := unix.Stat(d.Path, &st); err != nil {
			return &MountError{Op: "check device", Source: d.Path, Err: err}
		}
		want := uint32(unix.S_IFCHR)
		if d.Type == 'b' {
			want = unix.S_IFBLK
		}
		if st.Mode&unix.S_IFMT != want || unix.Major(st.Rdev) != d.Major || unix.Minor(st.Rdev) != d.Minor {
			return &MountError{Op: "check device", Source: d.Path,
				Err: fmt.Errorf("the host's node is not the %c device %d:%d", d.Type, d.Major, d.Minor)}
		}
		fd, err := unix.Openat(pfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
		if err != nil {
			return &MountError{Op: "create mount point", Target: d.Path, Err: err}
		}
		unix.Close(fd)
		return c.b.bindHost(d.Path, d.Path, false, false)
	}
	var typ uint32
	switch d.Type {
	case 'c', 'u':
		typ = unix.S_IFCHR
	case 'b':
		typ = unix.S_IFBLK
	case 'p':
		typ = unix.S_IFIFO
	default:
		return &MountError{Op: "create device", Target: d.Path, Err: fmt.Errorf("unknown type %q", d.Type)}
	}
	old := unix.Umask(0)
	err = unix.Mknodat(pfd, name, typ|mode, int(unix.Mkdev(d.Major, d.Minor)))
	unix.Umask(old)
	if err != nil {
		return &MountError{Op: "mknod", Target: d.Path, Err: err}
	}
	if err := unix.Fchownat(pfd, name, int(d.UID), int(d.GID), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &MountError{Op: "chown", Target: d.Path, Err: err}
	}
	return nil
}

// DevSymlinks creates the default /dev links (fd, stdin, stdout, stderr, ptmx) where the container has none.
func (c *Container) DevSymlinks() error {
	dev, err := c.b.resolve("/dev")
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	return devSymlinks(dev, false)
}

// Symlink creates the symbolic link dst (inside the root) pointing to target, unless an entry is already there.
func (c *Container) Symlink(target, dst string) error {
	parent, name := path.Split(path.Clean(dst))
	pfd, err := c.b.resolve(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Symlinkat(target, pfd, name); err != nil && !errors.Is(err, unix.EEXIST) {
		return &MountError{Op: "symlink", Target: dst, Err: err}
	}
	return nil
}

// Mkdir creates the directory dst (inside the root) and its missing parents.
func (c *Container) Mkdir(dst string) error { return c.b.ensure(dst, true) }

// BindFD attaches a clone of the mount at the O_PATH or open descriptor fd (a file of the runtime's view: the
// console's pty slave, a host device) at dst inside the root, creating a file or directory mount point to match.
func (c *Container) BindFD(fd int, dst string, ro bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &MountError{Op: "bind", Target: dst, Err: err}
	}
	if err := c.b.ensure(dst, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
		return err
	}
	return c.b.bindFD(fd, dst, ro, false)
}

// Pivot makes the root the process's root: pivot_root, or with noPivot (for roots on a file system pivot_root
// refuses, such as an initramfs) moving the root's mount over "/" and chroot into it.
func (c *Container) Pivot(noPivot bool) error {
	if noPivot {
		if err := unix.Chdir(c.b.root); err != nil {
			return fmt.Errorf("rootfs: chdir %s: %w", c.b.root, err)
		}
		if err := unix.Mount(c.b.root, "/", "", unix.MS_MOVE, ""); err != nil {
			return &MountError{Op: "move root", Source: c.b.root, Target: "/", Err: err}
		}
		if err := unix.Chroot("."); err != nil {
			return &MountError{Op: "chroot", Target: c.b.root, Err: err}
		}
		if err := unix.Chdir("/"); err != nil {
			return fmt.Errorf("rootfs: chdir /: %w", err)
		}
	} else if err := c.b.pivot(); err != nil {
		return err
	}
	c.pivoted = true
	unix.Close(c.b.rootfd)
	c.b.root = "/"
	return c.b.openRoot()
}

// SetPropagation changes the propagation of the (pivoted) root, recursively: rootfsPropagation "shared" is
// applied only once the container's mounts are in place, as runc does.
func (c *Container) SetPropagation(prop uintptr) error {
	if err := unix.Mount("", "/", "", prop, ""); err != nil {
		return &MountError{Op: "set propagation", Target: "/", Err: err}
	}
	return nil
}

// ReadOnlyRoot makes the root mount read-only (root.readonly), keeping its other flags.
func (c *Container) ReadOnlyRoot() error {
	var sfs unix.Statfs_t
	if err := unix.Statfs("/", &sfs); err != nil {
		return &MountError{Op: "statfs", Target: "/", Err: err}
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range []int64{unix.ST_NOSUID, unix.ST_NODEV, unix.ST_NOEXEC, unix.ST_NOATIME, unix.ST_NODIRATIME, unix.ST_RELATIME} {
		if sfs.Flags&f != 0 {
			flags |= uintptr(f) // the ST_ and MS_ bits agree for these
		}
	}
	if err := unix.Mount("", "/", "", flags, ""); err != nil {
		return &MountError{Op: "make read-only", Target: "/", Err: err}
	}
	return nil
}

// ReadOnlyPaths bind-mounts each path read-only onto itself, recursively; missing paths are skipped.
func (c *Container) ReadOnlyPaths(paths []string) error { return c.b.readOnlyPaths(paths, true) }

// MaskPaths hides each path (a directory under an empty read-only tmpfs, a file under /dev/null); missing paths are
// skipped.
func (c *Container) MaskPaths(paths []string) error { return c.b.maskPaths(paths) }

// unwrapPath returns the errno of a *os.PathError.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
