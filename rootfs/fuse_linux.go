package rootfs

// fuse-overlayfs for --overlay where the kernel's overlayfs cannot do the job.
//
// In the sandbox's user namespace the host's root (and every id outside the map) shows as the overflow id, and
// the sandbox's root has no rights over such files: the kernel's overlayfs can neither open them for writing nor
// give a copy-up their owner, so /etc/motd stays read-only. fuse-overlayfs serves the overlay from a process
// instead: it shows those ids as root (uidmapping/gidmapping below), the kernel checks permissions against what
// it shows (default_permissions), and its copy-up reads the lower file with the caller's own rights (world-readable
// files only, as before) into an upper layer it owns.
//
// The daemon and the sandbox: it is a child of init, started during Setup, so it lives in the sandbox's PID
// namespace and dies with it on every path (init's exit, SIGKILL of caisson through init's parent-death signal,
// and with --share pid its own parent-death signal and init's final sweep). The command can see it (ps shows
// "fuse-overlayfs" with its layers) and, being root in the same user namespace, can kill it: no id or capability
// separates them. Killing it is not silent: the kernel aborts the FUSE connection (every access to the root fails
// with ENOTCONN) and init, which reaps it, prints one line and ends the sandbox. It runs in its own copy of init's
// mount namespace, taken before the root is pivoted: it never sees the file system it serves (so it cannot
// deadlock on its own mount) and the command cannot change its view. It holds /dev/fuse; the sandbox's /dev never
// has it.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Notify receives the one-line notices of Setup (such as the kernel overlay fallback). Init's stderr by default.
var Notify io.Writer = os.Stderr

// fuseDevice is /dev/fuse's major:minor.
const fuseMajor, fuseMinor = 10, 229

// OpenFuseDevice opens /dev/fuse read-write and checks that it is the FUSE device.
func OpenFuseDevice() (int, error) {
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR ||
		unix.Major(st.Rdev) != fuseMajor || unix.Minor(st.Rdev) != fuseMinor {
		unix.Close(fd)
		return -1, fmt.Errorf("/dev/fuse is not the character device %d:%d", fuseMajor, fuseMinor)
	}
	return fd, nil
}

// helpers are the processes Setup started that the sandbox needs (the fuse-overlayfs daemon), by PID; helperMounts
// holds, for each, a descriptor of the mount it serves (close-on-exec), which RootHelperGone probes.
var (
	helpersMu    sync.Mutex
	helpers      = map[int]string{}
	helperMounts = map[int]int{}
)

// helperProbeTimeout bounds RootHelperGone's probe of a mount whose daemon may be stopped rather than dead.
const helperProbeTimeout = 100 * time.Millisecond

// RootHelperGone reports whether a helper's file system has lost its daemon (its FUSE connection is aborted), even
// if the daemon is not reaped yet: the daemon's /dev/fuse descriptor closes early in its exit, so a command can
// fail on the dead root (ENOTCONN) and end before init collects the daemon. Init's reaper calls it when the command
// ends, so that such a run ends with caisson's error rather than the command's status. The probe is a statfs
// through the mount, bounded by helperProbeTimeout (a stopped daemon does not answer; that is not "gone").
func RootHelperGone() (name string, gone bool) {
	helpersMu.Lock()
	probes := map[int]int{}
	for pid, fd := range helperMounts {
		probes[pid] = fd
	}
	helpersMu.Unlock()
	for pid, fd := range probes {
		res := make(chan error, 1)
		go func() {
			var st unix.Statfs_t
			res <- unix.Fstatfs(fd, &st)
		}()
		select {
		case err := <-res:
			if errors.Is(err, unix.ENOTCONN) {
				return Helper(pid), true
			}
		case <-time.After(helperProbeTimeout):
		}
	}
	return "", false
}

// Helper names the helper process pid that Setup started ("fuse-overlayfs"), or returns "" for any other PID.
// Init's reaper calls it: a helper that exits while the command runs has taken the sandbox's root with it, and
// the sandbox must end rather than go on with a dead file system.
func Helper(pid int) string {
	helpersMu.Lock()
	defer helpersMu.Unlock()
	return helpers[pid]
}

// chooseDriver decides which overlay driver this run uses and says why when it falls back to the kernel's where
// fuse-overlayfs would be needed. Runs in init, inside the user namespace, before anything is mounted.
//
// The rule: the kernel's overlayfs when it can do the job (the lower tree's owner is mapped in the user
// namespace: a --rootfs the caller owns, or any tree when the caller is the host's root), fuse-overlayfs
// otherwise (the host view), and a --persist directory keeps the driver that made it (their layouts differ).
// CAISSON_OVERLAY_DRIVER forces one.
func (b *builder) chooseDriver() (string, error) {
	if b.persistInfo != nil {
		d := b.persistInfo.driver()
		if d == DriverFuse {
			if err := b.openFuse(); err != nil {
				return "", fmt.Errorf("rootfs: --persist %s was made with fuse-overlayfs, which cannot run: %w", b.spec.Persist, err)
			}
		} else if b.needsFuse() {
			fmt.Fprintf(Notify, "caisson: notice: --persist %s was made with kernel overlayfs and keeps it: files owned by ids outside the sandbox (the host's root) stay read-only\n", b.spec.Persist)
		}
		return d, nil
	}
	switch b.spec.OverlayDriver {
	case DriverKernel:
		return DriverKernel, nil
	case DriverFuse:
		if err := b.openFuse(); err != nil {
			return "", fmt.Errorf("rootfs: %s=%s: %w", DriverEnv, DriverFuse, err)
		}
		return DriverFuse, nil
	}
	if !b.needsFuse() {
		return DriverKernel, nil
	}
	if err := b.openFuse(); err != nil {
		fmt.Fprintf(Notify, "caisson: notice: --overlay uses kernel overlayfs (%v): files owned by the host's root stay read-only\n", err)
		return DriverKernel, nil
	}
	return DriverFuse, nil
}

// needsFuse reports whether the lower tree's owner is outside the user namespace's map (so the kernel's overlayfs
// cannot copy its files up): the host's root for the host view, the top directory's owner for --rootfs.
func (b *builder) needsFuse() bool {
	if b.spec.Root == "" {
		return !hostIDMapped("/proc/self/uid_map", 0)
	}
	var st unix.Stat_t
	if err := unix.Stat(b.spec.Root, &st); err != nil {
		return false
	}
	return st.Uid == uint32(overflowID("uid"))
}

// openFuse finds fuse-overlayfs and opens /dev/fuse (in init, so that the device's opener is in the sandbox's user
// namespace, as the kernel requires), or says why it cannot.
func (b *builder) openFuse() error {
	if b.spec.FuseOverlayfs == "" {
		return errors.New("fuse-overlayfs is not installed")
	}
	if b.fuseDev >= 0 {
		return nil
	}
	fd, err := OpenFuseDevice()
	if err != nil {
		return fmt.Errorf("/dev/fuse: %w", err)
	}
	b.fuseDev = fd
	return nil
}

// fuseDaemonDir is where the fuse-overlayfs daemon finds its layers, in its own copy of init's mount namespace:
// the lower tree, and the layers' file system (the --persist directory or the tmpfs).
const (
	fuseLayersDir = baseDir + "/fuse-layers"
)

// fuseRoot builds the new root as one fuse-overlayfs mount over the whole cloned tree (attached read-only at
// lowerDir): fuse-overlayfs reads the lower tree through its sub-mounts, so unlike the kernel's overlayfs it
// needs no overlay per mount. The mounts that are never overlaid (pseudo file systems, FUSE, the directories the
// sandbox covers) are then bound read-only on top of it as they are. One upper layer, named for "/".
func (b *builder) fuseRoot(tree int) error {
	infos, err := attachLower(tree, b.treeAttr)
	if err != nil {
		return err
	}
	if err := b.openLayers(); err != nil {
		return err
	}
	upper, work, err := b.layerDirs("/")
	if err != nil {
		return err
	}
	unix.Close(upper)
	unix.Close(work)
	// The daemon names its layers by path: give it the layers' file system at a fixed place in its copy of this
	// mount namespace (a --persist path may hold ',' or ':', and may lie below /tmp, which baseDir covers).
	layers, err := unix.OpenTree(b.persist, "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return &MountError{Op: "bind layers", Target: fuseLayersDir, Err: err}
	}
	defer unix.Close(layers)
	if err := os.Mkdir(fuseLayersDir, 0o700); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.MoveMount(layers, "", unix.AT_FDCWD, fuseLayersDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &MountError{Op: "bind layers", Target: fuseLayersDir, Err: err}
	}
	// The stand-ins of the entries the caller cannot read sit above the tree (StandIn).
	lower := lowerDir
	if dir, err := b.buildStandIns(); err != nil {
		return err
	} else if dir != "" {
		lower = dir + ":" + lowerDir
	}
	mfd, err := b.startFuse(lower, fuseLayersDir+"/"+PersistUpper+"/"+LayerName("/"),
		fuseLayersDir+"/"+PersistWork+"/"+LayerName("/"))
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := os.Mkdir(b.root, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, b.root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &MountError{Op: "attach fuse-overlayfs", Target: b.root, Err: err}
	}
	if err := b.openRoot(); err != nil {
		return err
	}
	var bound []string
	for _, m := range infos {
		rel := strings.TrimPrefix(m.Mountpoint, lowerDir)
		if rel == "" || Overlayable(rel, m.FSType) || below(rel, bound) {
			continue
		}
		if err := b.bindLower(m.Mountpoint, rel); err != nil {
			if errors.Is(err, unix.EACCES) {
				// A mount below a directory the caller may not enter: the caller cannot see it either.
				continue
			}
			return err
		}
		bound = append(bound, rel)
	}
	return nil
}

// fuseStartTimeout bounds the wait for the daemon's first answer.
const fuseStartTimeout = 10 * time.Second

// startFuse mounts a FUSE file system served by a new fuse-overlayfs daemon over lower, upper and work (paths in
// this mount namespace) and returns the detached mount. The mount is made here with the new mount API on the
// /dev/fuse descriptor that init opened (fuse-overlayfs gets it as /dev/fd/3, libfuse's "already mounted" form),
// so the daemon never mounts anything, and the mount is nosuid and nodev, allow_other (the kernel limits it to
// this user namespace) and default_permissions (the kernel checks modes against the ids the daemon reports).
//
// The daemon is init's child, in the sandbox's PID namespace, with a parent-death signal: it dies with init on
// every path (init's exit tears the PID namespace down; with --share pid, the parent-death signal and init's
// final sweep of its children do it). It runs in its own copy of this mount namespace, so init's pivot_root
// neither moves its root into the file system it serves nor takes its layers away.
func (b *builder) startFuse(lower, upper, work string) (int, error) {
	dev := b.fuseDev
	fsfd, err := unix.Fsopen("fuse", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, &MountError{Op: "fsopen fuse", Target: "/", Err: err}
	}
	defer unix.Close(fsfd)
	for _, kv := range [][2]string{
		{"source", "caisson-overlay"}, {"subtype", DriverFuse}, {"fd", strconv.Itoa(dev)}, {"rootmode", "40000"},
		{"user_id", strconv.Itoa(unix.Geteuid())}, {"group_id", strconv.Itoa(unix.Getegid())},
		{"allow_other", ""}, {"default_permissions", ""},
	} {
		if kv[1] == "" {
			err = unix.FsconfigSetFlag(fsfd, kv[0])
		} else {
			err = unix.FsconfigSetString(fsfd, kv[0], kv[1])
		}
		if err != nil {
			return -1, &MountError{Op: "mount fuse option " + kv[0], Target: "/", Err: fmt.Errorf("%w%s", err, kernelLog(fsfd))}
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, &MountError{Op: "mount fuse", Target: "/", Err: fmt.Errorf("%w%s", err, kernelLog(fsfd))}
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return -1, &MountError{Op: "mount fuse", Target: "/", Err: fmt.Errorf("%w%s", err, kernelLog(fsfd))}
	}
	opts := []string{"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work, fuseIDOptions()}
	if b.spec.Persist != "" {
		// No kernel write-back cache: a write returns once it is in the upper layer, so that a SIGKILL of the
		// sandbox loses no acknowledged write.
		opts = append(opts, "writeback=0")
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("rootfs: %w", err)
	}
	defer null.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("rootfs: %w", err)
	}
	files := []uintptr{null.Fd(), null.Fd(), errW.Fd(), uintptr(dev)}
	if heldLock >= 0 {
		// The daemon holds the --persist lock too (fd 4, never used): init's exit releases its copy before the
		// kernel kills the rest of the PID namespace, and the next sandbox must not reset the work directory
		// while this daemon may still write to it.
		files = append(files, uintptr(heldLock))
	}
	pid, err := syscall.ForkExec(b.spec.FuseOverlayfs,
		[]string{DriverFuse, "-f", "-o", strings.Join(opts, ","), "/dev/fd/3"},
		&syscall.ProcAttr{
			Dir:   "/",
			Env:   []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"},
			Files: files,
			Sys:   &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS, Pdeathsig: unix.SIGKILL},
		})
	errW.Close()
	// Only the daemon holds the device now: if it dies, the kernel aborts the connection and every access to the
	// mount fails (ENOTCONN) instead of waiting for an answer forever.
	unix.Close(dev)
	b.fuseDev = -1
	if err != nil {
		errR.Close()
		unix.Close(mfd)
		return -1, fmt.Errorf("rootfs: start %s: %w", b.spec.FuseOverlayfs, err)
	}
	helpersMu.Lock()
	helpers[pid] = DriverFuse
	helpersMu.Unlock()
	b.fuseServed = true
	log := newDaemonLog(errR)
	if err := waitFuse(mfd, pid); err != nil {
		unix.Close(mfd)
		return -1, fmt.Errorf("%w%s", err, log.startFailed())
	}
	log.started()
	if probe, err := unix.FcntlInt(uintptr(mfd), unix.F_DUPFD_CLOEXEC, 3); err == nil {
		helpersMu.Lock()
		helperMounts[pid] = probe
		helpersMu.Unlock()
	}
	return mfd, nil
}

// daemonLog forwards the daemon's stderr to Notify as "caisson: fuse-overlayfs: ..." lines, without the noise
// fuse-overlayfs prints at every start ("unknown argument ignored: lazytime", an option meant for a mount it
// does not make here). Until the daemon has started the lines are kept, for the error that says why it did not.
type daemonLog struct {
	mu      sync.Mutex
	early   []string
	running bool
	done    chan struct{}
}

func newDaemonLog(r *os.File) *daemonLog {
	l := &daemonLog{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "unknown argument ignored:") {
				continue
			}
			l.mu.Lock()
			if l.running {
				fmt.Fprintf(Notify, "caisson: %s: %s\n", DriverFuse, line)
			} else {
				l.early = append(l.early, line)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *daemonLog) started() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running = true
	for _, line := range l.early {
		fmt.Fprintf(Notify, "caisson: %s: %s\n", DriverFuse, line)
	}
	l.early = nil
}

// startFailed returns what the dead daemon said, as ": ..." (it is reaped already, so its stderr is closed).
func (l *daemonLog) startFailed() string {
	select {
	case <-l.done:
	case <-time.After(time.Second):
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.early) == 0 {
		return ""
	}
	return ": " + strings.Join(l.early, "; ")
}

// waitFuse waits (bounded) until the daemon answers a stat of the mount's root; on failure it kills and reaps it.
func waitFuse(mfd, pid int) error {
	done := make(chan error, 1)
	go func() {
		var stx unix.Statx_t
		done <- unix.Statx(mfd, "", unix.AT_EMPTY_PATH|unix.AT_STATX_FORCE_SYNC, unix.STATX_BASIC_STATS, &stx)
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(fuseStartTimeout):
		err = fmt.Errorf("no answer in %v", fuseStartTimeout)
	}
	if err == nil {
		return nil
	}
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	status := ""
	if got, werr := unix.Wait4(pid, &ws, 0, nil); werr == nil && got == pid {
		if ws.Exited() {
			status = fmt.Sprintf(" (it exited with status %d)", ws.ExitStatus())
		}
	}
	helpersMu.Lock()
	delete(helpers, pid)
	helpersMu.Unlock()
	return fmt.Errorf("rootfs: fuse-overlayfs did not start%s: %w", status, err)
}

// fuseIDOptions returns fuse-overlayfs's id options: every id the user namespace maps is shown as it is, and the
// overflow id (what the kernel shows for an id outside the map, such as the host's root) is shown as root
// ("uidmapping", whose entries are raw:shown:count and are tried last first). Copy-up keeps the lower file's raw
// owner, the overflow id, so it must be mapped; when it is not (--map single), every file is shown as root
// ("squash_to_root"; there, only the caller's id is mapped, and it is root already).
func fuseIDOptions() string {
	uids, gids := readIDMap("/proc/self/uid_map"), readIDMap("/proc/self/gid_map")
	ou, og := overflowID("uid"), overflowID("gid")
	if !inside(uids, ou) || !inside(gids, og) {
		return "squash_to_root"
	}
	return "uidmapping=" + idMapping(uids, ou) + ",gidmapping=" + idMapping(gids, og)
}

// idRange is one line of a uid_map or gid_map: ids [In, In+N) inside are [Out, Out+N) outside.
type idRange struct{ In, Out, N uint64 }

func readIDMap(p string) []idRange {
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []idRange
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r idRange
		if n, _ := fmt.Sscan(sc.Text(), &r.In, &r.Out, &r.N); n == 3 {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].In < out[j].In })
	return out
}

// hostIDMapped reports whether the host id is mapped in the map file p of this process.
func hostIDMapped(p string, id uint64) bool {
	_, ok := toInside(readIDMap(p), id)
	return ok
}

func inside(m []idRange, id uint64) bool {
	for _, r := range m {
		if id >= r.In && id < r.In+r.N {
			return true
		}
	}
	return false
}

// idMapping builds the uidmapping/gidmapping value: the overflow id shown as 0, then every mapped inside id as
// itself, with the overflow id cut out. fuse-overlayfs checks the last entry first, so a write as root (0) maps
// back to 0, not to the overflow id.
func idMapping(m []idRange, overflow uint64) string {
	parts := []string{fmt.Sprintf("%d:0:1", overflow)}
	add := func(a, n uint64) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d:%d:%d", a, a, n))
		}
	}
	for _, r := range m {
		n := r.N
		if r.In+n > 1<<32-1 {
			n = 1<<32 - 1 - r.In
		}
		if overflow >= r.In && overflow < r.In+n {
			add(r.In, overflow-r.In)
			add(overflow+1, r.In+n-overflow-1)
		} else {
			add(r.In, n)
		}
	}
	return strings.Join(parts, ":")
}

// overflowID reads the kernel's overflow uid or gid (65534 unless changed).
func overflowID(kind string) uint64 {
	b, err := os.ReadFile("/proc/sys/kernel/overflow" + kind)
	if err != nil {
		return 65534
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		return 65534
	}
	return n
}
