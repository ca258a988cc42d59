package parent

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"golang.org/x/sys/unix"
)

// detachedEnv tells a re-executed caisson that it is the background supervisor of `run -d`, and on which fd to
// report that the sandbox's command has started.
const detachedEnv = "_CAISSON_DETACHED_READY_FD"

// readyFD is where the foreground passes the readiness pipe (the first of ExtraFiles).
const readyFD = 3

// IsDetachedSupervisor reports whether this process is the background half of `run -d` (and forgets the marker so
// that the sandbox never sees it).
func IsDetachedSupervisor() bool {
	v := os.Getenv(detachedEnv)
	os.Unsetenv(detachedEnv)
	return v != ""
}

// Detach is the foreground half of `caisson run -d`: it starts caisson again in a new session as the sandbox's
// supervisor, waits until the command has started (or failed), prints the sandbox's name and returns. The
// supervisor outlives it; the sandbox's output goes to its log (`caisson logs NAME`).
func Detach() int {
	pr, pw, err := os.Pipe()
	if err != nil {
		return errorf("detach: %v", err)
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr // until the supervisor switches to its log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return errorf("detach: %v", err)
	}
	pw.Close()
	rd := bufio.NewReader(pr)
	line, err := rd.ReadString('\n')
	if name, ok := strings.CutPrefix(strings.TrimSpace(line), "ready "); ok && err == nil {
		fmt.Println(name)
		_ = cmd.Process.Release()
		return 0
	}
	// The sandbox did not start: its log came through the pipe; the supervisor's status is ours.
	rest, _ := io.ReadAll(rd)
	os.Stderr.Write(rest)
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code > 0 {
		return code
	}
	return ExitSetup
}

// redirectToLog makes the sandbox's log the supervisor's (and so the sandbox's) stdout and stderr, and /dev/null
// its stdin. It runs before init starts.
func redirectToLog(e *state.Entry) error {
	log, err := os.OpenFile(e.Log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("log: %w", err)
	}
	defer log.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer null.Close()
	for fd, f := range map[int]*os.File{0: null, 1: log, 2: log} {
		if err := unix.Dup2(int(f.Fd()), fd); err != nil {
			return fmt.Errorf("log: %w", err)
		}
	}
	return nil
}

// reportReady tells the foreground `run -d` that the command started, or passes it the log when the sandbox
// ended before that.
func reportReady(s *session, done chan<- struct{}) {
	defer close(done)
	w := os.NewFile(readyFD, "ready")
	defer w.Close()
	select {
	case <-s.ready:
		fmt.Fprintf(w, "ready %s\n", s.entry.Record.Name)
	case <-s.inited:
		b, _ := os.ReadFile(s.entry.Log())
		fmt.Fprintf(w, "failed\n%s", b)
	}
}
