package unshare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/moby/sys/userns"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

const rmTreeUsage = "caisson rm-tree DIR..."

// rmTreeHelp is `caisson rm-tree --help`.
const rmTreeHelp = `Usage: ` + rmTreeUsage + `

Removes each DIR and everything below it: a --persist directory, a root unpacked by 'caisson rootfs unpack', any
tree your sandboxes wrote, with the entries that belong to your subordinate ids (which your own rm cannot remove)
and directories of mode 0500 or 0000. It removes them as root of a user namespace with the maps 'caisson run'
writes (see 'caisson unshare'); host root removes them itself.

Before removing anything it refuses a DIR that is not a directory (a symbolic link is not), /, your home
directory or a directory holding it, '.' and '..', a DIR owned by neither you nor one of your subordinate ids, a
mount point, and a --persist directory, or a directory inside one, that a running sandbox uses. It holds those
directories' --persist locks while it removes, so that no sandbox can start on them meanwhile. Below DIR it never
follows a symbolic link and never enters another mount; an entry it cannot remove (a --persist directory in use,
a mount point, a file of an id outside your ranges) is reported and kept, with the directories above it, and it
goes on with the rest.

Exit status: 0 when every DIR is gone, 125 otherwise.
`

// RmTreeFlags returns the flag set `caisson rm-tree` parses (none but --help).
func RmTreeFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("rm-tree", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// RmTreeMain runs `caisson rm-tree DIR...`.
func RmTreeMain(args []string) int {
	fs := RmTreeFlags()
	err := fs.Parse(args)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Print(rmTreeHelp)
		return 0
	}
	if err != nil {
		return fail("rm-tree: %v (usage: %s)", err, rmTreeUsage)
	}
	if fs.NArg() == 0 {
		return fail("rm-tree: no directory given (usage: %s)", rmTreeUsage)
	}
	caller := parent.CurrentCaller()
	plan, err := parent.NewPlan(context.Background(), "auto", caller)
	if err != nil {
		return fail("rm-tree: %v", err)
	}
	homes := homeDirs()
	var paths []string
	for _, arg := range fs.Args() {
		p, err := resolve(arg)
		if err != nil {
			return fail("rm-tree: %v", err)
		}
		if err := refuse(p, homes); err != nil {
			return fail("rm-tree: %v", err)
		}
		paths = append(paths, p)
	}
	paths = outermost(paths)
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var extra []*os.File
	locks := lockSet{}
	defer locks.release()
	for _, p := range paths {
		parentDir, dir, err := openTarget(p, caller.UID, plan.UIDMap)
		if err != nil {
			return fail("rm-tree: %v", err)
		}
		files = append(files, parentDir, dir)
		extra = append(extra, parentDir, dir)
		if err := locks.take(p, int(dir.Fd())); err != nil {
			return fail("rm-tree: %v", err)
		}
	}
	if caller.UID == 0 && !userns.RunningInUserNS() {
		// Host root needs no user namespace (where it would not even be mapped): it removes the trees itself.
		trees := make([]tree, len(paths))
		for i, p := range paths {
			trees[i] = tree{parent: int(extra[2*i].Fd()), dir: int(extra[2*i+1].Fd()), path: p}
		}
		return removeAll(trees)
	}
	proc, code := parent.StartUserNS(parent.UserNSOptions{Name: "rm-tree", Plan: plan, Stage: StageName,
		Args: append([]string{stageRemove}, paths...), Extra: extra})
	if proc == nil {
		return code
	}
	return proc.Wait()
}

// resolve makes arg absolute, with the symbolic links of its parent directories resolved (its last element is
// kept as it is: rm-tree never follows it).
func resolve(arg string) (string, error) {
	if arg == "" {
		return "", errors.New("empty path")
	}
	if strings.Trim(arg, "/") == "" {
		return "/", nil
	}
	if last := filepath.Base(strings.TrimRight(arg, "/")); last == "." || last == ".." {
		return "", fmt.Errorf("refusing to remove %q: name the directory itself", arg)
	}
	abs, err := filepath.Abs(arg)
	if err != nil {
		return "", err
	}
	if abs == "/" {
		return abs, nil
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Errorf("%s: %v", arg, err)
	}
	return filepath.Join(dir, filepath.Base(abs)), nil
}

// refuse returns why rm-tree must not remove the absolute, resolved path p, or nil: / itself, or one of the
// caller's home directories homes (resolved too), or a directory that holds one.
func refuse(p string, homes []string) error {
	if p == "/" {
		return errors.New("refusing to remove /")
	}
	for _, h := range homes {
		switch {
		case h == "":
		case p == h:
			return fmt.Errorf("refusing to remove your home directory %s", p)
		case strings.HasPrefix(h, p+"/"):
			return fmt.Errorf("refusing to remove %s: it holds your home directory %s", p, h)
		}
	}
	return nil
}

// outermost drops the paths that another one holds (or repeats): removing the outer tree removes them.
func outermost(paths []string) []string {
	var out []string
	for i, p := range paths {
		inner := false
		for j, q := range paths {
			if (p == q && j < i) || strings.HasPrefix(p, q+"/") || (q == "/" && p != "/") {
				inner = true
				break
			}
		}
		if !inner {
			out = append(out, p)
		}
	}
	return out
}

// ownedByCaller reports whether uid is the caller's own or one of the subordinate ids the caller's maps give
// (their outside ids).
func ownedByCaller(uid, callerUID uint32, uidMap []idmap.Mapping) bool {
	if uid == callerUID {
		return true
	}
	for _, m := range uidMap {
		if uid >= m.Outside && uint64(uid) < uint64(m.Outside)+uint64(m.Count) {
			return true
		}
	}
	return false
}

// homeDirs returns the caller's home directories ($HOME and the passwd entry's), as given and resolved.
func homeDirs() []string {
	var out []string
	add := func(h string) {
		if h == "" || !filepath.IsAbs(h) {
			return
		}
		out = append(out, filepath.Clean(h))
		if r, err := filepath.EvalSymlinks(h); err == nil {
			out = append(out, r)
		}
	}
	add(os.Getenv("HOME"))
	if u, err := user.LookupId(strconv.Itoa(os.Getuid())); err == nil {
		add(u.HomeDir)
	}
	return out
}

// openTarget opens the directory p (O_PATH, without following it) and its parent directory, and checks it: a
// directory, not a mount point, owned by the caller or one of the caller's subordinate ids. The stage in the user
// namespace removes exactly the directory opened here.
func openTarget(p string, callerUID uint32, uidMap []idmap.Mapping) (parentDir, dir *os.File, err error) {
	pfd, err := unix.Open(filepath.Dir(p), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", filepath.Dir(p), err)
	}
	parentDir = os.NewFile(uintptr(pfd), filepath.Dir(p))
	dfd, err := unix.Openat(pfd, filepath.Base(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		parentDir.Close()
		if errors.Is(err, unix.ENOENT) {
			return nil, nil, fmt.Errorf("%s: no such directory", p)
		}
		return nil, nil, fmt.Errorf("%s: %v", p, err)
	}
	dir = os.NewFile(uintptr(dfd), p)
	fail := func(format string, args ...any) (*os.File, *os.File, error) {
		parentDir.Close()
		dir.Close()
		return nil, nil, fmt.Errorf(format, args...)
	}
	var stx unix.Statx_t
	if err := unix.Statx(dfd, "", unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return fail("%s: %v", p, err)
	}
	switch stx.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
	case unix.S_IFLNK:
		return fail("%s is a symbolic link, not a directory (rm removes the link itself)", p)
	default:
		return fail("%s is not a directory (rm-tree removes directory trees)", p)
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return fail("%s is a mount point: refusing to remove it", p)
	}
	if !ownedByCaller(stx.Uid, callerUID, uidMap) {
		return fail("%s is owned by uid %d, neither you (uid %d) nor one of your subordinate ids (see caisson idmap): refusing to remove it",
			p, stx.Uid, callerUID)
	}
	return parentDir, dir, nil
}

// lockSet holds the --persist locks rm-tree takes: a directory's own and those of the directories above it.
type lockSet struct {
	fds  []int
	seen map[[2]uint64]bool // the directories looked at, by device and inode
}

// take locks the --persist directory dir (of path p), and each --persist directory above it; a lock that a
// running sandbox holds is an error naming the directory.
func (l *lockSet) take(p string, dir int) error {
	if err := l.lock(dir, p, p); err != nil {
		return err
	}
	for a := filepath.Dir(p); ; a = filepath.Dir(a) {
		fd, err := unix.Open(a, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = l.lock(fd, a, p)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		if a == "/" {
			return nil
		}
	}
}

// lock takes the lock of the directory open at dirfd (named dir) when it is a --persist directory, once.
func (l *lockSet) lock(dirfd int, dir, target string) error {
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return nil
	}
	key := [2]uint64{st.Dev, st.Ino}
	if l.seen == nil {
		l.seen = map[[2]uint64]bool{}
	}
	if l.seen[key] {
		return nil
	}
	l.seen[key] = true
	fd, err := rootfs.LockPersist(dirfd)
	switch {
	case errors.Is(err, rootfs.ErrPersistInUse) && dir == target:
		return fmt.Errorf("%s is in use by a running sandbox (its --persist directory): stop it first (see caisson ps)", target)
	case errors.Is(err, rootfs.ErrPersistInUse):
		return fmt.Errorf("%s is inside the --persist directory %s, in use by a running sandbox: stop it first (see caisson ps)", target, dir)
	case err != nil:
		return fmt.Errorf("%s: %v", dir, err)
	}
	if fd >= 0 {
		l.fds = append(l.fds, fd)
	}
	return nil
}

// release drops the locks.
func (l *lockSet) release() {
	for _, fd := range l.fds {
		unix.Close(fd)
	}
}
