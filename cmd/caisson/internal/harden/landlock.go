package harden

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"unsafe"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"golang.org/x/sys/unix"
)

// Landlock file-system rights by the ABI that introduced them.
const (
	llRead = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_READ_DIR
	llABI1 = llRead | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_REMOVE_DIR |
		unix.LANDLOCK_ACCESS_FS_REMOVE_FILE | unix.LANDLOCK_ACCESS_FS_MAKE_CHAR | unix.LANDLOCK_ACCESS_FS_MAKE_DIR |
		unix.LANDLOCK_ACCESS_FS_MAKE_REG | unix.LANDLOCK_ACCESS_FS_MAKE_SOCK | unix.LANDLOCK_ACCESS_FS_MAKE_FIFO |
		unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK | unix.LANDLOCK_ACCESS_FS_MAKE_SYM
	// llFile are the rights that apply to a non-directory.
	llFile = unix.LANDLOCK_ACCESS_FS_EXECUTE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE | unix.LANDLOCK_ACCESS_FS_READ_FILE |
		unix.LANDLOCK_ACCESS_FS_TRUNCATE | unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
)

// Minimum ABIs caisson's Landlock modes need.
const (
	// abiWrites: restricting writes needs truncate (ABI 3); below it truncate(2) would stay allowed everywhere.
	abiWrites = 3
	// abiScopes: abstract UNIX socket and signal scoping (ABI 6).
	abiScopes = 6
)

var llRightNames = []struct {
	bit  uint64
	name string
}{
	{unix.LANDLOCK_ACCESS_FS_EXECUTE, "execute"}, {unix.LANDLOCK_ACCESS_FS_WRITE_FILE, "write_file"},
	{unix.LANDLOCK_ACCESS_FS_READ_FILE, "read_file"}, {unix.LANDLOCK_ACCESS_FS_READ_DIR, "read_dir"},
	{unix.LANDLOCK_ACCESS_FS_REMOVE_DIR, "remove_dir"}, {unix.LANDLOCK_ACCESS_FS_REMOVE_FILE, "remove_file"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_CHAR, "make_char"}, {unix.LANDLOCK_ACCESS_FS_MAKE_DIR, "make_dir"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_REG, "make_reg"}, {unix.LANDLOCK_ACCESS_FS_MAKE_SOCK, "make_sock"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_FIFO, "make_fifo"}, {unix.LANDLOCK_ACCESS_FS_MAKE_BLOCK, "make_block"},
	{unix.LANDLOCK_ACCESS_FS_MAKE_SYM, "make_sym"}, {unix.LANDLOCK_ACCESS_FS_REFER, "refer"},
	{unix.LANDLOCK_ACCESS_FS_TRUNCATE, "truncate"}, {unix.LANDLOCK_ACCESS_FS_IOCTL_DEV, "ioctl_dev"},
}

// LandlockABI returns the Landlock ABI version of the running kernel; an error when it has none (ENOSYS: not
// built in; EOPNOTSUPP: built in but disabled at boot).
func LandlockABI() (int, error) {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	if errno != 0 {
		return 0, errno
	}
	return int(v), nil
}

// fsRights returns the file-system rights an ABI knows (resolve_unix, ABI 9, is not handled: pathname UNIX
// sockets stay reachable, as they are without Landlock).
func fsRights(abi int) uint64 {
	r := uint64(llABI1)
	if abi >= 2 {
		r |= unix.LANDLOCK_ACCESS_FS_REFER
	}
	if abi >= 3 {
		r |= unix.LANDLOCK_ACCESS_FS_TRUNCATE
	}
	if abi >= 5 {
		r |= unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	}
	return r
}

// rightNames lists the names of the rights in r.
func rightNames(r uint64) []string {
	var out []string
	for _, n := range llRightNames {
		if r&n.bit != 0 {
			out = append(out, n.name)
		}
	}
	return out
}

// rulesetAttr is struct landlock_ruleset_attr up to scoped (ABI 6); older kernels accept it as long as the fields
// they do not know are zero.
type rulesetAttr struct {
	handledFS, handledNet, scoped uint64
}

// landlockPlan is a Landlock ruleset built before anything is dropped, enforced by restrict.
type landlockPlan struct {
	fd       int // ruleset fd, -1 when best-effort found no Landlock
	record   *LandlockRecord
	warnings []string
}

// landlockWritable lists the paths beneath which the command may write: /tmp and /dev (device nodes, ptys,
// /dev/shm), the working directory unless it is /, and --rw.
func landlockWritable(sec config.Security, workdir string) []string {
	out := []string{"/tmp", "/dev"}
	if workdir != "" && workdir != "/" {
		out = append(out, workdir)
	}
	return append(out, sec.RW...)
}

// planLandlock builds the ruleset: read and execute everywhere, every handled right beneath the writable paths
// (sec.Landlock auto: beneath every read-write mount of the sandbox's view), read, write and device ioctls on the
// character devices among the command's standard descriptors stdio (a terminal or /dev/null of the host, which
// /dev/stdout reopens), and in strict mode the abstract-socket and signal scopes. A requirement the kernel cannot
// meet is an error, unless sec.Landlock is best-effort, which records it in Missing and warns, or auto, which
// records it only.
func planLandlock(sec config.Security, workdir string, stdio []uintptr) (*landlockPlan, error) {
	strict := sec.Posture == config.PostureStrict
	auto := sec.Landlock == config.LandlockAuto
	best := sec.Landlock == config.LandlockBestEffort || auto
	p := &landlockPlan{fd: -1, record: &LandlockRecord{Mode: sec.Landlock}}
	missing := func(what, warning string) {
		p.record.Missing = append(p.record.Missing, what)
		if !auto {
			p.warnings = append(p.warnings, warning)
		}
	}
	var mounts []Mount
	if auto {
		b, err := os.ReadFile("/proc/self/mountinfo") // ~0.4 ms in a sandbox's view (about 50 mounts)
		if err != nil {
			p.record.Missing = append(p.record.Missing, "mount table")
			return p, nil // best-effort: no rules without knowing the mounts (init mounts /proc: not seen)
		}
		mounts = WritableMounts(string(b))
		for _, m := range mounts {
			if !slices.Contains(p.record.Writable, m.Target) {
				p.record.Writable = append(p.record.Writable, m.Target)
			}
		}
	} else {
		p.record.Writable = landlockWritable(sec, workdir)
	}
	abi, err := LandlockABI()
	if err != nil {
		if !best {
			return nil, fmt.Errorf("harden: --landlock: this kernel has no Landlock (%w); --landlock=best-effort runs without it", err)
		}
		missing("landlock", fmt.Sprintf("landlock: this kernel has no Landlock (%v): running without it (--landlock=best-effort)", err))
		return p, nil
	}
	p.record.KernelABI = abi
	if abi < abiWrites {
		if !best {
			return nil, fmt.Errorf("harden: --landlock: kernel Landlock ABI %d cannot restrict truncate (needs ABI %d); --landlock=best-effort accepts that", abi, abiWrites)
		}
		missing("truncate", fmt.Sprintf("landlock: kernel ABI %d cannot restrict truncate (needs %d)", abi, abiWrites))
	}
	used := min(abi, 5)
	var scoped uint64
	if strict {
		if abi >= abiScopes {
			scoped = unix.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | unix.LANDLOCK_SCOPE_SIGNAL
			p.record.Scopes = []string{"abstract_unix_socket", "signal"}
			used = abiScopes
		} else if !best {
			return nil, fmt.Errorf("harden: --landlock with --security strict: kernel Landlock ABI %d cannot scope abstract UNIX sockets and signals (needs ABI %d); --landlock=best-effort accepts that", abi, abiScopes)
		} else {
			missing("scopes", fmt.Sprintf("landlock: kernel ABI %d cannot scope abstract UNIX sockets and signals (needs %d)", abi, abiScopes))
		}
	}
	handled := fsRights(abi)
	p.record.ABI = used
	p.record.Handled = rightNames(handled)

	attr := rulesetAttr{handledFS: handled, scoped: scoped}
	fd, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr), 0)
	if errno != 0 {
		return nil, fmt.Errorf("harden: landlock_create_ruleset: %w", errno)
	}
	p.fd = int(fd)
	unix.CloseOnExec(p.fd)
	read := uint64(llRead) | handled&unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
	if err := p.addPath("/", read, "/"); err != nil {
		p.close()
		return nil, err
	}
	if auto {
		for _, m := range mounts {
			if err := p.addMount(m, handled); err != nil {
				p.close()
				return nil, err
			}
		}
	} else {
		for i, path := range p.record.Writable {
			flag := "--rw " + path
			if i < len(p.record.Writable)-len(sec.RW) {
				flag = path
			}
			if err := p.addPath(path, handled, flag); err != nil {
				p.close()
				return nil, err
			}
		}
	}
	if err := p.addStdio(stdio, handled); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// addPath allows access beneath path (as seen inside).
func (p *landlockPlan) addPath(path string, access uint64, what string) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("harden: landlock: %s: %w", what, err)
	}
	defer unix.Close(fd)
	return p.addFD(fd, access, what)
}

// addMount allows access beneath the read-write mount m, if a lookup of its mount point reaches it (a mount
// covered by another one at the same place is not reachable, and its coverer may be read-only).
func (p *landlockPlan) addMount(m Mount, access uint64) error {
	fd, err := unix.Open(m.Target, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil // beneath a covering mount, or gone: nothing to allow there
	}
	defer unix.Close(fd)
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &stx); err != nil ||
		stx.Mask&unix.STATX_MNT_ID == 0 || stx.Mnt_id != uint64(m.ID) {
		return nil
	}
	err = p.addFD(fd, access, "mount "+m.Target)
	if errors.Is(err, unix.EBADFD) {
		return nil // an object Landlock cannot name (a kernel-internal file system): nothing to allow there
	}
	return err
}

// addStdio allows reopening the character devices among the command's standard descriptors (a terminal, /dev/null)
// with the access they were opened with, through /dev/stdin, /dev/stdout, /dev/stderr or /proc/self/fd: they are
// the host's device nodes, which no rule covers otherwise. Files and directories never reach a strict sandbox's
// command (the relay), and pipes and sockets need no rule.
func (p *landlockPlan) addStdio(stdio []uintptr, handled uint64) error {
	names := []string{"stdin", "stdout", "stderr"}
	for i, fd := range stdio {
		var st unix.Stat_t
		if unix.Fstat(int(fd), &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR {
			continue
		}
		flags, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
		if err != nil || flags&unix.O_PATH != 0 {
			continue
		}
		access := handled & unix.LANDLOCK_ACCESS_FS_IOCTL_DEV
		switch flags & unix.O_ACCMODE {
		case unix.O_RDONLY:
			access |= unix.LANDLOCK_ACCESS_FS_READ_FILE
		case unix.O_WRONLY:
			access |= unix.LANDLOCK_ACCESS_FS_WRITE_FILE
		default:
			access |= unix.LANDLOCK_ACCESS_FS_READ_FILE | unix.LANDLOCK_ACCESS_FS_WRITE_FILE
		}
		what := names[min(i, 2)]
		if err := p.addFD(int(fd), access, what); err != nil {
			return err
		}
		if path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); err == nil {
			p.record.Stdio = append(p.record.Stdio, what+": "+path+" ("+strings.Join(rightNames(access), ",")+")")
		}
	}
	return nil
}

// addFD allows access beneath the file fd refers to. A non-directory gets only the rights files can have.
func (p *landlockPlan) addFD(fd int, access uint64, what string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("harden: landlock: %s: %w", what, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		access &= llFile
	}
	rule := unix.LandlockPathBeneathAttr{Allowed_access: access, Parent_fd: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_LANDLOCK_ADD_RULE, uintptr(p.fd), unix.LANDLOCK_RULE_PATH_BENEATH,
		uintptr(unsafe.Pointer(&rule)), 0, 0, 0)
	if errno != 0 {
		return fmt.Errorf("harden: landlock: add rule for %s: %w", what, errno)
	}
	return nil
}

// restrict enforces the ruleset on the calling thread only (landlock_restrict_self without TSYNC): the command
// forked from it inherits the domain. no_new_privs must be set.
func (p *landlockPlan) restrict() error {
	_, _, errno := unix.Syscall(unix.SYS_LANDLOCK_RESTRICT_SELF, uintptr(p.fd), 0, 0)
	if errno != 0 {
		return fmt.Errorf("harden: landlock_restrict_self: %w", errno)
	}
	return nil
}

func (p *landlockPlan) close() {
	if p.fd >= 0 {
		unix.Close(p.fd)
		p.fd = -1
	}
}
