package config

import (
	"errors"
	"os"
	"path/filepath"

	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
)

// FSFlags are the file-system flags of `caisson run`.
type FSFlags struct {
	Workdir               string
	Binds, ROBinds, Tmpfs []string
	NoCwd                 bool
}

func (f *FSFlags) register(fs *pflag.FlagSet) {
	fs.StringVarP(&f.Workdir, "workdir", "w", "", "working directory inside (default: the current directory)")
	fs.StringArrayVar(&f.Binds, "bind", nil, "bind-mount SRC[:DST] read-write (repeatable; write a literal ':' as '\\:')")
	fs.StringArrayVar(&f.ROBinds, "ro-bind", nil, "bind-mount SRC[:DST] read-only (repeatable)")
	fs.StringArrayVar(&f.Tmpfs, "tmpfs", nil, "mount an empty tmpfs at DST[:size=N] (repeatable)")
	fs.BoolVar(&f.NoCwd, "no-cwd", false, "do not bind the current directory read-write into the sandbox")
}

// apply builds the sandbox's rootfs.Spec and working directory.
func (f *FSFlags) apply(fs *pflag.FlagSet, r *Run, env Environment) error {
	sb := &r.Sandbox
	sb.Rootfs = rootfs.Spec{
		NewPID: !sb.Shares("pid"), NewNet: !sb.Shares("net"),
		NewIPC: !sb.Shares("ipc"), NewCgroup: !sb.Shares("cgroup"),
		TTYGID: -1,
	}
	sb.Workdir = "/"
	if !f.NoCwd && env.Cwd != "" && env.Cwd != "/" {
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
	if fs.Changed("workdir") {
		if !filepath.IsAbs(f.Workdir) {
			return usagef("--workdir: %q must be an absolute path", f.Workdir)
		}
		sb.Workdir = filepath.Clean(f.Workdir)
	}
	return nil
}
