package unshare

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

// StageName is the argv[0] of the process in the new user namespace; main dispatches on it before parsing any
// flag.
const StageName = "caisson-unshare"

// The stage's jobs (its argv[2]).
const (
	stageExec   = "exec"    // replace itself with the command: argv[3:]
	stageRemove = "rm-tree" // remove the trees: argv[3:] are their paths; each has two descriptors (see removeTrees)
	// StageDiff lists a --persist directory's changes (`caisson diff`): argv[3] is the directory, argv[4] an
	// optional "--json".
	StageDiff = "diff"
)

// Exit codes of a command that cannot be run, as `caisson run` has them.
const (
	exitCannotExec = 126
	exitNotFound   = 127
)

// StageMain runs in the new user namespace: argv is {StageName, "root"|"user", job, ARGS...}. It waits until the
// parent has written the ID maps, re-arms its parent-death signal, becomes uid 0 when told to ("root": caisson runs
// as host root), and does its job.
func StageMain() int {
	if len(os.Args) < 3 {
		return fail("%s: internal stage started without its arguments", StageName)
	}
	ppid := os.Getppid()
	start := os.NewFile(parent.UserNSStartFD, "start")
	var b [1]byte
	n, _ := start.Read(b[:])
	start.Close()
	if n != 1 {
		return exitError // the maps could not be written: the parent says why
	}
	// The parent's death kills this process (and the command it becomes), checked once more now in case the
	// parent died before the signal was armed again.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0); err != nil || os.Getppid() != ppid {
		return exitError
	}
	if os.Args[1] == "root" {
		if err := syscall.Setresgid(0, 0, 0); err != nil {
			return fail("%s: setresgid 0: %v", StageName, err)
		}
		if err := syscall.Setresuid(0, 0, 0); err != nil {
			return fail("%s: setresuid 0: %v", StageName, err)
		}
	}
	switch os.Args[2] {
	case stageExec:
		return execCommand(os.Args[3:])
	case stageRemove:
		return removeTrees(os.Args[3:])
	case StageDiff:
		return diffTree(os.Args[3:])
	}
	return fail("%s: unknown job %q", StageName, os.Args[2])
}

// execCommand replaces this process with the command, found through $PATH as a shell finds it. As uid 0 the
// command gets root's capabilities from its exec, like any root of a new user namespace; the inheritable and
// ambient ones the stage was started with are dropped then (they matter only to a command that keeps the caller's
// own id, --map keep-id, which keeps them).
func execCommand(args []string) int {
	if len(args) == 0 {
		return fail("unshare: no command")
	}
	if os.Getuid() == 0 {
		dropInheritable()
	}
	path, err := exec.LookPath(args[0])
	if errors.Is(err, exec.ErrDot) {
		err = nil // "." in $PATH: found there, as a shell would run it
	}
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return failCode(exitNotFound, "unshare: %s: command not found", args[0])
		}
		return failCode(exitCannotExec, "unshare: %s: %v", args[0], unwrapExec(err))
	}
	err = syscall.Exec(path, args, os.Environ())
	if errors.Is(err, unix.ENOENT) {
		return failCode(exitNotFound, "unshare: %s: %v", path, err)
	}
	return failCode(exitCannotExec, "unshare: cannot execute %s: %v", path, err)
}

// diffTree prints the changes of the --persist directory args[0] (as JSON when args[1] is "--json").
func diffTree(args []string) int {
	if len(args) == 0 {
		return fail("diff: no directory")
	}
	changes, err := rootfs.Diff(args[0])
	if err == nil {
		err = rootfs.WriteChanges(os.Stdout, changes, len(args) > 1 && args[1] == "--json")
	}
	if err != nil {
		return fail("diff: %v", err)
	}
	return 0
}

// dropInheritable empties the inheritable capabilities, and with them the ambient ones.
func dropInheritable() {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return
	}
	data[0].Inheritable, data[1].Inheritable = 0, 0
	_ = unix.Capset(&hdr, &data[0])
}

// unwrapExec drops exec.Error's "exec: NAME:" prefix, which the caller's message already carries.
func unwrapExec(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	return err
}

func failCode(code int, format string, args ...any) int {
	fail(format, args...)
	return code
}

// maxReported bounds the entries rm-tree names; the rest are counted.
const maxReported = 20

// removeTrees removes each tree of paths: path i has the descriptors 4+2i (its parent directory) and 5+2i (the
// directory itself), opened and checked by the parent, which holds the trees' own --persist locks meanwhile.
func removeTrees(paths []string) int {
	trees := make([]tree, len(paths))
	for i, p := range paths {
		trees[i] = tree{parent: parent.UserNSStartFD + 1 + 2*i, dir: parent.UserNSStartFD + 2 + 2*i, path: p}
	}
	return removeAll(trees)
}

// tree is a directory rm-tree removes: descriptors of its parent directory and of itself, and its path.
type tree struct {
	parent, dir int
	path        string
}

// removeAll removes the trees, reporting what it could not remove, and returns rm-tree's exit code.
func removeAll(trees []tree) int {
	reported, failed := 0, 0
	for _, t := range trees {
		for _, err := range rootfs.RemoveTree(t.parent, t.dir, t.path) {
			failed++
			if reported < maxReported {
				reported++
				fmt.Fprintf(os.Stderr, "caisson: rm-tree: %v%s\n", err, ownerHint(err))
			}
		}
	}
	if failed > reported {
		fmt.Fprintf(os.Stderr, "caisson: rm-tree: %d more entries could not be removed\n", failed-reported)
	}
	if failed > 0 {
		return exitError
	}
	return 0
}

// ownerHint explains a refused removal whose entry, or the directory holding it, belongs to an id this user
// namespace does not map: the kernel shows such an owner as the overflow id, and nothing here may override its
// permissions.
func ownerHint(err error) string {
	var pe *os.PathError
	if !errors.As(err, &pe) || !(errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
		return ""
	}
	uids, gids := readMap("/proc/self/uid_map"), readMap("/proc/self/gid_map")
	for _, p := range []string{pe.Path, filepath.Dir(pe.Path)} {
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil {
			continue
		}
		if !mapped(uids, st.Uid, "uid") || !mapped(gids, st.Gid, "gid") {
			return fmt.Sprintf(" (%s belongs to an id outside your subordinate ranges, shown as %d:%d here: only the host's root can remove it)",
				p, st.Uid, st.Gid)
		}
	}
	return ""
}

// mapped reports whether the inside id is mapped, unless it is the kernel's overflow id, which stands for every
// unmapped one (and which is mapped only when the ranges reach it: then it may be either).
func mapped(maps []idmap.Mapping, id uint32, kind string) bool {
	overflow := uint32(65534)
	if b, err := os.ReadFile("/proc/sys/kernel/overflow" + kind); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil {
			overflow = uint32(n)
		}
	}
	if id != overflow {
		return true
	}
	for _, m := range maps {
		if id >= m.Inside && uint64(id) < uint64(m.Inside)+uint64(m.Count) {
			return true
		}
	}
	return false
}

// readMap reads a /proc/PID/uid_map or gid_map.
func readMap(path string) []idmap.Mapping {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []idmap.Mapping
	for _, line := range strings.Split(string(b), "\n") {
		var m idmap.Mapping
		if _, err := fmt.Sscan(line, &m.Inside, &m.Outside, &m.Count); err == nil {
			out = append(out, m)
		}
	}
	return out
}
