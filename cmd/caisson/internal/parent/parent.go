// Package parent is the unprivileged host side of `caisson run`.
//
// It plans the ID maps, starts init (a re-exec of this binary under the stage name initproc.StageName) with every
// new namespace as a clone flag — never by unshare or setns in this multithreaded process — writes init's maps with
// newuidmap/newgidmap (or directly for a single-id map), starts the network helper, sends init its Config, then
// forwards signals to it, proxies the terminal with --tty, and exits with init's status.
//
// Preconditions: Run is called on the goroutine locked to the main thread (main's init() does it) and that thread
// lives until the process exits, because a child's parent-death signal fires when the thread that created it
// exits (golang/go#27505).
package parent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/initproc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/oneproc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/proc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/reap"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/relay"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/spawn"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/term"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
	"github.com/moby/sys/userns"
	"golang.org/x/sys/unix"
)

// ExitSetup is the exit code of caisson's own errors.
const ExitSetup = initproc.ExitSetup

// errorf prints one caisson: line and returns ExitSetup.
func errorf(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return ExitSetup
}

// Caller describes the invoking user.
type Caller struct {
	UID, GID   uint32
	User       string
	NoNewPrivs bool
}

// CurrentCaller reads the invoking user's ids, name and no_new_privs flag.
func CurrentCaller() Caller {
	c := Caller{UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), NoNewPrivs: idmap.NoNewPrivs()}
	c.User, _ = passwd().Name(c.UID)
	return c
}

// passwd is /etc/passwd, read once for the caller's name and every owner named in /etc/subuid and /etc/subgid.
var passwd = sync.OnceValue(func() *idmap.Passwd { return idmap.ReadPasswd("/etc/passwd") })

// resolveUser maps a user name to its uid through the passwd database.
func resolveUser(name string) (uint32, bool) {
	return passwd().UID(name)
}

// NewPlan computes the ID maps for mode and the caller.
func NewPlan(ctx context.Context, mode string, c Caller) (*idmap.Plan, error) {
	m, err := idmap.ParseMode(mode)
	if err != nil {
		return nil, err
	}
	return idmap.NewPlan(ctx, idmap.PlanOptions{
		Mode: m, UID: c.UID, GID: c.GID, User: c.User, NoNewPrivs: c.NoNewPrivs,
		SubUIDFile: "/etc/subuid", SubGIDFile: "/etc/subgid", Resolve: resolveUser,
		Nested: userns.RunningInUserNS(),
	})
}

// cloneHint explains a failed clone of init: which limit or setting refused the new namespaces.
func cloneHint(err error) string {
	switch {
	case errors.Is(err, unix.ENOSPC):
		// A per-user-namespace limit of one of the namespace kinds is reached; name the ones that are.
		var full []string
		for _, kind := range []string{"user", "mnt", "pid", "net", "ipc", "uts", "cgroup"} {
			b, err := os.ReadFile("/proc/sys/user/max_" + kind + "_namespaces")
			if err != nil {
				continue
			}
			if n := strings.TrimSpace(string(b)); n == "0" || kind == "user" {
				full = append(full, "user.max_"+kind+"_namespaces="+n)
			}
		}
		return fmt.Sprintf(" (a namespace limit is reached: %s here; as root: sysctl -w user.max_user_namespaces=N; "+
			"inside a --security strict sandbox it is 0 on purpose)", strings.Join(full, ", "))
	case errors.Is(err, unix.EUSERS):
		return " (user namespaces nest at most 32 levels deep)"
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		var why []string
		for file, bad := range map[string]string{"kernel/unprivileged_userns_clone": "0", "kernel/apparmor_restrict_unprivileged_userns": "1"} {
			if b, err := os.ReadFile("/proc/sys/" + file); err == nil && strings.TrimSpace(string(b)) == bad {
				why = append(why, strings.ReplaceAll(file, "/", ".")+"="+bad)
			}
		}
		o := outer.Detect(userns.RunningInUserNS)
		switch {
		case len(why) > 0:
			slices.Sort(why)
			return fmt.Sprintf(" (unprivileged user namespaces are disabled or restricted here: %s; run caisson doctor for the fix)",
				strings.Join(why, ", "))
		case o.Engine == outer.Caisson:
			return " (caisson runs inside another caisson sandbox whose seccomp filter refuses new namespaces, as --security strict does)"
		case o.In():
			return fmt.Sprintf(" (%s; fix: %s)", o.Why(outer.NeedNamespaces), o.Fix(outer.NeedNamespaces))
		}
		return " (unprivileged user namespaces are disabled or restricted on this host: run caisson doctor)"
	}
	return ""
}

// announcePlan prints the plan's notice (a fallback to another mode) and warnings (lines of /etc/subuid that the
// helpers would ignore) on stderr.
func announcePlan(plan *idmap.Plan) {
	if plan.Notice != "" {
		fmt.Fprintln(os.Stderr, plan.Notice)
	}
	for _, w := range plan.Warnings {
		fmt.Fprintf(os.Stderr, "caisson: warning: %s\n", w)
	}
}

// becomeRoot reports whether the first process in the new user namespace must switch to uid and gid 0 once the
// maps are written: host root's own ids are never mapped, so it would otherwise run unmapped.
func becomeRoot(c Caller) bool {
	return (c.UID == 0 || c.GID == 0) && !userns.RunningInUserNS()
}

// startFailure describes a failed clone of a process in new namespaces: the cause and what refused it.
func startFailure(err error) string {
	var cause error = err
	if pe := (*os.PathError)(nil); errors.As(err, &pe) {
		cause = pe.Err // "fork/exec /proc/self/exe" says nothing to the user
	}
	return cause.Error() + cloneHint(err)
}

// startInit creates init with attr. When the caller could write caisson's binary (CVE-2019-5736 class), init runs
// from a read-only bind of it (spawn.Attr.ReadOnlyExec), or where the kernel refuses that, from a sealed copy
// (harden.InitPath).
func startInit(attr *spawn.Attr) (int, error) {
	if !harden.BinaryWritable() {
		return spawn.Start(attr)
	}
	// The bind is made in init's new mount namespace, of the binary's path there (the same as here: a copy of
	// this one), checked to name the file this process runs.
	if path, ok := harden.ExecutablePath(); ok && spawn.ReadOnlyExecSupported && attr.Cloneflags&unix.CLONE_NEWNS != 0 {
		ro := *attr
		ro.Path, ro.ReadOnlyExec = path, true
		pid, err := spawn.Start(&ro)
		if !spawn.ReadOnlyExecRefused(err) {
			return pid, err
		}
	}
	attr.Path = harden.InitPath()
	return spawn.Start(attr)
}

// initProcess is the sandbox's init as its parent holds it: a child not reaped until wait, so that its PID cannot
// be reused meanwhile, and a pidfd to signal it by (never a recycled PID, even once it is reaped).
type initProcess struct {
	pid    int
	pidfd  int // -1 without pidfds
	once   sync.Once
	reaped atomic.Bool
	status unix.WaitStatus
	err    error
}

func startedInit(pid int) *initProcess {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		fd = -1
	}
	return &initProcess{pid: pid, pidfd: fd}
}

// kill sends init SIGKILL.
func (p *initProcess) kill() {
	if p.pidfd >= 0 {
		_ = unix.PidfdSendSignal(p.pidfd, unix.SIGKILL, nil, 0)
		return
	}
	if !p.reaped.Load() { // without pidfds: only while the PID is still init's
		_ = unix.Kill(p.pid, unix.SIGKILL)
	}
}

// release closes the pidfd, once nothing signals init any more.
func (p *initProcess) release() {
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
	}
}

// wait reaps init (once) and returns its status.
func (p *initProcess) wait() unix.WaitStatus {
	p.once.Do(func() {
		p.status, p.err = spawn.Reap(p.pid)
		p.reaped.Store(true)
	})
	return p.status
}

// applyMaps writes the plan's maps for pid, giving the helpers 10 seconds. The pid cannot be reused meanwhile as
// long as the process is not reaped, so the helpers write the maps of the right process.
func applyMaps(ctx context.Context, plan *idmap.Plan, pid int) error {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return plan.Apply(mctx, pid)
}

// mapHint is the fix of a failure to write the maps, when the helpers were used and one is known.
func mapHint(plan *idmap.Plan, err error) string {
	if !plan.UseHelpers {
		return ""
	}
	return idmap.HintFor(err)
}

// cloneFlags returns the namespaces init is created in.
func cloneFlags(sb *config.Sandbox) uintptr {
	flags := uintptr(unix.CLONE_NEWUSER | unix.CLONE_NEWNS)
	for ns, flag := range map[string]uintptr{
		"pid": unix.CLONE_NEWPID, "net": unix.CLONE_NEWNET, "ipc": unix.CLONE_NEWIPC,
		"uts": unix.CLONE_NEWUTS, "cgroup": unix.CLONE_NEWCGROUP,
	} {
		if !sb.Shares(ns) {
			flags |= flag
		}
	}
	return flags
}

// allCaps lists every capability the kernel knows, to be made ambient in init so that it keeps them across its
// exec although its uid is not mapped yet at that moment (this saves a second exec after the maps are written).
func allCaps() []uintptr {
	last := 40
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			last = n
		}
	}
	caps := make([]uintptr, 0, last+1)
	for c := 0; c <= last; c++ {
		caps = append(caps, uintptr(c))
	}
	return caps
}

// insideID returns the id that host id maps to inside under maps, and whether it is mapped.
func insideID(maps []idmap.Mapping, host uint32) (uint32, bool) {
	for _, m := range maps {
		if host >= m.Outside && uint64(host) < uint64(m.Outside)+uint64(m.Count) {
			return m.Inside + (host - m.Outside), true
		}
	}
	return 0, false
}

// mappedInside reports whether the inside id is mapped.
func mappedInside(maps []idmap.Mapping, inside uint32) bool {
	for _, m := range maps {
		if inside >= m.Inside && uint64(inside) < uint64(m.Inside)+uint64(m.Count) {
			return true
		}
	}
	return false
}

// exitWait bounds, at caisson's exit, the wait for the network helper and then the one for any other child.
const exitWait = 5 * time.Second

// Run runs a sandbox and returns the exit code for the caisson process. Nothing it started outlives it, not even as
// a zombie: before it returns it waits for the network helper (killed when the sandbox ended, so that the helper's
// exit overlapped the rest of the clean-up) and reaps every other child (leaveNothing).
func Run(r *config.Run) int {
	// Whatever a helper forks and orphans comes back to this process, to be reaped at the end.
	_ = reap.Adopt()
	var network *slirp.Network
	defer func() { leaveNothing(network) }()
	ctx := context.Background()
	// Forward signals once the sandbox runs (CommonSignals now, the rest after LateSignalDelay); SIGWINCH is the
	// terminal's. Registering costs round trips inside the Go runtime, so it runs alongside the setup and is
	// awaited before the config is sent. Until then a signal has its default effect on caisson, and init dies with
	// it.
	sigs := make(chan os.Signal, 64)
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, CommonSignals...)
		close(notified)
	}()
	if r.Life.Join != "" {
		return runJoined(r, sigs, notified)
	}
	sb := &r.Sandbox

	// Network input is checked before anything starts.
	netMode, err := slirp.ParseMode(r.Net.Mode)
	if err != nil {
		return errorf("--net: %v", err)
	}
	if err := outerNetCheck(netMode, sb.Extra.Outer); err != nil {
		return errorf("%v", err)
	}
	if netMode == slirp.ModeSlirp4netns {
		// Its feature probe runs while the sandbox is created. On every return path it has ended before the last
		// reap (leaveNothing, deferred first, runs last): a probe still starting its slirp4netns when caisson fails
		// early would otherwise leave that child to caisson's parent.
		prepared := make(chan struct{})
		go func() { slirp.Prepare(netMode); close(prepared) }()
		defer func() {
			select {
			case <-prepared:
			case <-time.After(exitWait):
			}
		}()
	}
	var publish []slirp.PortSpec
	for _, p := range r.Net.Publish {
		spec, err := slirp.ParsePublish(p)
		if err != nil {
			return errorf("--publish: %v", err)
		}
		publish = append(publish, spec)
	}
	if err := slirp.ValidatePublish(publish); err != nil {
		return errorf("--publish: %v", err)
	}

	// The sandbox's cgroup exists before init: init is cloned into it (v2) or moved in before it runs anything (v1).
	var group *cgroup.Group
	sb.Extra.PidsLimited = r.Limits.Pids > 0
	if r.Limits.Any() || r.OwnCgroup {
		if group, err = newGroup(r); err != nil {
			return errorf("%v", err)
		}
		defer func() {
			if err := group.Destroy(); err != nil {
				fmt.Fprintf(os.Stderr, "caisson: warning: %v\n", err)
			}
		}()
	}

	entry, err := createEntry(r)
	if err != nil {
		return errorf("%v", err)
	}
	defer entry.Remove()
	if r.Life.Detach {
		if err := redirectToLog(entry); err != nil {
			return errorf("%v", err)
		}
	}
	stdio, err := OpenStdio(sb.Security.Posture)
	if err != nil {
		return errorf("%v", err)
	}
	defer stdio.Finish() // on every path, once init is gone: what it and the command wrote reaches the files

	parentSock, initSock, err := wire.Pair()
	if err != nil {
		return errorf("%v", err)
	}
	defer parentSock.Close()
	extra := []*os.File{initSock} // descriptors 3, 4... of init
	var portParent *os.File
	if len(publish) > 0 {
		oneproc.Restore() // the port forwarder gets every processor, as before caisson started with one
		var portChild *os.File
		if portParent, portChild, err = slirp.NewForwarderPair(); err != nil {
			return errorf("%v", err)
		}
		defer portChild.Close()
		extra = append(extra, portChild) // fd 4 in init
		sb.Extra.PortChild = true
	}
	std := stdio.Files() // in the strict posture, pipes in place of the caller's files
	// With a helper, init creates the sandbox's tap device first thing (slirp.PrepareTap), so that the helper's
	// exit at the end does not wait for the device's removal, nor caisson for the helper.
	initArgs := []string{initproc.StageName}
	prepareTap := (netMode == slirp.ModePasta || netMode == slirp.ModeSlirp4netns) && !sb.Shares("net")
	if prepareTap {
		initArgs = append(initArgs, initproc.PrepareTapArg)
	}
	files := []int{int(std[0].Fd()), int(std[1].Fd()), int(std[2].Fd())}
	for _, f := range extra {
		files = append(files, int(f.Fd()))
	}
	attr := &spawn.Attr{
		Path:        "/proc/self/exe",
		Args:        initArgs,
		Env:         []string{}, // init's environment stays empty: /proc/1/environ shows nothing of the host
		Files:       files,
		Cloneflags:  cloneFlags(sb),
		AmbientCaps: allCaps(),
	}
	if fd := group.FD(); fd >= 0 {
		attr.UseCgroupFD, attr.CgroupFD = true, fd
	}
	sb.Extra.NewCgroupNS = group.HasV1() && !sb.Shares("cgroup")
	// Like vfork: nothing of this process is copied for init (package spawn). This goroutine is locked to the
	// main thread, whose life init's parent-death signal follows.
	pid, err := startInit(attr)
	if err != nil {
		initSock.Close()
		return errorf("cannot create the sandbox: %s", startFailure(err))
	}
	initSock.Close()
	stdio.Started()
	initp := startedInit(pid)
	defer initp.release()
	// The state directories of caissons killed with SIGKILL go now, while the sandbox is set up (not before init's
	// clone, whose start it would delay); the exit waits for it.
	swept := make(chan struct{})
	go func() { _ = state.Sweep(); close(swept) }()
	defer func() { <-swept }()
	// The ID maps are planned while init starts (its Go runtime's start overlaps this work).
	caller := CurrentCaller()
	plan, err := NewPlan(ctx, r.MapMode, caller)
	if err != nil {
		initp.kill()
		initp.wait()
		return errorf("%v", err)
	}
	announcePlan(plan)
	if plan.Mode == idmap.ModeKeepID {
		sb.UID, _ = insideID(plan.UIDMap, caller.UID)
		sb.GID, _ = insideID(plan.GIDMap, caller.GID)
	}
	sb.BecomeRoot = becomeRoot(caller)
	if mappedInside(plan.GIDMap, 5) {
		sb.Rootfs.TTYGID = 5
	}
	// The stand-ins of the files the caller cannot read are found while the sandbox is created.
	standIns := findStandIns(&sb.Rootfs, caller, plan)
	// fail ends a sandbox whose setup failed after init started. If init had already exited by itself, it has
	// reported its own error (the cause) and its status is ours: ours would only be a consequence.
	fail := func(format string, args ...any) int {
		initp.kill()
		if ws := initp.wait(); ws.Exited() {
			return ws.ExitStatus()
		}
		return errorf(format, args...)
	}

	// init's first message, when asked to create the tap device, says it exists: the helper starts only then, so
	// that it always attaches to that device (see slirp.PrepareTap) and never creates its own. Nothing else reads
	// the socket before the session begins, which waits for this too. Called late (slirp4netns starts after the
	// maps), the message is already there and nothing waits.
	awaitTap := sync.OnceFunc(func() {
		if prepareTap {
			_, _, _ = wire.Recv(parentSock) // an error: init died, which the steps below report
		}
	})

	// The network helper starts while init builds the sandbox (its addresses are known in advance); init waits
	// for the "net" message before it starts the command. pasta can join init's user namespace before its ID maps
	// are written, so it starts as soon as init has made the tap device; slirp4netns cannot (it fails to set its
	// ids there): it starts after the maps.
	var netStarted chan error
	launchNet := func() {
		netStarted = make(chan error, 1)
		go func() {
			awaitTap()
			nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var err error
			network, err = slirp.Start(nctx, slirp.Options{Mode: netMode, PID: pid, Publish: publish,
				AllowHostLoopback: r.Net.AllowHostLoopback, ChildConn: portParent}) // its errors quote the helper's output
			netStarted <- err
		}()
	}
	// --net none with published ports runs the forwarder alone: reachable from the host, no way out.
	needNet := netMode == slirp.ModePasta || netMode == slirp.ModeSlirp4netns || (netMode == slirp.ModeNone && len(publish) > 0)
	if needNet {
		sb.Extra.AwaitNet = true
		sb.Extra.Guest = slirp.PlannedGuest(netMode, 0, r.Net.AllowHostLoopback)
		sb.Extra.Guest.Egress = r.Net.Egress
		addNetworkFiles(sb, sb.Extra.Guest)
		if netMode != slirp.ModeSlirp4netns {
			launchNet()
		}
	} else if netMode == slirp.ModeNone {
		addNetworkFiles(sb, slirp.GuestConfig{})
	}
	// awaitNet waits for the helper; on failure the sandbox is ended and the error reported.
	awaitNet := func() (int, bool) {
		if netStarted == nil {
			return 0, true
		}
		err := <-netStarted
		netStarted = nil
		if err != nil {
			return fail("%s%s", strings.ReplaceAll(err.Error(), "\n", "; "), netHint(netMode, err, sb.Extra.Outer)), false
		}
		return 0, true
	}
	defer func() {
		if netStarted != nil {
			<-netStarted // every return path: a helper that is still starting is waited for, then released
		}
		if network != nil {
			network.Release() // killed now, reaped in the background while the rest is cleaned up (leaveNothing waits)
		}
	}()

	// Moving init into v1 groups waits for the kernel (an RCU grace period): it overlaps the map helpers.
	entered := make(chan error, 1)
	if group != nil {
		go func() { entered <- group.Enter(pid) }()
	} else {
		entered <- nil
	}

	// The pid cannot be reused while init is unreaped, so the helpers write the maps of the right process.
	err = applyMaps(ctx, plan, pid)
	if err := <-entered; err != nil {
		return fail("%v", err)
	}
	if err != nil {
		// Both helpers' failures, on one line, and a hint when the helpers were used and one is known.
		code := fail("%s", strings.ReplaceAll(err.Error(), "\n", "; "))
		ours := !initp.status.Exited() // init did not fail first: the error printed is ours
		if hint := mapHint(plan, err); hint != "" && ours {
			fmt.Fprintf(os.Stderr, "caisson: hint: %s\n", hint)
		}
		return code
	}

	if needNet && netMode == slirp.ModeSlirp4netns {
		launchNet()
	}

	orderMounts(sb)
	var tty *term.Terminal
	if sb.TTY {
		tty = term.New()
	}
	if standIns != nil {
		res := <-standIns
		if res.err != nil {
			return fail("%v", res.err)
		}
		sb.Rootfs.StandIns = res.ins
	}
	awaitTap()
	sess := newSession(parentSock, pid, entry, tty)
	sess.asPID1 = sb.AsPID1
	done, err := sess.begin(sb, r.Life.Detach, notified)
	if err != nil {
		return fail("%v", err)
	}
	defer done()
	if code, ok := awaitNet(); !ok {
		return code
	}
	if network != nil {
		// The helper dies as soon as the sandbox is ending, not after init: its exit (the kernel removes its tap
		// device) then overlaps init's, and leaveNothing waits for less of it.
		sess.mu.Lock()
		sess.ending = network.Release
		sess.mu.Unlock()
	}
	if sb.Extra.AwaitNet {
		if err := wire.Send(parentSock, wire.Message{Type: "net"}); err != nil {
			return fail("send network readiness to the sandbox: %v", err)
		}
	}

	waited := make(chan int, 1)
	go func() {
		awaitExit(pid)
		ws := initp.wait()
		if initp.err != nil {
			waited <- errorf("wait for the sandbox: %v", initp.err)
			return
		}
		waited <- statusCode(syscall.WaitStatus(ws))
	}()
	var netExited <-chan error
	if network != nil {
		netExited = network.Exited()
	}
	return FinishStdio(stdio, sess.wait(sigs, waited, netExited, initp.kill))
}

// OpenStdio returns the standard descriptors a sandbox in posture gets: in the strict posture, a file or directory
// of the caller's is replaced by a pipe that this process relays (relay.New), so that no descriptor of a host
// file-system object reaches the command; in the default posture the caller's own, as bubblewrap passes them.
func OpenStdio(posture string) (*relay.Stdio, error) {
	s, err := relay.New([3]*os.File{os.Stdin, os.Stdout, os.Stderr}, posture == config.PostureStrict)
	if err == nil && s.Relays() {
		oneproc.Restore() // the relay's copies get every processor, as before caisson started with one
	}
	return s, err
}

// FinishStdio ends the relays once the command has ended with code, and returns caisson's exit code: a failed
// write of the command's output to the caller's file is reported, and turns a success into ExitSetup (the output
// is incomplete).
func FinishStdio(stdio *relay.Stdio, code int) int {
	if err := stdio.Finish(); err != nil {
		fmt.Fprintf(os.Stderr, "caisson: %v\n", err)
		if code == 0 {
			return ExitSetup
		}
	}
	return code
}

// leaveNothing is the last step of Run: it waits (bounded) until the network helper has been reaped, then reaps
// any other child left (killing it first if it still runs: a slirp4netns feature probe still running after an early
// error, an orphan of a helper). Only a failure to do so within exitWait is reported.
func leaveNothing(network *slirp.Network) {
	if !waitAtExit {
		return
	}
	if err := network.Wait(exitWait); err != nil {
		fmt.Fprintf(os.Stderr, "caisson: warning: %v\n", err)
	}
	if _, err := reap.Children(exitWait); err != nil {
		fmt.Fprintf(os.Stderr, "caisson: warning: %v\n", err)
	}
}

// outerNetCheck refuses, before anything starts, a user-mode network that the outer sandbox (a CI job's
// container) cannot give: pasta and slirp4netns need /dev/net/tun, which containers lack unless it is passed.
func outerNetCheck(mode slirp.Mode, o outer.Sandbox) error {
	if !o.In() || (mode != slirp.ModePasta && mode != slirp.ModeSlirp4netns) {
		return nil
	}
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("--net %s: /dev/net/tun: %v: %s; fix: %s", mode, err, o.Why(outer.NeedTun), o.Fix(outer.NeedTun))
	}
	unix.Close(fd)
	return nil
}

// netHint explains a network helper's failure when its cause is known: pasta copies the addresses and routes of
// an interface with a default route, which a container started without a network has not.
func netHint(mode slirp.Mode, err error, o outer.Sandbox) string {
	if mode == slirp.ModePasta && strings.Contains(err.Error(), "No external routable interface") {
		return "; " + o.Why(outer.NeedRoute) + "; fix: " + o.Fix(outer.NeedRoute)
	}
	return ""
}

// newGroup creates the sandbox's cgroups for --memory, --pids, --cpus and --cgroup.
func newGroup(r *config.Run) (*cgroup.Group, error) {
	h := r.Cgroups // read while the flags were checked
	if h == nil {
		var err error
		if h, err = cgroup.Discover(); err != nil {
			return nil, fmt.Errorf("--cgroup: cannot read your cgroups: %v", err)
		}
	}
	st, err := proc.StartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	return cgroup.New(h, r.Limits, r.OwnCgroup, cgroup.GroupName(os.Getpid(), st))
}

// awaitExit waits for the process pid to exit (not to be reaped) through a pidfd in the Go runtime's poller, so
// that the wait holds no OS thread (cmd.Wait's waitid would). Without pidfds it returns at once.
func awaitExit(pid int) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(p, 0)
		return err != nil || n > 0 // readable once the process has exited
	})
}

// orderMounts puts the mount steps in the order of their destinations' depth (ties keep the order given), so
// that a mount never hides one made beneath it: `--tmpfs /tmp` goes before the current directory bound at
// /tmp/work, which goes before `--bind SRC:/tmp/work/data`.
func orderMounts(sb *config.Sandbox) {
	depth := func(p string) int { return strings.Count(strings.Trim(p, "/"), "/") }
	ops := sb.Rootfs.Ops
	sort.SliceStable(ops, func(i, j int) bool { return depth(ops[i].Dst) < depth(ops[j].Dst) })
}

// createEntry reserves the sandbox's name and writes its state record.
func createEntry(r *config.Run) (*state.Entry, error) {
	name := r.Life.Name
	if name == "" {
		name = "caisson-" + strconv.Itoa(os.Getpid())
	}
	st, err := proc.StartTime(os.Getpid())
	if err != nil {
		return nil, err
	}
	return state.Create(state.Record{
		Name: name, PID: os.Getpid(), StartTime: st, Created: time.Now().UTC(),
		Command: r.Sandbox.Args, Net: r.Net.Mode, Ports: r.Net.Publish, Detached: r.Life.Detach, Joined: r.Life.Join,
		Posture: r.Sandbox.Security.Posture,
	})
}

// addNetworkFiles gives the sandbox its own /etc/hosts (with its host name) and, when it has a user-mode network,
// an /etc/resolv.conf naming the driver's DNS forwarder. Files are bound inside the sandbox only.
func addNetworkFiles(sb *config.Sandbox, g slirp.GuestConfig) {
	if sb.Hostname != "" {
		sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindFile, Dst: "/etc/hosts",
			Data: slirp.Hosts(sb.Hostname, g), Optional: true})
	}
	if g.DNS != "" {
		sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindFile, Dst: "/etc/resolv.conf",
			Data: slirp.ResolvConf(g), Optional: true})
	}
}

// statusCode turns a wait status into an exit code: the process's own code, or 128+N when signal N killed it.
func statusCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return ExitSetup
}

// CommonSignals are forwarded from the start: the ones terminals, shells, service managers, CI runners and
// `timeout` send. Registering a signal with the Go runtime is a round trip to its signal thread (~80 µs of CPU
// here), so the other catchable signals (the rest of Forwarded: realtime signals and rarities) are registered
// only once the sandbox has run for LateSignalDelay; a short-lived sandbox never pays for them. Before that, such a
// signal has its default effect on caisson (which ends the sandbox with it).
var CommonSignals = []os.Signal{unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE,
	unix.SIGALRM, unix.SIGTERM, unix.SIGCONT, unix.SIGWINCH, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGPWR}

// LateSignalDelay is how long a sandbox runs before every other catchable signal is forwarded too.
const LateSignalDelay = 100 * time.Millisecond

// NotifyLate registers the signals of Forwarded that CommonSignals leaves out, on sigs.
func NotifyLate(sigs chan<- os.Signal) {
	common := map[os.Signal]bool{}
	for _, s := range CommonSignals {
		common[s] = true
	}
	var rest []os.Signal
	for _, s := range Forwarded() {
		if !common[s] {
			rest = append(rest, s)
		}
	}
	signal.Notify(sigs, rest...)
}

// Forwarded lists the signals caisson passes on to the command: every catchable one except SIGCHLD, SIGURG (the
// Go runtime's) and the terminal stop signals, which stop caisson itself as they would stop any foreground job.
func Forwarded() []os.Signal {
	var out []os.Signal
	for s := unix.Signal(1); s <= 64; s++ {
		switch s {
		case unix.SIGKILL, unix.SIGSTOP, unix.SIGCHLD, unix.SIGURG, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU, 32, 33:
			continue
		}
		out = append(out, s)
	}
	return out
}

// LookupCaller describes another user, by name or uid, for `caisson idmap --user`.
func LookupCaller(who string) (Caller, error) {
	u, err := user.Lookup(who)
	if err != nil {
		if u, err = user.LookupId(who); err != nil {
			return Caller{}, fmt.Errorf("no user %q", who)
		}
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return Caller{}, fmt.Errorf("user %q has non-numeric ids", who)
	}
	return Caller{UID: uint32(uid), GID: uint32(gid), User: u.Username}, nil
}
