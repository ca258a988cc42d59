// Package nsenter is caisson-oci's pre-runtime stage: the part of a re-executed caisson-oci that runs before the
// Go runtime starts its threads, in C (nsenter.c), and the Go API that drives it.
//
// A multithreaded process cannot enter another user namespace or mount namespace with setns(2), cannot create a
// user namespace with unshare(2), and cannot enter a time namespace; every Go program is multithreaded from its
// first instruction. Joining a container's namespaces by path (an engine's pod, `caisson-oci exec`) therefore needs
// code that runs before the runtime, as runc's nsexec does. The parent (Start) re-executes the binary with the
// stage's socket named in the environment; the constructor joins the namespaces it is sent (descriptors opened and
// checked by the parent), creates the new ones, asks the parent to write the ID maps of a new user namespace, and
// forks into new or joined PID and time namespaces; the process that continues into the Go runtime then takes the
// socket (Stage) and goes on with the Go-level protocol of its caller.
//
// The process that continues is a descendant of the parent (which Start makes a child subreaper when the stage
// forks), so that once the parent exits it belongs to the parent's own subreaper: the engine's shim or monitor,
// which waits for it, as the OCI runtime contract requires.
package nsenter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Env names the environment variable that holds the stage's socket descriptor (NSENTER_ENV in nsenter.h).
const Env = "_CAISSON_NSENTER"

// The protocol, mirrored from nsenter.h.
const (
	version          = 2
	maxJoin          = 8
	flagFork         = 1
	flagSetIDAfterJn = 2
	replyMaps        = 1
	replyPID         = 2
	replyError       = 3
	// ExitFailed is the stage's exit status when it fails (NSENTER_EXIT_FAILED).
	ExitFailed = 121
)

// request mirrors struct nsenter_request.
type request struct {
	Version    uint32
	Cloneflags uint32
	Flags      uint32
	Njoin      uint32
	Nstypes    [maxJoin]uint32
	MonoSec    int64
	BootSec    int64
	MonoNsec   uint32
	BootNsec   uint32
	HasOffsets uint32
	Pad        uint32
}

// reply mirrors struct nsenter_reply.
type reply struct {
	Type  uint32
	Value int32
	Step  [56]byte
}

// Join is a namespace the stage enters with setns.
type Join struct {
	// Type is the namespace's CLONE_NEW* constant.
	Type int
	// File is the open namespace file (a /proc/PID/ns/ entry or a bind mount of one). Start closes nothing.
	File *os.File
}

// Request says what the stage does before the Go runtime starts.
type Request struct {
	// Join lists the namespaces to enter, in order. The user namespace comes first (it gives the capabilities
	// over the others) and the mount namespace last; OrderJoins sorts them so.
	Join []Join
	// Clone lists the CLONE_NEW* namespaces to create after the joins: the user namespace first, then the others.
	Clone uintptr
	// SetIDAfterJoin makes the stage switch to uid and gid 0 of a joined user namespace (and drop supplementary
	// groups where allowed), as a process entering a container's user namespace must to act as its root.
	SetIDAfterJoin bool
	// Fork makes the stage fork once the namespaces are set; the child continues. Needed to enter a new or joined
	// PID or time namespace, which apply to children only.
	Fork bool
	// TimeOffsets, if set, are written for a new time namespace (Clone has CLONE_NEWTIME) before the fork.
	TimeOffsets *TimeOffsets
	// Started, if set, is called with the stage's PID before the stage is sent the request (for instance to put it
	// in the container's cgroups, which its children inherit).
	Started func(pid int) error
	// WriteMaps writes the uid_map and gid_map of the process pid; required when Clone has CLONE_NEWUSER.
	WriteMaps func(pid int) error
}

// TimeOffsets are the clock offsets of a new time namespace.
type TimeOffsets struct {
	MonotonicSec, BoottimeSec   int64
	MonotonicNsec, BoottimeNsec uint32
}

// Process is the stage's result: the process that continues into the Go runtime.
type Process struct {
	// PID is its PID in the parent's PID namespace.
	PID int
	// Sock is the parent's end of the stage's socket, now connected to that process's Go half.
	Sock *os.File
	// Forked is true when PID is the stage's child (re-parented to the caller), false when it is the stage itself.
	Forked bool
}

// ErrNotLinked is returned by Start in a binary built without the C half (CGO_ENABLED=0).
var ErrNotLinked = errors.New("this binary was built without cgo, so it has no pre-runtime stage (build caisson-oci with CGO_ENABLED=1)")

// OrderJoins sorts joins so that the user namespace comes first and the mount namespace last, the others in between
// in their given order.
func OrderJoins(joins []Join) []Join {
	out := make([]Join, 0, len(joins))
	for _, j := range joins {
		if j.Type == unix.CLONE_NEWUSER {
			out = append(out, j)
		}
	}
	for _, j := range joins {
		if j.Type != unix.CLONE_NEWUSER && j.Type != unix.CLONE_NEWNS {
			out = append(out, j)
		}
	}
	for _, j := range joins {
		if j.Type == unix.CLONE_NEWNS {
			out = append(out, j)
		}
	}
	return out
}

// Start runs cmd, a re-execution of this binary, as a stage that does req, and returns the process that
// continues into the Go runtime. cmd must not be started; Start adds the stage's socket to cmd.ExtraFiles and its
// descriptor to cmd.Env. When req.Fork is set the caller becomes a child subreaper (process-wide) so that the
// stage's child is re-parented to it. On error nothing started is left: the stage (and its child) is killed and
// reaped.
func Start(cmd *exec.Cmd, req Request) (*Process, error) {
	if !Linked {
		return nil, ErrNotLinked
	}
	if len(req.Join) > maxJoin {
		return nil, fmt.Errorf("nsenter: %d namespaces to join, at most %d", len(req.Join), maxJoin)
	}
	if req.Clone&unix.CLONE_NEWUSER != 0 && req.WriteMaps == nil {
		return nil, errors.New("nsenter: a new user namespace needs WriteMaps")
	}
	if req.Fork {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return nil, fmt.Errorf("nsenter: become a child subreaper: %w", err)
		}
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("nsenter: socketpair: %w", err)
	}
	parent := os.NewFile(uintptr(fds[0]), "nsenter-parent")
	child := os.NewFile(uintptr(fds[1]), "nsenter-child")
	cmd.ExtraFiles = append(cmd.ExtraFiles, child)
	cmd.Env = append(cmd.Env, Env+"="+strconv.Itoa(2+len(cmd.ExtraFiles)))
	err = cmd.Start()
	child.Close()
	if err != nil {
		parent.Close()
		return nil, err
	}
	p, err := drive(cmd, parent, req)
	if err != nil {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if p != nil && p.Forked {
			reap(p.PID)
		}
		parent.Close()
		return nil, err
	}
	return p, nil
}

// drive sends the request and answers the stage until it reports the PID that continues.
func drive(cmd *exec.Cmd, sock *os.File, req Request) (*Process, error) {
	stage := cmd.Process.Pid
	if req.Started != nil {
		if err := req.Started(stage); err != nil {
			return nil, err
		}
	}
	r := request{Version: version, Cloneflags: uint32(req.Clone), Njoin: uint32(len(req.Join))}
	if req.Fork {
		r.Flags |= flagFork
	}
	if req.SetIDAfterJoin {
		r.Flags |= flagSetIDAfterJn
	}
	if o := req.TimeOffsets; o != nil {
		r.MonoSec, r.BootSec, r.MonoNsec, r.BootNsec, r.HasOffsets = o.MonotonicSec, o.BoottimeSec, o.MonotonicNsec, o.BoottimeNsec, 1
	}
	nsfds := make([]int, len(req.Join))
	for i, j := range req.Join {
		r.Nstypes[i] = uint32(j.Type)
		nsfds[i] = int(j.File.Fd())
	}
	buf := make([]byte, unsafe.Sizeof(r))
	if _, err := binary.Encode(buf, binary.NativeEndian, &r); err != nil {
		return nil, fmt.Errorf("nsenter: encode request: %w", err)
	}
	var oob []byte
	if len(nsfds) > 0 {
		oob = unix.UnixRights(nsfds...)
	}
	if err := unix.Sendmsg(int(sock.Fd()), buf, oob, nil, 0); err != nil {
		return nil, fmt.Errorf("nsenter: send request: %w", err)
	}
	for {
		var rep reply
		b := make([]byte, unsafe.Sizeof(rep))
		n, err := readFull(sock, b)
		if err != nil || n == 0 {
			return nil, stageDied(cmd)
		}
		if n != len(b) {
			return nil, fmt.Errorf("nsenter: short reply (%d bytes)", n)
		}
		if _, err := binary.Decode(b, binary.NativeEndian, &rep); err != nil {
			return nil, fmt.Errorf("nsenter: decode reply: %w", err)
		}
		switch rep.Type {
		case replyMaps:
			if req.WriteMaps == nil {
				return nil, errors.New("nsenter: the stage asked for ID maps nobody planned")
			}
			ack := uint32(1)
			werr := req.WriteMaps(int(rep.Value))
			if werr != nil {
				ack = 0
			}
			ab := binary.NativeEndian.AppendUint32(nil, ack)
			if _, err := sock.Write(ab); err != nil && werr == nil {
				werr = fmt.Errorf("nsenter: acknowledge the maps: %w", err)
			}
			if werr != nil {
				return nil, werr
			}
		case replyPID:
			p := &Process{PID: int(rep.Value), Sock: sock, Forked: req.Fork}
			if req.Fork {
				// The stage exits once it has reported its child.
				if err := cmd.Wait(); err != nil {
					return p, fmt.Errorf("nsenter: the stage: %w", err)
				}
			}
			return p, nil
		case replyError:
			step := string(rep.Step[:])
			if i := indexByte(rep.Step[:], 0); i >= 0 {
				step = string(rep.Step[:i])
			}
			return nil, &StageError{Step: step, Err: unix.Errno(rep.Value)}
		default:
			return nil, fmt.Errorf("nsenter: unknown reply type %d", rep.Type)
		}
	}
}

// StageError is a step of the C half that failed.
type StageError struct {
	Step string
	Err  unix.Errno
}

// Error implements error.
func (e *StageError) Error() string { return e.Step + ": " + e.Err.Error() }

// Unwrap returns the errno.
func (e *StageError) Unwrap() error { return e.Err }

// stageDied describes a stage that closed its socket without a reply.
func stageDied(cmd *exec.Cmd) error {
	err := cmd.Wait()
	if err == nil {
		err = errors.New("exit status 0")
	}
	return fmt.Errorf("nsenter: the stage ended without a reply (%v)", err)
}

// readFull reads one datagram into b.
func readFull(f *os.File, b []byte) (int, error) {
	for {
		n, err := unix.Read(int(f.Fd()), b)
		if err == unix.EINTR {
			continue
		}
		return n, err
	}
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// reap kills and waits for pid, a child of the caller (a stage's child re-parented to it).
func reap(pid int) {
	_ = unix.Kill(pid, unix.SIGKILL)
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// Stage returns the socket of a process that continues from the stage (the Go half), and whether this process is
// one. It removes Env from the environment, so that nothing started later inherits it.
func Stage() (*os.File, bool) {
	v, ok := os.LookupEnv(Env)
	if !ok {
		return nil, false
	}
	_ = os.Unsetenv(Env)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, false
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "nsenter"), true
}
