package idmap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HelperDirs are the only directories FindHelper and GetSubIDs look in.
// $PATH is never used: a user-writable PATH entry must not be able to supply
// the tool (catalogue M13).
var HelperDirs = []string{"/usr/bin", "/usr/sbin", "/bin", "/sbin"}

// Helper describes newuidmap or newgidmap on this host.
type Helper struct {
	Name     string // "newuidmap" or "newgidmap"
	Path     string // absolute path of the first candidate found, "" if none
	Setuid   bool   // owned by root with the setuid bit
	FileCaps bool   // security.capability grants cap_setuid (newuidmap) or cap_setgid (newgidmap)
	Err      error  // why the helper is unusable; nil if usable
}

// Usable reports whether the helper can be run (Err is nil).
func (h Helper) Usable() bool { return h.Err == nil }

// MarshalJSON renders Err as a string and adds "usable".
func (h Helper) MarshalJSON() ([]byte, error) {
	e := ""
	if h.Err != nil {
		e = h.Err.Error()
	}
	return json.Marshal(struct {
		Name     string `json:"name"`
		Path     string `json:"path"`
		Setuid   bool   `json:"setuid"`
		FileCaps bool   `json:"file_caps"`
		Usable   bool   `json:"usable"`
		Error    string `json:"error,omitempty"`
	}{h.Name, h.Path, h.Setuid, h.FileCaps, h.Usable(), e})
}

// FindHelper looks for name (newuidmap or newgidmap) in HelperDirs, in order,
// and checks that it can grant ids. It must be a regular executable file that
// is owned by root and setuid, or that has a security.capability xattr with
// cap_setuid (cap_setgid for newgidmap) in its permitted set. It must not sit
// on a nosuid mount. Helper.Err says why a helper is unusable. It wraps
// fs.ErrNotExist when the tool is not installed.
func FindHelper(name string) Helper {
	return findHelperIn(HelperDirs, name)
}

func findHelperIn(dirs []string, name string) Helper {
	h := Helper{Name: name}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		h.Path = p
		if err != nil {
			h.Err = fmt.Errorf("idmap: %w", err)
			return h
		}
		h.check(fi)
		return h
	}
	h.Err = fmt.Errorf("idmap: %s not found in %s: %w", name, strings.Join(dirs, ", "), fs.ErrNotExist)
	return h
}

func (h *Helper) check(fi fs.FileInfo) {
	if !fi.Mode().IsRegular() {
		h.Err = fmt.Errorf("idmap: %s is not a regular file", h.Path)
		return
	}
	if fi.Mode().Perm()&0o111 == 0 {
		h.Err = fmt.Errorf("idmap: %s is not executable", h.Path)
		return
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	h.Setuid = owner == 0 && fi.Mode()&fs.ModeSetuid != 0
	capName, capBit := "cap_setuid", uint(unix.CAP_SETUID)
	if h.Name == "newgidmap" {
		capName, capBit = "cap_setgid", uint(unix.CAP_SETGID)
	}
	buf := make([]byte, 64)
	if n, err := unix.Getxattr(h.Path, "security.capability", buf); err == nil {
		if perm, ok := parseFileCaps(buf[:n]); ok && perm&(1<<capBit) != 0 {
			h.FileCaps = true
		}
	}
	if !h.Setuid && !h.FileCaps {
		h.Err = fmt.Errorf("idmap: %s is neither setuid root nor has file capability %s (mode %04o, owner uid %d)",
			h.Path, capName, unixMode(fi.Mode()), owner)
		return
	}
	var sfs unix.Statfs_t
	if err := unix.Statfs(h.Path, &sfs); err == nil && sfs.Flags&unix.ST_NOSUID != 0 {
		h.Err = fmt.Errorf("idmap: %s is on a nosuid mount, so its setuid bit and file capabilities are ignored", h.Path)
	}
}

// unixMode converts fs.FileMode permission and special bits to the octal
// form of chmod.
func unixMode(m fs.FileMode) uint32 {
	v := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		v |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		v |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// parseFileCaps decodes a security.capability xattr (struct vfs_cap_data or
// vfs_ns_cap_data, little endian) and returns the permitted set.
func parseFileCaps(b []byte) (permitted uint64, ok bool) {
	if len(b) < 4 {
		return 0, false
	}
	magic := binary.LittleEndian.Uint32(b)
	switch magic & 0xFF000000 {
	case 0x01000000: // VFS_CAP_REVISION_1: one 32-bit set
		if len(b) < 12 {
			return 0, false
		}
		return uint64(binary.LittleEndian.Uint32(b[4:])), true
	case 0x02000000, 0x03000000: // revisions 2 and 3: two 32-bit halves
		if len(b) < 20 {
			return 0, false
		}
		lo := binary.LittleEndian.Uint32(b[4:])
		hi := binary.LittleEndian.Uint32(b[12:])
		return uint64(hi)<<32 | uint64(lo), true
	}
	return 0, false
}

// HelperError is returned when newuidmap, newgidmap or getsubids fails. Its
// message quotes the full argv and the tool's trimmed output.
type HelperError struct {
	Argv   []string
	Output string // trimmed stderr, or stdout if stderr was empty
	Err    error  // from exec (getsubids: *exec.ExitError; newuidmap, newgidmap: ExitStatus)
}

// Error renders "idmap: ARGV...: EXEC ERROR: \"OUTPUT\"".
func (e *HelperError) Error() string {
	s := "idmap: " + strings.Join(e.Argv, " ") + ": " + e.Err.Error()
	if e.Output != "" {
		s += ": " + strconv.Quote(e.Output)
	}
	return s
}

// Unwrap returns the exec error.
func (e *HelperError) Unwrap() error { return e.Err }

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
}

// Write implements io.Writer, keeping at most max bytes.
func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// helperEnv keeps the tools' messages in English (HintFor matches them) and
// gives them a fixed PATH.
var helperEnv = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

// runTool runs argv and returns its stdout. On failure it returns a
// *HelperError.
func runTool(ctx context.Context, argv []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = helperEnv
	stdout := &limitedBuffer{max: 1 << 20}
	stderr := &limitedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Run(); err != nil {
		out := strings.TrimSpace(stderr.buf.String())
		if out == "" {
			out = strings.TrimSpace(stdout.buf.String())
			if len(out) > 4096 {
				out = out[:4096]
			}
		}
		return stdout.buf.Bytes(), &HelperError{Argv: argv, Output: out, Err: err}
	}
	return stdout.buf.Bytes(), nil
}

// RunHelpers runs newuidmap and newgidmap on pid concurrently, waits for
// both, and returns their errors joined. It checks each helper is usable and
// each map passes Validate before running anything. A failed tool gives a
// *HelperError, for example:
//
//	idmap: /usr/bin/newuidmap 1234 0 1000 1 1 100000 65536: exit status 1: "newuidmap: uid range [1-65537) -> [100000-165536) not allowed"
//
// HintFor turns such errors into advice. Both run from the calling goroutine
// (every sandbox start runs them: no goroutine, pipe copier or context
// watcher per tool); ctx's end kills them.
func RunHelpers(ctx context.Context, pid int, uidHelper, gidHelper Helper, uidMaps, gidMaps []Mapping) error {
	if pid <= 0 {
		return fmt.Errorf("idmap: invalid pid %d", pid)
	}
	var errs []error
	for _, c := range []struct {
		h    Helper
		maps []Mapping
	}{{uidHelper, uidMaps}, {gidHelper, gidMaps}} {
		if !c.h.Usable() {
			errs = append(errs, c.h.Err)
		} else if err := Validate(c.maps); err != nil {
			errs = append(errs, fmt.Errorf("%w (for %s)", err, c.h.Name))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	u, uerr := startHelper(HelperArgs(uidHelper.Path, pid, uidMaps))
	g, gerr := startHelper(HelperArgs(gidHelper.Path, pid, gidMaps))
	killed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { u.kill(); g.kill(); close(killed) })
	if uerr == nil {
		uerr = u.wait()
	}
	if gerr == nil {
		gerr = g.wait()
	}
	// The pidfds are closed only once kill cannot be using them: a number closed under it could already name
	// another process's pidfd.
	if !stop() {
		<-killed
	}
	u.closePidfd()
	g.closePidfd()
	return errors.Join(uerr, gerr)
}

// helperRun is a running newuidmap or newgidmap: its PID, a pidfd to kill it by (never a recycled PID), and the
// read end of the pipe that holds its output.
type helperRun struct {
	argv  []string
	pid   int
	pidfd int
	out   int
}

// startHelper starts argv with /dev/null as stdin and one pipe as stdout and stderr.
func startHelper(argv []string) (*helperRun, error) {
	fail := func(err error) (*helperRun, error) {
		return &helperRun{pidfd: -1, out: -1}, &HelperError{Argv: argv, Err: err}
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return fail(err)
	}
	defer unix.Close(p[1])
	null, err := unix.Open(os.DevNull, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(p[0])
		return fail(err)
	}
	defer unix.Close(null)
	pid, err := syscall.ForkExec(argv[0], argv, &syscall.ProcAttr{Env: helperEnv,
		Files: []uintptr{uintptr(null), uintptr(p[1]), uintptr(p[1])}})
	if err != nil {
		unix.Close(p[0])
		return fail(err)
	}
	h := &helperRun{argv: argv, pid: pid, out: p[0], pidfd: -1}
	if fd, err := unix.PidfdOpen(pid, 0); err == nil {
		h.pidfd = fd
	}
	return h, nil
}

// kill ends the helper (a context's end).
func (h *helperRun) kill() {
	if h.pidfd >= 0 {
		_ = unix.PidfdSendSignal(h.pidfd, unix.SIGKILL, nil, 0)
	}
}

// closePidfd closes the pidfd, once kill can no longer run.
func (h *helperRun) closePidfd() {
	if h.pidfd >= 0 {
		unix.Close(h.pidfd)
	}
}

// wait reaps the helper and returns a *HelperError unless it exited 0.
func (h *helperRun) wait() error {
	var ws unix.WaitStatus
	var err error
	for {
		if _, err = unix.Wait4(h.pid, &ws, 0, nil); err != unix.EINTR {
			break
		}
	}
	// Whatever it wrote is in the pipe now; a descendant that kept the pipe open cannot make this block.
	out := make([]byte, 4096)
	n := 0
	for n < len(out) {
		k, rerr := unix.Read(h.out, out[n:])
		if k <= 0 || rerr != nil {
			break
		}
		n += k
	}
	unix.Close(h.out)
	switch {
	case err != nil:
		return &HelperError{Argv: h.argv, Err: err}
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	}
	return &HelperError{Argv: h.argv, Output: strings.TrimSpace(string(out[:n])), Err: ExitStatus(ws)}
}

// ExitStatus is a helper's end other than exit status 0; its message is that of os.ProcessState.
type ExitStatus unix.WaitStatus

func (e ExitStatus) Error() string {
	ws := unix.WaitStatus(e)
	if ws.Signaled() {
		return "signal: " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// ExitCode returns the exit status, or -1 when a signal ended the helper.
func (e ExitStatus) ExitCode() int {
	if ws := unix.WaitStatus(e); ws.Exited() {
		return ws.ExitStatus()
	}
	return -1
}

// GetSubIDs asks shadow's getsubids tool (found in /usr/bin or /usr/sbin,
// never via $PATH) for name's subordinate ranges, which may come from NSS
// ("subid:" in /etc/nsswitch.conf). groups selects subgid ranges ("-g").
// Output lines look like "0: alice 100000 65536". A missing tool, or a
// failure with no output (getsubids exits 1 with "Error fetching ranges" when
// the user has none), gives nil, nil. Lines for other owners are ignored.
// If ctx has no deadline, a 10-second timeout applies, because an NSS
// backend can hang.
func GetSubIDs(ctx context.Context, name string, groups bool) ([]Range, error) {
	for _, d := range []string{"/usr/bin", "/usr/sbin"} {
		p := filepath.Join(d, "getsubids")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return getSubIDsWith(ctx, p, name, groups)
		}
	}
	return nil, nil
}

func getSubIDsWith(ctx context.Context, tool, name string, groups bool) ([]Range, error) {
	if name == "" || strings.HasPrefix(name, "-") {
		return nil, fmt.Errorf("idmap: getsubids: invalid user name %q", name)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	argv := []string{tool, name}
	if groups {
		argv = []string{tool, "-g", name}
	}
	out, err := runTool(ctx, argv)
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(bytes.TrimSpace(out)) == 0 && ctx.Err() == nil {
			return nil, nil
		}
		return nil, err
	}
	return parseGetSubIDs(out, name)
}

// parseGetSubIDs reads getsubids output: "INDEX: OWNER START COUNT" per line.
func parseGetSubIDs(out []byte, name string) ([]Range, error) {
	var rs []Range
	sc := bufio.NewScanner(bytes.NewReader(out))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasSuffix(f[0], ":") {
			return nil, fmt.Errorf("idmap: getsubids output line %d: want \"N: OWNER START COUNT\", got %q", n, line)
		}
		if f[1] != name {
			continue
		}
		start, err1 := strconv.ParseUint(f[2], 10, 32)
		count, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > maxID+1 {
			return nil, fmt.Errorf("idmap: getsubids output line %d: invalid range in %q", n, line)
		}
		rs = append(rs, Range{Start: uint32(start), Count: uint32(count)})
	}
	return rs, nil
}

// NoNewPrivs reports whether the calling thread has no_new_privs set. Under
// it the kernel ignores setuid bits and file capabilities, so newuidmap and
// newgidmap cannot work (catalogue M3).
func NoNewPrivs() bool {
	v, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	return err == nil && v == 1
}

// HintFor returns one line of advice for an error from this package, or ""
// when it has none. The line has no prefix and no trailing newline.
func HintFor(err error) string {
	if err == nil {
		return ""
	}
	var he *HelperError
	if errors.As(err, &he) && len(he.Argv) > 0 {
		tool := filepath.Base(he.Argv[0])
		file, kind, capName := "/etc/subuid", "uid", "cap_setuid"
		if tool == "newgidmap" {
			file, kind, capName = "/etc/subgid", "gid", "cap_setgid"
		}
		out := he.Output
		switch {
		case errors.Is(he.Err, fs.ErrNotExist) || errors.Is(he.Err, exec.ErrNotFound):
			return tool + " is not installed: apt-get install uidmap (Debian/Ubuntu) or dnf install shadow-utils (Fedora)"
		case strings.Contains(out, "not allowed"):
			return fmt.Sprintf("check that %s has a line for your user name or uid covering these ids (e.g. usermod --add-sub%ss 100000-165535 $USER)", file, kind)
		case strings.Contains(out, "Target process is owned by a different user"):
			return "your current gid is not your passwd gid (sg/newgrp session?); run caisson from a normal login shell"
		case strings.Contains(out, "Cannot determine your user name"):
			return "your uid has no passwd entry; add one (or fix NSS), or use --map single"
		case strings.Contains(out, "overflow"):
			return "a range in " + file + " ends beyond 4294967295; fix the file"
		case strings.Contains(out, "Operation not permitted"):
			return fmt.Sprintf("%s must be setuid root or have %s, and no_new_privs must be off: apt-get install uidmap (Debian/Ubuntu) or dnf install shadow-utils (Fedora)", tool, capName)
		case strings.Contains(out, "Invalid argument"):
			return "the kernel rejected the map (overlapping ranges?); run \"caisson idmap\" to inspect it"
		case strings.Contains(out, "No such file or directory") || strings.Contains(out, "No such process") || strings.Contains(out, "Could not open proc directory"):
			return "the sandbox process exited before its id map was written"
		}
		return ""
	}
	if errors.Is(err, ErrNotProcfs) {
		return "/proc is not a real procfs mount; caisson refuses to write id maps through it"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && strings.HasPrefix(pe.Path, "/proc/") {
		switch {
		case errors.Is(pe.Err, unix.ESRCH) || errors.Is(pe.Err, unix.ENOENT):
			return "the sandbox process exited before its id map was written"
		case strings.HasSuffix(pe.Path, "/gid_map") && errors.Is(pe.Err, unix.EPERM):
			return "an unprivileged gid_map write needs setgroups denied first, and may map only your own gid"
		case errors.Is(pe.Err, unix.EPERM):
			return "without newuidmap/newgidmap a process may map only its own id, once; install uidmap or use --map single"
		case errors.Is(pe.Err, unix.EINVAL):
			return "the kernel rejected the map (overlapping ranges?); run \"caisson idmap\" to inspect it"
		}
	}
	if errors.Is(err, ErrNoSubIDs) {
		return "add subordinate ids for your user: usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER"
	}
	return ""
}
