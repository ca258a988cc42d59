package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRootFlags(t *testing.T) {
	env := testEnv(t)
	root := t.TempDir()
	r, err := ParseRun([]string{"--rootfs", root, "--", "sh"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sandbox.Rootfs.Root != root || r.Sandbox.Workdir != "/" || r.Sandbox.Rootfs.Overlay {
		t.Errorf("--rootfs: %+v workdir %q", r.Sandbox.Rootfs, r.Sandbox.Workdir)
	}
	for _, op := range r.Sandbox.Rootfs.Ops {
		if op.Dst == env.Cwd {
			t.Errorf("--rootfs must not bind the current directory")
		}
	}
	r, err = ParseRun([]string{"--persist", "keep", "--", "sh"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if r.Sandbox.Rootfs.Persist != filepath.Join(env.Cwd, "keep") || !r.Sandbox.Rootfs.Overlay {
		t.Errorf("--persist: %+v", r.Sandbox.Rootfs)
	}
	r, err = ParseRun([]string{"--overlay", "--overlay-size", "2m", "--", "sh"}, env)
	if err != nil || r.Sandbox.Rootfs.OverlaySize != 2<<20 {
		t.Errorf("--overlay-size: %+v %v", r, err)
	}
	file := filepath.Join(env.Cwd, "f")
	os.WriteFile(file, nil, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--rootfs", "/no/such", "sh"}, "/no/such"},
		{[]string{"--rootfs", file, "sh"}, "not a directory"},
		{[]string{"--read-only", "sh"}, "--rootfs"},
		{[]string{"--rootfs", root, "--read-only", "--overlay", "sh"}, "cannot be used together"},
		{[]string{"--persist", file, "sh"}, "not a directory"},
		{[]string{"--rootfs", root, "--persist", root + "/p", "sh"}, "inside"},
		{[]string{"--overlay-size", "1m", "sh"}, "--overlay"},
		{[]string{"--overlay", "--overlay-size", "0", "sh"}, "positive"},
	} {
		_, err := ParseRun(tc.args, env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: want an error naming %q, got %v", tc.args, tc.want, err)
		}
	}
}
