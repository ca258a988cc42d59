// Package cli describes caisson's command line as data: its subcommands, their synopses and their flags (the very
// pflag definitions each subcommand parses, with the topics and value kinds of package flagmeta). From that one
// description it prints the overview of `caisson help`, `caisson run --help` grouped by topic, the shell
// completion scripts of `caisson completion bash|zsh|fish` and the answers of the hidden `caisson __complete`
// they call, and the man pages of the hidden `caisson man DIR`.
package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/client"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/doctor"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/harden"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/idmapcmd"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/unshare"
	"github.com/spf13/pflag"
)

// Arg is one positional argument of a command: how it completes.
type Arg struct {
	Kind  flagmeta.Kind
	Words []string // fixed words, when Kind is None
}

// Command is one subcommand of caisson.
type Command struct {
	Name     string // "run", or two words: "rootfs unpack"
	Synopsis string // what follows "caisson NAME" in its usage line
	Summary  string // one line, lower case, no final period
	// Description is the man page's DESCRIPTION: paragraphs separated by blank lines.
	Description string
	Flags       func() *pflag.FlagSet // nil: no flags
	// Args are the positional arguments in order; with Rest the last one repeats.
	Args   []Arg
	Rest   bool
	Hidden bool // left out of the overview, the completion of command names and the man pages
}

// runFlags returns the flag set `caisson run` parses.
func runFlags() *pflag.FlagSet { return config.NewRunFlagSet(new(config.RunFlags)) }

// Shells are the shells `caisson completion` writes scripts for.
var Shells = []string{"bash", "zsh", "fish"}

// Commands are caisson's subcommands, in the order the overview lists them.
var Commands = []Command{
	{Name: "run", Synopsis: "[flags] [--] COMMAND [ARG...]", Summary: "run COMMAND in a new sandbox",
		Description: "Runs COMMAND in a new sandbox: root inside, your own uid outside, in new user, mount, PID, IPC, UTS, " +
			"network, cgroup and time namespaces, with caisson's init as PID 1. The sandbox sees the host's file " +
			"system read-only (or --rootfs DIR), with the current directory bound read-write, its own /proc, /dev, " +
			"/tmp and /run, and no network but loopback unless --net says otherwise.\n\n" +
			"Flags stop at the first argument that is not one: everything after COMMAND is COMMAND's.",
		Flags: runFlags, Args: []Arg{{Kind: flagmeta.Commands}, {Kind: flagmeta.Files}}, Rest: true},
	{Name: "ps", Synopsis: "[--json]", Summary: "list running sandboxes with their namespaces",
		Description: "Lists your running sandboxes: name, init's PID on the host, uptime, network mode, published " +
			"ports, network namespace and command. A sandbox whose processes have all exited is not listed, and " +
			"the state it left is removed.",
		Flags: client.PSFlags},
	{Name: "exec", Synopsis: "[-t] [-e K=V] [-w DIR] NAME [--] COMMAND [ARG...]", Summary: "run a command inside a running sandbox",
		Description: "Runs COMMAND in the namespaces, root, hardening and cgroup of the running sandbox NAME, as a " +
			"child of its init. Its exit status is exec's.",
		Flags: client.ExecFlags, Args: []Arg{{Kind: flagmeta.Sandboxes}, {Kind: flagmeta.Commands}, {Kind: flagmeta.Files}}, Rest: true},
	{Name: "stop", Synopsis: "[--time SECONDS] NAME", Summary: "stop a sandbox: SIGTERM, then SIGKILL after the grace period",
		Description: "Sends SIGTERM to the command of sandbox NAME, then SIGKILL to the whole sandbox after the grace " +
			"period, prints its final status and returns once the sandbox is gone.",
		Flags: client.StopFlags, Args: []Arg{{Kind: flagmeta.Sandboxes}}},
	{Name: "logs", Synopsis: "[-f] NAME", Summary: "print (and follow) a detached sandbox's output",
		Description: "Prints the output of the detached (run -d) sandbox NAME; with -f, goes on until it ends.",
		Flags:       client.LogsFlags, Args: []Arg{{Kind: flagmeta.Sandboxes}}},
	{Name: "doctor", Synopsis: "[--json]", Summary: "check this host's prerequisites and how to fix them",
		Description: "Checks every prerequisite of run on this host and prints the fix of each one that fails. Exits " +
			"0 when run will work, 1 otherwise.",
		Flags: doctor.Flags},
	{Name: "inspect", Synopsis: "[--json] [NAME]", Summary: "the isolation in force (inside, or of sandbox NAME)",
		Description: "Without NAME, inside a sandbox: prints the isolation in force for this process, read from the " +
			"kernel. With NAME, from outside: the isolation of that sandbox's command, compared with your own " +
			"namespaces.",
		Flags: harden.InspectFlags, Args: []Arg{{Kind: flagmeta.Sandboxes}}},
	{Name: "idmap", Synopsis: "[--user NAME|UID] [--map MODE] [--json]", Summary: "show the ID maps 'run' would write",
		Description: "Prints the subordinate ranges of /etc/subuid and /etc/subgid, the warnings about their invalid " +
			"lines (other users' included), the uid_map and gid_map run would write and the newuidmap and " +
			"newgidmap command lines.",
		Flags: idmapcmd.Flags},
	{Name: "diff", Synopsis: "DIR [--json]", Summary: "list what sandboxes changed in a --persist DIR (A/C/D lines)",
		Description: "Lists the changes kept in the --persist directory DIR, one A (added), C (changed) or D (deleted) " +
			"line per path.",
		Flags: imagecmd.DiffFlags, Args: []Arg{{Kind: flagmeta.Dirs}}},
	{Name: "rootfs unpack", Synopsis: "[--map MODE] ARCHIVE DIR", Summary: "unpack an OCI layout/tar or docker-save archive into DIR",
		Description: "Unpacks the image archive ARCHIVE (an OCI layout directory or tar, or a docker-save tar) into " +
			"the new or empty directory DIR, for run --rootfs DIR. The extraction runs in a sandbox, with " +
			"caisson-image (found next to caisson or on $PATH) as its command.",
		Flags: imagecmd.UnpackFlags, Args: []Arg{{Kind: flagmeta.Files}, {Kind: flagmeta.Dirs}}},
	{Name: "rootfs pull", Synopsis: "[--platform OS/ARCH] [--insecure] [--force] [--map MODE] IMAGE DIR",
		Summary: "pull IMAGE from its registry and unpack it into DIR",
		Description: "Fetches IMAGE ([REGISTRY/]NAME[:TAG|@DIGEST], Docker Hub when no registry is named) from its " +
			"registry, checks every blob against its digest and unpacks it into DIR as rootfs unpack does, for run " +
			"--rootfs DIR. Credentials come from the files podman login and docker login write. DIR is replaced only " +
			"when the pull is complete; an interrupted pull leaves it as it was.",
		Flags: imagecmd.PullFlags, Args: []Arg{{Kind: flagmeta.None}, {Kind: flagmeta.Dirs}}},
	{Name: "unshare", Synopsis: "[--map MODE] [--] [COMMAND [ARG...]]",
		Summary: "run COMMAND (default: your shell) as root of a user namespace with run's ID maps",
		Description: "Runs COMMAND as root of a new user namespace with the ID maps run writes, in your own view of the " +
			"file system, to remove, chown or chmod what your sandboxes wrote as your subordinate ids " +
			"(caisson unshare rm -rf ~/p1). It isolates nothing but IDs: use run to contain a command.",
		Flags: unshare.Flags, Args: []Arg{{Kind: flagmeta.Commands}, {Kind: flagmeta.Files}}, Rest: true},
	{Name: "rm-tree", Synopsis: "DIR...", Summary: "remove a --persist DIR or an unpacked root, subordinate-owned files too",
		Description: "Removes each DIR (a --persist directory, an unpacked root) entirely, files of your subordinate ids " +
			"included, refusing directories a running sandbox uses, your home, / and directories that are not yours.",
		Flags: unshare.RmTreeFlags, Args: []Arg{{Kind: flagmeta.Dirs}}, Rest: true},
	{Name: "completion", Synopsis: "bash|zsh|fish", Summary: "print the shell completion script of bash, zsh or fish",
		Description: "Prints the completion script of the shell named. Load it with\n\n" +
			"  source <(caisson completion bash)     # in ~/.bashrc\n" +
			"  source <(caisson completion zsh)      # in ~/.zshrc, after compinit\n" +
			"  caisson completion fish | source      # in ~/.config/fish/config.fish\n\n" +
			"It completes subcommands, flags, flag values (network modes, postures, ID map modes, capabilities...) " +
			"and the names of running sandboxes, by asking caisson itself at each completion.",
		Args: []Arg{{Words: Shells}}},
	{Name: "version", Summary: "print the version", Description: "Prints caisson's version, Go version and platform."},
	{Name: "__complete", Synopsis: "WORD...", Summary: "the completion candidates of the last WORD (used by the completion scripts)", Hidden: true},
	{Name: "man", Synopsis: "DIR", Summary: "write the man pages into DIR", Hidden: true, Args: []Arg{{Kind: flagmeta.Dirs}}},
}

// Lookup returns the command named by the leading words of args and how many words its name took.
func Lookup(args []string) (*Command, int) {
	for i := range Commands {
		c := &Commands[i]
		words := strings.Fields(c.Name)
		if len(args) >= len(words) && strings.Join(args[:len(words)], " ") == c.Name {
			return c, len(words)
		}
	}
	return nil, 0
}

// Usage returns the overview `caisson help` prints.
func Usage() string {
	var b strings.Builder
	b.WriteString("caisson: a rootless Linux sandbox\n\nUsage:\n")
	lines := [][2]string{}
	width := 0
	for _, c := range Commands {
		if c.Hidden {
			continue
		}
		l := strings.TrimSpace("caisson " + c.Name + " " + c.Synopsis)
		lines = append(lines, [2]string{l, c.Summary})
		width = max(width, len(l))
	}
	for _, l := range lines {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, l[0], l[1])
	}
	b.WriteString("\nRun 'caisson COMMAND --help' for a command's flags; 'man caisson-COMMAND' for more.\n")
	return b.String()
}

// RunHelp returns `caisson run --help`: the usage line and the flags grouped by topic.
func RunHelp() string {
	return "Usage: caisson run [flags] [--] COMMAND [ARG...]\n\n" + flagmeta.GroupedUsages(runFlags())
}

// Main runs the subcommands of this package: completion, __complete and man. version goes into the man pages.
func Main(args []string, version string) int {
	switch args[0] {
	case "completion":
		return completionMain(args[1:], os.Stdout)
	case "__complete":
		return completeMain(args[1:], os.Stdout)
	case "man":
		return manMain(args[1:], version)
	}
	return fail("unknown command %q", args[0])
}

// fail prints one caisson: line and returns 125, caisson's exit code for its own errors.
func fail(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", a...)
	return 125
}

func completionMain(args []string, w io.Writer) int {
	if len(args) != 1 {
		return fail("completion: want one shell: %s (usage: caisson completion bash|zsh|fish)", strings.Join(Shells, ", "))
	}
	script, ok := scripts[args[0]]
	if !ok {
		return fail("completion: unknown shell %q (want %s)", args[0], strings.Join(Shells, ", "))
	}
	_, _ = io.WriteString(w, script)
	return 0
}
