package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/cgroup"
)

func TestParseRlimit(t *testing.T) {
	for _, tc := range []struct {
		in         string
		soft, hard uint64
		err        string
	}{
		{"nofile=1024", 1024, 1024, ""},
		{"nofile=1024:4096", 1024, 4096, ""},
		{"nproc=64:unlimited", 64, RlimInfinity, ""},
		{"cpu=unlimited", RlimInfinity, RlimInfinity, ""},
		{"as=512m", 512 << 20, 512 << 20, ""},
		{"fsize=4k:1g", 4 << 10, 1 << 30, ""},
		{"core=0", 0, 0, ""},
		{"nofile=0", 0, 0, ""},
		{"nofile", 0, 0, "NAME=SOFT"},
		{"=5", 0, 0, "NAME=SOFT"},
		{"stack=1", 0, 0, "unknown resource"},
		{"nofile=10:5", 0, 0, "above the hard limit"},
		{"nofile=-1", 0, 0, "invalid value"},
		{"nofile=1k", 0, 0, "invalid value"},
		{"nofile=18446744073709551615", 0, 0, "invalid value"},
		{"as=12x", 0, 0, "invalid size"},
		{"as=99999999999g", 0, 0, "too large"},
		{"cpu=", 0, 0, "invalid value"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			rl, err := ParseRlimit(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want an error containing %q, got %v (%+v)", tc.err, err, rl)
				}
				return
			}
			if err != nil || rl.Soft != tc.soft || rl.Hard != tc.hard {
				t.Fatalf("got %+v, %v; want %d:%d", rl, err, tc.soft, tc.hard)
			}
		})
	}
}

func TestParseCap(t *testing.T) {
	for _, tc := range []struct {
		in, name string
		nr       int
	}{
		{"CAP_NET_ADMIN", "CAP_NET_ADMIN", 12}, {"net_admin", "CAP_NET_ADMIN", 12}, {" Cap_Sys_Admin ", "CAP_SYS_ADMIN", 21},
		{"chown", "CAP_CHOWN", 0}, {"checkpoint_restore", "CAP_CHECKPOINT_RESTORE", 40}, {"all", "ALL", -1}, {"ALL", "ALL", -1},
	} {
		name, nr, err := ParseCap(tc.in)
		if err != nil || name != tc.name || nr != tc.nr {
			t.Errorf("ParseCap(%q) = %q, %d, %v; want %q, %d", tc.in, name, nr, err, tc.name, tc.nr)
		}
	}
	for _, bad := range []string{"", "CAP_", "net-admin", "CAP_FLY", "41"} {
		if _, _, err := ParseCap(bad); err == nil {
			t.Errorf("ParseCap(%q): want an error", bad)
		}
	}
	if len(CapNames) != 41 || CapNames[21] != "CAP_SYS_ADMIN" || CapNames[38] != "CAP_PERFMON" {
		t.Errorf("capability table out of order")
	}
}

func TestSecurityFlags(t *testing.T) {
	env := testEnv(t)
	r, err := ParseRun([]string{"true"}, env)
	if err != nil {
		t.Fatal(err)
	}
	if s := r.Sandbox.Security; s.Posture != PostureDefault || s.Seccomp != "default" || s.Landlock != LandlockOff {
		t.Errorf("defaults: %+v", s)
	}
	r, err = ParseRun([]string{"--security", "strict", "--cap-add", "net_admin,CAP_NET_RAW", "--cap-add", "net_admin",
		"--cap-drop", "net_raw", "--landlock", "--rw", "/data/../srv", "--rlimit", "nofile=64:128", "--rlimit", "nproc=10", "true"}, env)
	if err != nil {
		t.Fatal(err)
	}
	s := r.Sandbox.Security
	if s.Posture != PostureStrict || s.Seccomp != "strict" || s.Landlock != LandlockOn ||
		strings.Join(s.CapAdd, ",") != "CAP_NET_ADMIN,CAP_NET_RAW" || strings.Join(s.CapDrop, ",") != "CAP_NET_RAW" ||
		strings.Join(s.RW, ",") != "/srv" || len(s.Rlimits) != 2 || s.Rlimits[0].Soft != 64 || s.Rlimits[0].Hard != 128 {
		t.Errorf("strict flags: %+v", s)
	}
	// --landlock takes an optional value; the command after it is not eaten.
	r, err = ParseRun([]string{"--landlock=best-effort", "--seccomp", "unconfined", "sh"}, env)
	if err != nil || r.Sandbox.Security.Landlock != LandlockBestEffort || r.Sandbox.Security.Seccomp != "unconfined" || r.Sandbox.Args[0] != "sh" {
		t.Errorf("--landlock=best-effort: %v %+v", err, r)
	}
	r, err = ParseRun([]string{"--landlock", "sh"}, env)
	if err != nil || r.Sandbox.Security.Landlock != LandlockOn || r.Sandbox.Args[0] != "sh" {
		t.Errorf("--landlock sh: %v %+v", err, r)
	}
	// The strict posture brings its own Landlock unless --landlock says otherwise; the default posture has none.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--security", "strict"}, LandlockAuto},
		{[]string{"--security", "strict", "--landlock=off"}, LandlockOff},
		{[]string{"--landlock=off", "--security", "strict"}, LandlockOff},
		{[]string{"--security", "strict", "--landlock"}, LandlockOn},
		{[]string{"--security", "strict", "--landlock=best-effort"}, LandlockBestEffort},
		{[]string{"--landlock=off"}, LandlockOff},
	} {
		r, err = ParseRun(append(c.args, "true"), env)
		if err != nil || r.Sandbox.Security.Landlock != c.want {
			t.Errorf("%v: Landlock %q (%v), want %q", c.args, r.Sandbox.Security.Landlock, err, c.want)
		}
	}
	// A JSON profile is read and checked by the parent and sent as data.
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.json")
	os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), 0o644)
	r, err = ParseRun([]string{"--seccomp", prof, "true"}, env)
	if err != nil || r.Sandbox.Security.Seccomp != prof || string(r.Sandbox.Security.SeccompJSON) != `{"defaultAction":"SCMP_ACT_ALLOW"}` {
		t.Errorf("--seccomp FILE: %v %+v", err, r.Sandbox.Security)
	}
}

func TestSecurityFlagErrors(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	badProf := filepath.Join(dir, "bad.json")
	os.WriteFile(badProf, []byte(`{"defaultAction":"SCMP_ACT_NOPE"}`), 0o644)
	old := CgroupHost
	defer func() { CgroupHost = old }()
	// memory is offered by a group that does not exist (so it is not writable), pids by nobody.
	CgroupHost = func() (*cgroup.Host, error) {
		return &cgroup.Host{V2: &cgroup.Place{Dir: dir + "/no-such-group", Controllers: []string{"memory", "cpu"}}}, nil
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"posture", []string{"--security", "paranoid"}, "--security"},
		{"profile name", []string{"--seccomp", "nope"}, "--seccomp"},
		{"profile empty", []string{"--seccomp", ""}, "--seccomp"},
		{"profile missing", []string{"--seccomp", dir + "/missing.json"}, "--seccomp"},
		{"profile invalid", []string{"--seccomp", badProf}, "defaultAction"},
		{"cap add", []string{"--cap-add", "CAP_FLY"}, "--cap-add"},
		{"cap drop", []string{"--cap-drop", "net_admin,,"}, "--cap-drop"},
		{"strict sys_resource", []string{"--security", "strict", "--cap-add", "sys_resource"}, "max_user_namespaces"},
		{"strict all", []string{"--security", "strict", "--cap-add", "all"}, "max_user_namespaces"},
		{"landlock mode", []string{"--landlock=maybe"}, "want on, best-effort or off"},
		{"rw without landlock", []string{"--rw", "/tmp"}, "--rw"},
		{"rw with strict's own landlock", []string{"--security", "strict", "--rw", "/srv"}, "every read-write mount"},
		{"rw with landlock off", []string{"--security", "strict", "--landlock=off", "--rw", "/srv"}, "--rw"},
		{"rw relative", []string{"--landlock", "--rw", "tmp"}, "--rw"},
		{"rlimit name", []string{"--rlimit", "stack=1"}, "--rlimit"},
		{"rlimit twice", []string{"--rlimit", "nofile=1", "--rlimit", "nofile=2"}, "twice"},
		{"rlimit order", []string{"--rlimit", "nproc=5:4"}, "--rlimit"},
		{"memory undelegated", []string{"--memory", "64m"}, "not delegated"},
		{"pids unavailable", []string{"--pids", "64"}, "--pids: the pids controller is not available"},
		{"cpus undelegated", []string{"--cpus", "0.5"}, "--cpus"},
		{"own group undelegated", []string{"--cgroup"}, "--cgroup"},
		{"join with limits", []string{"--join", "pod", "--memory", "64m"}, "--join"},
		{"memory tiny", []string{"--memory", "4k"}, "1 MiB"},
		{"cpus tiny", []string{"--cpus", "0.001"}, "--cpus"},
		{"memory value", []string{"--memory", "lots"}, "--memory"},
		{"pids value", []string{"--pids", "0"}, "--pids"},
		{"pids tiny", []string{"--pids", "8"}, "at least 16"},
		{"cpus value", []string{"--cpus", "-1"}, "--cpus"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRun(append(tc.args, "true"), env)
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("want a one-line UsageError naming %q, got %v", tc.want, err)
			}
		})
	}
	// A delegated group: the limits are parsed into Run and accepted.
	group := t.TempDir()
	CgroupHost = func() (*cgroup.Host, error) {
		return &cgroup.Host{V2: &cgroup.Place{Dir: group, Controllers: []string{"memory", "pids", "cpu"}}}, nil
	}
	for _, f := range []string{"cgroup.procs", "cgroup.subtree_control"} {
		os.WriteFile(filepath.Join(group, f), nil, 0o644)
	}
	r, err := ParseRun([]string{"--memory", "64m", "--pids", "100", "--cpus", "1.5", "--cgroup", "true"}, env)
	if err != nil || r.Limits != (cgroup.Limits{Memory: 64 << 20, Pids: 100, CPUs: 1.5}) || !r.OwnCgroup {
		t.Errorf("limits with delegation: %v %+v", err, r)
	}
}
