package imagecmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
)

// ExtractorName is the program that reads image archives, installed next to caisson (or found on $PATH). The image
// formats' libraries live there rather than in caisson, whose every sandbox start would otherwise pay for their
// initialisation.
const ExtractorName = "caisson-image"

// ExtractorPackage is the Go package of ExtractorName, for `go install` (static, as caisson itself).
const ExtractorPackage = "github.com/caisson-sandbox/caisson/cmd/caisson/caisson-image"

// InstallExtractor is the command line that installs ExtractorName alone.
const InstallExtractor = "CGO_ENABLED=0 go install " + ExtractorPackage + "@latest"

// Where the unpacking sandbox sees the archive, the target directory and the extractor.
const (
	innerArchive = "/run/caisson-unpack/archive"
	innerRoot    = "/run/caisson-unpack/root"
	innerBinary  = "/run/caisson-unpack/" + ExtractorName
)

// extractor finds caisson-image for the running caisson binary (findExtractor).
func extractor() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the caisson binary: %w", err)
	}
	return findExtractor(exe, os.Getenv("PATH"))
}

// findExtractor finds ExtractorName next to the caisson binary exe (where make install and `go install .../cmd/...`
// put it) or else in a directory of path (a $PATH value; `go install` of caisson alone leaves the two apart when
// caisson-image is installed later, or elsewhere). Only absolute directories of path are searched: an empty or
// relative entry would mean the current directory. The error says how to install it.
func findExtractor(exe, path string) (string, error) {
	next := filepath.Join(filepath.Dir(exe), ExtractorName)
	if isExecutable(next) {
		return next, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		if p := filepath.Join(dir, ExtractorName); isExecutable(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found next to %s nor on $PATH (it reads the image archives): install it with `%s`, "+
		"or everything with `CGO_ENABLED=0 go install github.com/caisson-sandbox/caisson/cmd/...@latest` or make install",
		ExtractorName, exe, InstallExtractor)
}

// isExecutable reports whether p is a regular file with an execute bit.
func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// UnpackFlags defines the flags of `caisson rootfs unpack` (read by RootfsMain, completion and the man pages).
func UnpackFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("rootfs unpack", pflag.ContinueOnError)
	fs.String("map", "auto", "ID mapping `MODE` of the extraction: auto (subordinate ranges; owners kept) or single (everything yours)")
	flagmeta.Values(fs, "map", string(idmap.ModeAuto), string(idmap.ModeSingle))
	return fs
}

// rootfsUsage lists the rootfs subcommands.
const rootfsUsage = "caisson rootfs unpack [--map MODE] ARCHIVE DIR, or caisson rootfs pull [--platform OS/ARCH] [--insecure] [--force] [--map MODE] IMAGE DIR"

// RootfsMain runs `caisson rootfs unpack ...` and `caisson rootfs pull ...` (see PullMain).
func RootfsMain(args []string) int {
	if len(args) > 0 && args[0] == "pull" {
		return PullMain(args[1:])
	}
	if len(args) == 0 || args[0] != "unpack" {
		return fail("rootfs: unknown command (usage: %s)", rootfsUsage)
	}
	return unpackMain(args[1:])
}

// unpackMain runs `caisson rootfs unpack [--map MODE] ARCHIVE DIR`.
func unpackMain(args []string) int {
	fs := UnpackFlags()
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return fail("rootfs unpack: %v", err)
	}
	if fs.NArg() != 2 {
		return fail("rootfs unpack: want ARCHIVE and DIR (usage: caisson rootfs unpack [--map MODE] ARCHIVE DIR)")
	}
	archive, err := filepath.Abs(fs.Arg(0))
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	dir, err := filepath.Abs(fs.Arg(1))
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	if _, err := os.Stat(archive); err != nil {
		return fail("rootfs unpack: archive %s: %v", archive, errors.Unwrap(err))
	}
	created, err := prepareDir(dir)
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	exe, err := extractor()
	if err != nil {
		return fail("rootfs unpack: %v", err)
	}
	mode, _ := fs.GetString("map")
	code := unpackInto(exe, archive, dir, mode, "rootfs unpack")
	if code != 0 {
		// The extraction empties DIR when it fails; what it could not remove (or a killed extraction's partial
		// tree) belongs to subordinate ids, which the caller cannot remove directly.
		if created {
			_ = os.Remove(dir)
		}
		if ents, err := os.ReadDir(dir); err == nil && len(ents) > 0 {
			fmt.Fprintf(os.Stderr, "caisson: hint: %s holds a partial extraction; remove it with: caisson rm-tree %s\n",
				dir, rootfs.ShellQuote(dir))
		}
	}
	return code
}

// unpackInto extracts the image archive (or OCI layout directory) into the existing directory dir, inside a caisson
// sandbox (exe, caisson-image, bound read-only), as root of a user namespace that maps the caller's subordinate
// ranges (mode "auto") or only the caller ("single"): the owners the image gives its files land on the host as the
// mapped subordinate ids, so `caisson run --rootfs DIR` shows them as the image meant, and the caller needs no
// privilege. Only the archive (read-only) and dir (read-write) are visible to the extraction. It returns the exit
// code; on failure the extraction empties dir as far as it can.
func unpackInto(exe, archive, dir, mode, what string) int {
	runArgs := []string{"--no-cwd", "--map", mode, "--clearenv",
		"--ro-bind", rootfs.EscapeBind(archive) + ":" + innerArchive,
		"--ro-bind", rootfs.EscapeBind(exe) + ":" + innerBinary,
		"--bind", rootfs.EscapeBind(dir) + ":" + innerRoot,
		"--", innerBinary, innerArchive, innerRoot}
	r, err := config.ParseRun(runArgs, config.Environment{Cwd: "/", UID: uint32(os.Getuid()), GID: uint32(os.Getgid())})
	if err != nil {
		return fail("%s: %v", what, err)
	}
	return parent.Run(r)
}

// prepareDir makes sure dir is an empty directory, creating it when missing (created is then true).
func prepareDir(dir string) (created bool, err error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil {
		return false, err
	}
	if len(ents) > 0 {
		return false, fmt.Errorf("%s is not empty (to unpack there again, remove it first with: caisson rm-tree %s)",
			dir, rootfs.ShellQuote(dir))
	}
	return false, nil
}
