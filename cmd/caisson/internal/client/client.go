// Package client implements the commands that act on running sandboxes from outside: ps, exec, stop and logs.
// They find sandboxes through the state package and talk to the supervising caisson over its control socket.
package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/term"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// ExitSetup is the exit code of caisson's own errors.
const ExitSetup = 125

func errorf(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return ExitSetup
}

// parseFlags parses a subcommand's flags; help prints usage and returns done.
func parseFlags(fs *pflag.FlagSet, args []string, usage string) (done bool, code int) {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Printf("Usage: %s\n\nFlags:\n%s", usage, fs.FlagUsages())
			return true, 0
		}
		return true, errorf("%s: %v (usage: %s)", fs.Name(), err, usage)
	}
	return false, 0
}

// Namespaces returns the namespace inode numbers of a sandbox from its init's host PID: what `ls -la
// /proc/PID/ns` and lsns show. Init creates the command's time namespace for its children, so the time entry is
// init's time_for_children.
func Namespaces(initPID int) map[string]string {
	out := map[string]string{}
	if initPID <= 0 {
		return out // still starting
	}
	for _, ns := range config.Namespaces {
		link := ns
		if ns == "time" {
			link = "time_for_children"
		}
		v, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", initPID, link))
		if err != nil {
			continue
		}
		// "net:[4026532183]" -> "4026532183"
		if i := strings.IndexByte(v, '['); i >= 0 {
			v = strings.TrimSuffix(v[i+1:], "]")
		}
		out[ns] = v
	}
	return out
}

// psEntry is one row of `caisson ps --json`.
type psEntry struct {
	state.Record
	Uptime     string            `json:"uptime"`
	Namespaces map[string]string `json:"namespaces"`
}

// PSFlags defines the flags of `caisson ps` (read by PSMain, completion and the man pages).
func PSFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("ps", pflag.ContinueOnError)
	fs.Bool("json", false, "print JSON")
	return fs
}

// PSMain is `caisson ps [--json]`.
func PSMain(args []string) int {
	fs := PSFlags()
	if done, code := parseFlags(fs, args, "caisson ps [--json]"); done {
		return code
	}
	asJSON, _ := fs.GetBool("json")
	recs, err := state.List()
	if err != nil {
		return errorf("ps: %v", err)
	}
	entries := make([]psEntry, 0, len(recs))
	for _, r := range recs {
		entries = append(entries, psEntry{Record: r, Uptime: time.Since(r.Created).Round(time.Second).String(),
			Namespaces: Namespaces(r.InitPID)})
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(entries)
		return 0
	}
	fmt.Printf("%-20s %-8s %-9s %-12s %-20s %-12s %s\n", "NAME", "PID", "UPTIME", "NET", "PORTS", "NET NS", "COMMAND")
	for _, e := range entries {
		net := e.Net
		if e.Joined != "" {
			net += ":" + e.Joined
		}
		fmt.Printf("%-20s %-8d %-9s %-12s %-20s %-12s %s\n", e.Name, e.InitPID, e.Uptime, net,
			strings.Join(e.Ports, ","), e.Namespaces["net"], strings.Join(e.Command, " "))
	}
	return 0
}

// ExecFlags defines the flags of `caisson exec` (read by ExecMain, completion and the man pages).
func ExecFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("exec", pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.BoolP("tty", "t", false, "give the command a new pseudo-terminal")
	fs.StringArrayP("env", "e", nil, "set `K=V` for the command (repeatable)")
	fs.StringP("workdir", "w", "", "working `DIR` inside (default: the sandbox's)")
	return fs
}

// ExecMain is `caisson exec [-t] [-e K=V] [-w DIR] NAME [--] COMMAND [ARG...]`.
func ExecMain(args []string) int {
	fs := ExecFlags()
	const usage = "caisson exec [-t] [-e K=V] [-w DIR] NAME [--] COMMAND [ARG...]"
	if done, code := parseFlags(fs, args, usage); done {
		return code
	}
	tty, _ := fs.GetBool("tty")
	env, _ := fs.GetStringArray("env")
	workdir, _ := fs.GetString("workdir")
	rest := fs.Args()
	if len(rest) < 2 || rest[1] == "" {
		return errorf("exec: want a sandbox name and a command (usage: %s)", usage)
	}
	name, command := rest[0], rest[1:]
	if command[0] == "--" {
		command = command[1:]
		if len(command) == 0 {
			return errorf("exec: no command given (usage: %s)", usage)
		}
	}
	for _, kv := range env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return errorf("exec: --env: %q is not K=V", kv)
		}
	}
	if workdir != "" && !strings.HasPrefix(workdir, "/") {
		return errorf("exec: --workdir: %q must be an absolute path", workdir)
	}
	req := &wire.ExecRequest{Args: command, Env: env, Workdir: workdir}
	if tty {
		if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
			req.TTY, req.WinSize = true, config.WinSize{Rows: ws.Row, Cols: ws.Col}
		} else {
			fmt.Fprintln(os.Stderr, "caisson: warning: --tty given but standard input is not a terminal; running without one")
		}
	}
	rec, err := state.Lookup(name)
	if err != nil {
		return errorf("exec: %v", err)
	}
	conn, err := parent.Dial(name)
	if err != nil {
		return errorf("exec: %v", err)
	}
	defer conn.Close()
	// Into a strict sandbox, a file or directory of the caller's goes in as a pipe this process relays, as for run.
	posture := rec.Posture
	if req.TTY {
		posture = config.PostureDefault // the command's stdio is its new terminal: nothing of the caller's goes in
	}
	stdio, err := parent.OpenStdio(posture)
	if err != nil {
		return errorf("exec: %v", err)
	}
	defer stdio.Finish()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, parent.CommonSignals...)
	late := time.After(parent.LateSignalDelay)
	var fds []int
	if !req.TTY {
		fds = stdio.FDs()
	}
	err = wire.Send(conn, wire.Message{Type: "exec", Exec: req}, fds...)
	stdio.Started()
	if err != nil {
		return errorf("exec: %v", err)
	}
	var t *term.Terminal
	if req.TTY {
		t = term.New()
	}
	finish := func(code int) int {
		if t != nil {
			t.Close()
		}
		return parent.FinishStdio(stdio, code)
	}
	msgs := make(chan wire.Message)
	go func() {
		defer close(msgs)
		for {
			m, got, err := wire.Recv(conn)
			if err != nil {
				return
			}
			if m.Type == "pty" && t != nil && len(got) == 1 {
				t.Attach(os.NewFile(uintptr(got[0]), "pty"))
				got = nil
			}
			for _, fd := range got {
				unix.Close(fd)
			}
			msgs <- m
		}
	}()
	id := ""
	for {
		select {
		case <-late:
			go parent.NotifyLate(sigs)
		case sig := <-sigs:
			if sig == unix.SIGWINCH && t != nil {
				t.Resize()
			} else if id != "" {
				_ = wire.Send(conn, wire.Message{Type: "signal", ID: id, Signal: int(sig.(unix.Signal))})
			}
		case m, ok := <-msgs:
			if !ok {
				fmt.Fprintf(os.Stderr, "caisson: exec: sandbox %s ended\n", name)
				return finish(128 + int(unix.SIGKILL))
			}
			switch m.Type {
			case "pty":
				id = m.ID
			case "started":
				id = m.ID
			case "failed":
				fmt.Fprintf(os.Stderr, "caisson: %s\n", m.Error)
				return finish(m.Code)
			case "exited":
				return finish(m.Status)
			}
		}
	}
}

// StopFlags defines the flags of `caisson stop` (read by StopMain, completion and the man pages).
func StopFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("stop", pflag.ContinueOnError)
	fs.Float64P("time", "t", 10, "`SECONDS` between SIGTERM to the command and SIGKILL to the sandbox")
	return fs
}

// StopMain is `caisson stop [--time SECONDS] NAME`.
func StopMain(args []string) int {
	fs := StopFlags()
	const usage = "caisson stop [--time SECONDS] NAME"
	if done, code := parseFlags(fs, args, usage); done {
		return code
	}
	graceSec, _ := fs.GetFloat64("time")
	grace := &graceSec
	if fs.NArg() != 1 {
		return errorf("stop: want exactly one sandbox name (usage: %s)", usage)
	}
	if *grace < 0 || *grace > 86400 {
		return errorf("stop: --time: %v is out of range (0 to 86400 seconds)", *grace)
	}
	name := fs.Arg(0)
	conn, err := parent.Dial(name)
	if err != nil {
		return errorf("stop: %v", err)
	}
	defer conn.Close()
	if err := wire.Send(conn, wire.Message{Type: "stop", Grace: int64(*grace * 1000)}); err != nil {
		return errorf("stop: %v", err)
	}
	m, _, err := wire.Recv(conn)
	if err != nil || m.Type != "exited" {
		return errorf("stop: sandbox %s ended without a status", name)
	}
	// The answer comes when the command has ended; the sandbox's caisson then tears down the network and removes
	// its state. Its exit closes this connection: wait for that (bounded), so that when stop returns the sandbox
	// is no longer listed and its name can be reused.
	waitClosed(conn, stopTeardownTimeout)
	fmt.Printf("%s exited with status %d\n", name, m.Status)
	return 0
}

// stopTeardownTimeout bounds how long stop waits for the sandbox's caisson to exit after the command ended.
const stopTeardownTimeout = 10 * time.Second

// waitClosed waits until the peer closes conn (end of file or an error), at most limit; anything read is dropped.
func waitClosed(conn *os.File, limit time.Duration) {
	fd := int(conn.Fd())
	deadline := time.Now().Add(limit)
	buf := make([]byte, 512)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || n == 0 {
			return
		}
		r, err := unix.Read(fd, buf)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || r == 0 {
			return
		}
	}
}

// LogsFlags defines the flags of `caisson logs` (read by LogsMain, completion and the man pages).
func LogsFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("logs", pflag.ContinueOnError)
	fs.BoolP("follow", "f", false, "keep printing new output until the sandbox ends")
	return fs
}

// LogsMain is `caisson logs [-f] NAME`.
func LogsMain(args []string) int {
	fs := LogsFlags()
	const usage = "caisson logs [-f] NAME"
	if done, code := parseFlags(fs, args, usage); done {
		return code
	}
	follow, _ := fs.GetBool("follow")
	if fs.NArg() != 1 {
		return errorf("logs: want exactly one sandbox name (usage: %s)", usage)
	}
	name := fs.Arg(0)
	rec, err := state.Lookup(name)
	if err != nil {
		return errorf("logs: %v", err)
	}
	if !rec.Detached {
		return errorf("logs: sandbox %s is not detached: its output goes to the terminal that started it (use run -d)", name)
	}
	path, err := state.LogPath(name)
	if err != nil {
		return errorf("logs: %v", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return errorf("logs: %v", err)
	}
	defer f.Close()
	for {
		if _, err := io.Copy(os.Stdout, f); err != nil {
			return errorf("logs: %v", err)
		}
		if !follow {
			return 0
		}
		if !state.Alive(rec) {
			_, _ = io.Copy(os.Stdout, f) // what was written before the end
			return 0
		}
		time.Sleep(100 * time.Millisecond)
	}
}
