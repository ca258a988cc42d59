package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
)

// FSFlags are the file-system flags of `caisson run`.
type FSFlags struct {
	Workdir               string
	Binds, ROBinds, Tmpfs []string
	NoCwd                 bool
	Rootfs, Persist       string
	OverlaySize           string
	ReadOnly, Overlay     bool
}

func (f *FSFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.Workdir, "workdir", "w", "", "working `DIR` inside (default: the current directory)")
	flagmeta.StringArrayVarP(fs, &f.Binds, "bind", "", "bind-mount `SRC[:DST]` read-write (repeatable; write a literal ':' as '\\:')")
	flagmeta.StringArrayVarP(fs, &f.ROBinds, "ro-bind", "", "bind-mount `SRC[:DST]` read-only (repeatable)")
	flagmeta.StringArrayVarP(fs, &f.Tmpfs, "tmpfs", "", "mount an empty tmpfs at `DST[:size=N]` (repeatable)")
	fs.BoolVar(&f.NoCwd, "no-cwd", false, "do not bind the current directory read-write into the sandbox")
	fs.StringVar(&f.Rootfs, "rootfs", "", "use `DIR` as the root instead of the read-only host view (read-write; the current directory is not bound)")
	fs.BoolVar(&f.ReadOnly, "read-only", false, "with --rootfs: mount DIR read-only")
	fs.BoolVar(&f.Overlay, "overlay", false, "make the root writable through an overlay (fuse-overlayfs for the host view when installed, so root's files are writable too); the changes vanish with the sandbox")
	fs.StringVar(&f.OverlaySize, "overlay-size", "", "with --overlay: room for the changes, `N` bytes with k, m or g (default: half the RAM)")
	fs.StringVar(&f.Persist, "persist", "", "keep the overlay's changes in `DIR` (created if missing) for later runs (implies --overlay)")
	for _, n := range []string{"bind", "ro-bind"} {
		flagmeta.Complete(fs, n, flagmeta.Files)
	}
	for _, n := range []string{"rootfs", "persist"} {
		flagmeta.Complete(fs, n, flagmeta.Dirs)
	}
}

// apply builds the sandbox's rootfs.Spec and working directory.
func (f *FSFlags) apply(fs *pflag.FlagSet, r *Run, env Environment) error {
	sb := &r.Sandbox
	sb.Rootfs = rootfs.Spec{
		NewPID: !sb.Shares("pid"), NewNet: !sb.Shares("net"),
		NewIPC: !sb.Shares("ipc"), NewCgroup: !sb.Shares("cgroup"),
		TTYGID: -1,
	}
	if err := f.applyRoot(&sb.Rootfs, env); err != nil {
		return err
	}
	sb.Workdir = "/"
	if !f.NoCwd && f.Rootfs == "" && env.Cwd != "" && env.Cwd != "/" {
		sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindBind, Src: env.Cwd, Dst: env.Cwd})
		sb.Workdir = env.Cwd
	}
	addBinds := func(flag string, vals []string, kind rootfs.Kind) error {
		for _, v := range vals {
			src, dst, err := rootfs.ParseBind(v)
			if err != nil {
				return usagef("--%s: %v", flag, err)
			}
			if !filepath.IsAbs(src) {
				src = filepath.Join(env.Cwd, src)
			}
			if _, err := os.Stat(src); err != nil {
				return usagef("--%s: source %s: %v", flag, src, errors.Unwrap(err))
			}
			sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: kind, Src: filepath.Clean(src), Dst: dst})
		}
		return nil
	}
	if err := addBinds("bind", f.Binds, rootfs.KindBind); err != nil {
		return err
	}
	if err := addBinds("ro-bind", f.ROBinds, rootfs.KindROBind); err != nil {
		return err
	}
	for _, v := range f.Tmpfs {
		dst, size, err := rootfs.ParseTmpfs(v)
		if err != nil {
			return usagef("--tmpfs: %v", err)
		}
		sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindTmpfs, Dst: dst, Size: size})
	}
	if f.Rootfs != "" && r.Net.Mode == "host" {
		// With the host's network, the host's resolver configuration serves the tree too. (With a network of its
		// own the parent writes /etc/hosts and /etc/resolv.conf.)
		if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			sb.Rootfs.Ops = append(sb.Rootfs.Ops, rootfs.Op{Kind: rootfs.KindFile, Dst: "/etc/resolv.conf", Optional: true, Data: b})
		}
	}
	if fs.Changed("workdir") {
		if !filepath.IsAbs(f.Workdir) {
			return usagef("--workdir: %q must be an absolute path", f.Workdir)
		}
		sb.Workdir = filepath.Clean(f.Workdir)
	}
	return nil
}

// applyRoot validates --rootfs, --read-only, --overlay, --overlay-size and --persist into the Spec.
func (f *FSFlags) applyRoot(spec *rootfs.Spec, env Environment) error {
	abs := func(p string) string {
		if !filepath.IsAbs(p) {
			p = filepath.Join(env.Cwd, p)
		}
		return filepath.Clean(p)
	}
	if f.Rootfs != "" {
		dir := abs(f.Rootfs)
		st, err := os.Stat(dir)
		if err != nil {
			return usagef("--rootfs: %s: %v", dir, errors.Unwrap(err))
		}
		if !st.IsDir() {
			return usagef("--rootfs: %s is not a directory", dir)
		}
		d, err := os.Open(dir)
		if err != nil {
			return usagef("--rootfs: %s: %v", dir, errors.Unwrap(err))
		}
		d.Close()
		spec.Root = dir
	}
	if f.ReadOnly {
		if f.Rootfs == "" {
			return usagef("--read-only needs --rootfs (the host view is read-only already)")
		}
		if f.Overlay || f.Persist != "" {
			return usagef("--read-only and --overlay/--persist cannot be used together")
		}
		spec.ReadOnly = true
	}
	if f.Persist != "" {
		p := abs(f.Persist)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return usagef("--persist: %s is not a directory", p)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return usagef("--persist: %s: %v", p, errors.Unwrap(err))
		}
		if spec.Root != "" && (p == spec.Root || strings.HasPrefix(p, spec.Root+"/")) {
			return usagef("--persist: %s is inside the --rootfs directory", p)
		}
		spec.Persist = p
	}
	spec.Overlay = f.Overlay || f.Persist != ""
	if spec.Overlay {
		// The driver is chosen by init (it needs the user namespace to see whose files the lower tree holds);
		// fuse-overlayfs is looked up here, in the caller's PATH.
		spec.FuseOverlayfs = rootfs.FindFuseOverlayfs(lookupEnv(env.Env, "PATH"))
		switch d := lookupEnv(env.Env, rootfs.DriverEnv); d {
		case "", "auto":
		case rootfs.DriverKernel, rootfs.DriverFuse:
			spec.OverlayDriver = d
		default:
			return usagef("%s=%q: want auto, %s or %s", rootfs.DriverEnv, d, rootfs.DriverKernel, rootfs.DriverFuse)
		}
	}
	if f.OverlaySize != "" {
		if !f.Overlay || f.Persist != "" {
			return usagef("--overlay-size needs --overlay without --persist (the changes then live on the host's disk)")
		}
		n, err := rootfs.ParseSize(f.OverlaySize)
		if err != nil {
			return usagef("--overlay-size: %v", err)
		}
		spec.OverlaySize = n
	}
	return nil
}
