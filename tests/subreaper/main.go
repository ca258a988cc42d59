// Command subreaper is a test harness that stands where a CI container's PID 1, a systemd user service or a
// containerd shim stands: it makes itself a child subreaper (PR_SET_CHILD_SUBREAPER), so that every process its
// commands leave behind is re-parented to it, and it never reaps anything but the exits of the commands it started.
// What a command leaves behind therefore stays visible, alive or as a zombie (issue 18: caisson used to exit
// without reaping its network helper, which then stayed a zombie forever under such a parent).
//
// Usage:
//
//	subreaper -- COMMAND [ARG...]
//	    Run COMMAND with this process's stdin, stdout, stderr and environment. Once it has exited, print one line
//	    per process it left behind on stderr ("subreaper: left: pid PID COMM (alive|zombie, state S): CMDLINE"),
//	    kill and reap them, and exit with COMMAND's status (128+N when signal N killed it), or with 99 when it left
//	    anything.
//	subreaper -serve
//	    Serve requests: one JSON object per line on stdin (testenv.SubreaperRequest), one response per line on
//	    stdout (testenv.SubreaperResponse). Operations: start a command, wait for a command's exit (which is then
//	    reaped), signal a command, list the children (alive and zombie), reap one given child that was not started
//	    here. At the end of stdin every child is killed (SIGKILL) and reaped, and the harness exits 0.
//
// The Go client is tests/testenv (NewSubreaper), which documents the intended use.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// exitLeft is the one-shot mode's exit status when the command left something behind.
const exitLeft = 99

func main() {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "subreaper: PR_SET_CHILD_SUBREAPER: %v\n", err)
		os.Exit(125)
	}
	switch {
	case len(os.Args) == 2 && os.Args[1] == "-serve":
		os.Exit(serve())
	case len(os.Args) > 2 && os.Args[1] == "--":
		os.Exit(once(os.Args[2:]))
	}
	fmt.Fprintln(os.Stderr, "usage: subreaper -- COMMAND [ARG...] | subreaper -serve")
	os.Exit(125)
}

// harness is the set of commands started and not reaped yet.
type harness struct {
	mu   sync.Mutex
	cmds map[int]*command
}

// command is one started command; done is closed once it has been reaped. It stays in harness.cmds until a wait
// request has collected its status.
type command struct {
	cmd    *exec.Cmd
	done   chan struct{}
	status testenv.Status
	err    error
}

// reaped reports whether the command's exit has been collected (its PID may then belong to another process).
func (c *command) reaped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// start starts argv with the given files and reaps its own exit (only its own) in the background.
func (h *harness) start(argv, env []string, dir string, stdin, stdout, stderr *os.File) (*command, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env, cmd.Dir = env, dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	c := &command{cmd: cmd, done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h.cmds[cmd.Process.Pid] = c
	go func() {
		// exec.Cmd waits for this PID only (through its pidfd): nothing else is ever reaped here.
		c.err = cmd.Wait()
		if ps := cmd.ProcessState; ps != nil {
			ws := ps.Sys().(syscall.WaitStatus)
			if ws.Signaled() {
				c.status.Signal = int(ws.Signal())
			} else {
				c.status.Code = ws.ExitStatus()
			}
			c.err = nil
		}
		close(c.done)
	}()
	return c, nil
}

// children lists every process whose parent is this process, alive or zombie, from /proc (an orphan is
// re-parented to one of this process's threads; its stat names the process).
func (h *harness) children() []testenv.Proc {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	var out []testenv.Proc
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		f := strings.Fields(s[closing+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, _ := strconv.Atoi(f[1]); ppid != self {
			continue
		}
		cl, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if len(cl) > 300 {
			cl = cl[:300]
		}
		started := h.cmds[pid] != nil && !h.cmds[pid].reaped()
		out = append(out, testenv.Proc{PID: pid, State: f[0], Comm: s[open+1 : closing],
			Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cl), "\x00", " ")), Command: started})
	}
	return out
}

// reap waits (bounded by limit when positive) for the exit of pid, a child not started here, and collects it.
func (h *harness) reap(pid int, limit time.Duration) (testenv.Status, error) {
	if c := h.command(pid); c != nil && !c.reaped() {
		return testenv.Status{}, fmt.Errorf("pid %d is a command: wait for it instead", pid)
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return testenv.Status{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	defer unix.Close(fd)
	ms := -1
	if limit > 0 {
		ms = int(limit.Milliseconds())
	}
	deadline := time.Now().Add(limit)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, ms)
		if err == unix.EINTR {
			if limit > 0 {
				ms = max(0, int(time.Until(deadline).Milliseconds()))
			}
			continue
		}
		if err != nil {
			return testenv.Status{}, fmt.Errorf("poll pid %d: %w", pid, err)
		}
		if n == 0 {
			return testenv.Status{}, fmt.Errorf("pid %d has not exited after %v", pid, limit)
		}
		break
	}
	// The zombie keeps its PID until it is reaped: wait4 cannot collect another process.
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return testenv.Status{}, fmt.Errorf("wait4 pid %d: %w", pid, err)
		}
		break
	}
	if ws.Signaled() {
		return testenv.Status{Signal: int(ws.Signal())}, nil
	}
	return testenv.Status{Code: ws.ExitStatus()}, nil
}

// killAll kills every child and reaps them all, within limit.
func (h *harness) killAll(limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		kids := h.children()
		if len(kids) == 0 {
			return
		}
		for _, k := range kids {
			_ = unix.Kill(k.PID, unix.SIGKILL)
		}
		for _, k := range kids {
			if !k.Command { // a command is reaped by its own goroutine
				var ws unix.WaitStatus
				_, _ = unix.Wait4(k.PID, &ws, unix.WNOHANG, nil)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// once is the one-shot mode.
func once(argv []string) int {
	h := &harness{cmds: map[int]*command{}}
	c, err := h.start(argv, nil, "", os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "subreaper: %v\n", err)
		return 127
	}
	<-c.done
	if c.err != nil {
		fmt.Fprintf(os.Stderr, "subreaper: %v\n", c.err)
		return 125
	}
	left := h.children()
	for _, p := range left {
		fmt.Fprintf(os.Stderr, "subreaper: left: %s\n", p)
	}
	h.killAll(10 * time.Second)
	if len(left) > 0 {
		return exitLeft
	}
	return c.status.ExitCode()
}

// serve is the request mode.
func serve() int {
	h := &harness{cmds: map[int]*command{}}
	var outMu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	reply := func(r testenv.SubreaperResponse) {
		outMu.Lock()
		defer outMu.Unlock()
		_ = enc.Encode(r)
	}
	var wg sync.WaitGroup
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var req testenv.SubreaperRequest
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			reply(testenv.SubreaperResponse{Error: fmt.Sprintf("bad request %q: %v", sc.Text(), err)})
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := h.handle(req)
			resp.ID = req.ID
			reply(resp)
		}()
	}
	h.killAll(10 * time.Second)
	wg.Wait()
	return 0
}

// handle answers one request.
func (h *harness) handle(req testenv.SubreaperRequest) testenv.SubreaperResponse {
	var resp testenv.SubreaperResponse
	limit := time.Duration(req.TimeoutMS) * time.Millisecond
	switch req.Op {
	case "start":
		files := make([]*os.File, 3)
		for i, name := range []string{os.DevNull, req.Stdout, req.Stderr} {
			flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
			if i == 0 {
				flags = os.O_RDONLY
			}
			if name == "" {
				name, flags = os.DevNull, os.O_WRONLY
			}
			f, err := os.OpenFile(name, flags, 0o600)
			if err != nil {
				resp.Error = err.Error()
				closeFiles(files)
				return resp
			}
			files[i] = f
		}
		c, err := h.start(req.Args, req.Env, req.Dir, files[0], files[1], files[2])
		closeFiles(files)
		if err != nil {
			resp.Error = err.Error()
			return resp
		}
		resp.PID = c.cmd.Process.Pid
	case "wait":
		c := h.command(req.PID)
		if c == nil {
			resp.Error = fmt.Sprintf("pid %d is not a running command of the harness", req.PID)
			return resp
		}
		var timeout <-chan time.Time
		if limit > 0 {
			timeout = time.After(limit)
		}
		select {
		case <-c.done:
			resp.Status = c.status
			if c.err != nil {
				resp.Error = c.err.Error()
			}
			h.mu.Lock()
			if h.cmds[req.PID] == c {
				delete(h.cmds, req.PID)
			}
			h.mu.Unlock()
		case <-timeout:
			resp.Error = fmt.Sprintf("pid %d (%s) has not exited after %v", req.PID, strings.Join(c.cmd.Args, " "), limit)
		}
	case "signal":
		c := h.command(req.PID)
		if c == nil {
			resp.Error = fmt.Sprintf("pid %d is not a running command of the harness", req.PID)
			return resp
		}
		if err := c.cmd.Process.Signal(unix.Signal(req.Signal)); err != nil && !errors.Is(err, os.ErrProcessDone) {
			resp.Error = err.Error()
		}
	case "children":
		resp.Children = h.children()
	case "reap":
		st, err := h.reap(req.PID, limit)
		resp.Status = st
		if err != nil {
			resp.Error = err.Error()
		}
	default:
		resp.Error = fmt.Sprintf("unknown op %q", req.Op)
	}
	return resp
}

// command returns the command pid that was started and not yet waited for (reaped or not).
func (h *harness) command(pid int) *command {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cmds[pid]
}

func closeFiles(fs []*os.File) {
	for _, f := range fs {
		if f != nil {
			f.Close()
		}
	}
}
