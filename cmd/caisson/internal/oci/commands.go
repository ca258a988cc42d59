package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/hook"
)

// start runs a created container's process: it opens the exec FIFO, which releases the waiting process, then runs
// the poststart hooks.
func (g *globals) start(args []string) error {
	fs := newFlags("start")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID("start", fs.Args())
	if err != nil {
		return err
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(id)
	if err != nil {
		if h != nil {
			h.unlock()
		}
		return err
	}
	defer h.unlock()
	return g.startLocked(h)
}

// startLocked starts the container of the locked handle h.
func (g *globals) startLocked(h *handle) error {
	switch s := h.status(); s {
	case specs.StateCreated:
	case specs.StateStopped:
		return errors.New("cannot start a container that has stopped")
	default:
		return fmt.Errorf("cannot start an already running container (status %s)", s)
	}
	fifo, err := os.OpenFile(h.fifoPath(), os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open the exec FIFO: %w", unwrapErr(err))
	}
	defer fifo.Close()
	pidfd, err := unix.PidfdOpen(h.rec.PID, 0)
	if err != nil {
		return errors.New("cannot start a container that has stopped")
	}
	defer unix.Close(pidfd)
	// Wait for the process's byte, or for the process to die (then there is no writer, ever).
	pfd := []unix.PollFd{{Fd: int32(fifo.Fd()), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(pfd, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the container's process: %w", err)
		}
		break
	}
	buf := make([]byte, 1)
	n, _ := unix.Read(int(fifo.Fd()), buf)
	if n != 1 {
		return fmt.Errorf("the container's process exited before it started its program")
	}
	_ = os.Remove(h.fifoPath())
	// The process runs the startContainer hooks, writes a second byte when they passed, and executes its program,
	// which closes the FIFO: the byte then the end of file say the program runs; an end of file alone, that a hook
	// failed (the process exits, its message on the container's stderr).
	passed := false
	pfd[0].Events = unix.POLLIN | unix.POLLHUP
	for {
		_, err := unix.Poll(pfd[:1], -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait for the container's program: %w", err)
		}
		n, _ := unix.Read(int(fifo.Fd()), buf)
		if n == 0 {
			break // end of file: every writer closed
		}
		passed = passed || (n == 1 && buf[0] == 1)
	}
	if !passed {
		return errors.New("the container's process ended before its program ran: a startContainer hook failed (its message is on the container's stderr) or the process was killed")
	}
	if spec := h.rec.Config; spec != nil && spec.Hooks != nil {
		// A failing poststart hook is a warning: the container runs on (the spec's rule).
		for i, hk := range spec.Hooks.Poststart {
			if err := hook.Run(fmt.Sprintf("poststart[%d]", i), hk, h.stateJSON(specs.StateRunning)); err != nil {
				g.logWarn("%v", err)
				fmt.Fprintf(os.Stderr, "%s: warning: %v\n", Name, err)
			}
		}
	}
	return nil
}

// state prints the state JSON. Nothing goes to stderr on success: go-runc parses stdout and stderr together.
func (g *globals) state(args []string) error {
	fs := newFlags("state")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID("state", fs.Args())
	if err != nil {
		return err
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(id)
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(h.state(h.status()), "", "  ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// parseSignal accepts runc's forms: a number, or a name with or without SIG, in any case.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("invalid signal %q", s)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	if strings.HasPrefix(name, "SIGRTMIN") || strings.HasPrefix(name, "SIGRTMAX") {
		base, off := 34, name[8:]
		if strings.HasPrefix(name, "SIGRTMAX") {
			base = 64
		}
		n := 0
		if off != "" {
			v, err := strconv.Atoi(off)
			if err != nil {
				return 0, fmt.Errorf("invalid signal %q", s)
			}
			n = v
		}
		if sig := base + n; sig >= 34 && sig <= 64 {
			return syscall.Signal(sig), nil
		}
	}
	return 0, fmt.Errorf("invalid signal %q", s)
}

// kill signals the container's process, or every process of the container with --all.
func (g *globals) kill(args []string) error {
	fs := newFlags("kill")
	all := fs.BoolP("all", "a", false, "signal every process of the container")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	rest := fs.Args()
	if len(rest) < 1 || len(rest) > 2 {
		return fmt.Errorf("%s: \"kill\" requires the container ID and at most a signal", Name)
	}
	sig := syscall.SIGTERM
	if len(rest) == 2 {
		var err error
		if sig, err = parseSignal(rest[1]); err != nil {
			return err
		}
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(rest[0])
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return err
	}
	status := h.status()
	if status == specs.StateStopped {
		return errors.New("container not running")
	}
	if *all {
		return g.signalAll(h, sig)
	}
	return h.signal(sig)
}

// signalAll signals every process of the container: those in its cgroups, or without cgroups those in its PID
// namespace.
func (g *globals) signalAll(h *handle, sig syscall.Signal) error {
	pids, err := g.containerPIDs(h)
	if err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		if cg := h.rec.cgroups(); cg != nil && cg.Frozen() {
			defer func() { _ = cg.Freeze(false) }() // a frozen process dies once thawed
		}
	}
	for _, p := range pids {
		_ = unix.Kill(p, sig)
	}
	return nil
}

// containerPIDs lists the container's processes (host PIDs).
func (g *globals) containerPIDs(h *handle) ([]int, error) {
	if cg := h.rec.cgroups(); cg != nil {
		return cg.Procs()
	}
	if !alive(h.rec.PID, h.rec.StartTime) {
		return nil, nil
	}
	if h.rec.Namespaces&unix.CLONE_NEWPID == 0 {
		return []int{h.rec.PID}, nil // no group, no namespace: only the process itself is known
	}
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", h.rec.PID))
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err == nil && ns == want {
			out = append(out, pid)
		}
	}
	return out, nil
}

// delete removes a stopped container (a created one too, after killing it); --force kills a running one first.
// delete --force of an unknown ID succeeds, removing what a half-made create left.
func (g *globals) delete(args []string) error {
	fs := newFlags("delete")
	force := fs.BoolP("force", "f", false, "kill the container first if it is running")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID("delete", fs.Args())
	if err != nil {
		return err
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(id)
	if err != nil {
		if h != nil && errors.Is(err, errNotExist) && *force {
			return h.remove() // a create killed half-way
		}
		if h != nil {
			h.unlock()
		}
		if errors.Is(err, errNotExist) && *force {
			return nil
		}
		return err
	}
	switch status := h.status(); status {
	case specs.StateStopped:
	case specs.StateCreated:
		_ = g.signalAll(h, syscall.SIGKILL)
		_ = h.signal(syscall.SIGKILL)
		h.waitGone(10 * time.Second)
	default:
		if !*force {
			h.unlock()
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, status)
		}
		_ = g.signalAll(h, syscall.SIGKILL)
		_ = h.signal(syscall.SIGKILL)
		if !h.waitGone(10 * time.Second) {
			h.unlock()
			return fmt.Errorf("container %s: its process did not die within 10 s of SIGKILL", id)
		}
	}
	return g.destroy(h)
}

// destroy removes a stopped container: its cgroups, its state, then the poststop hooks (a failure is a warning).
func (g *globals) destroy(h *handle) error {
	var errs []error
	if cg := h.rec.cgroups(); cg != nil {
		if err := cg.Destroy(); err != nil {
			errs = append(errs, err)
		}
	}
	state := h.stateJSON(specs.StateStopped)
	if err := h.remove(); err != nil {
		errs = append(errs, err)
	}
	if spec := h.rec.Config; spec != nil && spec.Hooks != nil {
		for i, hk := range spec.Hooks.Poststop {
			if err := hook.Run(fmt.Sprintf("poststop[%d]", i), hk, state); err != nil {
				g.logWarn("%v", err)
				fmt.Fprintf(os.Stderr, "%s: warning: %v\n", Name, err)
			}
		}
	}
	return errors.Join(errs...)
}

// list prints the containers under --root.
func (g *globals) list(args []string) error {
	fs := newFlags("list")
	format := fs.StringP("format", "f", "table", "table or json")
	quiet := fs.BoolP("quiet", "q", false, "print the IDs only")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	if *format != "table" && *format != "json" {
		return fmt.Errorf("list: --format: unknown format %q (want table or json)", *format)
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	ents, err := os.ReadDir(st.root)
	if err != nil {
		return err
	}
	states := []ociState{}
	for _, e := range ents {
		if !e.IsDir() || validID(e.Name()) != nil {
			continue
		}
		h, err := st.load(e.Name())
		if err != nil {
			if h != nil {
				h.unlock()
			}
			continue
		}
		states = append(states, h.state(h.status()))
		h.unlock()
	}
	sort.Slice(states, func(i, j int) bool { return states[i].ID < states[j].ID })
	switch {
	case *quiet:
		for _, s := range states {
			fmt.Println(s.ID)
		}
	case *format == "json":
		b, err := json.Marshal(states)
		if err != nil {
			return err
		}
		fmt.Println(string(b))
	default:
		w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
		fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
		for _, s := range states {
			fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.PID, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
		}
		return w.Flush()
	}
	return nil
}

// ps lists the container's processes: host PIDs as a JSON array, or ps(1)'s table of them.
func (g *globals) ps(args []string) error {
	fs := newFlags("ps")
	format := fs.StringP("format", "f", "table", "table or json")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	rest := fs.Args()
	if len(rest) < 1 {
		return fmt.Errorf("%s: \"ps\" requires the container ID", Name)
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(rest[0])
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return err
	}
	pids, err := g.containerPIDs(h)
	if err != nil {
		return err
	}
	if pids == nil {
		pids = []int{}
	}
	switch *format {
	case "json":
		b, _ := json.Marshal(pids)
		fmt.Println(string(b))
		return nil
	case "table":
	default:
		return fmt.Errorf("ps: --format: unknown format %q (want table or json)", *format)
	}
	psArgs := []string{"-ef"}
	if len(rest) > 1 {
		psArgs = rest[1:]
	}
	out, err := exec.Command("ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 {
		return nil
	}
	col := -1
	for i, f := range strings.Fields(lines[0]) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("ps: no PID column in ps's output")
	}
	in := map[string]bool{}
	for _, p := range pids {
		in[strconv.Itoa(p)] = true
	}
	fmt.Println(lines[0])
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > col && in[f[col]] {
			fmt.Println(l)
		}
	}
	return nil
}

// pause freezes (or, with frozen false, thaws) the container.
func (g *globals) pause(args []string, frozen bool) error {
	cmd := "pause"
	if !frozen {
		cmd = "resume"
	}
	fs := newFlags(cmd)
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID(cmd, fs.Args())
	if err != nil {
		return err
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(id)
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return err
	}
	status := h.status()
	switch {
	case status == specs.StateStopped:
		return errors.New("container not running")
	case frozen && status != specs.StateRunning:
		return fmt.Errorf("container not running (status %s)", status)
	case !frozen && status != "paused":
		return errors.New("container not paused")
	}
	cg := h.rec.cgroups()
	if cg == nil {
		return fmt.Errorf("%s needs the container's cgroups, and it has none (a rootless container without linux.cgroupsPath)", cmd)
	}
	return cg.Freeze(frozen)
}

// update changes the container's cgroup limits: --resources FILE (- for stdin) with OCI LinuxResources JSON, or
// runc's flags for the common ones.
func (g *globals) update(args []string) error {
	fs := newFlags("update")
	resFile := fs.StringP("resources", "r", "", "a JSON file of linux.resources (- for stdin)")
	memory := fs.String("memory", "", "memory limit in bytes")
	memSwap := fs.String("memory-swap", "", "memory plus swap limit in bytes")
	memRes := fs.String("memory-reservation", "", "memory soft limit in bytes")
	pids := fs.Int64("pids-limit", 0, "process limit")
	shares := fs.Uint64("cpu-share", 0, "CPU shares")
	quota := fs.Int64("cpu-quota", 0, "CFS quota in µs")
	period := fs.Uint64("cpu-period", 0, "CFS period in µs")
	cpus := fs.String("cpuset-cpus", "", "CPUs")
	mems := fs.String("cpuset-mems", "", "memory nodes")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	id, err := oneID("update", fs.Args())
	if err != nil {
		return err
	}
	res := &specs.LinuxResources{}
	if *resFile != "" {
		var b []byte
		if *resFile == "-" {
			b, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
		} else {
			b, err = os.ReadFile(*resFile)
		}
		if err != nil {
			return fmt.Errorf("--resources: %w", err)
		}
		if err := json.Unmarshal(b, res); err != nil {
			return fmt.Errorf("--resources: not LinuxResources JSON: %w", err)
		}
	}
	parseBytes := func(flag, v string) (*int64, error) {
		if v == "" {
			return nil, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("--%s: %q is not a number of bytes", flag, v)
		}
		return &n, nil
	}
	if fs.Changed("memory") || fs.Changed("memory-swap") || fs.Changed("memory-reservation") {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		if res.Memory.Limit, err = parseBytes("memory", *memory); err != nil {
			return err
		}
		if res.Memory.Swap, err = parseBytes("memory-swap", *memSwap); err != nil {
			return err
		}
		if res.Memory.Reservation, err = parseBytes("memory-reservation", *memRes); err != nil {
			return err
		}
	}
	if fs.Changed("pids-limit") {
		res.Pids = &specs.LinuxPids{Limit: pids}
	}
	if fs.Changed("cpu-share") || fs.Changed("cpu-quota") || fs.Changed("cpu-period") || *cpus != "" || *mems != "" {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		if fs.Changed("cpu-share") {
			res.CPU.Shares = shares
		}
		if fs.Changed("cpu-quota") {
			res.CPU.Quota = quota
		}
		if fs.Changed("cpu-period") {
			res.CPU.Period = period
		}
		res.CPU.Cpus, res.CPU.Mems = *cpus, *mems
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	h, err := st.load(id)
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return err
	}
	if h.status() == specs.StateStopped {
		return errors.New("container not running")
	}
	cg := h.rec.cgroups()
	if cg == nil {
		return errors.New("update needs the container's cgroups, and it has none (a rootless container without linux.cgroupsPath)")
	}
	return cg.Apply(res)
}

// run creates and starts the container; without --detach it waits for its process, forwarding signals, exits with
// its status and deletes it (unless --keep).
func (g *globals) run(args []string) (int, error) {
	var o createOpts
	fs := newFlags("run")
	o.register("run", fs)
	if help, err := parse(fs, args); err != nil || help {
		return 0, err
	}
	id, err := oneID("run", fs.Args())
	if err != nil {
		return 0, err
	}
	// Signals are caught before the container exists, so that none is lost between its start and the wait.
	sigs := make(chan os.Signal, 64)
	if !o.detach {
		signal.Notify(sigs, forwarded()...)
	}
	h, pid, err := g.launch(id, &o)
	if err != nil {
		return 0, err
	}
	if err := g.startLocked(h); err != nil {
		_ = h.signal(syscall.SIGKILL)
		reap(pid)
		_ = g.destroy(h)
		return 0, err
	}
	if o.detach {
		h.unlock()
		return 0, nil
	}
	h.unlock()
	code := waitChild(pid, sigs)
	if !o.keep {
		st, err := g.store()
		if err == nil {
			if h, err := st.load(id); err == nil {
				_ = g.destroy(h)
			} else if h != nil {
				h.unlock()
			}
		}
	}
	return code, nil
}

// forwarded are the signals run and exec pass on to the process they wait for.
func forwarded() []os.Signal {
	var out []os.Signal
	for s := syscall.Signal(1); s <= 64; s++ {
		switch s {
		case syscall.SIGKILL, syscall.SIGSTOP, syscall.SIGCHLD, syscall.SIGURG, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU, 32, 33:
			continue
		}
		out = append(out, s)
	}
	return out
}

// waitChild waits for pid, a child of this process, forwarding signals to it, and returns its exit status (128+N
// when killed by signal N). Children re-parented here meanwhile (a container's orphans, with no PID namespace of
// its own) are reaped too.
func waitChild(pid int, sigs chan os.Signal) int {
	done := make(chan int, 1)
	go func() {
		for {
			var ws unix.WaitStatus
			got, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				done <- 255
				return
			}
			if got != pid {
				continue
			}
			switch {
			case ws.Exited():
				done <- ws.ExitStatus()
			case ws.Signaled():
				done <- 128 + int(ws.Signal())
			default:
				continue
			}
			return
		}
	}()
	for {
		select {
		case code := <-done:
			signal.Stop(sigs)
			return code
		case s := <-sigs:
			_ = unix.Kill(pid, s.(syscall.Signal))
		}
	}
}

// features prints what this build supports (the OCI features JSON).
func (g *globals) features(args []string) error {
	fs := newFlags("features")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	if len(fs.Args()) > 0 {
		return fmt.Errorf("features takes no argument")
	}
	b, err := json.MarshalIndent(featuresDoc(), "", "    ")
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// spec writes a default config.json into the bundle directory (runc spec's).
func (g *globals) spec(args []string) error {
	fs := newFlags("spec")
	bundle := fs.StringP("bundle", "b", ".", "the bundle directory")
	rootless := fs.Bool("rootless", false, "a config for a rootless container (a user namespace mapping your own ids)")
	if help, err := parse(fs, args); err != nil || help {
		return err
	}
	path := filepath.Join(*bundle, "config.json")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("file %s exists: remove it first", path)
	}
	s := defaultSpec(*rootless)
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o666)
}
