package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/nsenter"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ociinit"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ocispec"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/wire"
)

// exec runs a new process in a running container: a stage joins every namespace the container has of its own (the
// user and mount namespaces through nsenter's C half) and its cgroups, takes on the process's identity and execs
// it. The process is a descendant of this invocation: without --detach this invocation waits for it and exits with
// its status; with --detach it writes --pid-file and exits, leaving the process to the caller's subreaper.
func (g *globals) exec(args []string) (int, error) {
	fs := newFlags("exec")
	procFile := fs.StringP("process", "p", "", "a JSON file holding the process (config.json's process object)")
	detach := fs.BoolP("detach", "d", false, "do not wait for the process")
	pidFile := fs.String("pid-file", "", "write the process's PID to this file")
	consoleSocket := fs.String("console-socket", "", "AF_UNIX socket to send the terminal's master to")
	tty := fs.BoolP("tty", "t", false, "give the process a terminal (needs --console-socket)")
	cwd := fs.String("cwd", "", "working directory inside the container")
	env := fs.StringArrayP("env", "e", nil, "set KEY=VALUE (repeatable)")
	user := fs.StringP("user", "u", "", "UID[:GID] to run as")
	addGids := fs.IntSliceP("additional-gids", "g", nil, "additional group ids")
	caps := fs.StringArrayP("cap", "c", nil, "add a capability to the process's sets (repeatable)")
	nnp := fs.Bool("no-new-privs", false, "set no_new_privs for the process")
	preserve := fs.Int("preserve-fds", 0, "pass this many descriptors from 3 up to the process")
	ignorePaused := fs.Bool("ignore-paused", false, "exec even into a paused container")
	fs.String("process-label", "", "SELinux label (not supported; must be empty)")
	apparmor := fs.String("apparmor", "", "AppArmor profile for the process")
	fs.SetInterspersed(false)
	if help, err := parse(fs, args); err != nil || help {
		return 0, err
	}
	rest := fs.Args()
	if len(rest) < 1 {
		return 0, fmt.Errorf("%s: \"exec\" requires the container ID", Name)
	}
	id, cmdArgs := rest[0], rest[1:]
	if l, _ := fs.GetString("process-label"); l != "" {
		return 0, errors.New("--process-label: SELinux is not supported by caisson-oci")
	}
	if *procFile == "" && len(cmdArgs) == 0 {
		return 0, errors.New("exec: give the command to run, or --process FILE")
	}
	if *preserve < 0 || *preserve > 1000 {
		return 0, fmt.Errorf("--preserve-fds %d: out of range", *preserve)
	}
	st, err := g.store()
	if err != nil {
		return 0, err
	}
	h, err := st.load(id)
	if h != nil {
		defer h.unlock()
	}
	if err != nil {
		return 0, err
	}
	switch s := h.status(); s {
	case specs.StateStopped:
		return 0, errors.New("cannot exec in a stopped container")
	case "paused":
		if !*ignorePaused {
			return 0, errors.New("cannot exec in a paused container (resume it first, or --ignore-paused)")
		}
	}
	spec := h.rec.Config
	if spec == nil || spec.Process == nil {
		return 0, errors.New("the container's state has no config")
	}
	// The process: --process's object, or the container's process with the command line's changes (runc's rules).
	var sp specs.Process
	if *procFile != "" {
		b, err := os.ReadFile(*procFile)
		if err != nil {
			return 0, fmt.Errorf("--process: %w", unwrapErr(err))
		}
		if err := json.Unmarshal(b, &sp); err != nil {
			return 0, fmt.Errorf("--process %s: not a process object: %w", *procFile, err)
		}
	} else {
		sp = *spec.Process
		sp.Args = cmdArgs
		sp.Terminal = *tty
		sp.ConsoleSize = nil
		sp.Env = append(append([]string(nil), spec.Process.Env...), *env...)
		if *cwd != "" {
			sp.Cwd = *cwd
		}
		if *user != "" {
			u, g, hasG := strings.Cut(*user, ":")
			uid, err := strconv.ParseUint(u, 10, 32)
			if err != nil {
				return 0, fmt.Errorf("--user %q: want UID[:GID] as numbers", *user)
			}
			sp.User.UID = uint32(uid)
			if hasG {
				gid, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return 0, fmt.Errorf("--user %q: want UID[:GID] as numbers", *user)
				}
				sp.User.GID = uint32(gid)
			}
		}
		for _, g := range *addGids {
			sp.User.AdditionalGids = append(sp.User.AdditionalGids, uint32(g))
		}
		if len(*caps) > 0 {
			c := &specs.LinuxCapabilities{}
			if spec.Process.Capabilities != nil {
				*c = *spec.Process.Capabilities
			}
			for _, name := range *caps {
				c.Bounding = append(c.Bounding, name)
				c.Effective = append(c.Effective, name)
				c.Permitted = append(c.Permitted, name)
				c.Inheritable = append(c.Inheritable, name)
				c.Ambient = append(c.Ambient, name)
			}
			sp.Capabilities = c
		}
		if *nnp {
			sp.NoNewPrivileges = true
		}
		if *apparmor != "" {
			sp.ApparmorProfile = *apparmor
		}
	}
	if sp.Terminal && *consoleSocket == "" {
		return 0, errors.New("a terminal (--tty or process.terminal) needs --console-socket")
	}
	var pr ocispec.Process
	if err := ocispec.LoadProcess(&sp, spec.Linux, "process", ocispec.Options{AppArmor: appArmorEnabled(),
		LastCap: harden.LastCap()}, &pr); err != nil {
		return 0, err
	}
	var console *os.File
	if sp.Terminal {
		if console, err = dialConsole(*consoleSocket); err != nil {
			return 0, err
		}
		defer console.Close()
	}
	// The container's namespaces, opened through its process and checked to still be that process after.
	r := h.rec
	var joins []nsenter.Join
	defer func() {
		for _, j := range joins {
			j.File.Close()
		}
	}()
	for flag, file := range ocispec.NamespaceFile {
		if r.Namespaces&flag == 0 {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", r.PID, file))
		if err != nil {
			return 0, fmt.Errorf("container not running (its %s namespace: %v)", file, unwrapErr(err))
		}
		joins = append(joins, nsenter.Join{Type: int(flag), File: f})
	}
	if !alive(r.PID, r.StartTime) {
		return 0, errors.New("container not running")
	}
	sigs := make(chan os.Signal, 64)
	if !*detach {
		signal.Notify(sigs, forwarded()...)
	}
	cg := r.cgroups()
	cmd := stageCmd(*preserve)
	proc, err := nsenter.Start(cmd, nsenter.Request{
		Join:           nsenter.OrderJoins(joins),
		SetIDAfterJoin: r.Namespaces&unix.CLONE_NEWUSER != 0,
		Fork:           r.Namespaces&(unix.CLONE_NEWPID|unix.CLONE_NEWTIME) != 0,
		Started: func(pid int) error {
			if cg == nil {
				return nil
			}
			return cg.Enter(pid)
		},
	})
	if err != nil {
		return 0, fmt.Errorf("nsenter: %w", err)
	}
	start := ociinit.Start{Role: ociinit.RoleExec, Process: &pr, HasConsole: console != nil, TTYGuard: true}
	var fds []int
	if console != nil {
		fds = append(fds, int(console.Fd()))
	}
	if err := wire.SendValue(proc.Sock, "start", start, fds...); err != nil {
		reap(proc.PID)
		return 0, fmt.Errorf("stage: %w", err)
	}
	// The stage's socket is close-on-exec: it closes without a word when the exec succeeded.
	var ev ociinit.Event
	if _, err := wire.RecvValue(proc.Sock, &ev); err == nil {
		proc.Sock.Close()
		reap(proc.PID)
		if ev.Type == "error" {
			return 0, errors.New(ev.Error)
		}
		return 0, fmt.Errorf("stage: unexpected message %q", ev.Type)
	}
	proc.Sock.Close()
	if *pidFile != "" {
		if err := writePidFile(*pidFile, proc.PID); err != nil {
			return 0, err
		}
	}
	if *detach {
		return 0, nil
	}
	h.unlock()
	return waitChild(proc.PID, sigs), nil
}
