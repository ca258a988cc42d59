// Package unshare implements the commands for the files a user's sandboxes wrote as other ids (a --persist
// directory's copied-up /etc, an unpacked image's tree), which belong to the user's subordinate ids on the host
// and which the user's own rm or chown therefore cannot touch: `caisson unshare` runs a command as root of a user
// namespace with the maps `caisson run` writes (Podman's `podman unshare`), and `caisson rm-tree` removes such a
// tree entirely, refusing what is not the caller's and what a running sandbox holds.
//
// Both start a re-exec of caisson under StageName in the new user namespace (parent.StartUserNS): after the maps
// are written, the stage either replaces itself with the command or removes the trees.
package unshare

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/spf13/pflag"
)

// exitError is caisson's exit code for its own errors.
const exitError = 125

// fail prints one caisson: line and returns exitError.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return exitError
}

const unshareUsage = "caisson unshare [--map MODE] [--] [COMMAND [ARG...]]"

// unshareHelp is `caisson unshare --help` (the flags follow).
const unshareHelp = `Usage: ` + unshareUsage + `

Runs COMMAND (default: your shell, $SHELL or the one /etc/passwd gives you) as root of a new user namespace with
the ID maps 'caisson run' writes ('caisson idmap' prints them): inside, your own uid and gid are 0 and your
subordinate ids are 1..N. What your sandboxes wrote as other users (a --persist directory's copied-up files, an
unpacked image's tree) belongs to those ids on the host, so inside it is root's to remove, chown or chmod:

  caisson unshare rm -rf ~/p1
  caisson unshare chown -R 1000:1000 ~/u1/home/app

It isolates nothing but IDs. The command sees your file system exactly as you do (your mount namespace: it can
mount nothing), your processes and your network, and keeps your working directory, environment, terminal and
open descriptors. Files it creates in your directories belong to you (to a subordinate id after chown). It is a
tool for your own files, not a sandbox: use 'caisson run' to contain a command. Unlike 'caisson rm-tree' it does
not check whether a running sandbox uses the files.

Exit status: the command's own, 128+N when signal N killed it, 125 for caisson's errors, 126 when the command
cannot be executed, 127 when it is not found.

Flags:
`

// Flags returns the flag set `caisson unshare` parses (package cli reads it for help, completion and man pages).
func Flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("unshare", pflag.ContinueOnError)
	fs.SetInterspersed(false) // the command's own flags are its own: caisson unshare rm -rf DIR
	fs.SetOutput(io.Discard)
	fs.String("map", "auto", "ID mapping: auto (you and all your subordinate ranges), single (only your own id) or keep-id (your own id as itself, with root's capabilities)")
	flagmeta.Values(fs, "map", "auto", "single", "keep-id")
	return fs
}

// Main runs `caisson unshare`.
func Main(args []string) int {
	fs := Flags()
	err := fs.Parse(args)
	mode, _ := fs.GetString("map")
	if errors.Is(err, pflag.ErrHelp) {
		fmt.Print(unshareHelp + fs.FlagUsages())
		return 0
	}
	if err != nil {
		return fail("unshare: %v (usage: %s)", err, unshareUsage)
	}
	if err := checkMapMode(mode); err != nil {
		return fail("unshare: %v", err)
	}
	command := fs.Args()
	if len(command) == 0 {
		command = []string{loginShell(os.Getenv("SHELL"), os.Getuid())}
	} else if command[0] == "" {
		return fail("unshare: empty command name (usage: %s)", unshareUsage)
	}
	p, code := parent.StartUserNS(parent.UserNSOptions{Name: "unshare", MapMode: mode, Stage: StageName,
		Args: append([]string{stageExec}, command...), Terminal: true})
	if p == nil {
		return code
	}
	return p.Wait()
}

// checkMapMode checks --map (the modes of `caisson run`).
func checkMapMode(mode string) error {
	switch mode {
	case "auto", "single", "keep-id":
		return nil
	}
	return fmt.Errorf("--map: unknown mode %q (want auto, single or keep-id)", mode)
}

// loginShell is the command `caisson unshare` runs by default: $SHELL, else the shell /etc/passwd names for uid,
// else /bin/sh.
func loginShell(env string, uid int) string {
	if env != "" {
		return env
	}
	if f, err := os.Open("/etc/passwd"); err == nil {
		defer f.Close()
		if sh := passwdShell(f, uid); sh != "" {
			return sh
		}
	}
	return "/bin/sh"
}

// passwdShell returns the shell field of uid's line in a passwd file ("" when there is none).
func passwdShell(r io.Reader, uid int) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 {
			continue
		}
		if n, err := strconv.Atoi(f[2]); err == nil && n == uid {
			return strings.TrimSpace(f[6])
		}
	}
	return ""
}
