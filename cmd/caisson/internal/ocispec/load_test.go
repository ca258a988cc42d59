package ocispec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/rootfs"
)

// base is a minimal valid spec with its bundle.
func base(t *testing.T) (*specs.Spec, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &specs.Spec{
		Version: "1.0.2-dev",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"},
			Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"}}},
		Hostname: "h",
		Mounts: []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "mount"}, {Type: "uts"}, {Type: "ipc"}, {Type: "network"}}},
	}, dir
}

func TestLoadValid(t *testing.T) {
	s, dir := base(t)
	s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "1"}
	s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}}
	p, err := Load(s, dir, "c1", Options{LastCap: 40})
	if err != nil {
		t.Fatal(err)
	}
	if p.Root != filepath.Join(dir, "rootfs") || p.Hostname != "h" || !p.DefaultDevices {
		t.Errorf("plan: root %q hostname %q defaultDevices %v", p.Root, p.Hostname, p.DefaultDevices)
	}
	want := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET)
	if p.NS.New != want || p.NS.Own != want {
		t.Errorf("namespaces new %#x own %#x, want %#x", p.NS.New, p.NS.Own, want)
	}
	if p.Process.Caps.Bounding != 1<<5 || p.Process.Caps.Effective != 0 {
		t.Errorf("caps %+v", p.Process.Caps)
	}
	if len(p.Sysctl) != 2 || p.Sysctl[0][0] != "kernel.shmmax" {
		t.Errorf("sysctl %v: want both, sorted", p.Sysctl)
	}
	if len(p.Process.Rlimits) != 1 || p.Process.Rlimits[0].Resource != unix.RLIMIT_NOFILE {
		t.Errorf("rlimits %v", p.Process.Rlimits)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		edit func(*specs.Spec)
		want string
	}{
		{func(s *specs.Spec) { s.Root = nil }, "root.path: missing"},
		{func(s *specs.Spec) { s.Root.Path = "nope" }, "root.path: "},
		{func(s *specs.Spec) { s.Process = nil }, "process: missing"},
		{func(s *specs.Spec) { s.Process.Args = nil }, "process.args: missing"},
		{func(s *specs.Spec) { s.Process.Cwd = "rel" }, "process.cwd"},
		{func(s *specs.Spec) { s.Process.Env = []string{"NOEQUALS"} }, "process.env[0]"},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, `linux.namespaces[5].type: unknown namespace type "bogus"`},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "pid"})
		}, "listed twice"},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "cgroup", Path: "rel/path"})
		}, "must be an absolute path"},
		{func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
		}, "mappings given without a user namespace"},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "user"})
		}, "needs uidMappings and gidMappings"},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "pid"}, {Type: "mount"}}
		}, "hostname: cannot be set"},
		{func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.swappiness": "1"} }, "not a namespaced sysctl"},
		{func(s *specs.Spec) { s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}} }, "need a new time namespace"},
		{func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_TEST"}} }, `unknown resource "RLIMIT_TEST"`},
		{func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE"}, {Type: "RLIMIT_NOFILE"}}
		}, "given twice"},
		{func(s *specs.Spec) { s.Process.Capabilities.Bounding = []string{"CAP_TEST"} }, `unknown capability "CAP_TEST"`},
		{func(s *specs.Spec) { s.Process.SelinuxLabel = "x" }, "process.selinuxLabel"},
		{func(s *specs.Spec) { s.Process.ApparmorProfile = "p" }, "does not enforce AppArmor"},
		{func(s *specs.Spec) { s.Linux.MountLabel = "x" }, "linux.mountLabel"},
		{func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} }, "linux.intelRdt"},
		{func(s *specs.Spec) { s.Linux.RootfsPropagation = "weird" }, "linux.rootfsPropagation"},
		{func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: "BSD"} }, "linux.personality.domain"},
		{func(s *specs.Spec) { s.Mounts[0].Destination = "relative" }, "mounts[0]: destination"},
		{func(s *specs.Spec) { s.Mounts[1].Options = []string{"idmap"} }, "idmapped mounts are not supported"},
		{func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/etc/x", Type: "c"}} }, "linux.devices[0].path"},
		{func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/x", Type: "z"}} }, "linux.devices[0].type"},
		{func(s *specs.Spec) { s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "rel"}}} }, "hooks.prestart[0].path"},
		{func(s *specs.Spec) {
			zero := 0
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true", Timeout: &zero}}}
		}, "hooks.poststop[0].timeout"},
		{func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: "pid"}, {Type: "uts"}}
		}, "no mount namespace of its own"},
		{func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_WHATEVER"}
		}, "linux.seccomp.defaultAction"},
	}
	for i, c := range cases {
		s, dir := base(t)
		c.edit(s)
		_, err := Load(s, dir, "c", Options{LastCap: 40})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "config.json: ") {
			t.Errorf("case %d: err = %v, want one naming %q", i, err, c.want)
		}
	}
}

func TestReadSpecErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := ReadSpec(dir); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing config.json: %v", err)
	}
	for body, want := range map[string]string{
		"{\n\"ociVersion\": \"1.0.0\",\n  x": "config.json:3: not valid JSON",
		`{"ociVersion": "2.1.0"}`:            "major version 2 is not supported",
		`{"ociVersion": "one"}`:              "not a semantic version",
		`{"ociVersion": 5}`:                  "ociVersion: cannot use JSON number",
		`{"ociVersion": "1.0.0"} {}`:         "trailing data",
	} {
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(body), 0o644)
		if _, err := ReadSpec(dir); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", body, err, want)
		}
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"ociVersion": "1.2.0-rc.1", "unknownField": {"a": 1}}`), 0o644)
	if _, err := ReadSpec(dir); err != nil {
		t.Errorf("unknown properties must be ignored: %v", err)
	}
}

func TestParseMountOptions(t *testing.T) {
	m, err := rootfs.ParseMount("bind", "data", "/mnt", []string{"rbind", "ro", "nosuid", "rslave", "rnoexec", "relatime"}, "/bundle")
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != "bind" || !m.Recursive || m.Source != "/bundle/data" || m.AttrSet&unix.MOUNT_ATTR_RDONLY == 0 ||
		m.AttrSet&unix.MOUNT_ATTR_NOSUID == 0 || m.Propagation != unix.MS_SLAVE || !m.RecPropagation ||
		m.RecAttrSet != unix.MOUNT_ATTR_NOEXEC {
		t.Errorf("bind mount %+v", m)
	}
	m, err = rootfs.ParseMount("tmpfs", "tmpfs", "/dev", []string{"nosuid", "mode=755", "size=65536k", "sync", "rw"}, "/b")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(m.Data, ",") != "mode=755,size=65536k" || strings.Join(m.SBFlags, ",") != "sync" || m.AttrClr&unix.MOUNT_ATTR_RDONLY == 0 {
		t.Errorf("tmpfs %+v", m)
	}
	for _, bad := range [][]string{{"bind", "weirdopt"}, {"idmap"}} {
		if _, err := rootfs.ParseMount("", "/x", "/y", bad, "/b"); err == nil {
			t.Errorf("options %v accepted", bad)
		}
	}
	if _, err := rootfs.ParseMount("proc", "proc", "proc", nil, "/b"); err == nil {
		t.Errorf("a relative destination was accepted")
	}
	if _, err := rootfs.ParseMount("sysfs", "sysfs", "/sys", []string{"tmpcopyup"}, "/b"); err == nil {
		t.Errorf("tmpcopyup on sysfs was accepted")
	}
}

// The plan crosses to the stage gob-encoded: every field must survive.
func TestPlanJSONRoundTrip(t *testing.T) {
	s, dir := base(t)
	p, err := Load(s, dir, "c1", Options{LastCap: 40})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var q Plan
	if err := json.Unmarshal(b, &q); err != nil || q.Root != p.Root || len(q.Mounts) != len(p.Mounts) {
		t.Errorf("round trip: %v %+v", err, q)
	}
}
