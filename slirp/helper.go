package slirp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of helper management.
const (
	defaultReadyTimeout = 5 * time.Second
	killWait            = 5 * time.Second // after SIGKILL
	outputKeep          = 16 << 10        // bytes of helper output kept
	errorOutputKeep     = 600             // bytes of it quoted in errors
)

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

// Write implements io.Writer, keeping the last max bytes.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what is kept.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]byte(nil), t.b...)
}

// clean returns the output without pasta's "Failed to send N bytes to
// syslog" lines (pasta also tries syslog when it has no terminal).
func (t *tailBuffer) clean() []byte {
	var lines [][]byte
	for _, l := range bytes.Split(t.Bytes(), []byte("\n")) {
		if bytes.HasPrefix(l, []byte("Failed to send ")) && bytes.HasSuffix(l, []byte(" bytes to syslog")) {
			continue
		}
		lines = append(lines, l)
	}
	return bytes.Join(lines, []byte("\n"))
}

// trimmed returns the last n bytes of the clean output, trimmed.
func (t *tailBuffer) trimmed(n int) string {
	b := bytes.TrimSpace(t.clean())
	if len(b) > n {
		b = append([]byte("..."), b[len(b)-n:]...)
	}
	return string(b)
}

// helper is one running pasta or slirp4netns process.
type helper struct {
	name   string   // "pasta" or "slirp4netns"
	argv   []string // as started, argv[0] is the absolute path
	cmd    *exec.Cmd
	out    *tailBuffer
	exitW  *os.File // write end of slirp4netns' --exit-fd pipe, nil for pasta
	done   chan struct{}
	werr   error // the Wait result, valid after done is closed
	stopMu sync.Mutex
	stop   atomic.Bool // set before any deliberate stop
}

// argvString quotes the argv for error messages.
func argvString(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t\n\"'\\$") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// failure formats a helper error: argv, cause and trimmed output.
func (h *helper) failure(what string, cause error) error {
	msg := fmt.Sprintf("slirp: %s %s: %s", h.name, what, argvString(h.argv))
	if out := h.out.trimmed(errorOutputKeep); out != "" {
		return fmt.Errorf("%s: %w: %q", msg, cause, out)
	}
	return fmt.Errorf("%s: %w", msg, cause)
}

// startHelper starts argv with extra files (fd 3, 4, ...) from a goroutine
// locked to its OS thread: the Pdeathsig of the helper is tied to the
// thread that forked it, and this thread stays locked (so it cannot be
// destroyed by another goroutine's exit) until the helper has been reaped. After the helper's exit (seen without reaping), the helper's
// process group is killed, so nothing it forked survives, and then it is
// reaped.
func startHelper(name string, argv []string, extra []*os.File) (*helper, error) {
	h := &helper{
		name: name,
		argv: argv,
		out:  &tailBuffer{max: outputKeep},
		done: make(chan struct{}),
	}
	cmd := &exec.Cmd{
		Path:       argv[0],
		Args:       argv,
		Dir:        "/",
		Stdout:     h.out,
		Stderr:     h.out,
		ExtraFiles: extra,
		WaitDelay:  time.Second,
		SysProcAttr: &syscall.SysProcAttr{
			Pdeathsig: syscall.SIGKILL,
			Setpgid:   true, // no terminal signals (Ctrl-C) for the helper
		},
	}
	h.cmd = cmd
	started := make(chan error, 1)
	go func() {
		// Locked until the helper is reaped, so the forking thread outlives
		// the helper. Unlocked (not left locked) at the end: a locked
		// goroutine that exits destroys its thread, which would deliver
		// Pdeathsig to other processes forked from that thread earlier.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			close(h.done)
			return
		}
		started <- nil
		pid := cmd.Process.Pid
		var info unix.Siginfo
		for range 1000 { // retried on EINTR only
			err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if err == nil {
				// The unreaped zombie keeps the group id reserved.
				unix.Kill(-pid, unix.SIGKILL)
			}
			if err != unix.EINTR {
				break
			}
		}
		h.werr = cmd.Wait()
		close(h.done)
	}()
	if err := <-started; err != nil {
		return nil, h.failure("start", err)
	}
	return h, nil
}

// writeOutput copies the helper's clean output, if any, to w, ending it
// with a newline.
func (h *helper) writeOutput(w io.Writer) {
	b := bytes.TrimRight(h.out.clean(), "\n")
	if len(bytes.TrimSpace(b)) == 0 {
		return
	}
	w.Write(append(b, '\n'))
}

// pid returns the helper's process id.
func (h *helper) pid() int { return h.cmd.Process.Pid }

// exited reports whether the helper has been reaped.
func (h *helper) exited() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// terminate stops the helper: closes slirp4netns' exit fd, sends SIGKILL and
// waits up to killWait. It is safe to call more than once and from several
// goroutines.
// kill stops the helper without waiting for it to finish exiting: SIGKILL to it and its process group; it is
// reaped in the background (its exit can take tens of milliseconds while the kernel removes its tap device).
func (h *helper) kill() {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	h.stop.Store(true)
	if h.exitW != nil {
		h.exitW.Close()
		h.exitW = nil
	}
	if !h.exited() {
		if pid := h.pid(); pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		_ = h.cmd.Process.Kill()
	}
}

func (h *helper) terminate() error {
	h.stopMu.Lock()
	defer h.stopMu.Unlock()
	h.stop.Store(true)
	if h.exitW != nil {
		h.exitW.Close()
		h.exitW = nil
	}
	if h.exited() {
		return nil
	}
	// The helper keeps no state worth a graceful stop (its network namespace is gone or going): kill it at once
	// rather than wait for a SIGTERM handler on the sandbox's exit path.
	h.cmd.Process.Kill()
	select {
	case <-h.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("slirp: %s (pid %d) did not exit %v after SIGKILL", h.name, h.pid(), killWait)
	}
}

// waitReady waits until read returns (the helper's readiness signal), the
// helper exits, ctx is done or timeout passes. On failure the helper is
// killed and reaped before waitReady returns.
func (h *helper) waitReady(ctx context.Context, timeout time.Duration, r *os.File, read func(*bufio.Reader) error) error {
	res := make(chan error, 1)
	go func() { res <- read(bufio.NewReader(r)) }()
	defer r.Close() // also unblocks read on timeout
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case err = <-res:
		if err == nil {
			return nil
		}
		// The helper closed the pipe: give it a moment to exit for the status.
		select {
		case <-h.done:
			err = h.failure("exited before it was ready", h.werr)
		case <-time.After(time.Second):
			err = h.failure("readiness", err)
		}
	case <-h.done:
		err = h.failure("exited before it was ready", h.werr)
	case <-ctx.Done():
		err = h.failure("start", ctx.Err())
	case <-timer.C:
		err = h.failure("start", fmt.Errorf("not ready after %v", timeout))
	}
	if terr := h.terminate(); terr != nil {
		err = errors.Join(err, terr)
	}
	return err
}

// readLine reads the readiness message up to a newline (pasta's PID file).
func readLine(br *bufio.Reader) error {
	line, err := br.ReadString('\n')
	if err != nil {
		if err == io.EOF {
			return errors.New("readiness pipe closed")
		}
		return err
	}
	if _, err := strconv.Atoi(strings.TrimSpace(line)); err != nil {
		return fmt.Errorf("unexpected readiness message %q", line)
	}
	return nil
}

// readByte reads one byte (slirp4netns writes "1" to --ready-fd).
func readByte(br *bufio.Reader) error {
	b, err := br.ReadByte()
	if err != nil {
		if err == io.EOF {
			return errors.New("readiness pipe closed")
		}
		return err
	}
	if b != '1' {
		return fmt.Errorf("unexpected readiness byte %q", b)
	}
	return nil
}
