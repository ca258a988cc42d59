// Package ociinit is the Go half of caisson-oci's stages: the process that nsenter's C half leaves in the
// container's namespaces (and, through the parent, in its cgroups) and that becomes the container's process.
//
// For `create` it builds the container from the plan the runtime's command sends (ocispec.Plan): the root and its
// mounts with package rootfs's steps, devices, the createContainer hooks, pivot_root, the console, host name,
// sysctls, read-only and masked paths; then it takes on the process's identity (rlimits, user, capabilities,
// seccomp, working directory), reports "created" and waits on the exec FIFO until `start` opens it. For `exec` it
// only takes on the identity of the process to run. Either way it ends by execve-ing the process in its own place:
// there is no supervising caisson process in a container, the engine's shim or monitor is the reaper.
package ociinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/hook"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ocispec"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/seccomp"
	"github.com/caisson-sandbox/caisson/slirp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Roles of a stage.
const (
	RoleCreate = "create"
	RoleExec   = "exec"
)

// Start is the runtime command's first message to the stage's Go half. Descriptors come attached in this order:
// the exec FIFO (create), then the console socket (when the process has a terminal).
type Start struct {
	Role string
	// Plan is the container to build (create).
	Plan *ocispec.Plan
	// Process is the process to run (exec; create uses Plan.Process).
	Process *ocispec.Process
	// BindDevices makes devices binds of the host's nodes (a user namespace cannot create nodes).
	BindDevices bool
	// HasFIFO and HasConsole say which descriptors are attached.
	HasFIFO, HasConsole bool
	// TTYGuard stacks caisson's TIOCSTI/TIOCLINUX filter under the process's own seccomp profile.
	TTYGuard bool
}

// Event is a message on the stage's socket after Start.
type Event struct {
	// Type is, from the stage: "mounted" (the prestart and createRuntime hooks may run), "created", "error"; from
	// the runtime's command: "continue" (after those hooks).
	Type  string
	Error string
	// State is the container's state JSON, with "continue", for the hooks the stage runs.
	State []byte
}

// Main runs a stage's Go half on sock and does not return when it succeeds (it execs the process). Errors go to
// the runtime's command over sock (it prints and logs them: the process's stderr belongs to the container).
func Main(sock *os.File) int {
	var st Start
	fds, err := wire.RecvValue(sock, &st)
	if err != nil {
		return 1 // the runtime's command died or sent nonsense; it reports its own error
	}
	// Non-dumpable until the exec: a process of the container must not reach into this one through /proc
	// (its descriptors include the runtime's socket and directories of the host).
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return report(sock, fmt.Errorf("make the stage non-dumpable: %w", err))
	}
	var fifo, console *os.File
	next := 0
	take := func() *os.File {
		if next >= len(fds) {
			return nil
		}
		f := os.NewFile(uintptr(fds[next]), "fd")
		next++
		return f
	}
	if st.HasFIFO {
		if fifo = take(); fifo == nil {
			return report(sock, errors.New("stage: the exec FIFO is missing"))
		}
	}
	if st.HasConsole {
		if console = take(); console == nil {
			return report(sock, errors.New("stage: the console socket is missing"))
		}
	}
	switch st.Role {
	case RoleCreate:
		err = create(sock, &st, fifo, console)
	case RoleExec:
		err = execIn(sock, &st, console)
	default:
		err = fmt.Errorf("stage: unknown role %q", st.Role)
	}
	return report(sock, err)
}

// report sends err to the runtime's command and returns the stage's exit status.
func report(sock *os.File, err error) int {
	if err == nil {
		return 0
	}
	_ = wire.SendValue(sock, "error", Event{Type: "error", Error: err.Error()})
	return 1
}

// create builds the container, waits to be started and execs its process.
func create(sock *os.File, st *Start, fifo, console *os.File) error {
	p := st.Plan
	// A joined mount namespace gets the container's root and mounts like a new one (runc's behaviour): the bundle's
	// paths are resolved in it, so it must show them (a namespace made with `unshare --mount`, say).
	c, err := rootfs.OpenContainer(p.Root, p.Propagation)
	if err != nil {
		return err
	}
	defer c.Close()
	for _, m := range p.Mounts {
		if err := mount(c, m, p); err != nil {
			return err
		}
	}
	if p.DefaultDevices {
		if err := defaultDevices(c, p, st.BindDevices); err != nil {
			return err
		}
	}
	for _, d := range p.Devices {
		if err := c.Device(d, st.BindDevices); err != nil {
			return err
		}
	}
	// The runtime's command runs the prestart and createRuntime hooks now, in its own namespaces.
	if err := wire.SendValue(sock, "mounted", Event{Type: "mounted"}); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	var ev Event
	if _, err := wire.RecvValue(sock, &ev); err != nil || ev.Type != "continue" {
		return errors.New("stage: the runtime's command did not continue")
	}
	// createContainer hooks: in the container's namespaces, their paths resolved in the runtime's (before pivot).
	if err := hook.RunAll("createContainer", p.Hooks.CreateContainer, ev.State); err != nil {
		return err
	}
	if err := c.Pivot(p.NoPivot); err != nil {
		return err
	}
	pr := &p.Process
	if pr.Terminal {
		if console == nil {
			return errors.New("process.terminal is set but no --console-socket was given")
		}
		if err := setupConsole(console, pr.ConsoleSize, c); err != nil {
			return err
		}
	}
	if p.PropagationAfter != 0 {
		if err := c.SetPropagation(p.PropagationAfter); err != nil {
			return err
		}
	}
	if p.NS.New&unix.CLONE_NEWNET != 0 {
		// A new network namespace has its loopback down; runc brings it up, and a pod's containers talk over it.
		if err := slirp.BringUpLoopback(); err != nil {
			return fmt.Errorf("loopback: %w", err)
		}
	}
	if p.Hostname != "" {
		if err := unix.Sethostname([]byte(p.Hostname)); err != nil {
			return fmt.Errorf("hostname %q: %w", p.Hostname, err)
		}
	}
	if p.Domainname != "" {
		if err := unix.Setdomainname([]byte(p.Domainname)); err != nil {
			return fmt.Errorf("domainname %q: %w", p.Domainname, err)
		}
	}
	for _, kv := range p.Sysctl {
		if err := writeProc("/proc/sys/"+strings.ReplaceAll(kv[0], ".", "/"), kv[1]); err != nil {
			return fmt.Errorf("linux.sysctl %s: %w", kv[0], err)
		}
	}
	if p.RootReadonly {
		if err := c.ReadOnlyRoot(); err != nil {
			return err
		}
	}
	if err := c.ReadOnlyPaths(p.Readonly); err != nil {
		return err
	}
	if err := c.MaskPaths(p.Masked); err != nil {
		return err
	}
	if p.Personality >= 0 {
		if _, _, errno := unix.RawSyscall(unix.SYS_PERSONALITY, uintptr(p.Personality), 0, 0); errno != 0 {
			return fmt.Errorf("linux.personality: %w", errno)
		}
	}
	path, err := becomeProcess(pr, st.TTYGuard)
	if err != nil {
		return err
	}
	// Created: the runtime's command writes the pid file and exits; this process waits for `start`.
	if err := wire.SendValue(sock, "created", Event{Type: "created"}); err != nil {
		return fmt.Errorf("stage: %w", err)
	}
	sock.Close()
	startFD, err := waitStart(fifo)
	if err != nil {
		return err
	}
	state := setStatus(ev.State, specs.StateCreated)
	if err := hook.RunAll("startContainer", p.Hooks.StartContainer, state); err != nil {
		fmt.Fprintf(os.Stderr, "caisson-oci: %v\n", err) // start reports the failure; the details go here
		os.Exit(1)
	}
	// A second byte tells `start` that the startContainer hooks passed; the exec then closes the FIFO.
	if _, err := unix.Write(startFD, []byte{1}); err != nil {
		return fmt.Errorf("write the exec FIFO: %w", err)
	}
	return execve(path, pr)
}

// execIn runs an exec'd process: the namespaces and cgroups are the container's already.
func execIn(sock *os.File, st *Start, console *os.File) error {
	pr := st.Process
	if pr.Terminal {
		if console == nil {
			return errors.New("a terminal needs --console-socket")
		}
		if err := setupConsole(console, pr.ConsoleSize, nil); err != nil {
			return err
		}
	}
	path, err := becomeProcess(pr, st.TTYGuard)
	if err != nil {
		return err
	}
	// The socket is close-on-exec: the runtime's command sees it close when the exec succeeded.
	return execve(path, pr)
}

// waitStart blocks until `start` opens the exec FIFO, writes the first byte `start` reads, and returns the FIFO's
// write end for the second one.
func waitStart(fifo *os.File) (int, error) {
	// Reopen the O_PATH descriptor for writing through /proc: the open blocks until a reader comes.
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(fifo.Fd())), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open the exec FIFO: %w", err)
	}
	fifo.Close()
	if _, err := unix.Write(fd, []byte{0}); err != nil {
		return -1, fmt.Errorf("write the exec FIFO: %w", err)
	}
	// The write end stays open: after the startContainer hooks a second byte follows, and the exec closes it
	// (close-on-exec). `start` waits for both, so that the hooks have run and the program is executing before start
	// runs the poststart hooks and returns, as the spec orders them.
	return fd, nil
}

// setStatus returns the state JSON with its status replaced.
func setStatus(state []byte, status specs.ContainerState) []byte {
	s := string(state)
	for _, old := range []specs.ContainerState{specs.StateCreating, specs.StateCreated, specs.StateRunning} {
		s = strings.Replace(s, `"status":"`+string(old)+`"`, `"status":"`+string(status)+`"`, 1)
	}
	return []byte(s)
}

// writeProc writes v to the procfs file name, checked to be on procfs (a write meant for /proc must land there).
func writeProc(name, v string) error {
	f, err := os.OpenFile(name, os.O_WRONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
		return err
	}
	if sfs.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("%s is not on procfs", name)
	}
	_, err = f.WriteString(v)
	return err
}

// becomeProcess gives this thread (which execs next) the process's identity: resource limits, I/O priority,
// AppArmor profile, umask, seccomp (first when no_new_privs is off: loading a filter then needs CAP_SYS_ADMIN, which
// the capability sets may drop), user and capabilities, working directory. It returns the program's path.
func becomeProcess(pr *ocispec.Process, ttyGuard bool) (string, error) {
	for _, rl := range pr.Rlimits {
		lim := syscall.Rlimit{Cur: rl.Soft, Max: rl.Hard}
		if err := syscall.Setrlimit(rl.Resource, &lim); err != nil {
			var cur syscall.Rlimit
			if errors.Is(err, unix.EPERM) && syscall.Getrlimit(rl.Resource, &cur) == nil && rl.Hard > cur.Max {
				return "", fmt.Errorf("process.rlimits %s: hard limit %d is above the runtime's own (%d), which only "+
					"CAP_SYS_RESOURCE may raise: %w", rl.Name, rl.Hard, cur.Max, err)
			}
			return "", fmt.Errorf("process.rlimits %s: %w", rl.Name, err)
		}
	}
	if pr.IOPriority != 0 {
		const ioprioWhoProcess = 1
		if _, _, errno := unix.RawSyscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, 0, uintptr(pr.IOPriority)); errno != 0 {
			return "", fmt.Errorf("process.ioPriority: %w", errno)
		}
	}
	if pr.ApparmorProfile != "" {
		if err := writeProc("/proc/thread-self/attr/apparmor/exec", "exec "+pr.ApparmorProfile); err != nil {
			return "", fmt.Errorf("process.apparmorProfile: %w", err)
		}
	}
	umask := uint32(0o022)
	if pr.Umask != nil {
		umask = *pr.Umask
	}
	unix.Umask(int(umask))
	var filters []*seccomp.Program
	if ttyGuard {
		g, err := seccomp.TTYGuard()
		if err != nil {
			return "", err
		}
		filters = append(filters, g)
	}
	if pr.Seccomp != nil {
		filters = append(filters, &seccomp.Program{Name: pr.SeccompSource, Filter: pr.Seccomp.Insns, Flags: pr.Seccomp.Flags})
	}
	if !pr.NoNewPrivs {
		for _, f := range filters {
			if err := seccomp.Load(f); err != nil {
				return "", fmt.Errorf("linux.seccomp: %w", err)
			}
		}
		filters = nil
	}
	if err := setUser(pr); err != nil {
		return "", err
	}
	if err := unix.Chdir(pr.Cwd); err != nil {
		return "", fmt.Errorf("process.cwd %s: %w", pr.Cwd, err)
	}
	path, err := lookPath(pr)
	if err != nil {
		return "", err
	}
	if pr.NoNewPrivs {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return "", fmt.Errorf("process.noNewPrivileges: %w", err)
		}
	}
	lateFilters = filters
	return path, nil
}

// lateFilters are the seccomp programs loaded right before execve (no_new_privs set): the runtime's own last
// steps need not pass them.
var lateFilters []*seccomp.Program

// execve loads the late seccomp filters and replaces this process with the program.
func execve(path string, pr *ocispec.Process) error {
	for _, f := range lateFilters {
		if err := seccomp.Load(f); err != nil {
			return fmt.Errorf("linux.seccomp: %w", err)
		}
	}
	err := unix.Exec(path, pr.Args, pr.Env)
	return fmt.Errorf("exec %s: %w", pr.Args[0], err)
}

// lookPath finds the program: a path with a slash is taken as it is (relative to the working directory), a bare
// name is looked up in the process's PATH. The message for a missing one is runc's, which engines match.
func lookPath(pr *ocispec.Process) (string, error) {
	name := pr.Args[0]
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("exec: %q: %w", name, unwrapPath(err))
		}
		return name, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range pr.Env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("exec: %q: executable file not found in $PATH", name)
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// setUser switches to the process's groups and ids keeping the capabilities it is to have, then sets the five
// capability sets: the bounding set first (dropping from it needs CAP_SETPCAP), the others after the switch.
func setUser(pr *ocispec.Process) error {
	last := lastCap()
	for c := 0; c <= last; c++ {
		if pr.Caps.Bounding&(1<<uint(c)) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("process.capabilities.bounding: drop %d: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	groups := make([]int, len(pr.AdditionalGids))
	for i, g := range pr.AdditionalGids {
		groups[i] = int(g)
	}
	if err := syscall.Setgroups(groups); err != nil {
		// A user namespace whose gid map was written with setgroups denied allows no change, which is fine when
		// none was asked for.
		if len(groups) > 0 || !setgroupsDenied() {
			return fmt.Errorf("process.user.additionalGids: %w", err)
		}
	}
	if err := syscall.Setresgid(int(pr.GID), int(pr.GID), int(pr.GID)); err != nil {
		return fmt.Errorf("process.user.gid %d: %w", pr.GID, err)
	}
	if err := syscall.Setresuid(int(pr.UID), int(pr.UID), int(pr.UID)); err != nil {
		return fmt.Errorf("process.user.uid %d: %w", pr.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %w", err)
	}
	// What cannot be granted is left out, as the spec asks (a runtime whose own bounding set lacks a capability,
	// root on a host that withholds CAP_SYS_RESOURCE): permitted and effective within what this process holds,
	// inheritable and ambient within the bounding set as well.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var cur [2]unix.CapUserData
	if err := unix.Capget(&hdr, &cur[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	held := uint64(cur[0].Permitted) | uint64(cur[1].Permitted)<<32
	var bset uint64
	for c := 0; c <= last; c++ {
		if v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && v == 1 {
			bset |= 1 << uint(c)
		}
	}
	perm := pr.Caps.Permitted & held
	eff := pr.Caps.Effective & perm
	inh := pr.Caps.Inheritable & (bset | (uint64(cur[0].Inheritable) | uint64(cur[1].Inheritable)<<32))
	amb := pr.Caps.Ambient & perm & inh
	data := [2]unix.CapUserData{
		{Effective: uint32(eff), Permitted: uint32(perm), Inheritable: uint32(inh)},
		{Effective: uint32(eff >> 32), Permitted: uint32(perm >> 32), Inheritable: uint32(inh >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("process.capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("process.capabilities.ambient: %w", err)
	}
	for c := 0; c <= last; c++ {
		if amb&(1<<uint(c)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("process.capabilities.ambient: raise %d (it must be permitted and inheritable too): %w", c, err)
		}
	}
	return nil
}

// setgroupsDenied reports whether this user namespace refuses setgroups.
func setgroupsDenied() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
}

// lastCap returns the highest capability the kernel knows.
func lastCap() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 40
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n > 63 {
		return 40
	}
	return n
}

// setupConsole makes a pseudo-terminal in the container's devpts (its /dev/ptmx), sends the master to the engine
// over the console socket, and makes the slave the process's stdio and controlling terminal; with c (create) the
// slave is also bound at /dev/console.
func setupConsole(sock *os.File, size *specs.Box, c *rootfs.Container) error {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console: open /dev/ptmx: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("console: unlock: %w", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("console: pty number: %w", err)
	}
	slaveName := "/dev/pts/" + strconv.Itoa(int(n))
	slave, err := os.OpenFile(slaveName, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("console: open %s: %w", slaveName, err)
	}
	defer slave.Close()
	if size != nil && size.Height > 0 && size.Width > 0 {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("console: size: %w", err)
		}
	}
	// The name rides in the payload, as runc sends it; the receiver takes the descriptor.
	oob := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte(slaveName), oob, nil, 0); err != nil {
		return fmt.Errorf("console: send the terminal to --console-socket: %w", err)
	}
	sock.Close()
	if c != nil {
		if err := c.BindFD(int(slave.Fd()), "/dev/console", false); err != nil {
			return err
		}
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return fmt.Errorf("console: stdio: %w", err)
		}
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("console: setsid: %w", err)
	}
	if err := unix.IoctlSetInt(0, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("console: controlling terminal: %w", err)
	}
	return nil
}

// mount performs one config.json mount, with runc's fallbacks where a user namespace refuses a new file system.
func mount(c *rootfs.Container, m rootfs.Mount, p *ocispec.Plan) error {
	if m.Type == "cgroup" {
		return cgroupMount(c, m, p)
	}
	err := c.Mount(m)
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	switch m.Type {
	case "sysfs":
		// A sysfs is refused for a network namespace the user namespace does not own: bind the host's.
		return c.Mount(rootfs.Mount{Type: "bind", Source: "/sys", Destination: m.Destination, Recursive: true,
			AttrSet: m.AttrSet | unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC})
	case "mqueue":
		// Likewise for an IPC namespace it does not own: bind the host's /dev/mqueue.
		return c.Mount(rootfs.Mount{Type: "bind", Source: "/dev/mqueue", Destination: m.Destination, Recursive: true,
			AttrSet: m.AttrSet | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC})
	}
	return err
}

// cgroupMount shows the container its own cgroups at m.Destination: on a unified host, the container's group bound
// there; on a v1 or hybrid host, a tmpfs holding each hierarchy's directory with the container's group of that
// hierarchy bound into it (and links for co-mounted controllers: cpu -> cpu,cpuacct), as runc does without a
// cgroup namespace. The binds take the mount's attributes (ro).
func cgroupMount(c *rootfs.Container, m rootfs.Mount, p *ocispec.Plan) error {
	v := p.Cgroup
	attrs := m.AttrSet | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
	bind := func(host, dst string) error {
		return c.Mount(rootfs.Mount{Type: "bind", Source: host, Destination: dst, AttrSet: attrs})
	}
	if v.V2 {
		for mp, rel := range v.Paths { // one hierarchy
			if err := bind(filepath.Join(mp, rel), m.Destination); err != nil {
				return err
			}
		}
		return nil
	}
	tmpfs := rootfs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Destination, Data: []string{"mode=0755"},
		AttrSet: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC}
	if err := c.Mount(tmpfs); err != nil {
		return err
	}
	names := make([]string, 0, len(v.Paths))
	for mp := range v.Paths {
		names = append(names, mp)
	}
	sort.Strings(names)
	for _, mp := range names {
		base := filepath.Base(mp)
		dst := filepath.Join(m.Destination, base)
		if err := c.Mkdir(dst); err != nil {
			return err
		}
		if err := bind(filepath.Join(mp, v.Paths[mp]), dst); err != nil {
			return err
		}
		if strings.Contains(base, ",") {
			for _, part := range strings.Split(base, ",") {
				if err := c.Symlink(base, filepath.Join(m.Destination, part)); err != nil {
					return err
				}
			}
		}
	}
	if m.AttrSet&unix.MOUNT_ATTR_RDONLY != 0 {
		return c.ReadOnlyPaths([]string{m.Destination}) // the tmpfs too, once filled
	}
	return nil
}

// defaultDevices creates the default device nodes the container's config does not list itself, and the /dev links.
func defaultDevices(c *rootfs.Container, p *ocispec.Plan, bind bool) error {
	listed := map[string]bool{}
	for _, d := range p.Devices {
		listed[d.Path] = true
	}
	for _, d := range rootfs.DefaultDevices {
		if listed[d.Path] {
			continue
		}
		if err := c.Device(d, bind); err != nil {
			return err
		}
	}
	if err := c.Mkdir("/dev/pts"); err != nil {
		return err
	}
	return c.DevSymlinks()
}
