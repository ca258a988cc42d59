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
//	caisson version
//
// The same binary is also the sandbox's init: main dispatches on argv[0] before parsing any flag.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/client"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/doctor"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/initproc"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/unshare"
	"github.com/caisson-sandbox/caisson/idmap"
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

const usage = `caisson: a rootless Linux sandbox

Usage:
  caisson run [flags] [--] COMMAND [ARG...]   run COMMAND in a new sandbox
  caisson ps [--json]                         list running sandboxes with their namespaces
  caisson exec [-t] NAME [--] COMMAND [ARG...] run a command inside a running sandbox
  caisson stop [--time SECONDS] NAME          stop a sandbox: SIGTERM, then SIGKILL after the grace period
  caisson logs [-f] NAME                      print (and follow) a detached sandbox's output
  caisson doctor [--json]                     check this host's prerequisites and how to fix them
  caisson inspect [--json] [NAME]             the isolation in force (inside, or of sandbox NAME)
  caisson idmap [--user NAME|UID] [--json]    show the ID maps 'run' would write
  caisson diff DIR [--json]                   list what sandboxes changed in a --persist DIR (A/C/D lines)
  caisson rootfs unpack ARCHIVE DIR           unpack an OCI layout/tar or docker-save archive into DIR
  caisson rootfs pull [flags] IMAGE DIR       fetch IMAGE from its registry and unpack it into DIR
  caisson unshare [--map MODE] [COMMAND...]   run COMMAND (default: your shell) as root of a user namespace with
                                              run's ID maps, to rm/chown your sandboxes' files; isolates nothing else
  caisson rm-tree DIR...                      remove a --persist DIR or an unpacked root, subordinate-owned files too
  caisson version                             print the version

Run 'caisson run --help' for the run flags.
`

func cliMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return initproc.ExitSetup
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
		return idmapMain(args[1:])
	case "diff":
		return imagecmd.DiffMain(args[1:])
	case "rootfs":
		return imagecmd.RootfsMain(args[1:])
	case "unshare":
		return unshare.Main(args[1:])
	case "rm-tree":
		return unshare.RmTreeMain(args[1:])
	case "version", "--version":
		fmt.Printf("caisson %s (%s, %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Print(usage)
		return 0
	}
	return usagef("unknown command %q (want run, doctor, inspect, idmap or version)", args[0])
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
	env := config.Environment{Env: os.Environ(), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	env.Cwd, _ = os.Getwd()
	if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
		env.IsTTY = true
		env.Win = config.WinSize{Rows: ws.Row, Cols: ws.Col}
	}
	r, err := config.ParseRun(args, env)
	if errors.Is(err, pflag.ErrHelp) {
		var f config.RunFlags
		fmt.Print("Usage: caisson run [flags] [--] COMMAND [ARG...]\n\nFlags:\n")
		fmt.Print(config.NewRunFlagSet(&f).FlagUsages())
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

func idmapMain(args []string) int {
	fs := pflag.NewFlagSet("idmap", pflag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	who := fs.String("user", "", "show the maps of this user (name or uid) instead of the caller")
	mode := fs.String("map", "auto", "mapping mode: auto, single or keep-id")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return usagef("idmap: %v", err)
	}
	if fs.NArg() > 0 {
		return usagef("idmap: unexpected argument %q", fs.Arg(0))
	}
	caller := parent.CurrentCaller()
	if *who != "" {
		c, err := parent.LookupCaller(*who)
		if err != nil {
			return usagef("idmap: --user: %v", err)
		}
		caller = c
	}
	plan, err := parent.NewPlan(context.Background(), *mode, caller)
	if err != nil {
		return usagef("%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(plan)
		return 0
	}
	printPlan(plan)
	return 0
}

func printPlan(p *idmap.Plan) {
	fmt.Printf("user:    %s (uid %d, gid %d)\n", p.User, p.UID, p.GID)
	fmt.Printf("mode:    %s", p.Mode)
	if p.Requested != p.Mode {
		fmt.Printf(" (asked for %s)", p.Requested)
	}
	fmt.Println()
	if p.Notice != "" {
		fmt.Println(p.Notice)
	}
	for _, w := range p.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
	printRanges := func(name string, rs []idmap.Range) {
		fmt.Printf("%s:", name)
		if len(rs) == 0 {
			fmt.Print(" none")
		}
		for _, r := range rs {
			fmt.Printf(" %d-%d (%d)", r.Start, uint64(r.Start)+uint64(r.Count)-1, r.Count)
		}
		fmt.Println()
	}
	printRanges("subuid", p.SubUIDs)
	printRanges("subgid", p.SubGIDs)
	fmt.Printf("uid_map:\n%s", indent(idmap.Format(p.UIDMap)))
	fmt.Printf("gid_map:\n%s", indent(idmap.Format(p.GIDMap)))
	if p.UseHelpers {
		fmt.Printf("newuidmap argv: %s\n", quoteArgs(p.NewuidmapArgv))
		fmt.Printf("newgidmap argv: %s\n", quoteArgs(p.NewgidmapArgv))
	} else {
		fmt.Printf("maps written directly by caisson (setgroups %s)\n", map[bool]string{true: "deny", false: "allow"}[p.DenySetgroups])
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func quoteArgs(a []string) string {
	out := make([]string, len(a))
	for i, s := range a {
		if s == "" || strings.ContainsAny(s, " \t\n\"'") {
			s = strconv.Quote(s)
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
