package imagecmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/unshare"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

const pullUsage = "caisson rootfs pull [--platform OS/ARCH] [--insecure] [--force] [--map MODE] IMAGE DIR"

// pullHelp is `caisson rootfs pull --help`.
const pullHelp = `Usage: ` + pullUsage + `

Fetches IMAGE from its registry and unpacks it into DIR as 'caisson rootfs unpack' does (owners into your
subordinate range, entries that would escape DIR refused), for 'caisson run --rootfs DIR [--overlay]'.

IMAGE is [REGISTRY/]NAME[:TAG|@DIGEST]: Docker Hub when no registry is named (alpine is
docker.io/library/alpine:latest). A multi-platform image gives this machine's platform, or the one --platform
names; an image made for another platform is refused unless --platform names it. Every blob is checked against
its digest. Credentials come from $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json,
~/.config/containers/auth.json or ~/.docker/config.json (what podman login and docker login write), the proxy from
$HTTPS_PROXY, $HTTP_PROXY and $NO_PROXY. On a terminal a progress bar shows the layers' transfer.

The image is fetched and unpacked beside DIR (.NAME.pull-* and .NAME.root-* in its parent directory) and moved to
DIR only when complete: an interrupted or failed pull leaves DIR as it was. DIR may be missing or empty; a DIR
that holds anything is refused unless --force, which replaces it.

Flags:
      --platform OS/ARCH[/VARIANT]   the platform to pull (default: this machine's)
      --insecure                     allow plain HTTP and TLS certificates that do not verify
      --force                        replace a DIR that is not empty
      --map MODE                     ID mapping of the extraction: auto (subordinate ranges; owners kept) or single
`

// PullFlags defines the flags of `caisson rootfs pull` (read by PullMain, completion and the man pages).
func PullFlags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("rootfs pull", pflag.ContinueOnError)
	fs.String("platform", "", "the platform `OS/ARCH[/VARIANT]` to pull (default: this machine's)")
	fs.Bool("insecure", false, "allow plain HTTP and TLS certificates that do not verify")
	fs.Bool("force", false, "replace a DIR that is not empty")
	fs.String("map", "auto", "ID mapping `MODE` of the extraction: auto (subordinate ranges; owners kept) or single (everything yours)")
	flagmeta.Values(fs, "map", string(idmap.ModeAuto), string(idmap.ModeSingle))
	return fs
}

// PullMain runs `caisson rootfs pull`: caisson-image fetches the image on the host, as the caller, into an OCI
// layout beside DIR; unpackInto extracts it into a new directory beside DIR; that directory then replaces DIR.
// SIGINT, SIGTERM and SIGHUP stop the pull at any step; what it wrote is removed.
func PullMain(args []string) int {
	fs := PullFlags()
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Print(pullHelp)
			return 0
		}
		return fail("rootfs pull: %v (usage: %s)", err, pullUsage)
	}
	if fs.NArg() != 2 {
		return fail("rootfs pull: want IMAGE and DIR (usage: %s)", pullUsage)
	}
	platform, _ := fs.GetString("platform")
	insecure, _ := fs.GetBool("insecure")
	force, _ := fs.GetBool("force")
	mode, _ := fs.GetString("map")
	image := fs.Arg(0)
	dir, err := filepath.Abs(fs.Arg(1))
	if err != nil {
		return fail("rootfs pull: %v", err)
	}
	replace, err := checkPullTarget(dir, force)
	if err != nil {
		return fail("rootfs pull: %v", err)
	}
	exe, err := extractor()
	if err != nil {
		return fail("rootfs pull: %v", err)
	}
	p := &puller{dir: dir}
	defer p.cleanup()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			p.interrupt(s.(syscall.Signal))
		}
	}()

	// 1. Fetch, on the host, as the caller.
	if p.layout, err = os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".pull-"); err != nil {
		return fail("rootfs pull: %v", err)
	}
	fetchArgs := []string{"pull"}
	if platform != "" {
		fetchArgs = append(fetchArgs, "--platform", platform)
	}
	if insecure {
		fetchArgs = append(fetchArgs, "--insecure")
	}
	fetchArgs = append(fetchArgs, "--", image, filepath.Join(p.layout, "oci"))
	if code := p.fetch(exe, fetchArgs); code != 0 {
		return code
	}
	// 2. Unpack beside DIR.
	if p.root, err = os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".root-"); err != nil {
		return fail("rootfs pull: %v", err)
	}
	if err := os.Chmod(p.root, 0o755); err != nil {
		return fail("rootfs pull: %v", err)
	}
	code := unpackInto(exe, filepath.Join(p.layout, "oci"), p.root, mode, "rootfs pull")
	if sig := p.signal(); sig != 0 {
		return p.interrupted(sig)
	}
	if code != 0 {
		return code
	}
	// 3. Replace DIR.
	if err := p.install(replace); err != nil {
		return fail("rootfs pull: %v", err)
	}
	if _, err := unix.IoctlGetTermios(2, unix.TCGETS); err == nil {
		fmt.Fprintf(os.Stderr, "caisson: pulled %s into %s\n", p.pulled, dir)
	}
	return 0
}

// checkPullTarget checks DIR before anything is fetched: a directory or nothing; one that is not empty only with
// force (replace is then true).
func checkPullTarget(dir string, force bool) (replace bool, err error) {
	st, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Dir(dir)); err != nil {
			return false, fmt.Errorf("%s: %w", filepath.Dir(dir), errors.Unwrap(err))
		}
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if !st.IsDir() {
		return false, fmt.Errorf("%s exists and is not a directory", dir)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(ents) > 0 && !force {
		return false, fmt.Errorf("%s is not empty (to replace it: --force; to remove it: caisson rm-tree %s)", dir, rootfs.ShellQuote(dir))
	}
	return len(ents) > 0, nil
}

// puller holds a pull's temporary directories, its fetch process and the signal that stopped it.
type puller struct {
	dir, layout, root string
	pulled            string
	mu                sync.Mutex
	proc              *os.Process    // the fetch process while it runs
	sig               syscall.Signal // the first signal received
}

// interrupt records the first signal and passes it to the fetch process (the unpacking sandbox gets it from
// parent.Run, which forwards signals to it).
func (p *puller) interrupt(s syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sig == 0 {
		p.sig = s
	}
	if p.proc != nil {
		_ = p.proc.Signal(s)
	}
}

func (p *puller) signal() syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sig
}

// interrupted reports the stop and returns the status of a process ended by sig.
func (p *puller) interrupted(sig syscall.Signal) int {
	fmt.Fprintf(os.Stderr, "caisson: rootfs pull: interrupted by %s: %s is as it was\n", unix.SignalName(sig), p.dir)
	return 128 + int(sig)
}

// fetch runs caisson-image pull and keeps what it printed (the pulled reference with its digest).
func (p *puller) fetch(exe string, args []string) int {
	var out bytes.Buffer
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail("rootfs pull: start %s: %v", exe, err)
	}
	p.mu.Lock()
	p.proc = cmd.Process
	if p.sig != 0 {
		_ = cmd.Process.Signal(p.sig)
	}
	p.mu.Unlock()
	err := cmd.Wait()
	p.mu.Lock()
	p.proc = nil
	p.mu.Unlock()
	if sig := p.signal(); sig != 0 {
		return p.interrupted(sig)
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode() // it said why
		}
		return fail("rootfs pull: %s: %v", exe, err)
	}
	p.pulled = strings.TrimSpace(out.String())
	return 0
}

// install moves the unpacked root to DIR; with replace, DIR's old content goes first (to a name beside it, then
// removed as rm-tree removes it).
func (p *puller) install(replace bool) error {
	if !replace {
		// An empty DIR is replaced by rename(2) itself (os.Rename refuses any existing directory).
		if err := unix.Rename(p.root, p.dir); err != nil {
			return fmt.Errorf("move the image into place: %w", err)
		}
		p.root = ""
		return nil
	}
	old, err := os.MkdirTemp(filepath.Dir(p.dir), "."+filepath.Base(p.dir)+".old-")
	if err != nil {
		return err
	}
	if err := unix.Rename(p.dir, old); err != nil {
		os.Remove(old)
		return fmt.Errorf("move %s aside: %w", p.dir, err)
	}
	if err := unix.Rename(p.root, p.dir); err != nil {
		if rerr := unix.Rename(old, p.dir); rerr != nil {
			return fmt.Errorf("move the image into place: %w (and %s's old content is left in %s: %v)", err, p.dir, old, rerr)
		}
		return fmt.Errorf("move the image into place: %w", err)
	}
	p.root = ""
	removeTree(old)
	return nil
}

// cleanup removes the pull's temporary directories: the layout (the caller's) and the unpacked root (files of
// subordinate ids: removed as rm-tree does).
func (p *puller) cleanup() {
	if p.layout != "" {
		_ = os.RemoveAll(p.layout)
	}
	if p.root != "" {
		if err := os.Remove(p.root); err != nil && !errors.Is(err, os.ErrNotExist) {
			removeTree(p.root)
		}
	}
}

// removeTree removes a tree that may hold files of subordinate ids; it says so when it cannot.
func removeTree(dir string) {
	if err := os.RemoveAll(dir); err == nil {
		return
	}
	if unshare.RmTreeMain([]string{dir}) != 0 {
		fmt.Fprintf(os.Stderr, "caisson: hint: remove %s with: caisson rm-tree %s\n", dir, rootfs.ShellQuote(dir))
	}
}
