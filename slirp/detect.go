package slirp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Features is what Detect found out about a mode's helper, for a doctor
// command.
type Features struct {
	// Mode is the mode that was checked.
	Mode Mode
	// Path is the helper's absolute path ("" for none/host or when missing).
	Path string
	// Version is the helper's version as it reports it ("unknown version"
	// for Debian bookworm's pasta, which cannot report one).
	Version string
	// Have maps each probed feature (a command-line flag such as
	// "--config-net", or "/dev/net/tun") to whether it is available.
	Have map[string]bool
	// Missing lists the features this package needs and did not find.
	Missing []string
	// Err is non-nil when the mode cannot work: helper not installed, a
	// needed feature missing, /dev/net/tun unusable, or the probe failing.
	Err error
}

// driverInfo describes one helper binary.
type driverInfo struct {
	binary   string   // name looked up in $PATH
	pkg      string   // Debian/Fedora package that provides it
	required []string // flags this package uses unconditionally
	optional []string // flags used when present
}

var drivers = map[Mode]driverInfo{
	ModePasta: {
		binary: "pasta",
		pkg:    "passt",
		required: []string{"--foreground", "--quiet", "--stderr", "--pid", "--config-net", "--ns-ifname",
			"--mtu", "--address", "--netmask", "--gateway", "--dns-forward", "--no-map-gw", "--ipv4-only",
			"--tcp-ports", "--udp-ports", "--tcp-ns", "--udp-ns"},
		optional: []string{"--host-lo-to-ns-lo", "--map-host-loopback", "--map-guest-addr"},
	},
	ModeSlirp4netns: {
		binary: "slirp4netns",
		pkg:    "slirp4netns",
		required: []string{"--configure", "--mtu", "--ready-fd", "--exit-fd", "--disable-host-loopback",
			"--netns-type"},
		optional: []string{"--enable-sandbox", "--enable-seccomp", "--cidr"},
	},
}

// notFound wraps a failed $PATH lookup with the package to install.
func notFound(d driverInfo, err error) error {
	return fmt.Errorf("slirp: %s not found (install the %q package): %w", d.binary, d.pkg, err)
}

// Detect checks the helper of a mode: the binary in $PATH (absolute path),
// its version, the command-line flags this package relies on (from its
// --help text) and whether /dev/net/tun can be opened. For ModeNone and
// ModeHost there is nothing to check. Each probe runs with a 3 s timeout.
func Detect(mode Mode) Features {
	f := Features{Mode: mode, Have: map[string]bool{}}
	d, ok := drivers[mode]
	if !ok {
		if !mode.valid() {
			_, f.Err = ParseMode(string(mode))
		}
		return f
	}
	path, err := exec.LookPath(d.binary)
	if err != nil {
		f.Err = notFound(d, err)
		return f
	}
	return detectPath(mode, path)
}

// detectPath is Detect for a given binary path.
func detectPath(mode Mode, path string) Features {
	d := drivers[mode]
	f := Features{Mode: mode, Path: path, Have: map[string]bool{}}
	if out, err := probe(path, "--version"); err == nil {
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		f.Version = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(line, d.binary), " version"))
	}
	help, err := probe(path, "--help")
	if err != nil && len(help) == 0 {
		f.Err = fmt.Errorf("slirp: %s --help: %w", path, err)
		return f
	}
	for _, flag := range append(append([]string(nil), d.required...), d.optional...) {
		f.Have[flag] = bytes.Contains(help, []byte(flag))
	}
	var problems []string
	for _, flag := range d.required {
		if !f.Have[flag] {
			f.Missing = append(f.Missing, flag)
		}
	}
	if len(f.Missing) > 0 {
		problems = append(problems, fmt.Sprintf("%s lacks %s (too old?)", path, strings.Join(f.Missing, ", ")))
	}
	tun, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	f.Have["/dev/net/tun"] = err == nil
	if err == nil {
		tun.Close()
	} else {
		f.Missing = append(f.Missing, "/dev/net/tun")
		problems = append(problems, fmt.Sprintf("/dev/net/tun is not usable (%v)", err))
	}
	if len(problems) > 0 {
		f.Err = fmt.Errorf("slirp: %s: %s", mode, strings.Join(problems, "; "))
	}
	return f
}

// probe runs path with one argument and returns its combined output.
func probe(path, arg string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, arg)
	cmd.WaitDelay = time.Second
	// A probe started by Prepare may still run when caisson ends (on an error): it goes with caisson.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd.CombinedOutput()
}

// featureCache remembers Detect results per binary for Start.
var featureCache sync.Map // path -> cachedFeatures

type cachedFeatures struct {
	mtime time.Time
	size  int64
	f     Features
}

// detectMu makes concurrent detections of one binary wait for the first (see Prepare).
var detectMu sync.Mutex

// cachedDetect is detectPath, remembered per path, size and mtime.
func cachedDetect(mode Mode, path string) Features {
	detectMu.Lock()
	defer detectMu.Unlock()
	st, err := os.Stat(path)
	if err != nil {
		return Features{Mode: mode, Path: path, Err: fmt.Errorf("slirp: %w", err)}
	}
	if v, ok := featureCache.Load(path); ok {
		c := v.(cachedFeatures)
		if c.mtime.Equal(st.ModTime()) && c.size == st.Size() && c.f.Mode == mode {
			return c.f
		}
	}
	f := detectPath(mode, path)
	featureCache.Store(path, cachedFeatures{mtime: st.ModTime(), size: st.Size(), f: f})
	return f
}

// Prepare runs, for a mode whose driver probes its helper's features (slirp4netns runs --version and --help, a
// few milliseconds), the probe now and keeps the result for Start. A caller that knows the mode early runs it in
// a goroutine while it creates the sandbox; Start then waits for it instead of probing again. It does nothing for
// the other modes or when the helper is missing (Start reports that).
func Prepare(mode Mode) {
	if mode != ModeSlirp4netns {
		return
	}
	if path, err := helperPath(mode, ""); err == nil {
		cachedDetect(mode, path)
	}
}
