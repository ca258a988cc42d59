// Package relay keeps the caller's files out of a sandbox's reach through its standard descriptors.
//
// A descriptor names an object, and /proc/self/fd/N reopens that object on the mount it was opened on, with
// whatever access its permissions allow: a file the caller opened read-only for stdin becomes writable again, a
// directory on any descriptor opens everything beneath it. In the strict posture a standard descriptor that names a
// file-system object (a regular file, a directory, a block device, an O_PATH descriptor) is therefore replaced by a
// pipe, and the supervising caisson copies between the pipe and the caller's descriptor (splice(2), with read and
// write where splice cannot be used), as Docker and Podman do for every standard stream. Terminals and other
// character devices, pipes and sockets pass unchanged: reopening them gives nothing more than the descriptor.
//
// Which way a relay copies follows the caller's descriptor: read-only is input (the file is copied into the pipe
// the command reads), write-only is output (what the command writes is copied to the file, through the caller's own
// descriptor, so its offset and O_APPEND behave as if the command had written there itself); read-write is input on
// descriptor 0 and output on 1 and 2. A read-only descriptor 1 or 2 is input too, as it was: the command can read it
// and not write it. Stdout and stderr that are one open file description (`> f 2>&1`) share one pipe, so their
// order is kept.
//
// The command sees the ends of a pipe: end of file when the input is exhausted, and what it writes goes out in
// order. Two differences from the file itself are inherent to pipes: the command cannot seek, and caisson reads
// ahead of the command by up to a pipe's capacity; when the sandbox ends, the input descriptor's offset is moved
// back by what the command left unread in the pipe, so the next reader of that descriptor continues where the
// command stopped, as it would after reading the file itself.
package relay

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Names of the standard descriptors, for messages.
var stdNames = [3]string{"stdin", "stdout", "stderr"}

// chunk is the most one splice or read moves at a time (a pipe holds 64 KiB unless resized).
const chunk = 1 << 20

// pipeSize is what a relay pipe holds: four times the kernel's default, which halves the time 1 GiB takes into a
// command's stdin here (with more, the gain is within the noise). It is best-effort: an unprivileged user's pipes
// beyond fs.pipe-user-pages-soft keep the default size.
const pipeSize = 256 << 10

// bufSize is the buffer of the read and write copy, used where splice cannot be (O_APPEND, file systems without
// splice support).
const bufSize = 128 << 10

// NeedsRelay reports whether a descriptor of this file type must not reach a strict sandbox: everything but a
// character device (terminals, /dev/null), a pipe or a socket.
func NeedsRelay(mode uint32) bool {
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR, unix.S_IFIFO, unix.S_IFSOCK:
		return false
	}
	return true
}

// IsInput reports whether standard descriptor fd, opened with the status flags flags, is relayed into the
// command (true) or out of it.
func IsInput(fd int, flags int) bool {
	switch flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		return false
	case unix.O_RDWR:
		return fd == 0
	}
	return true // read-only, and O_PATH descriptors (whose reads fail: the command gets end of file)
}

// Stdio is the standard descriptors a sandbox gets: the caller's own, or pipes relayed to them.
type Stdio struct {
	files   [3]*os.File // what the sandbox gets as 0, 1 and 2
	child   []*os.File  // files of ours among them, closed here once the sandbox holds them
	copiers []*copier
	once    sync.Once
	err     error
}

// New examines the caller's standard files std (os.Stdin, os.Stdout and os.Stderr) and, with relay (the strict
// posture), starts a relay for each one that names a file-system object; without it every file is passed on
// unchanged. Call Started once the sandbox holds Files, and Finish when its processes are gone (on every path:
// Finish also releases what a failed start leaves).
func New(std [3]*os.File, relay bool) (*Stdio, error) {
	s := &Stdio{files: std}
	if !relay {
		return s, nil
	}
	var outs []int // the output descriptors relayed so far, to find one description given twice
	for fd, f := range std {
		raw, st, flags, err := describe(f)
		if err != nil || !NeedsRelay(st.Mode) {
			continue // a closed descriptor stays closed; the sandbox fails on it as it would have
		}
		name := stdNames[fd]
		if IsInput(fd, flags) {
			c, child, err := newCopier(raw, name, true, flags, st)
			if err != nil {
				s.abort()
				return nil, err
			}
			s.copiers = append(s.copiers, c)
			s.files[fd], s.child = child, append(s.child, child)
			continue
		}
		if shared := sameDescription(raw, std, outs); shared >= 0 {
			s.files[fd] = s.files[shared] // one pipe for both: the order of the lines is kept
			for _, c := range s.copiers {
				if c.fd == shared {
					c.name = stdNames[shared] + " and " + name
				}
			}
			continue
		}
		c, child, err := newCopier(raw, name, false, flags, st)
		if err != nil {
			s.abort()
			return nil, err
		}
		c.fd = fd
		outs = append(outs, fd)
		s.copiers = append(s.copiers, c)
		s.files[fd], s.child = child, append(s.child, child)
	}
	for _, c := range s.copiers {
		go c.run()
	}
	return s, nil
}

// describe returns the raw descriptor of f (without making it blocking, as Fd would), its type and status flags.
func describe(f *os.File) (fd int, st unix.Stat_t, flags int, err error) {
	if f == nil {
		return -1, st, 0, os.ErrInvalid
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return -1, st, 0, err
	}
	var ferr error
	if err := rc.Control(func(u uintptr) {
		fd = int(u)
		if ferr = unix.Fstat(fd, &st); ferr == nil {
			flags, ferr = unix.FcntlInt(u, unix.F_GETFL, 0)
		}
	}); err != nil {
		return -1, st, 0, err
	}
	return fd, st, flags, ferr
}

// sameDescription returns which of the output descriptors outs of std is the same open file description as fd
// (`> f 2>&1`), or -1.
func sameDescription(fd int, std [3]*os.File, outs []int) int {
	for _, o := range outs {
		ofd, _, _, err := describe(std[o])
		if err == nil && SameFile(ofd, fd) {
			return o
		}
	}
	return -1
}

// kcmpFile is KCMP_FILE of linux/kcmp.h (x/sys/unix does not name it).
const kcmpFile = 0

// SameFile reports whether descriptors a and b of this process are one open file description: kcmp(2) where the
// kernel has it, otherwise the same inode, status flags and offset (two descriptions that agree on all three are
// told apart by nothing a relay does).
func SameFile(a, b int) bool {
	pid := uintptr(os.Getpid())
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, pid, pid, kcmpFile, uintptr(a), uintptr(b), 0)
	if errno == 0 {
		return r == 0
	}
	var sa, sb unix.Stat_t
	if unix.Fstat(a, &sa) != nil || unix.Fstat(b, &sb) != nil || sa.Dev != sb.Dev || sa.Ino != sb.Ino {
		return false
	}
	fa, err1 := unix.FcntlInt(uintptr(a), unix.F_GETFL, 0)
	fb, err2 := unix.FcntlInt(uintptr(b), unix.F_GETFL, 0)
	oa, err3 := unix.Seek(a, 0, 1)
	ob, err4 := unix.Seek(b, 0, 1)
	return errors.Join(err1, err2, err3, err4) == nil && fa == fb && oa == ob
}

// Relays reports whether any of the descriptors is relayed by this process.
func (s *Stdio) Relays() bool {
	return len(s.copiers) > 0
}

// Files returns what the sandbox gets as its descriptors 0, 1 and 2.
func (s *Stdio) Files() []*os.File {
	return s.files[:]
}

// FDs returns the descriptors of Files, for sending them to a running sandbox.
func (s *Stdio) FDs() []int {
	fds := make([]int, 3)
	for i, f := range s.files {
		fd, _, _, err := describe(f)
		if err != nil {
			fd = i
		}
		fds[i] = fd
	}
	return fds
}

// Started closes this process's copies of the ends the sandbox now holds, so that the command's end of file and
// broken pipes are its own.
func (s *Stdio) Started() {
	for _, f := range s.child {
		f.Close()
	}
	s.child = nil
}

// Finish ends the relays once the sandbox's processes are gone (or, for `caisson exec`, once the command has
// exited): it copies to the caller's files what is still in the pipes, stops feeding input, and moves each input
// descriptor's offset back by what the command left unread. It returns the first error writing a caller's file (the
// command's output from then on was refused with EPIPE); later calls return the same.
func (s *Stdio) Finish() error {
	s.once.Do(func() {
		s.Started()
		for _, c := range s.copiers {
			c.stop()
		}
		var errs []error
		for _, c := range s.copiers {
			<-c.done
			c.finish()
			if c.err != nil {
				errs = append(errs, c.err)
			}
		}
		if len(errs) > 0 {
			s.err = errs[0]
		}
	})
	return s.err
}

// abort releases a half-made Stdio (no relay was started).
func (s *Stdio) abort() {
	s.Started()
	for _, c := range s.copiers {
		c.pipe.Close()
		if c.keep != nil {
			c.keep.Close()
		}
		unix.Close(c.file)
	}
}

// copier relays one caller's descriptor.
type copier struct {
	name     string // stdin, stdout, stderr, or "stdout and stderr"
	fd       int    // the standard descriptor it replaces (outputs: to find one given twice)
	file     int    // our duplicate of the caller's descriptor: same description, so same offset and flags
	input    bool
	useRW    bool     // read and write instead of splice
	seekable bool     // input: a regular file or block device, whose offset Finish moves back
	pipe     *os.File // our end of the pipe, non-blocking, in the runtime's poller
	// keep is a read end of an input pipe that caisson holds: writes into the pipe never fail with EPIPE (and never
	// raise SIGPIPE in caisson, which would forward it to the command) when the command stops reading, and
	// FIONREAD on it counts what the command left unread.
	keep     *os.File
	moved    int64 // input: bytes put into the pipe
	buffered int   // input, read and write copy: bytes read from the file and not yet in the pipe
	err      error
	done     chan struct{}
}

// newCopier makes the pipe for the caller's descriptor raw and returns the copier and the sandbox's end.
func newCopier(raw int, name string, input bool, flags int, st unix.Stat_t) (*copier, *os.File, error) {
	file, err := unix.FcntlInt(uintptr(raw), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		unix.Close(file)
		return nil, nil, fmt.Errorf("%s: pipe: %w", name, err)
	}
	_, _ = unix.FcntlInt(uintptr(p[0]), unix.F_SETPIPE_SZ, pipeSize)
	ours, theirs := p[1], p[0]
	if !input {
		ours, theirs = p[0], p[1]
	}
	c := &copier{name: name, fd: -1, file: file, input: input, done: make(chan struct{}),
		useRW: !input && flags&unix.O_APPEND != 0} // splice(2) refuses a target opened O_APPEND
	typ := st.Mode & unix.S_IFMT
	c.seekable = typ == unix.S_IFREG || typ == unix.S_IFBLK
	if input {
		k, err := unix.FcntlInt(uintptr(theirs), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			unix.Close(file)
			unix.Close(p[0])
			unix.Close(p[1])
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		c.keep = os.NewFile(uintptr(k), name+"-keep")
	}
	if err := unix.SetNonblock(ours, true); err != nil {
		unix.Close(file)
		unix.Close(p[0])
		unix.Close(p[1])
		if c.keep != nil {
			c.keep.Close()
		}
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	c.pipe = os.NewFile(uintptr(ours), name+"-relay") // non-blocking: in the poller, so deadlines end its waits
	return c, os.NewFile(uintptr(theirs), name), nil
}

func (c *copier) run() {
	defer close(c.done)
	if c.input {
		c.feed()
	} else {
		c.drain()
	}
}

// stop ends the copier's waits: an input stops, an output empties the pipe without waiting and stops.
func (c *copier) stop() {
	if c.input {
		_ = c.pipe.SetWriteDeadline(time.Now())
	} else {
		_ = c.pipe.SetReadDeadline(time.Now())
	}
}

// finish releases the copier once it has stopped, moving an input descriptor's offset back by what is unread.
func (c *copier) finish() {
	if c.input && c.seekable {
		unread, err := unix.IoctlGetInt(int(c.keep.Fd()), unix.TIOCINQ) // FIONREAD
		if err == nil {
			// What the command wrote into its own stdin (it can reopen the pipe) is not the file's: at most what
			// caisson put in goes back.
			back := min(int64(unread), c.moved) + int64(c.buffered)
			if back > 0 {
				_, _ = unix.Seek(c.file, -back, 1)
			}
		}
	}
	c.pipe.Close()
	if c.keep != nil {
		c.keep.Close()
	}
	unix.Close(c.file)
}

// feed copies the caller's file into the pipe until the file ends, a read fails (a directory: EISDIR) or stop.
// At the end of the file it closes the pipe, so the command reads end of file.
func (c *copier) feed() {
	rc, err := c.pipe.SyscallConn()
	if err != nil {
		return
	}
	var buf []byte
	for {
		if !c.useRW {
			var n int64
			var serr error
			if err := rc.Write(func(fd uintptr) bool {
				n, serr = splice(c.file, int(fd))
				return !errors.Is(serr, unix.EAGAIN)
			}); err != nil {
				return // stopped
			}
			switch {
			case serr == nil && n == 0:
				c.pipe.Close() // end of file for the command
				return
			case serr == nil:
				c.moved += n
			case errors.Is(serr, unix.EINTR):
			case noSplice(serr):
				c.useRW = true // a file system without splice support
			default:
				c.readFailed(serr)
				return
			}
			continue
		}
		if buf == nil {
			buf = make([]byte, bufSize)
		}
		n, rerr := unix.Read(c.file, buf)
		switch {
		case errors.Is(rerr, unix.EINTR):
			continue
		case rerr != nil:
			c.readFailed(rerr)
			return
		case n == 0:
			c.pipe.Close()
			return
		}
		c.buffered = n
		for off := 0; off < n; {
			var w int
			var werr error
			if err := rc.Write(func(fd uintptr) bool {
				w, werr = unix.Write(int(fd), buf[off:n])
				return !errors.Is(werr, unix.EAGAIN)
			}); err != nil {
				return // stopped: Finish moves the offset back over what was read and not passed on
			}
			if werr != nil && !errors.Is(werr, unix.EINTR) {
				return // the pipe went away: nothing to pass on to
			}
			if w > 0 {
				off += w
				c.buffered -= w
				c.moved += int64(w)
			}
		}
	}
}

// readFailed ends the input: the command reads end of file. A directory (EISDIR), an O_PATH descriptor (EBADF) and
// a descriptor not open for reading end silently: the command could not have read them either.
func (c *copier) readFailed(err error) {
	c.pipe.Close()
	if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EBADF) {
		fmt.Fprintf(os.Stderr, "caisson: warning: %s: reading the file for the sandbox: %v; the command read end of file there\n", c.name, err)
	}
}

// drain copies what the command writes into the pipe to the caller's file, until every writer has closed the pipe
// (end of file), writing fails or stop, after which what is left in the pipe is copied without waiting.
func (c *copier) drain() {
	rc, err := c.pipe.SyscallConn()
	if err != nil {
		return
	}
	var buf []byte
	if c.useRW {
		buf = make([]byte, bufSize)
	}
	for {
		var more bool
		if err := rc.Read(func(fd uintptr) bool {
			var again bool
			more, again, buf = c.move(int(fd), buf)
			return !again
		}); err != nil {
			// Stopped: the writers are gone, so what they wrote is all in the pipe; copy it without waiting.
			_ = rc.Control(func(fd uintptr) {
				for {
					more, again, b := c.move(int(fd), buf)
					buf = b
					if !more || again {
						return
					}
				}
			})
			return
		}
		if !more {
			if c.err != nil {
				c.pipe.Close() // not inside rc.Read: Close waits for the file's operations to end
			}
			return
		}
	}
}

// move copies one chunk from the pipe fd to the caller's file. more is false at end of file and after a write
// error (recorded in c.err); again when the pipe is empty for now.
func (c *copier) move(fd int, buf []byte) (more, again bool, _ []byte) {
	if !c.useRW {
		n, err := splice(fd, c.file)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return true, true, buf
		case errors.Is(err, unix.EINTR):
			return true, false, buf
		case noSplice(err):
			c.useRW = true // the file cannot take splice (or was opened O_APPEND behind our back)
			return true, false, make([]byte, bufSize)
		case err != nil:
			c.writeFailed(err)
			return false, false, buf
		}
		return n > 0, false, buf
	}
	n, err := unix.Read(fd, buf)
	switch {
	case errors.Is(err, unix.EAGAIN):
		return true, true, buf
	case errors.Is(err, unix.EINTR):
		return true, false, buf
	case err != nil || n == 0:
		return false, false, buf
	}
	for off := 0; off < n; {
		w, err := unix.Write(c.file, buf[off:n])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			c.writeFailed(err)
			return false, false, buf
		}
		off += w
	}
	return true, false, buf
}

// writeFailed records a failed write to the caller's file (drain then closes the pipe: the command's further
// output fails with EPIPE).
func (c *copier) writeFailed(err error) {
	path, lerr := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", c.file))
	if lerr != nil {
		path = "the file"
	}
	c.err = fmt.Errorf("%s: writing the command's output to %s: %w", c.name, path, err)
}

// noSplice reports whether a splice failed because the file cannot be spliced (its file system, or O_APPEND): the
// copy goes on with read and write.
func noSplice(err error) bool {
	return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP)
}

// splice moves up to chunk bytes from in to out without waiting for the pipe (the file side may still block).
func splice(in, out int) (int64, error) {
	n, err := unix.Splice(in, nil, out, nil, chunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	return int64(n), err
}
