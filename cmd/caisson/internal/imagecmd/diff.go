// Package imagecmd implements the file-system subcommands of caisson: `caisson diff` (what a --persist
// directory changed) and `caisson rootfs unpack` (an image archive into a root file system the caller owns).
package imagecmd

import (
	"errors"
	"fmt"
	"os"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/unshare"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// exitError is caisson's exit code for its own errors.
const exitError = 125

// fail prints one caisson: line and returns exitError.
func fail(format string, args ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", args...)
	return exitError
}

// DiffFlags defines the flags of `caisson diff` (read by DiffMain, completion and the man pages).
func DiffFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("diff", pflag.ContinueOnError)
	fs.Bool("json", false, "print a JSON array")
	return fs
}

// DiffMain runs `caisson diff DIR [--json]`: the changes kept in a --persist directory, one "A|C|D PATH" line
// each (as `podman diff` prints them), or a JSON array of {"kind", "path"} objects.
func DiffMain(args []string) int {
	fs := DiffFlags()
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return fail("diff: %v", err)
	}
	if fs.NArg() != 1 {
		return fail("diff: want one --persist directory (usage: caisson diff DIR [--json])")
	}
	asJSON, _ := fs.GetBool("json")
	changes, err := rootfs.Diff(fs.Arg(0))
	if err != nil && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) && os.Getuid() != 0 {
		// The upper layers hold directories of the sandbox's other ids (apt's 0700 partial/ is _apt's): read
		// them as root of a user namespace that maps the caller's subordinate ranges, as the sandbox did.
		args := []string{unshare.StageDiff, fs.Arg(0)}
		if asJSON {
			args = append(args, "--json")
		}
		proc, code := parent.StartUserNS(parent.UserNSOptions{Name: "diff", MapMode: "auto", Stage: unshare.StageName, Args: args})
		if proc == nil {
			return code
		}
		return proc.Wait()
	}
	if err != nil {
		return fail("diff: %v", err)
	}
	if err := rootfs.WriteChanges(os.Stdout, changes, asJSON); err != nil {
		return fail("diff: %v", err)
	}
	return 0
}
