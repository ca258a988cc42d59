package testenv

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// This file is the client of the non-reaping subreaper harness, tests/subreaper. The harness stands where a CI
// container's PID 1, a systemd user service or a containerd shim stands: it is a child subreaper
// (PR_SET_CHILD_SUBREAPER), so every process that the commands it runs leave behind becomes its child, and it
// reaps nothing but the exits of the commands it started itself. Whatever a command leaves behind therefore stays
// visible, alive or as a zombie, until the test looks (Subreaper.Left).
//
// Typical use, one harness per scenario so that what is left is attributed to it:
//
//	h := testenv.NewSubreaper(t)
//	st, stdout, stderr, err := h.Run(30*time.Second, testenv.Command{Args: []string{caisson, "run", "--", "true"}})
//	left, err := h.Left() // must be empty: nothing outlived caisson, not even a zombie
//
// A command that legitimately leaves a process to its caller's subreaper (`caisson run -d`'s supervisor; an OCI
// runtime's `create`, whose container the shim reaps) is handled as the real caller would: the test finds that
// process among Children, lets it do its work, and collects its exit with Reap; anything else still left is a leak.

// Wire format of the harness (`subreaper -serve`): one JSON object per line in each direction. Every request has an
// ID, echoed by its response; requests are served concurrently, so responses come in any order.

// SubreaperRequest is one request to the harness.
type SubreaperRequest struct {
	ID int    `json:"id"`
	Op string `json:"op"` // "start", "wait", "signal", "children" or "reap"
	// Start: the command (Args[0] is looked up in the harness's PATH when it has no slash), its environment (nil:
	// the harness's), working directory, and the files its stdout and stderr are appended to ("": /dev/null).
	// Its stdin is /dev/null.
	Args   []string `json:"args,omitempty"`
	Env    []string `json:"env,omitempty"`
	Dir    string   `json:"dir,omitempty"`
	Stdout string   `json:"stdout,omitempty"`
	Stderr string   `json:"stderr,omitempty"`
	// Wait, signal: a command that start returned; reap: a child of the harness that it did not start.
	PID    int `json:"pid,omitempty"`
	Signal int `json:"signal,omitempty"`
	// Wait, reap: how long to wait for the exit, in milliseconds (0: no limit).
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// SubreaperResponse answers one request.
type SubreaperResponse struct {
	ID       int    `json:"id"`
	Error    string `json:"error,omitempty"`
	PID      int    `json:"pid,omitempty"`      // start: the command's PID
	Status   Status `json:"status"`             // wait, reap: how the process ended
	Children []Proc `json:"children,omitempty"` // children
}

// Status is how a process ended.
type Status struct {
	Signal int `json:"signal,omitempty"` // the signal that killed it, 0 if it exited
	Code   int `json:"code"`             // its exit code when Signal is 0
}

// ExitCode is the shell's view of the status: the exit code, or 128+N when signal N killed the process.
func (s Status) ExitCode() int {
	if s.Signal != 0 {
		return 128 + s.Signal
	}
	return s.Code
}

// String describes the status.
func (s Status) String() string {
	if s.Signal != 0 {
		return "killed by " + unix.SignalName(unix.Signal(s.Signal))
	}
	return "exit " + strconv.Itoa(s.Code)
}

// Proc is one child of the harness.
type Proc struct {
	PID     int    `json:"pid"`
	State   string `json:"state"` // the state letter of /proc/PID/stat: "Z" for a zombie
	Comm    string `json:"comm"`
	Cmdline string `json:"cmdline"`
	// Command marks a command the harness started and has not reaped yet (still running, or exited and not yet
	// collected): not a leftover.
	Command bool `json:"command,omitempty"`
}

// Zombie reports whether the process has exited and waits to be reaped.
func (p Proc) Zombie() bool { return p.State == "Z" }

// String describes the process for a test failure.
func (p Proc) String() string {
	kind := "alive"
	if p.Zombie() {
		kind = "zombie"
	}
	return fmt.Sprintf("pid %d %s (%s, state %s): %s", p.PID, p.Comm, kind, p.State, p.Cmdline)
}

// SubreaperPath returns the harness binary: $CAISSON_SUBREAPER (tests/run-integration.sh builds tests/subreaper
// there), else ../bin/subreaper. It skips (or fails, in strict mode) when there is none.
func SubreaperPath(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CAISSON_SUBREAPER")
	if p == "" {
		p, _ = filepath.Abs("../bin/subreaper")
	}
	if _, err := os.Stat(p); err != nil {
		SkipOrFail(t, "subreaper harness %s: %v (run tests/run-integration.sh, or go build -o bin/subreaper ./tests/subreaper)", p, err)
	}
	return p
}

// Subreaper is a running harness.
type Subreaper struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	dir  string // where the commands' output files go
	done chan struct{}

	mu      sync.Mutex
	next    int
	pending map[int]chan SubreaperResponse
	readErr error
	nfiles  int
}

// NewSubreaper starts a harness for t (see SubreaperPath), closed when t ends.
func NewSubreaper(t testing.TB) *Subreaper {
	t.Helper()
	s, err := StartSubreaper(SubreaperPath(t), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// StartSubreaper starts the harness at path; the commands' output files go to dir. Close ends it.
func StartSubreaper(path, dir string) (*Subreaper, error) {
	cmd := exec.Command(path, "-serve")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("subreaper harness: %w", err)
	}
	s := &Subreaper{cmd: cmd, in: in, dir: dir, done: make(chan struct{}), pending: map[int]chan SubreaperResponse{}}
	go s.read(out)
	return s, nil
}

// PID returns the harness's PID: the parent of everything it holds.
func (s *Subreaper) PID() int { return s.cmd.Process.Pid }

// read delivers the responses to their requests until the harness's stdout closes.
func (s *Subreaper) read(r io.Reader) {
	defer close(s.done)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var resp SubreaperResponse
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil {
			s.fail(fmt.Errorf("subreaper harness: bad response %q: %w", sc.Text(), err))
			return
		}
		s.mu.Lock()
		ch := s.pending[resp.ID]
		delete(s.pending, resp.ID)
		s.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	err := sc.Err()
	if err == nil {
		err = errors.New("subreaper harness: it exited")
	}
	s.fail(err)
}

// fail ends every pending request with err.
func (s *Subreaper) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.readErr == nil {
		s.readErr = err
	}
	for id, ch := range s.pending {
		ch <- SubreaperResponse{ID: id, Error: err.Error()}
		delete(s.pending, id)
	}
}

// call sends req and waits for its response (the harness bounds every wait it is asked for).
func (s *Subreaper) call(req SubreaperRequest) (SubreaperResponse, error) {
	ch := make(chan SubreaperResponse, 1)
	s.mu.Lock()
	if s.readErr != nil {
		s.mu.Unlock()
		return SubreaperResponse{}, s.readErr
	}
	s.next++
	req.ID = s.next
	s.pending[req.ID] = ch
	b, _ := json.Marshal(req)
	_, err := s.in.Write(append(b, '\n'))
	s.mu.Unlock()
	if err != nil {
		return SubreaperResponse{}, fmt.Errorf("subreaper harness: %w", err)
	}
	resp := <-ch
	if resp.Error != "" {
		return resp, fmt.Errorf("subreaper harness: %s %s", req.Op, resp.Error)
	}
	return resp, nil
}

// Command is a command for the harness to run.
type Command struct {
	Args []string // Args[0] is the program (looked up in PATH when it has no slash)
	Env  []string // nil: the harness's environment, which is the test's
	Dir  string   // "": the harness's working directory
}

// Process is a command the harness started.
type Process struct {
	PID            int
	s              *Subreaper
	stdout, stderr string // paths of the output files
}

// Start starts c under the harness. Its output is kept (Process.Stdout, Process.Stderr).
func (s *Subreaper) Start(c Command) (*Process, error) {
	s.mu.Lock()
	s.nfiles++
	n := s.nfiles
	s.mu.Unlock()
	p := &Process{s: s, stdout: filepath.Join(s.dir, fmt.Sprintf("cmd%d.out", n)), stderr: filepath.Join(s.dir, fmt.Sprintf("cmd%d.err", n))}
	resp, err := s.call(SubreaperRequest{Op: "start", Args: c.Args, Env: c.Env, Dir: c.Dir, Stdout: p.stdout, Stderr: p.stderr})
	if err != nil {
		return nil, err
	}
	p.PID = resp.PID
	return p, nil
}

// Wait waits (at most limit; 0 means no limit) for the command's exit, which the harness reaps.
func (p *Process) Wait(limit time.Duration) (Status, error) {
	resp, err := p.s.call(SubreaperRequest{Op: "wait", PID: p.PID, TimeoutMS: limit.Milliseconds()})
	return resp.Status, err
}

// Signal sends sig to the command unless it has been reaped already (the harness signals it through a pidfd, so a
// recycled PID is never hit).
func (p *Process) Signal(sig unix.Signal) error {
	_, err := p.s.call(SubreaperRequest{Op: "signal", PID: p.PID, Signal: int(sig)})
	return err
}

// Stdout returns what the command wrote to its stdout so far.
func (p *Process) Stdout() string {
	b, _ := os.ReadFile(p.stdout)
	return string(b)
}

// Stderr returns what the command wrote to its stderr so far.
func (p *Process) Stderr() string {
	b, _ := os.ReadFile(p.stderr)
	return string(b)
}

// Run starts c, waits (at most limit) for its exit and returns its status and output. On timeout the command is
// killed (SIGKILL) and reaped, and the error says so.
func (s *Subreaper) Run(limit time.Duration, c Command) (st Status, stdout, stderr string, err error) {
	p, err := s.Start(c)
	if err != nil {
		return Status{}, "", "", err
	}
	st, err = p.Wait(limit)
	if err != nil {
		_ = p.Signal(unix.SIGKILL)
		if _, werr := p.Wait(10 * time.Second); werr != nil {
			err = errors.Join(err, werr)
		}
	}
	return st, p.Stdout(), p.Stderr(), err
}

// Children lists every process whose parent is the harness, alive or zombie, including its own commands that it
// has not reaped yet (marked Command).
func (s *Subreaper) Children() ([]Proc, error) {
	resp, err := s.call(SubreaperRequest{Op: "children"})
	return resp.Children, err
}

// Left lists the children of the harness that are not its own commands: what the commands left behind.
func (s *Subreaper) Left() ([]Proc, error) {
	all, err := s.Children()
	var out []Proc
	for _, p := range all {
		if !p.Command {
			out = append(out, p)
		}
	}
	return out, err
}

// Reap waits (at most limit; 0 means no limit) for the exit of pid, a child of the harness that it did not start
// (a process a command left to its caller on purpose), and collects it.
func (s *Subreaper) Reap(pid int, limit time.Duration) (Status, error) {
	resp, err := s.call(SubreaperRequest{Op: "reap", PID: pid, TimeoutMS: limit.Milliseconds()})
	return resp.Status, err
}

// Close ends the harness: it kills (SIGKILL) and reaps every child it still has, then exits. Call Left first to
// see them.
func (s *Subreaper) Close() error {
	s.in.Close()
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
	}
	err := s.cmd.Wait()
	if err != nil {
		return fmt.Errorf("subreaper harness: %w", err)
	}
	return nil
}

// FormatProcs describes processes, one per line, for a test failure.
func FormatProcs(ps []Proc) string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n  ")
}
