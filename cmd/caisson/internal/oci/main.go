// Package oci is caisson-oci: caisson as an OCI runtime, with runc's command line, the contract Podman (through
// conmon), containerd (through its runc shim and its CRI plugin, hence Kubernetes) and Docker drive runtimes with.
//
//	caisson-oci [--root DIR] [--log FILE] [--log-format text|json] [--debug] [--systemd-cgroup]
//	            [--rootless auto|true|false] COMMAND [flags] ID
//
// `create` reads the bundle's config.json (package ocispec), creates the container's cgroups, and starts a stage
// (package nsenter's pre-runtime C half, then package ociinit) that joins or creates the container's namespaces,
// builds its root with package rootfs's steps and waits, as the container's process-to-be, for `start`. Then
// `create` exits: the container's process is a descendant of the caller (the engine's shim or conmon, a child
// subreaper), which reaps it; no caisson process stays. `exec` starts a process in the container's namespaces the
// same way. State lives under --root, one directory per container.
//
// Errors go to stderr and, with --log, to the log file (one JSON line per failed invocation with --log-format
// json: containerd shows the last error line, Podman parses the file as one JSON object); the exit status is 1.
// The wordings of the cases engines match by text are runc's ("container does not exist", "container not
// running").
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Name is the program's name in messages.
const Name = "caisson-oci"

// Version is set by the caller (main) from the build.
var Version = "dev"

// globals are the global flags.
type globals struct {
	root          string
	log           string
	logFormat     string
	debug         bool
	systemdCgroup bool
	rootless      string
	// rootlessMode is the decision --rootless makes: no privileges on the host (cgroup permission errors are
	// ignored when the container asks for no limits; devices are bound, not created).
	rootlessMode bool
}

// usage lists the commands.
const usage = `caisson-oci: caisson as an OCI runtime (runc's command line)

Usage: caisson-oci [global flags] COMMAND [flags] [ID]

Commands:
  create [--bundle DIR] [--pid-file F] [--console-socket S] [--no-pivot] [--no-new-keyring] [--preserve-fds N] ID
  start ID                      run the created container's process
  run [--bundle DIR] [--detach] [--pid-file F] [--console-socket S] ID   create + start (+ wait)
  state ID                      the OCI state JSON
  kill [--all] ID [SIGNAL]      signal the container's process (every process with --all)
  delete [--force] ID           remove a stopped container (--force: kill it first)
  exec [--process F.json | flags ARGS...] ID   run a process in a running container
  list [--format table|json] [--quiet]        the containers under --root
  ps [--format table|json] ID   the container's processes
  pause ID, resume ID           freeze and thaw (cgroup freezer)
  update [--resources F|-] [flags] ID         change cgroup limits
  features                      what this build supports (OCI features JSON)
  spec [--rootless] [--bundle DIR]            write a default config.json

Global flags:
  --root DIR          state directory (default /run/caisson-oci as root, $XDG_RUNTIME_DIR/caisson-oci otherwise)
  --log FILE          append errors to FILE;  --log-format text|json
  --debug             log debug lines too
  --systemd-cgroup    cgroupsPath is slice:prefix:name (needs a reachable systemd manager)
  --rootless auto|true|false  (auto: rootless when not root of the initial user namespace)
  --version           print the version
`

// Main runs caisson-oci with args (without the program name) and returns the exit status.
func Main(args []string) int {
	g := &globals{}
	fs := pflag.NewFlagSet(Name, pflag.ContinueOnError)
	fs.SetInterspersed(false)
	fs.SetOutput(io.Discard)
	fs.StringVar(&g.root, "root", "", "state directory")
	fs.StringVar(&g.log, "log", "", "log file")
	fs.StringVar(&g.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&g.debug, "debug", false, "debug logging")
	fs.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "use systemd for cgroups")
	fs.StringVar(&g.rootless, "rootless", "auto", "auto, true or false")
	fs.String("criu", "", "ignored (checkpoint/restore is not supported)")
	version := fs.BoolP("version", "v", false, "print the version")
	help := fs.BoolP("help", "h", false, "help")
	if err := fs.Parse(args); err != nil {
		return g.fail(fmt.Errorf("%v (see %s --help)", err, Name))
	}
	if *help {
		fmt.Print(usage)
		return 0
	}
	if *version {
		fmt.Printf("%s version %s\nspec: %s\n", Name, Version, specs.Version)
		return 0
	}
	if g.logFormat != "text" && g.logFormat != "json" {
		return g.fail(fmt.Errorf("--log-format: unknown format %q (want text or json)", g.logFormat))
	}
	switch g.rootless {
	case "true":
		g.rootlessMode = true
	case "false":
		g.rootlessMode = false
	case "auto", "":
		g.rootlessMode = os.Geteuid() != 0 || userns.RunningInUserNS()
	default:
		return g.fail(fmt.Errorf("--rootless: unknown value %q (want auto, true or false)", g.rootless))
	}
	if g.root == "" {
		g.root = defaultRoot()
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 1
	}
	cmd, cargs := rest[0], rest[1:]
	if cmd == "create" || cmd == "exec" {
		// An engine that dies while create or exec run (its shim or conmon killed) takes this command with it: the
		// stage then sees its socket close and ends too, instead of finishing a container nobody will start or wait
		// for. (go-runc asks the same of its runtime commands; conmon does not.)
		_ = unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	}
	var err error
	switch cmd {
	case "create":
		err = g.create(cargs)
	case "start":
		err = g.start(cargs)
	case "run":
		var code int
		code, err = g.run(cargs)
		if err == nil {
			return code
		}
	case "state":
		err = g.state(cargs)
	case "kill":
		err = g.kill(cargs)
	case "delete":
		err = g.delete(cargs)
	case "exec":
		var code int
		code, err = g.exec(cargs)
		if err == nil {
			return code
		}
		if code != 0 {
			g.logError(err)
			return code
		}
	case "list":
		err = g.list(cargs)
	case "ps":
		err = g.ps(cargs)
	case "pause":
		err = g.pause(cargs, true)
	case "resume":
		err = g.pause(cargs, false)
	case "update":
		err = g.update(cargs)
	case "features":
		err = g.features(cargs)
	case "spec":
		err = g.spec(cargs)
	case "checkpoint", "restore":
		err = fmt.Errorf("%s is not supported by %s", cmd, Name)
	case "help":
		fmt.Print(usage)
		return 0
	default:
		err = fmt.Errorf("unknown command %q (see %s --help)", cmd, Name)
	}
	if err != nil {
		return g.fail(err)
	}
	return 0
}

// defaultRoot is runc's choice of state directory, with caisson-oci's name: /run/caisson-oci as root of the
// initial user namespace, $XDG_RUNTIME_DIR/caisson-oci otherwise (root of another user namespace included, as
// rootless Podman runs its runtime), or /tmp/caisson-oci-UID when that is unset.
func defaultRoot() string {
	if os.Geteuid() == 0 && !userns.RunningInUserNS() {
		return "/run/" + Name
	}
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && (os.Geteuid() != 0 || os.Getenv("USER") != "root") {
		return filepath.Join(x, Name)
	}
	return filepath.Join(os.TempDir(), Name+"-"+strconv.Itoa(os.Geteuid()))
}

// fail reports err (stderr, and the log) and returns runc's exit status for errors.
func (g *globals) fail(err error) int {
	g.logError(err)
	fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
	return 1
}

// logError appends err to the --log file: one JSON line with --log-format json, runc's text format otherwise.
func (g *globals) logError(err error) {
	g.logLine("error", err.Error())
}

// logDebug appends a debug line with --debug.
func (g *globals) logDebug(format string, args ...any) {
	if g.debug {
		g.logLine("debug", fmt.Sprintf(format, args...))
	}
}

// logWarn appends a warning line.
func (g *globals) logWarn(format string, args ...any) {
	g.logLine("warning", fmt.Sprintf(format, args...))
}

func (g *globals) logLine(level, msg string) {
	if g.log == "" {
		return
	}
	f, err := os.OpenFile(g.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	if g.logFormat == "json" {
		b, _ := json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{level, msg, now})
		_, _ = f.Write(append(b, '\n'))
		return
	}
	_, _ = fmt.Fprintf(f, "time=%q level=%s msg=%q\n", now, level, msg)
}

// oneID takes exactly one container ID from the arguments left after a command's flags.
func oneID(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("%s: %q requires exactly 1 argument (the container ID), got %d", Name, cmd, len(args))
	}
	if err := validID(args[0]); err != nil {
		return "", err
	}
	return args[0], nil
}

// validID accepts runc's container IDs: letters, digits, '_', '+', '-' and '.', not "." or "..", at most 1024.
func validID(id string) error {
	if id == "" || id == "." || id == ".." || len(id) > 1024 {
		return fmt.Errorf("invalid container ID %q", id)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_+-.", c)) {
			return fmt.Errorf("invalid container ID %q: only letters, digits, '_', '+', '-' and '.' are allowed", id)
		}
	}
	return nil
}

// newFlags returns a command's flag set (runc's flags are long ones; single-dash forms are accepted by pflag's
// shorthands where runc has them).
func newFlags(cmd string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses a command's flags; --help prints them.
func parse(fs *pflag.FlagSet, args []string) (bool, error) {
	fs.BoolP("help", "h", false, "help")
	if err := fs.Parse(args); err != nil {
		return false, fmt.Errorf("%s: %v", fs.Name(), err)
	}
	if h, _ := fs.GetBool("help"); h {
		fmt.Printf("Usage: %s %s [flags] ID\n\n%s", Name, fs.Name(), fs.FlagUsages())
		return true, nil
	}
	return false, nil
}

var errHelp = errors.New("help")
