// The Go runtime must not open the host's cgroup files at start-up (init would hold them open inside the sandbox)
// nor re-read them in the background: caisson's processes are short-lived or idle.

//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command caisson runs a command in a rootless Linux sandbox: root inside, the caller's own uid outside, in new
// user, mount, PID, IPC, UTS, network, cgroup and time namespaces, with no setuid binary of its own and no daemon.
//
// Synopsis:
//
//	caisson run [flags] [--] COMMAND [ARG...]
//	caisson doctor [--json]
//	caisson inspect [--json] [NAME]
//	caisson idmap [--user NAME|UID] [--map MODE] [--json]
//	caisson unshare [--map MODE] [--] [COMMAND [ARG...]]
//	caisson rm-tree DIR...
//	caisson completion bash|zsh|fish
//	caisson version
//
// and the others `caisson help` lists (package cli describes them all).
//
// The same binary is also the sandbox's init: main dispatches on argv[0] before parsing any flag.
package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cli"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/client"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/doctor"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/idmapcmd"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/initproc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/oneproc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	_ "github.com/caisson-sandbox/caisson/cmd/caisson/internal/prefault" // the ELF entry point (Makefile: ENTRY)
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/reap"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/unshare"
	"github.com/moby/sys/userns"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// The main goroutine keeps the main thread for the whole run: children's parent-death signals are tied to the
	// thread that created them, and init forks the command from this thread after per-thread setup.
	runtime.LockOSThread()
}

func main() {
	switch os.Args[0] {
	case initproc.StageName:
		os.Exit(initproc.Main())
	case doctor.ProbeName:
		os.Exit(doctor.ProbeMain())
	case unshare.StageName:
		os.Exit(unshare.StageMain())
	}
	os.Exit(cliMain(os.Args[1:]))
}

// reapWait bounds the wait for children left at the exit of a command other than run.
const reapWait = 5 * time.Second

func cliMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, cli.Usage())
		return initproc.ExitSetup
	}
	if args[0] != "run" {
		// Only the sandbox's own processes keep the one processor they start with (package oneproc).
		oneproc.Restore()
		// Nothing a command started outlives it, not even as a zombie for a parent that never reaps (issue 18). run
		// does this itself (parent.Run): the foreground of `run -d` leaves its sandbox's supervisor on purpose.
		defer func() {
			if _, err := reap.Children(reapWait); err != nil {
				fmt.Fprintf(os.Stderr, "caisson: warning: %v\n", err)
			}
		}()
	}
	switch args[0] {
	case "run":
		return runMain(args[1:])
	case "ps":
		return client.PSMain(args[1:])
	case "exec":
		return client.ExecMain(args[1:])
	case "stop":
		return client.StopMain(args[1:])
	case "logs":
		return client.LogsMain(args[1:])
	case "doctor":
		return doctor.Main(args[1:])
	case "inspect":
		return harden.InspectMain(args[1:])
	case "idmap":
		return idmapcmd.Main(args[1:])
	case "completion", "__complete", "man":
		return cli.Main(args, version)
	case "diff":
		return imagecmd.DiffMain(args[1:])
	case "unshare":
		return unshare.Main(args[1:])
	case "rm-tree":
		return unshare.RmTreeMain(args[1:])
	case "rootfs":
		return imagecmd.RootfsMain(args[1:])
	case "version", "--version":
		fmt.Printf("caisson %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Print(cli.Usage())
		return 0
	}
	return usagef("unknown command %q (see 'caisson help')", args[0])
}

func usagef(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", a...)
	return initproc.ExitSetup
}

func runMain(args []string) int {
	// The background half of `run -d` forgets its marker before the sandbox's environment is read.
	detached := parent.IsDetachedSupervisor()
	// Descriptors leaked to caisson by its own caller must not reach the sandbox (CVE-2024-21626 class).
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	env := config.Environment{Env: os.Environ(), UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Outer: outer.Detect(userns.RunningInUserNS)}
	env.Cwd, _ = os.Getwd()
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		env.IsTTY = true
		env.Win = config.WinSize{Rows: ws.Row, Cols: ws.Col}
	}
	r, err := config.ParseRun(args, env)
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Print(cli.RunHelp())
		return 0
	}
	if err != nil {
		return usagef("%v", err)
	}
	if r.Life.Detach && !detached {
		return parent.Detach()
	}
	return parent.Run(r)
}
