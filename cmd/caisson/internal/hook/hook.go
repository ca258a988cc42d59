// Package hook runs an OCI config's hooks: each one a program started with its own arguments and environment,
// the container's state JSON on its standard input, and its timeout enforced. The runtime's command runs the
// hooks of its namespaces (prestart, createRuntime, poststart, poststop); the container's init runs
// createContainer and startContainer in the container's.
package hook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// outputMax bounds how much of a failed hook's output its error quotes.
const outputMax = 512

// Run runs h with state on its standard input and waits for it, at most h.Timeout seconds when it is set: a hook
// still running then is killed (with its process group) and Run fails. A hook that exits non-zero fails Run, whose
// error quotes the end of its output. name says which hook it is ("prestart[0]").
func Run(name string, h specs.Hook, state []byte) error {
	ctx := context.Background()
	if h.Timeout != nil && *h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	args := h.Args
	if len(args) == 0 {
		args = []string{h.Path}
	}
	cmd := &exec.Cmd{Path: h.Path, Args: args, Env: h.Env, Stdin: bytes.NewReader(state),
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true}}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s hook %s: %w", name, h.Path, unwrapExec(err))
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("%s hook %s: %v%s", name, h.Path, err, quote(out.Bytes()))
		}
		return nil
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return fmt.Errorf("%s hook %s: timed out after %d s", name, h.Path, *h.Timeout)
	}
}

// RunAll runs hooks in order and stops at the first failure. kind names them ("prestart").
func RunAll(kind string, hooks []specs.Hook, state []byte) error {
	for i, h := range hooks {
		if err := Run(fmt.Sprintf("%s[%d]", kind, i), h, state); err != nil {
			return err
		}
	}
	return nil
}

// quote returns ": <output>" with the last outputMax bytes of a failed hook's output, or "".
func quote(b []byte) string {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return ""
	}
	if len(s) > outputMax {
		s = "..." + s[len(s)-outputMax:]
	}
	return ": " + strings.ReplaceAll(s, "\n", "; ")
}

// unwrapExec drops os/exec's "fork/exec PATH:" prefix, which repeats the path.
func unwrapExec(err error) error {
	var pe interface{ Unwrap() error }
	if errors.As(err, &pe) {
		if inner := pe.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
