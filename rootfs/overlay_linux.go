package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// lowerDir is where the read-only clone of the root's tree is attached when it only serves as overlay lower layers.
const lowerDir = baseDir + "/lower"

// layersDir is the tmpfs holding the upper and work directories when the changes are not persisted.
const layersDir = baseDir + "/layers"

// heldLock is the --persist lock's fd. It is never closed: init holds the lock until it exits, on any path.
var heldLock = -1

// attachLower attaches the read-only clone of the tree to be overlaid at lowerDir (applying attr there when it
// could not be set before, see builder.treeAttr) and lists the mounts it holds.
func attachLower(tree int, attr uint64) ([]*mountinfo.Info, error) {
	if err := os.Mkdir(lowerDir, 0o700); err != nil {
		return nil, fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, lowerDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return nil, &MountError{Op: "attach tree", Target: lowerDir, Err: err}
	}
	if err := remountTree(lowerDir, attr); err != nil {
		return nil, err
	}
	return visibleMounts(lowerDir)
}

// overlayRoot builds the new root from kernel overlays of the cloned tree, which is attached read-only at
// lowerDir (the kernel driver; fuseRoot is the fuse-overlayfs one, chosen per run by chooseDriver).
//
// The kernel refuses an overlay lower layer with mounts below it that the user namespace may not reveal (the
// host's mounts are "locked" together; overlayfs: "failed to clone lowerpath"), so the unit of an overlay is a
// directory with no mount below it: a mount without sub-mounts is overlaid whole, and a directory that has mounts
// below it (such as /, with /proc, /sys, /dev...) becomes an overlay of a skeleton of itself (its directories,
// symlinks and empty placeholders for its files, on a tmpfs) on which its entries are attached: each directory
// overlaid the same way, each file bound read-only. Pseudo file systems, FUSE mounts and mounts below the
// directories the sandbox covers anyway are attached read-only as they are.
func (b *builder) overlayRoot(tree int) error {
	infos, err := attachLower(tree, b.treeAttr)
	if err != nil {
		return err
	}
	mounts := map[string]string{} // mount point inside the root -> file system type
	for _, m := range infos {
		rel := strings.TrimPrefix(m.Mountpoint, lowerDir)
		if rel == "" {
			rel = "/"
		}
		mounts[rel] = m.FSType
	}
	if err := b.openLayers(); err != nil {
		return err
	}
	if err := os.Mkdir(b.root, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Mkdir(skelDir, 0o700); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	return b.overlayTree("/", mounts)
}

// skelDir holds the skeletons of the directories that have mounts below them.
const skelDir = baseDir + "/skel"

// overlayTree makes dst (a directory inside the root) writable, as described at overlayRoot.
func (b *builder) overlayTree(dst string, mounts map[string]string) error {
	src := lowerDir + strings.TrimSuffix(dst, "/")
	if fstype, ok := mounts[dst]; ok && dst != "/" && !Overlayable(dst, fstype) {
		return b.bindLower(src, dst)
	}
	if _, ok := mounts[dst]; !ok && below(dst, coveredDirs) {
		return nil // not a mount point: the sandbox mounts its own file system on it
	}
	hasBelow := false
	for mp := range mounts {
		if mp != dst && below(mp, []string{dst}) {
			hasBelow = true
			break
		}
	}
	lower := src
	if hasBelow {
		b.skels++
		lower = fmt.Sprintf("%s/%d", skelDir, b.skels)
		if err := skeleton(src, lower); err != nil {
			return &MountError{Op: "copy directory skeleton", Source: dst, Err: err}
		}
	}
	mfd, err := b.overlayMount(lower, dst)
	if err != nil {
		return err
	}
	if dst == "/" {
		err = unix.MoveMount(mfd, "", unix.AT_FDCWD, b.root, unix.MOVE_MOUNT_F_EMPTY_PATH)
		if err == nil {
			err = b.openRoot()
		}
	} else {
		err = b.attach(mfd, dst, "overlay")
	}
	unix.Close(mfd)
	if err != nil || !hasBelow {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return &MountError{Op: "read directory", Source: dst, Err: err}
	}
	for _, e := range ents {
		child := path.Join(dst, e.Name())
		_, isMount := mounts[child]
		switch {
		case e.Type().IsDir():
			err = b.overlayTree(child, mounts)
		case e.Type().IsRegular():
			err = b.bindLower(src+"/"+e.Name(), child)
		case isMount:
			err = b.bindLower(src+"/"+e.Name(), child)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// skeleton copies the directories and symlinks of directory src into the new directory dst, with empty files in
// place of its regular files (mount points for read-only binds of them); other file types are left out.
func skeleton(src, dst string) error {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return err
	}
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		s, d := src+"/"+e.Name(), dst+"/"+e.Name()
		var est unix.Stat_t
		if err := unix.Lstat(s, &est); err != nil {
			continue // gone meanwhile
		}
		switch est.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			err = unix.Mkdir(d, est.Mode&0o7777)
		case unix.S_IFLNK:
			var target string
			if target, err = os.Readlink(s); err == nil {
				err = unix.Symlink(target, d)
			}
		case unix.S_IFREG:
			err = os.WriteFile(d, nil, 0o644)
		}
		if err != nil {
			return err
		}
	}
	return unix.Chmod(dst, st.Mode&0o7777)
}

// bindLower attaches the clone's sub-tree at src (read-only already) at dst inside the new root.
func (b *builder) bindLower(src, dst string) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return &MountError{Op: "bind", Source: src, Target: dst, Err: err}
	}
	defer unix.Close(tree)
	return b.attach(tree, dst, "bind")
}

// below reports whether p is one of dirs or below one of them.
func below(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, strings.TrimSuffix(d, "/")+"/") {
			return true
		}
	}
	return false
}

func isDir(p string) bool {
	var st unix.Stat_t
	return unix.Stat(p, &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// visibleMounts lists the mounts at and below dir that a path lookup can reach, parents before children: a mount
// covered by another on the same mount point, or on one of its ancestors, is left out.
func visibleMounts(dir string) ([]*mountinfo.Info, error) {
	all, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("rootfs: read mount table: %w", err)
	}
	order := map[int]int{}
	byID := map[int]*mountinfo.Info{}
	children := map[int][]*mountinfo.Info{}
	for i, m := range all {
		order[m.ID] = i
		byID[m.ID] = m
	}
	var root *mountinfo.Info
	for _, m := range all {
		if byID[m.Parent] != nil {
			children[m.Parent] = append(children[m.Parent], m)
		} else if m.Mountpoint == dir {
			root = m
		}
	}
	if root == nil {
		return nil, fmt.Errorf("rootfs: %s is not a mount point", dir)
	}
	var out []*mountinfo.Info
	var visit func(m *mountinfo.Info)
	visit = func(m *mountinfo.Info) {
		for {
			var top *mountinfo.Info
			for _, c := range children[m.ID] {
				if c.Mountpoint == m.Mountpoint {
					top = c
				}
			}
			if top == nil {
				break
			}
			m = top
		}
		out = append(out, m)
		kids := children[m.ID]
		for _, c := range kids {
			if c.Mountpoint == m.Mountpoint || hiddenBySibling(c, kids, order) {
				continue
			}
			visit(c)
		}
	}
	visit(root)
	return out, nil
}

// hiddenBySibling reports whether a later sibling of c is mounted on an ancestor directory of c's mount point.
func hiddenBySibling(c *mountinfo.Info, siblings []*mountinfo.Info, order map[int]int) bool {
	for _, s := range siblings {
		if order[s.ID] > order[c.ID] && strings.HasPrefix(c.Mountpoint, s.Mountpoint+"/") {
			return true
		}
	}
	return false
}

// openLayers prepares where the upper and work directories live: the --persist directory (opened and locked
// already) or a fresh tmpfs, bounded by OverlaySize.
func (b *builder) openLayers() error {
	if b.persist >= 0 {
		return nil
	}
	if err := os.Mkdir(layersDir, 0o700); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	opts := "mode=0700"
	if b.spec.OverlaySize > 0 {
		opts += ",size=" + strconv.FormatInt(b.spec.OverlaySize, 10)
	}
	if err := unix.Mount("caisson-overlay", layersDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return &MountError{Op: "mount tmpfs", Target: layersDir, Err: err}
	}
	fd, err := unix.Open(layersDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: open %s: %w", layersDir, err)
	}
	b.persist = fd
	return nil
}

// layerDirs creates (or reuses) the upper and work directories of the mount at mountpoint and opens them. The
// work directory is emptied first: after a crash it may hold overlayfs's half-done copy-ups.
func (b *builder) layerDirs(mountpoint string) (upper, work int, err error) {
	name := LayerName(mountpoint)
	open := func(kind string) (int, error) {
		if err := unix.Mkdirat(b.persist, kind, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		dir, err := openBeneath(b.persist, kind, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return -1, err
		}
		defer unix.Close(dir)
		if err := unix.Mkdirat(dir, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, err
		}
		return openBeneath(dir, name, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	if upper, err = open(PersistUpper); err != nil {
		return -1, -1, b.layerError(mountpoint, err)
	}
	if work, err = open(PersistWork); err != nil {
		unix.Close(upper)
		return -1, -1, b.layerError(mountpoint, err)
	}
	if err := removeChildren(work); err != nil {
		unix.Close(upper)
		unix.Close(work)
		return -1, -1, b.layerError(mountpoint, fmt.Errorf("reset work directory: %w", err))
	}
	return upper, work, nil
}

// layerError describes a failure to prepare or mount the layers of mountpoint, naming the file system that
// holds them.
func (b *builder) layerError(mountpoint string, err error) error {
	where := "a tmpfs"
	if b.spec.Persist != "" {
		where = b.spec.Persist
	}
	hint := ""
	if b.spec.Persist != "" {
		hint = PersistHint(b.spec.Persist, err)
	}
	return fmt.Errorf("rootfs: overlay of %s with its upper layer in %s (on %s): %w%s", mountpoint, where,
		fsTypeName(b.persist), err, hint)
}

// overlayMount creates the overlay of lower (a directory of the read-only clone) for mountpoint, with userxattr
// (the only mode a user namespace may use) and nosuid and nodev. Layers are passed as file descriptors (Linux
// 6.13+), else as whole paths with "lowerdir+" (6.8+), else in the escaped legacy syntax.
func (b *builder) overlayMount(lower, mountpoint string) (int, error) {
	upper, work, err := b.layerDirs(mountpoint)
	if err != nil {
		return -1, err
	}
	defer unix.Close(upper)
	defer unix.Close(work)
	lowerFD, err := unix.Open(lower, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &MountError{Op: "open lower layer", Source: lower, Target: mountpoint, Err: err}
	}
	defer unix.Close(lowerFD)
	fdPath := func(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }
	type layerFn func(fsfd int) error
	methods := []layerFn{
		func(fsfd int) error {
			return firstErr(unix.FsconfigSetFd(fsfd, "lowerdir+", lowerFD),
				unix.FsconfigSetFd(fsfd, "upperdir", upper), unix.FsconfigSetFd(fsfd, "workdir", work))
		},
		func(fsfd int) error {
			return firstErr(unix.FsconfigSetString(fsfd, "lowerdir+", lower),
				unix.FsconfigSetString(fsfd, "upperdir", fdPath(upper)), unix.FsconfigSetString(fsfd, "workdir", fdPath(work)))
		},
		func(fsfd int) error {
			return firstErr(unix.FsconfigSetString(fsfd, "lowerdir", EscapeOverlayPath(lower)),
				unix.FsconfigSetString(fsfd, "upperdir", fdPath(upper)), unix.FsconfigSetString(fsfd, "workdir", fdPath(work)))
		},
	}
	var refused, failed error
	for i, layers := range methods {
		mfd, err := mountOverlay(layers)
		if err == nil {
			return mfd, nil
		}
		switch {
		case errors.Is(err, errLayerOption):
			// This way of passing the layers was refused: try the next.
			if refused == nil {
				refused = err
			}
		case errors.Is(err, unix.EINVAL) && i < len(methods)-1:
			// Before Linux 6.5 overlayfs takes its options as one string that only the final create parses: an
			// unknown "lowerdir+" fails there. Try the next way; if every way fails, the last one's error (the
			// legacy syntax every kernel knows) is the one that says what is wrong.
			failed = err
		default:
			return -1, b.layerError(mountpoint, err)
		}
	}
	if failed == nil {
		failed = refused
	}
	return -1, b.layerError(mountpoint, failed)
}

// errLayerOption marks a kernel that refused a way of passing the layers (try the next one).
var errLayerOption = errors.New("layer options refused")

// mountOverlay runs one fsopen/fsconfig/fsmount sequence for overlayfs with the given way of setting the layers.
func mountOverlay(layers func(fsfd int) error) (int, error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	_ = unix.FsconfigSetString(fsfd, "source", "caisson-overlay")
	if err := unix.FsconfigSetFlag(fsfd, "userxattr"); err != nil {
		return -1, fmt.Errorf("overlay option userxattr: %w%s", err, kernelLog(fsfd))
	}
	if err := layers(fsfd); err != nil {
		return -1, fmt.Errorf("%w: %w%s", errLayerOption, err, kernelLog(fsfd))
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("mount overlay: %w%s", err, kernelLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, fmt.Errorf("mount overlay: %w%s", err, kernelLog(fsfd))
	}
	return mfd, nil
}

// kernelLog reads the messages the kernel left on an fs context ("e overlayfs: ..."), as ": msg; msg".
func kernelLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for i := 0; i < 8; i++ {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// openPersist creates the --persist directory when it is missing, opens it, takes its lock (held by init until
// it exits, so a second sandbox on the same directory is refused, and any exit releases it) and checks that it
// holds changes to the same root (b.persistInfo; nil for a new directory, whose metadata is written once the
// driver is chosen).
func (b *builder) openPersist() error {
	p := b.spec.Persist
	if err := unix.Mkdir(p, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("rootfs: --persist %s: %w%s", p, err, PersistHint(p, err))
	}
	fd, err := unix.Open(p, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("rootfs: --persist %s: %w%s", p, err, PersistHint(p, err))
	}
	b.persist = fd
	lock, err := openBeneath(fd, PersistLock, unix.O_RDWR|unix.O_CREAT)
	if err != nil {
		return fmt.Errorf("rootfs: --persist %s: lock: %w%s", p, err, PersistHint(p, err))
	}
	if err := tryLockPersist(lock); err != nil {
		unix.Close(lock)
		if errors.Is(err, ErrPersistInUse) {
			return fmt.Errorf("rootfs: --persist %s is in use by another sandbox", p)
		}
		return fmt.Errorf("rootfs: --persist %s: %w", p, err)
	}
	heldLock = lock
	want := b.spec.Root
	if want == "" {
		want = "/"
	}
	if data, err := readBeneath(fd, PersistMeta); err == nil {
		pi, err := ParsePersistInfo(data)
		if err != nil {
			return fmt.Errorf("rootfs: --persist %s: %w", p, err)
		}
		if pi.Lower != want {
			return fmt.Errorf("rootfs: --persist %s holds changes to %s, not to %s (use another directory, or discard them with: caisson rm-tree %s)",
				p, describeLower(pi.Lower), describeLower(want), ShellQuote(p))
		}
		b.persistInfo = &pi
		return nil
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rootfs: --persist %s: %w%s", p, err, PersistHint(p, err))
	}
	return nil
}

// PersistHint is the hint for an error met in the --persist directory p: when access was refused, the entries at
// fault belong to ids this sandbox's map does not cover (another --map than the one that wrote them, subordinate
// ranges changed since, another user's sandbox); the hint names the command that removes the directory.
func PersistHint(p string, err error) string {
	if !errors.Is(err, unix.EACCES) && !errors.Is(err, unix.EPERM) {
		return ""
	}
	return fmt.Sprintf(" (it holds files of ids this sandbox's --map does not cover: run with the --map that wrote them, "+
		"or remove the directory with: caisson rm-tree %s)", ShellQuote(p))
}

// ShellQuote quotes s for a POSIX shell when it needs it, for commands quoted in hints.
func ShellQuote(s string) string {
	safe := s != ""
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("/._-+,=@%:", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writePersistInfo records, in a new --persist directory, the root its layers belong to and their driver.
func (b *builder) writePersistInfo(driver string) error {
	if b.persistInfo != nil {
		return nil
	}
	want := b.spec.Root
	if want == "" {
		want = "/"
	}
	data := fmt.Sprintf("{\"version\": 1, \"lower\": %s, \"overlay\": %s}\n", strconv.Quote(want), strconv.Quote(driver))
	if err := writeBeneath(b.persist, PersistMeta, []byte(data)); err != nil {
		return fmt.Errorf("rootfs: --persist %s: %w", b.spec.Persist, err)
	}
	return nil
}

func describeLower(l string) string {
	if l == "/" {
		return "the host view"
	}
	return "--rootfs " + l
}

// fsTypeName names the file system holding fd, for error messages.
func fsTypeName(fd int) string {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return "an unknown file system"
	}
	names := map[int64]string{
		unix.EXT4_SUPER_MAGIC: "ext4", unix.XFS_SUPER_MAGIC: "xfs", unix.BTRFS_SUPER_MAGIC: "btrfs",
		unix.TMPFS_MAGIC: "tmpfs", unix.OVERLAYFS_SUPER_MAGIC: "overlayfs", unix.NFS_SUPER_MAGIC: "nfs",
		unix.MSDOS_SUPER_MAGIC: "vfat", unix.FUSE_SUPER_MAGIC: "fuse", unix.PROC_SUPER_MAGIC: "proc",
		unix.SYSFS_MAGIC: "sysfs", 0x2011BAB0: "exfat", unix.SMB2_SUPER_MAGIC: "smb", 0xFF534D42: "cifs",
		unix.F2FS_SUPER_MAGIC: "f2fs", unix.RAMFS_MAGIC: "ramfs",
		unix.SQUASHFS_MAGIC: "squashfs", unix.ISOFS_SUPER_MAGIC: "iso9660",
	}
	if n, ok := names[int64(st.Type)]; ok {
		return n
	}
	return fmt.Sprintf("file system type %#x", st.Type)
}
