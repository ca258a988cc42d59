package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// baseDir is where the private tmpfs holding the new root is mounted, in the sandbox's own mount namespace only.
// The host's directory of the same name is merely covered for the sandbox and never written.
const baseDir = "/tmp"

// MountError describes a failed mount step (runc's mountError): what was done, where, and why.
type MountError struct {
	Op     string
	Source string
	Target string
	Err    error
}

// Error implements error.
func (e *MountError) Error() string {
	var b strings.Builder
	b.WriteString("rootfs: ")
	b.WriteString(e.Op)
	if e.Source != "" {
		b.WriteString(" " + strconv.Quote(e.Source))
	}
	if e.Target != "" {
		b.WriteString(" on " + strconv.Quote(e.Target))
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the cause.
func (e *MountError) Unwrap() error { return e.Err }

// builder carries the state of one Setup call.
type builder struct {
	spec    Spec
	srcs    map[int]int // Ops index -> detached clone of its host source, opened before anything is mounted
	root    string      // path of the new root while it is being built
	rootfd  int         // O_PATH fd of the new root, the anchor of every in-root resolution
	files   int         // counter for generated files on the base tmpfs
	persist int         // O_PATH fd of the --persist directory, or -1
	skels   int         // counter for directory skeletons
	// persistInfo is the metadata of an existing --persist directory (nil for a new one).
	persistInfo *PersistInfo
	// fuseDev is /dev/fuse, opened in init when fuse-overlayfs will serve the root, until the daemon takes it.
	fuseDev int
	// fuseServed is set once a fuse-overlayfs daemon serves (part of) the new root.
	fuseServed bool
	// treeAttr is set when the root tree's attributes could not be set before it was attached (no
	// mount_setattr: caisson inside a sandbox whose filter refuses it): they are applied once it is attached.
	treeAttr uint64
	// fallbacks are the steps done without so far.
	fallbacks []Fallback
}

// Fallback is a step of Setup that the kernel refused, because of the sandbox caisson itself runs in (a
// container's masked /proc, a device it lacks), and that Setup did without: the sandbox works, with less.
type Fallback struct {
	// Step is FallbackProc, FallbackSys, or "/dev/NAME" for a device node.
	Step string
	// Err is the refusal.
	Err error
}

// The steps of Setup that may fall back.
const (
	// FallbackProc: the kernel refused a fresh procfs; the sandbox has the outer /proc, read-only.
	FallbackProc = "/proc"
	// FallbackSys: the kernel refused a fresh sysfs; the sandbox has the outer /sys, read-only.
	FallbackSys = "/sys"
)

// Setup builds the sandbox's root and pivots into it. It must run in a fresh mount namespace (and, for /proc, as a
// member of the sandbox's PID namespace). After it returns, the process's root and working directory are the new
// root and no host directory is held open.
//
// It returns the steps it did without (see Fallback), for the caller to report.
//
// Preconditions: single caller; the process has CAP_SYS_ADMIN in the user namespace owning its mount namespace.
func Setup(s Spec) ([]Fallback, error) {
	b := &builder{spec: s, root: baseDir + "/root", srcs: map[int]int{}, persist: -1, rootfd: -1, fuseDev: -1}
	err := b.setup()
	return b.fallbacks, err
}

// setup is Setup.
func (b *builder) setup() error {
	s := b.spec
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return &MountError{Op: "make private", Target: "/", Err: err}
	}
	defer b.closeSources()
	// Open every host path before anything is mounted over it (baseDir is covered next): the root's tree, the
	// --persist directory and the bind sources.
	tree, err := b.openRootTree()
	if err != nil {
		return err
	}
	defer unix.Close(tree)
	if s.Persist != "" {
		if err := b.openPersist(); err != nil {
			return err
		}
	}
	driver := ""
	if s.Overlay || s.Persist != "" {
		if driver, err = b.chooseDriver(); err != nil {
			return err
		}
		if s.Persist != "" {
			if err := b.writePersistInfo(driver); err != nil {
				return err
			}
		}
	}
	for i, op := range s.Ops {
		if op.Kind != KindBind && op.Kind != KindROBind {
			continue
		}
		fd, err := unix.OpenTree(unix.AT_FDCWD, op.Src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			if op.Optional && errors.Is(err, unix.ENOENT) {
				continue
			}
			return &MountError{Op: "bind", Source: op.Src, Target: op.Dst, Err: err}
		}
		b.srcs[i] = fd
	}
	if err := unix.Mount("caisson", baseDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0700"); err != nil {
		return &MountError{Op: "mount tmpfs", Target: baseDir, Err: err}
	}
	if driver == DriverFuse {
		err = b.fuseRoot(tree)
	} else if driver == DriverKernel {
		err = b.overlayRoot(tree)
	} else {
		err = b.plainRoot(tree)
	}
	if err != nil {
		return err
	}
	defer unix.Close(b.rootfd)
	if s.Root != "" {
		if err := b.checkMountpoints(); err != nil {
			return err
		}
	}

	for _, step := range []func() error{b.proc, b.dev, b.tmp, b.sys} {
		if err := step(); err != nil {
			return err
		}
	}
	for i, op := range s.Ops {
		if err := b.apply(i, op); err != nil {
			return err
		}
	}
	if err := b.mask(); err != nil {
		return err
	}
	return b.pivot()
}

// closeSources closes the pre-opened bind sources and the --persist directory (its lock stays held).
func (b *builder) closeSources() {
	for _, fd := range b.srcs {
		unix.Close(fd)
	}
	if b.persist >= 0 {
		unix.Close(b.persist)
	}
	if b.fuseDev >= 0 {
		unix.Close(b.fuseDev)
	}
}

// openRootTree clones the tree that becomes the root (the host's / or --rootfs) with its sub-mounts, and sets its
// mount attributes in one call: the host view is read-only, nosuid and nodev; --rootfs is nosuid and nodev, and
// read-only with --read-only or when it is only the lower layer of an overlay.
func (b *builder) openRootTree() (int, error) {
	src := "/"
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if b.spec.Root != "" {
		src = b.spec.Root
		if !b.spec.ReadOnly && !b.spec.Overlay && b.spec.Persist == "" {
			attr.Attr_set &^= unix.MOUNT_ATTR_RDONLY
		}
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil {
			return -1, &MountError{Op: "open rootfs", Source: src, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, &MountError{Op: "open rootfs", Source: src, Err: unix.ENOTDIR}
		}
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return -1, &MountError{Op: "clone tree", Source: src, Err: err}
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		if !errors.Is(err, unix.ENOSYS) {
			unix.Close(tree)
			return -1, &MountError{Op: "set mount attributes", Source: src, Err: err}
		}
		b.treeAttr = attr.Attr_set // applied with mount(2) once attached (remountTree)
	}
	return tree, nil
}

// plainRoot attaches the cloned tree as the new root.
func (b *builder) plainRoot(tree int) error {
	if err := os.Mkdir(b.root, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, b.root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &MountError{Op: "attach tree", Target: b.root, Err: err}
	}
	if err := remountTree(b.root, b.treeAttr); err != nil {
		return err
	}
	return b.openRoot()
}

// openRoot opens the new root, the anchor of every in-root resolution.
func (b *builder) openRoot() error {
	fd, err := unix.Open(b.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: open new root: %w", err)
	}
	b.rootfd = fd
	return nil
}

// proc mounts a fresh procfs (new PID namespace) and applies the read-only paths; with a shared PID namespace the
// host's /proc from the read-only clone stays.
func (b *builder) proc() error {
	if !b.spec.NewPID {
		if b.spec.Root != "" {
			return b.bindHost("/proc", "/proc", true, true)
		}
		return nil // the host's /proc is in the read-only clone
	}
	err := b.mountFS("proc", "/proc", nil, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if errors.Is(err, unix.EPERM) {
		// The kernel refuses a new procfs when the one in this mount namespace is not fully visible ("mount too
		// revealing"): caisson inside another sandbox or a container whose /proc has masked files. Use that
		// /proc, read-only, masks included; it shows the outer PID namespace's processes.
		b.fallbacks = append(b.fallbacks, Fallback{Step: FallbackProc, Err: err})
		return b.bindHost("/proc", "/proc", true, true)
	}
	return err
}

// dev builds a minimal /dev: a tmpfs with bind-mounted host device nodes (verified by type and number), a private
// devpts instance, /dev/shm, /dev/mqueue and the usual symlinks.
func (b *builder) dev() error {
	if err := b.mountFS("tmpfs", "/dev", map[string]string{"mode": "0755", "size": "1m"},
		unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
		return err
	}
	devdir, err := b.resolveExisting("/dev")
	if err != nil {
		return err
	}
	defer unix.Close(devdir)
	for _, d := range Devices {
		if err := b.bindDevice(devdir, d.Name, d.Major, d.Minor); err != nil {
			return err
		}
	}
	for _, dir := range []string{"pts", "shm", "mqueue"} {
		if err := unix.Mkdirat(devdir, dir, 0o755); err != nil {
			return &MountError{Op: "mkdir", Target: "/dev/" + dir, Err: err}
		}
	}
	pts := map[string]string{"newinstance": "", "ptmxmode": "0666", "mode": "0620"}
	if b.spec.TTYGID >= 0 {
		pts["gid"] = strconv.Itoa(b.spec.TTYGID)
	}
	if err := b.mountFS("devpts", "/dev/pts", pts, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NOEXEC); err != nil {
		return err
	}
	if err := b.mountFS("tmpfs", "/dev/shm", map[string]string{"mode": "1777"},
		unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return err
	}
	if b.spec.NewIPC {
		if err := b.mountFS("mqueue", "/dev/mqueue", nil,
			unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC); err != nil {
			return err
		}
	}
	return devSymlinks(devdir, true)
}

// DevSymlinks are the symbolic links of a container's /dev (the OCI runtime spec's default ones and ptmx).
var DevSymlinks = [][2]string{
	{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"}, {"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"}, {"ptmx", "pts/ptmx"},
}

// devSymlinks creates DevSymlinks in the /dev directory devdir and, with core (caisson run's fresh /dev),
// /dev/core. Without core an existing entry of the same name is left as it is (a container's image or mounts may
// provide it).
func devSymlinks(devdir int, core bool) error {
	links := DevSymlinks
	if core {
		links = append(links[:len(links):len(links)], [2]string{"core", "/proc/kcore"})
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[1], devdir, l[0]); err != nil && !(errors.Is(err, unix.EEXIST) && !core) {
			return &MountError{Op: "symlink", Target: "/dev/" + l[0], Err: err}
		}
	}
	return nil
}

// bindDevice binds the host's character device /dev/NAME, checked to be major:minor, onto a new empty file of
// that name in the /dev directory devdir: how a user namespace, which cannot create device nodes, gets them.
func (b *builder) bindDevice(devdir int, name string, major, minor uint32) error {
	src := "/dev/" + name
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			// The host (a container's /dev) has no such node: the sandbox goes without it too.
			b.fallbacks = append(b.fallbacks, Fallback{Step: src, Err: err})
			return nil
		}
		return &MountError{Op: "check device", Source: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != major || unix.Minor(st.Rdev) != minor {
		return &MountError{Op: "check device", Source: src,
			Err: fmt.Errorf("not the character device %d:%d", major, minor)}
	}
	fd, err := unix.Openat(devdir, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return &MountError{Op: "create mount point", Target: "/dev/" + name, Err: err}
	}
	unix.Close(fd)
	return b.bindHost(src, "/dev/"+name, false, false)
}

// tmp gives the sandbox a private /tmp and a private /run (which hides the host's sockets: D-Bus, docker.sock).
func (b *builder) tmp() error {
	if err := b.mountFS("tmpfs", "/tmp", map[string]string{"mode": "1777"},
		unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV); err != nil {
		return err
	}
	return b.mountFS("tmpfs", "/run", map[string]string{"mode": "0755"}, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
}

// sys mounts a fresh read-only sysfs when the network namespace is new (so /sys/class/net shows the sandbox's own
// interfaces) and a read-only cgroup2 when the cgroup namespace is new. If the kernel refuses, the host's sysfs
// stays visible read-only (from the clone, or bound read-only into a --rootfs).
func (b *builder) sys() error {
	ro := uint(unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC)
	fresh := b.spec.NewNet
	if fresh {
		if err := b.mountFS("sysfs", "/sys", nil, ro); err != nil {
			b.fallbacks = append(b.fallbacks, Fallback{Step: FallbackSys, Err: err})
			fresh = false
		}
	}
	if !fresh {
		if b.spec.Root != "" {
			return b.bindHost("/sys", "/sys", true, true)
		}
		return nil
	}
	if b.spec.NewCgroup {
		_ = b.mountFS("cgroup2", "/sys/fs/cgroup", nil, ro) // best effort: hybrid hosts may refuse
	}
	return nil
}

// apply runs one user or generated Op.
func (b *builder) apply(i int, op Op) error {
	switch op.Kind {
	case KindBind, KindROBind:
		src, ok := b.srcs[i]
		if !ok {
			return nil // optional and missing
		}
		var st unix.Stat_t
		if err := unix.Fstat(src, &st); err != nil {
			return &MountError{Op: "bind", Source: op.Src, Target: op.Dst, Err: err}
		}
		if err := b.ensure(op.Dst, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
			return err
		}
		// Like bubblewrap's binds: no set-user-ID programs and no device nodes through them.
		attr := uint64(unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV)
		if op.Kind == KindROBind {
			attr |= unix.MOUNT_ATTR_RDONLY
		}
		return b.bindTreeAttr(src, op.Dst, attr, true)
	case KindTmpfs:
		opts := map[string]string{"mode": "0755"}
		if op.Size > 0 {
			opts["size"] = strconv.FormatInt(op.Size, 10)
		}
		if err := b.ensure(op.Dst, true); err != nil {
			return err
		}
		return b.mountFS("tmpfs", op.Dst, opts, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	case KindFile:
		b.files++
		src := fmt.Sprintf("%s/file%d", baseDir, b.files)
		if err := os.WriteFile(src, op.Data, 0o644); err != nil {
			return fmt.Errorf("rootfs: write %s: %w", op.Dst, err)
		}
		if op.Optional {
			if err := b.ensure(op.Dst, false); err != nil {
				return nil // nowhere to put it (read-only host view without the file): skip
			}
		}
		return b.bindHost(src, op.Dst, true, false)
	}
	return fmt.Errorf("rootfs: unknown step kind %q", op.Kind)
}

// mask covers MaskedPaths and makes ReadOnlyPaths read-only. Paths the kernel does not have are skipped.
func (b *builder) mask() error {
	ro := ReadOnlyPaths
	if !b.spec.NewPID {
		ro = nil // the host's /proc is read-only already
		for _, p := range ReadOnlyPaths {
			if !strings.HasPrefix(p, "/proc/") {
				ro = append(ro, p)
			}
		}
	}
	if err := b.readOnlyPaths(ro, false); err != nil {
		return err
	}
	return b.maskPaths(MaskedPaths)
}

// readOnlyPaths bind-mounts each of paths read-only onto itself, with what is mounted below it (read-only too)
// when recursive. A path that does not exist is skipped.
func (b *builder) readOnlyPaths(paths []string, recursive bool) error {
	for _, p := range paths {
		fd, err := b.resolve(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return err
		}
		err = b.bindFD(fd, p, true, recursive)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// maskPaths hides each of paths: a directory under an empty read-only tmpfs, anything else under /dev/null. A
// path that does not exist is skipped.
func (b *builder) maskPaths(paths []string) error {
	for _, p := range paths {
		fd, err := b.resolve(p)
		if errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err != nil {
			return &MountError{Op: "stat", Target: p, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			err = b.mountFS("tmpfs", p, map[string]string{"size": "0", "mode": "0555"},
				unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
		} else {
			err = b.bindHost("/dev/null", p, true, false)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// pivot makes the new root the process's root with the pivot_root(".", ".") idiom, which needs no directory in
// the (read-only) new root, then detaches the old root.
func (b *builder) pivot() error {
	if err := unix.Chdir(b.root); err != nil {
		return fmt.Errorf("rootfs: chdir new root: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return &MountError{Op: "pivot_root", Target: b.root, Err: err}
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &MountError{Op: "detach old root", Target: "/", Err: err}
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("rootfs: chdir /: %w", err)
	}
	return nil
}

// mountFS creates a filesystem instance with the new mount API and attaches it at dst inside the new root.
func (b *builder) mountFS(fstype, dst string, opts map[string]string, attrs uint) error {
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	data := make([]string, 0, len(keys))
	for _, k := range keys {
		if v := opts[k]; v != "" {
			data = append(data, k+"="+v)
		} else {
			data = append(data, k)
		}
	}
	source := ""
	if fstype == "tmpfs" || fstype == "proc" || fstype == "devpts" {
		source = fstype // mountinfo shows which tool made the mount
	}
	mfd, err := newFS(fstype, source, data, nil, attrs, dst)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	return b.attach(mfd, dst, fstype)
}

// newFS creates a detached mount of a new filesystem instance: source (if not empty), the filesystem's options
// data ("key=value" or "flag", in order), superblock flags (fsconfig flags such as "sync"), and the mount
// attributes attrs (MOUNT_ATTR_*). dst names the mount in errors. The caller closes the returned fd.
func newFS(fstype, source string, data, sbflags []string, attrs uint, dst string) (int, error) {
	fsfd, err := unix.Fsopen(fstype, unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, &MountError{Op: "fsopen " + fstype, Target: dst, Err: err}
	}
	defer unix.Close(fsfd)
	if source != "" {
		if err := unix.FsconfigSetString(fsfd, "source", source); err != nil {
			return -1, &MountError{Op: "mount " + fstype + " source", Source: source, Target: dst, Err: err}
		}
	}
	for _, f := range sbflags {
		if err := unix.FsconfigSetFlag(fsfd, f); err != nil {
			return -1, &MountError{Op: fmt.Sprintf("mount %s option %s", fstype, f), Target: dst, Err: err}
		}
	}
	for _, o := range data {
		k, v, hasValue := strings.Cut(o, "=")
		if hasValue {
			err = unix.FsconfigSetString(fsfd, k, v)
		} else {
			err = unix.FsconfigSetFlag(fsfd, k)
		}
		if err != nil {
			return -1, &MountError{Op: fmt.Sprintf("mount %s option %s", fstype, o), Target: dst, Err: err}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, &MountError{Op: "mount " + fstype, Target: dst, Err: err}
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, int(attrs))
	if err != nil {
		return -1, &MountError{Op: "mount " + fstype, Target: dst, Err: err}
	}
	return mfd, nil
}

// bindHost clones the host path src (recursively when recursive) and attaches it at dst inside the new root,
// read-only when ro. The mount point is created when it is missing and its parent is writable.
func (b *builder) bindHost(src, dst string, ro, recursive bool) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, flags)
	if err != nil {
		return &MountError{Op: "bind", Source: src, Target: dst, Err: err}
	}
	defer unix.Close(tree)
	var st unix.Stat_t
	if err := unix.Fstat(tree, &st); err != nil {
		return &MountError{Op: "bind", Source: src, Target: dst, Err: err}
	}
	if err := b.ensure(dst, st.Mode&unix.S_IFMT == unix.S_IFDIR); err != nil {
		return err
	}
	return b.bindTree(tree, dst, ro, recursive)
}

// bindFD attaches a clone of the mount tree at fd, an O_PATH fd of a path in this mount namespace, at dst,
// read-only when ro. (A detached tree from open_tree is attached with bindTree instead: before Linux 6.15 the
// kernel refuses to clone a detached tree, EINVAL.)
func (b *builder) bindFD(fd int, dst string, ro, recursive bool) error {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC | unix.AT_EMPTY_PATH)
	if recursive {
		flags |= unix.AT_RECURSIVE
	}
	tree, err := unix.OpenTree(fd, "", flags)
	if err != nil {
		return &MountError{Op: "bind", Target: dst, Err: err}
	}
	defer unix.Close(tree)
	return b.bindTree(tree, dst, ro, recursive)
}

// bindTree attaches the detached mount tree tree (from open_tree with OPEN_TREE_CLONE) at dst, read-only when ro;
// recursive says whether ro applies to the mounts below it too. The caller still closes tree.
func (b *builder) bindTree(tree int, dst string, ro, recursive bool) error {
	var attr uint64
	if ro {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	return b.bindTreeAttr(tree, dst, attr, recursive)
}

// bindTreeAttr is bindTree setting the mount attributes attr (MOUNT_ATTR_*) on the tree, on every mount of it
// when recursive. Without mount_setattr (nested under a filter that refuses it) only read-only is applied, by
// bind remounts (see remountTree).
func (b *builder) bindTreeAttr(tree int, dst string, attr uint64, recursive bool) error {
	if attr != 0 {
		setFlags := uint(unix.AT_EMPTY_PATH)
		if recursive {
			setFlags |= unix.AT_RECURSIVE
		}
		ma := unix.MountAttr{Attr_set: attr}
		if err := unix.MountSetattr(tree, "", setFlags, &ma); err != nil {
			if !errors.Is(err, unix.ENOSYS) {
				return &MountError{Op: "set mount attributes", Target: dst, Err: err}
			}
			if err := b.attach(tree, dst, "bind"); err != nil {
				return err
			}
			at, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(tree))
			if err != nil {
				return &MountError{Op: "make read-only", Target: dst, Err: err}
			}
			return remountTree(at, attr)
		}
	}
	return b.attach(tree, dst, "bind")
}

// keptMountFlags are the per-mount options a bind remount must repeat (the kernel refuses to clear the locked ones).
var keptMountFlags = map[string]uintptr{
	"nosuid": unix.MS_NOSUID, "nodev": unix.MS_NODEV, "noexec": unix.MS_NOEXEC, "noatime": unix.MS_NOATIME,
	"nodiratime": unix.MS_NODIRATIME, "relatime": unix.MS_RELATIME, "strictatime": unix.MS_STRICTATIME,
}

// remountTree applies attr's read-only, nosuid and nodev bits to every mount at or below dir with mount(2) bind
// remounts, keeping each mount's other flags (the kernel refuses to clear the ones it locked). It is the fallback
// for mount_setattr, which a seccomp filter may refuse (caisson's default one does: it can clear read-only). Only
// a read-only request is applied: a bind remount that leaves a mount writable is what that filter refuses, and
// without one the mounts came from an outer sandbox that set nosuid and nodev already.
func remountTree(dir string, attr uint64) error {
	if attr&unix.MOUNT_ATTR_RDONLY == 0 {
		return nil
	}
	// Only the visible mounts can be reached by path: the top of a stack on one mount point (/proc over the host's
	// /proc inside a sandbox), none below a mount that covers them (the host's /sys under a sandbox's own).
	mounts, err := visibleMounts(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_RDONLY)
		if attr&unix.MOUNT_ATTR_NOSUID != 0 {
			flags |= unix.MS_NOSUID
		}
		if attr&unix.MOUNT_ATTR_NODEV != 0 {
			flags |= unix.MS_NODEV
		}
		for _, o := range strings.Split(m.Options, ",") {
			flags |= keptMountFlags[o]
		}
		if err := unix.Mount("", m.Mountpoint, "", flags, ""); err != nil {
			return &MountError{Op: "make read-only", Target: m.Mountpoint, Err: err}
		}
	}
	return nil
}

// attach moves the detached mount mfd onto dst, resolved inside the new root.
func (b *builder) attach(mfd int, dst, what string) error {
	target, err := b.resolveExisting(dst)
	if err != nil {
		return err
	}
	defer unix.Close(target)
	if err := unix.MoveMount(mfd, "", target, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return &MountError{Op: "attach " + what, Target: dst, Err: err}
	}
	return nil
}

// resolve opens p (absolute, as seen inside the sandbox) as an O_PATH fd, resolved inside the new root: symlinks
// and ".." can never leave it, and magic links are refused.
func (b *builder) resolve(p string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	}
	rel := strings.TrimLeft(p, "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(b.rootfd, rel, &how)
	if err != nil {
		return -1, &MountError{Op: "resolve", Target: p, Err: err}
	}
	return fd, nil
}

// fuseLookupRetries and fuseLookupBackoff bound resolveExisting's retries. Under load (24 overlay sandboxes
// starting at once) a lookup through a fresh fuse-overlayfs mount answers ENOENT for a directory that exists about
// once in 1500 starts (seen for /proc); the first retry 5 ms later has found it every time (2 of 2 in 3000 starts).
const (
	fuseLookupRetries = 3
	fuseLookupBackoff = 5 * time.Millisecond
)

// resolveExisting is resolve for a path that must exist (a mount target): on a root served by fuse-overlayfs, an
// ENOENT is retried a few times (fuseLookupRetries) before it is believed.
func (b *builder) resolveExisting(p string) (int, error) {
	fd, err := b.resolve(p)
	for i := 0; i < fuseLookupRetries && b.fuseServed && errors.Is(err, unix.ENOENT); i++ {
		time.Sleep(fuseLookupBackoff)
		fd, err = b.resolve(p)
	}
	return fd, err
}

// ensure makes sure dst exists inside the new root as a directory (dir) or a file, creating it and its missing
// parents. Creation works only on file systems the sandbox owns (its tmpfs mounts); on the read-only host view it
// fails with a message that says so.
func (b *builder) ensure(dst string, dir bool) error {
	return b.ensureDepth(dst, dir, 0)
}

func (b *builder) ensureDepth(dst string, dir bool, depth int) error {
	if depth > 16 {
		return &MountError{Op: "create mount point", Target: dst, Err: unix.ELOOP}
	}
	if fd, err := b.resolve(dst); err == nil {
		unix.Close(fd)
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		return err
	}
	parent, name := path.Split(path.Clean(dst))
	if name == "" {
		return &MountError{Op: "create mount point", Target: dst, Err: unix.EINVAL}
	}
	if err := b.ensureDepth(path.Clean(parent), true, depth+1); err != nil {
		return err
	}
	pfd, err := b.resolve(parent)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	// A dangling symlink (such as /etc/resolv.conf -> /run/systemd/resolve/stub-resolv.conf with a fresh /run):
	// create its target, still inside the new root.
	if link, lerr := readlinkat(pfd, name); lerr == nil {
		if !path.IsAbs(link) {
			link = path.Join(parent, link)
		}
		return b.ensureDepth(path.Clean(link), dir, depth+1)
	}
	if dir {
		err = unix.Mkdirat(pfd, name, 0o755)
	} else {
		var fd int
		fd, err = unix.Openat(pfd, name, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		}
	}
	if errors.Is(err, unix.EROFS) {
		return &MountError{Op: "create mount point", Target: dst,
			Err: errors.New("it does not exist and its parent is read-only (the host view or --read-only; mount a --tmpfs on a parent first, or use --overlay)")}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return &MountError{Op: "create mount point", Target: dst, Err: err}
	}
	return nil
}

// checkMountpoints vets the directories of a --rootfs that caisson mounts file systems on: a symlink there is
// refused (runc CVE-2019-19921 class; it could never leave the root, but the mount would not be where the tree says),
// and a missing one is created when the root is writable.
func (b *builder) checkMountpoints() error {
	for _, name := range []string{"proc", "dev", "sys", "tmp", "run"} {
		var st unix.Stat_t
		err := unix.Fstatat(b.rootfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			err = unix.Mkdirat(b.rootfd, name, 0o755)
			if errors.Is(err, unix.EROFS) {
				return fmt.Errorf("rootfs: %s/%s is missing and the root is read-only (create the directory, or drop --read-only)",
					b.spec.Root, name)
			} else if err != nil {
				return &MountError{Op: "create mount point", Target: "/" + name, Err: err}
			}
		case err != nil:
			return &MountError{Op: "stat", Target: "/" + name, Err: err}
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return fmt.Errorf("rootfs: %s/%s is a symlink: refused (caisson mounts a file system there, it must be a directory)",
				b.spec.Root, name)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return fmt.Errorf("rootfs: %s/%s is not a directory", b.spec.Root, name)
		}
	}
	return nil
}

// readlinkat returns the target of the symlink name in directory dirfd.
func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}
