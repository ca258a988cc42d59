package parent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/idmap"
	"golang.org/x/sys/unix"
)

// UserNSStartFD is the descriptor on which a process started by StartUserNS waits for its ID maps: one byte
// arrives once they are written; the end of the file means they could not be (the parent reports why).
const UserNSStartFD = 3

// UserNSOptions describe the process StartUserNS starts.
type UserNSOptions struct {
	// Name is the subcommand, for error messages ("unshare").
	Name string
	// MapMode is --map: "auto", "single" or "keep-id".
	MapMode string
	// Plan, when set, is used instead of a new plan for MapMode (a caller that needed the maps already).
	Plan *idmap.Plan
	// Stage is the argv[0] main dispatches on; the process gets argv {Stage, "root" or "user", Args...}: "root"
	// when it must switch to uid and gid 0 inside once the maps are written (caisson runs as host root, which is
	// never mapped).
	Stage string
	Args  []string
	// Extra become descriptors 4, 5, ... of the process.
	Extra []*os.File
	// Terminal hands the terminal to the process: when caisson is the foreground job of its controlling
	// terminal, the process gets a process group of its own, made the terminal's foreground group, so that
	// Ctrl-C, Ctrl-\ and Ctrl-Z reach it (and only it) from the terminal, as in a shell's job.
	Terminal bool
}

// UserNSProcess is a process started by StartUserNS.
type UserNSProcess struct {
	name     string
	proc     *os.Process
	pid      int
	tty      *os.File // the controlling terminal whose foreground the process got, or nil
	stopped  bool     // the process stopped and caisson stopped with it
	sigs     chan os.Signal
	notified chan struct{}
}

// StartUserNS starts a re-exec of this binary as root of a new user namespace with the ID maps `caisson run`
// writes (the same plan, written by newuidmap/newgidmap or directly), in every other namespace of the caller: the
// same mount namespace, so the same view of the file system, the same PID namespace and network. The namespace
// is a clone flag of the process, never an unshare of this multithreaded one. The process keeps caisson's
// environment, working directory, standard descriptors and process group (unless Terminal moves it to its own),
// and dies with caisson (parent-death signal). It waits on UserNSStartFD until the maps are written. On failure
// StartUserNS prints one caisson: line (and a hint line when one is known) and returns the exit code.
func StartUserNS(o UserNSOptions) (*UserNSProcess, int) {
	p := &UserNSProcess{name: o.Name, sigs: make(chan os.Signal, 64), notified: make(chan struct{})}
	// Registering the signals costs round trips inside the Go runtime: it runs while the process is set up.
	go func() {
		signal.Notify(p.sigs, CommonSignals...)
		close(p.notified)
	}()
	ctx := context.Background()
	caller := CurrentCaller()
	plan := o.Plan
	if plan == nil {
		var err error
		if plan, err = NewPlan(ctx, o.MapMode, caller); err != nil {
			p.stopSignals()
			return nil, errorf("%s: %v", o.Name, err)
		}
	}
	announcePlan(plan)
	ready, release, err := os.Pipe()
	if err != nil {
		p.stopSignals()
		return nil, errorf("%s: %v", o.Name, err)
	}
	defer release.Close()
	role := "user"
	if becomeRoot(caller) {
		role = "root"
	}
	attr := &syscall.SysProcAttr{
		Cloneflags:  unix.CLONE_NEWUSER,
		AmbientCaps: allCaps(), // kept across its exec although its uid is not mapped yet (as init's)
		Pdeathsig:   unix.SIGKILL,
	}
	if o.Terminal {
		if tty := foregroundTTY(); tty != nil {
			p.tty = tty
			attr.Foreground, attr.Ctty = true, int(tty.Fd())
		}
	}
	// The binary runs from /proc/self/exe: unlike init, nothing runs from it once the command starts (the stage
	// replaces itself with the command), and the command has the caller's own rights over the file anyway.
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        append([]string{o.Stage, role}, o.Args...),
		Stdin:       os.Stdin,
		Stdout:      os.Stdout,
		Stderr:      os.Stderr,
		ExtraFiles:  append([]*os.File{ready}, o.Extra...),
		SysProcAttr: attr,
	}
	err = cmd.Start()
	ready.Close()
	if err != nil {
		p.end()
		return nil, errorf("%s: cannot create the user namespace: %s", o.Name, startFailure(err))
	}
	p.proc, p.pid = cmd.Process, cmd.Process.Pid
	if err := applyMaps(ctx, plan, p.pid); err != nil {
		_ = p.proc.Kill()
		p.reap()
		p.end()
		code := errorf("%s: %s", o.Name, strings.ReplaceAll(err.Error(), "\n", "; "))
		if hint := mapHint(plan, err); hint != "" {
			fmt.Fprintf(os.Stderr, "caisson: hint: %s\n", hint)
		}
		return nil, code
	}
	<-p.notified // the command starts once caisson forwards signals to it
	if _, err := release.Write([]byte{1}); err != nil {
		// The process is gone already (killed meanwhile): its status says how.
		return p, 0
	}
	return p, 0
}

// Wait waits for the process to end and returns caisson's exit code: the process's status, or 128+N when signal
// N killed it. Meanwhile it forwards every signal caisson receives to it (the terminal's signals reach it directly
// when it has the terminal) and, when it has the terminal, follows it as a shell follows a job: when it stops
// (Ctrl-Z), caisson takes the terminal back and stops too, with the same signal; when caisson is continued (fg),
// it gives the terminal back and continues it. Preconditions: called on the main goroutine (locked to the main
// thread, whose exit would fire the process's parent-death signal).
func (p *UserNSProcess) Wait() int {
	<-p.notified
	defer p.end()
	type result struct {
		ws  unix.WaitStatus
		err error
	}
	results := make(chan result, 1)
	go func() {
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(p.pid, &ws, unix.WUNTRACED, nil)
			if err == unix.EINTR {
				continue
			}
			results <- result{ws, err}
			if err != nil || !ws.Stopped() {
				return
			}
		}
	}()
	late := time.After(LateSignalDelay)
	for {
		select {
		case <-late:
			go NotifyLate(p.sigs)
		case sig := <-p.sigs:
			if sig == unix.SIGCONT && p.stopped {
				p.resume()
				continue
			}
			// Through the process's pidfd: never a recycled PID, even once the process is reaped.
			_ = p.proc.Signal(sig)
		case r := <-results:
			switch {
			case r.err != nil:
				return errorf("%s: wait: %v", p.name, r.err)
			case r.ws.Stopped():
				if p.tty != nil {
					p.suspend(r.ws.StopSignal())
				}
				continue
			}
			return statusCode(syscall.WaitStatus(r.ws))
		}
	}
}

// suspend follows a stop of the process that has the terminal: the terminal back to caisson's process group, and
// caisson stops with sig, so that the shell that started caisson sees its job stopped. When caisson's process
// group is orphaned (started by `script -c`, `ssh -t HOST CMD`: no shell does job control over it), the kernel
// would ignore the stop, and nothing would ever continue the process: it is continued at once, as the kernel does
// for an orphaned job's terminal stops.
func (p *UserNSProcess) suspend(sig unix.Signal) {
	p.stopped = true
	setForeground(p.tty, unix.Getpgrp())
	if orphanedGroup() {
		p.resume()
		return
	}
	_ = unix.Kill(os.Getpid(), sig)
}

// resume continues the process (and its process group) after caisson itself was continued, giving it the
// terminal back when caisson is in the foreground again (fg; after bg it runs in the background).
func (p *UserNSProcess) resume() {
	p.stopped = false
	if fg, err := unix.IoctlGetInt(int(p.tty.Fd()), unix.TIOCGPGRP); err == nil && fg == unix.Getpgrp() {
		setForeground(p.tty, p.pid)
	}
	_ = unix.Kill(-p.pid, unix.SIGCONT)
}

// reap waits for the process after it was killed during the start.
func (p *UserNSProcess) reap() {
	var ws unix.WaitStatus
	for {
		if _, err := unix.Wait4(p.pid, &ws, 0, nil); err != unix.EINTR {
			return
		}
	}
}

// end gives the terminal back to caisson's process group when the process's group still has it, and releases
// the signals, the terminal and the process's pidfd.
func (p *UserNSProcess) end() {
	if p.tty != nil {
		if fg, err := unix.IoctlGetInt(int(p.tty.Fd()), unix.TIOCGPGRP); err == nil && (p.pid == 0 || fg == p.pid) {
			setForeground(p.tty, unix.Getpgrp())
		}
		p.tty.Close()
		p.tty = nil
	}
	if p.proc != nil {
		_ = p.proc.Release()
		p.proc = nil
	}
	p.stopSignals()
}

// stopSignals stops the forwarding of signals to p.sigs (after its registration has finished).
func (p *UserNSProcess) stopSignals() {
	<-p.notified
	signal.Stop(p.sigs)
}

// foregroundTTY opens caisson's controlling terminal when caisson's process group is its foreground group: then
// (and only then) a shell does job control over caisson, or nothing does and the terminal is caisson's alone.
func foregroundTTY() *os.File {
	fd, err := unix.Open("/dev/tty", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	if fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP); err != nil || fg != unix.Getpgrp() {
		unix.Close(fd)
		return nil
	}
	return os.NewFile(uintptr(fd), "/dev/tty")
}

// setForeground makes pgrp the foreground process group of tty. SIGTTOU is blocked on this thread meanwhile: a
// process in a background group may then change the foreground group (tcsetpgrp(3)) instead of being stopped.
func setForeground(tty *os.File, pgrp int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var set, old unix.Sigset_t
	set.Val[(unix.SIGTTOU-1)/64] |= 1 << ((uint(unix.SIGTTOU) - 1) % 64)
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
		return
	}
	_ = unix.IoctlSetPointerInt(int(tty.Fd()), unix.TIOCSPGRP, pgrp)
	_ = unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
}

// procStat is what orphanedGroup needs of /proc/PID/stat.
type procStat struct{ pid, ppid, pgrp, session int }

// parseProcStat reads the fields of a /proc/PID/stat line after the command name (which may hold spaces and
// parentheses: it ends at the last ')').
func parseProcStat(line string) (procStat, bool) {
	open, end := strings.IndexByte(line, '('), strings.LastIndexByte(line, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(line[end+1:])
	pid, err := strconv.Atoi(strings.TrimSpace(line[:open]))
	if err != nil || len(f) < 4 {
		return procStat{}, false
	}
	var s procStat
	s.pid = pid
	for i, dst := range []*int{&s.ppid, &s.pgrp, &s.session} {
		if *dst, err = strconv.Atoi(f[i+1]); err != nil {
			return procStat{}, false
		}
	}
	return s, true
}

// orphaned applies POSIX's rule to the processes procs: the process group pgrp (of session sid) is orphaned when
// no member has a parent in another group of the same session (nothing could continue it after a stop).
func orphaned(procs []procStat, pgrp, sid int) bool {
	byPID := map[int]procStat{}
	for _, s := range procs {
		byPID[s.pid] = s
	}
	for _, s := range procs {
		if s.pgrp != pgrp {
			continue
		}
		if parent, ok := byPID[s.ppid]; ok && parent.pgrp != pgrp && parent.session == sid {
			return false
		}
	}
	return true
}

// orphanedGroup reports whether caisson's process group is orphaned, from /proc.
func orphanedGroup() bool {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	var procs []procStat
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if s, ok := parseProcStat(string(b)); ok {
			procs = append(procs, s)
		}
	}
	sid, _ := unix.Getsid(0)
	return orphaned(procs, unix.Getpgrp(), sid)
}
