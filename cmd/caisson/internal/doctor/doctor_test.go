package doctor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/caisson-sandbox/caisson/slirp"
)

// The fix doctor prints for a network driver names what is actually wrong: a missing helper, an unusable
// /dev/net/tun, or a helper too old for a flag caisson needs.
func TestNetCheckFix(t *testing.T) {
	fail := errors.New("slirp: cannot work")
	for _, tc := range []struct {
		name string
		f    slirp.Features
		want string
	}{
		{"not installed", slirp.Features{Mode: slirp.ModePasta, Err: fail}, "apt-get install passt"},
		{"not installed", slirp.Features{Mode: slirp.ModeSlirp4netns, Err: fail}, "apt-get install slirp4netns"},
		{"no tun", slirp.Features{Mode: slirp.ModePasta, Path: "/usr/bin/pasta", Missing: []string{"/dev/net/tun"}, Err: fail},
			"see /dev/net/tun above"},
		{"too old", slirp.Features{Mode: slirp.ModeSlirp4netns, Path: "/usr/bin/slirp4netns", Missing: []string{"--disable-host-loopback"}, Err: fail},
			"install a newer slirp4netns"},
		{"works", slirp.Features{Mode: slirp.ModePasta, Path: "/usr/bin/pasta", Version: "2023"}, ""},
	} {
		c := netCheck(tc.f)
		if c.Fix != tc.want || (tc.want == "") != (c.Status == OK) {
			t.Errorf("%s (%s): status %s, fix %q, want %q", tc.name, tc.f.Mode, c.Status, c.Fix, tc.want)
		}
	}
}

// The distribution knobs that forbid unprivileged user namespaces are reported with their fix (catalogue R28, M12):
// Debian's unprivileged_userns_clone=0 and max_user_namespaces=0 fail, Ubuntu's AppArmor restriction warns with
// the profile that lifts it; absent knobs give no line.
func TestUsernsSysctls(t *testing.T) {
	root := t.TempDir()
	write := func(name, v string) {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := usernsSysctlsIn(root); len(got) != 0 {
		t.Errorf("no knobs: want no check, got %+v", got)
	}
	write("user/max_user_namespaces", "0")
	write("kernel/unprivileged_userns_clone", "0")
	write("kernel/apparmor_restrict_unprivileged_userns", "1")
	got := map[string]Check{}
	for _, c := range usernsSysctlsIn(root) {
		got[c.Name] = c
	}
	for name, want := range map[string]struct {
		status Status
		fix    string
	}{
		"user.max_user_namespaces":  {Fail, "sysctl -w user.max_user_namespaces="},
		"unprivileged_userns_clone": {Fail, "sysctl -w kernel.unprivileged_userns_clone=1"},
		"apparmor userns":           {Warn, "userns,"},
	} {
		c, ok := got[name]
		if !ok || c.Status != want.status || !strings.Contains(c.Fix, want.fix) {
			t.Errorf("%s: %+v, want status %s and a fix with %q", name, c, want.status, want.fix)
		}
	}
	write("user/max_user_namespaces", "15000")
	write("kernel/unprivileged_userns_clone", "1")
	write("kernel/apparmor_restrict_unprivileged_userns", "0")
	for _, c := range usernsSysctlsIn(root) {
		if c.Status != OK {
			t.Errorf("permissive knobs: %+v, want ok", c)
		}
	}
}

// What the probe found refused becomes a warning (run degrades) or, for mounts, a failure, each with the engine's
// fix; a fresh /proc refused is a warning since run falls back to the outer one.
func TestOuterChecks(t *testing.T) {
	o := outer.Sandbox{Engine: outer.Podman, Evidence: outer.PodmanMarker, Rootless: true, UserNS: true, SeccompFilters: 1}
	refused := probeResult{Hostname: "operation not permitted", Sys: "operation not permitted", Proc: "operation not permitted",
		MountAPI: "fsopen: operation not permitted", Setns: "operation not permitted", Seccomp: "function not implemented"}
	for _, tc := range []struct {
		c      Check
		status Status
		fix    string
	}{
		{refused.hostnameCheck(o), Warn, "podman run --security-opt seccomp=ci-container-seccomp.json"},
		{refused.sysCheck(o), Warn, "podman run --security-opt unmask=ALL"},
		{refused.procCheck(o), Warn, "podman run --security-opt unmask=ALL"},
		{refused.mountsCheck(o), Fail, "podman run --security-opt seccomp="},
		{refused.setnsCheck(o), Warn, "podman run --security-opt seccomp="},
		{refused.seccompCheck(o), Warn, "podman run --security-opt seccomp="},
		{probeResult{}.hostnameCheck(o), OK, ""},
		{probeResult{}.seccompCheck(o), OK, ""},
		{probeResult{StartErr: "operation not permitted"}.hostnameCheck(o), Warn, ""},
		{probeResult{StartErr: "operation not permitted"}.usernsCheck(o), Fail, "podman run --security-opt seccomp="},
	} {
		if tc.c.Status != tc.status || !strings.HasPrefix(tc.c.Fix, tc.fix) || (tc.fix == "") != (tc.c.Fix == "") {
			t.Errorf("%s: %s %q fix %q; want %s with fix %q", tc.c.Name, tc.c.Status, tc.c.Detail, tc.c.Fix, tc.status, tc.fix)
		}
	}
	if c := containerCheck(o); c.Status != OK || !strings.Contains(c.Detail, "podman (/run/.containerenv), rootless, 1 seccomp filter") {
		t.Errorf("container check: %+v", c)
	}
	if c := containerCheck(outer.Sandbox{}); !strings.Contains(c.Detail, "runs on the host") {
		t.Errorf("container check on a host: %+v", c)
	}
}

// doctor lists every problem of the subordinate-id files, other users' lines included.
func TestSubIDLinesCheck(t *testing.T) {
	if c := subIDLinesCheck(&idmap.Plan{}); c.Status != OK {
		t.Errorf("no warnings: %+v", c)
	}
	c := subIDLinesCheck(&idmap.Plan{Warnings: []string{"/etc/subuid:2: mine"}, OtherWarnings: []string{"/etc/subuid:7: bob's"}})
	if c.Status != Warn || !strings.Contains(c.Detail, "/etc/subuid:2: mine; /etc/subuid:7: bob's") ||
		!strings.Contains(c.Detail, "1 of these are other users' lines") || c.Fix == "" {
		t.Errorf("with warnings: %+v", c)
	}
}
