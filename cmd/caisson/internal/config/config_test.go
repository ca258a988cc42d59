package config

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/spf13/pflag"
)

func testEnv(t *testing.T) Environment {
	return Environment{Cwd: t.TempDir(), Env: []string{"HOME=/home/u", "PATH=/bin", "SECRET=x"}, UID: 1000, GID: 1000}
}

func TestParseRunErrors(t *testing.T) {
	env := testEnv(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "no command"},
		{"empty command name", []string{"--", ""}, "empty"},
		{"unknown flag", []string{"--frob", "true"}, "--frob"},
		{"missing value", []string{"--hostname"}, "hostname"},
		{"bad map", []string{"--map", "x", "true"}, "--map"},
		{"bad share", []string{"--share", "net,mnt", "true"}, `"mnt"`},
		{"hostname slash", []string{"--hostname", "a/b", "true"}, "--hostname"},
		{"hostname 65 bytes", []string{"--hostname", strings.Repeat("a", 65), "true"}, "--hostname"},
		{"hostname with share uts", []string{"--share", "uts", "--hostname", "x", "true"}, "--share uts"},
		{"time offset garbage", []string{"--time-offset", "monotonic=1x", "true"}, "monotonic"},
		{"time offset 2^64", []string{"--time-offset", "boottime=18446744073709551616", "true"}, "boottime"},
		{"time offset too big", []string{"--time-offset", "boottime=9223372036854775807", "true"}, "boottime"},
		{"time offset twice", []string{"--time-offset", "boottime=1,boottime=2", "true"}, "twice"},
		{"time offset empty", []string{"--time-offset", "", "true"}, "empty"},
		{"time offset shared time", []string{"--share", "time", "--time-offset", "boottime=1", "true"}, "--share time"},
		{"bind missing source", []string{"--bind", "/no/such:/x", "true"}, "/no/such"},
		{"bind relative dst", []string{"--bind", "/tmp:rel", "true"}, "absolute"},
		{"bind two colons", []string{"--bind", "/a:/b:/c", "true"}, "':'"},
		{"tmpfs bad size", []string{"--tmpfs", "/x:size=0", "true"}, "positive"},
		{"tmpfs bad option", []string{"--tmpfs", "/x:mode=1", "true"}, "unknown option"},
		{"tmpfs relative", []string{"--tmpfs", "x", "true"}, "absolute"},
		{"workdir relative", []string{"--workdir", "x", "true"}, "--workdir"},
		{"env not k=v", []string{"--env", "FOO", "true"}, "--env"},
		{"bad net", []string{"--net", "bridge", "true"}, "--net"},
		{"publish with net host", []string{"--net", "host", "-p", "8080:80", "true"}, "--publish"},
		{"loopback without net", []string{"--allow-host-loopback", "true"}, "--allow-host-loopback"},
		{"net pasta with share net", []string{"--share", "net", "--net", "pasta", "true"}, "--share net"},
		{"deny-net without a network", []string{"--deny-net", "private", "true"}, "--deny-net need --net pasta"},
		{"allow-net with net host", []string{"--net", "host", "--allow-net", "all", "true"}, "--net host"},
		{"deny-net ipv6", []string{"--net", "pasta", "--deny-net", "::1", "true"}, "IPv4 only"},
		{"deny-net garbage", []string{"--net", "slirp4netns", "--deny-net", "lan", "true"}, `--deny-net: "lan"`},
		{"allow and deny the same", []string{"--net", "pasta", "--allow-net", "10.0.0.0/8", "--deny-net", "10.0.0.0/8", "true"}, "both name"},
		// C2: a conflict is found in either order.
		{"net host after publish", []string{"-p", "8080:80", "--net", "host", "true"}, "--publish"},
		{"share net after net pasta", []string{"--net", "pasta", "--share", "net", "true"}, "--share net"},
		{"shared time before time offset", []string{"--time-offset", "boottime=1", "--share", "time", "true"}, "--share time"},
		{"allow-host-loopback before net none", []string{"--allow-host-loopback", "--net", "none", "true"}, "--allow-host-loopback"},
		{"security twice", []string{"--security", "strict", "--security", "default", "true"}, `"--security" flag: given twice ("strict", then "default")`},
		{"hostname twice", []string{"--hostname", "a", "--hostname=b", "true"}, `"--hostname" flag: given twice`},
		{"workdir twice", []string{"-w", "/a", "--workdir", "/b", "true"}, `--workdir" flag: given twice`},
		{"map twice", []string{"--map", "single", "--map", "single", "true"}, `"--map" flag: given twice`},
		{"landlock twice", []string{"--landlock", "--landlock=best-effort", "true"}, `"--landlock" flag: given twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRun(tc.args, env)
			var ue *UsageError
			if !errors.As(err, &ue) {
				t.Fatalf("want a UsageError, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line naming %q", err, tc.want)
			}
		})
	}
}

func TestParseRunDefaults(t *testing.T) {
	env := testEnv(t)
	r, err := ParseRun([]string{"sh", "-c", "echo --not-a-flag"}, env)
	if err != nil {
		t.Fatal(err)
	}
	sb := r.Sandbox
	if strings.Join(sb.Args, " ") != "sh -c echo --not-a-flag" {
		t.Errorf("args %q", sb.Args)
	}
	if sb.Hostname != "caisson" || r.MapMode != "auto" || r.Net.Mode != "none" || len(sb.Share) != 0 {
		t.Errorf("defaults: %+v %+v", sb, r)
	}
	if sb.Workdir != env.Cwd || len(sb.Rootfs.Ops) == 0 || sb.Rootfs.Ops[0].Kind != rootfs.KindBind || sb.Rootfs.Ops[0].Src != env.Cwd || sb.Rootfs.Ops[0].Dst != env.Cwd {
		t.Errorf("cwd bind: %+v, workdir %q", sb.Rootfs.Ops, sb.Workdir)
	}
	if !sb.Rootfs.NewPID || !sb.Rootfs.NewNet || !sb.Rootfs.NewIPC || !sb.Rootfs.NewCgroup {
		t.Errorf("rootfs switches: %+v", sb.Rootfs)
	}
	if strings.Join(sb.Env, " ") != "HOME=/home/u PATH=/bin SECRET=x" {
		t.Errorf("env %q", sb.Env)
	}
}

func TestParseRunOptions(t *testing.T) {
	env := testEnv(t)
	dir := t.TempDir()
	r, err := ParseRun([]string{"--clearenv", "-e", "A=1", "-e", "A=2", "--share", "pid,uts,pid", "--no-cwd",
		"--ro-bind", dir + ":/data", "--bind", dir, "--tmpfs", "/scratch:size=2m", "-w", "/data/../data",
		"--time-offset", "monotonic=-10", "--net", "slirp4netns", "-p", "8080:80", "--", "env"}, env)
	if err != nil {
		t.Fatal(err)
	}
	sb := r.Sandbox
	if strings.Join(sb.Env, " ") != "A=2 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" {
		t.Errorf("env %q", sb.Env)
	}
	if strings.Join(sb.Share, ",") != "pid,uts" || sb.Hostname != "" || sb.Rootfs.NewPID {
		t.Errorf("share %q hostname %q", sb.Share, sb.Hostname)
	}
	want := []rootfs.Op{
		{Kind: rootfs.KindBind, Src: dir, Dst: dir},
		{Kind: rootfs.KindROBind, Src: dir, Dst: "/data"},
		{Kind: rootfs.KindTmpfs, Dst: "/scratch", Size: 2 << 20},
	}
	if len(sb.Rootfs.Ops) != len(want) {
		t.Fatalf("ops %+v", sb.Rootfs.Ops)
	}
	for i := range want {
		if sb.Rootfs.Ops[i].Kind != want[i].Kind || sb.Rootfs.Ops[i].Src != want[i].Src || sb.Rootfs.Ops[i].Dst != want[i].Dst || sb.Rootfs.Ops[i].Size != want[i].Size {
			t.Errorf("op %d: %+v, want %+v", i, sb.Rootfs.Ops[i], want[i])
		}
	}
	if sb.Workdir != "/data" || sb.TimeOffsets.Monotonic != -10 || r.Net.Mode != "slirp4netns" || len(r.Net.Publish) != 1 {
		t.Errorf("%+v %+v", sb, r.Net)
	}
	r, err = ParseRun([]string{"--net", "host", "true"}, env)
	if err != nil || !r.Sandbox.Shares("net") || r.Net.Mode != "host" || r.Sandbox.Rootfs.NewNet {
		t.Errorf("--net host: %v %+v", err, r)
	}
}

func TestHelp(t *testing.T) {
	if _, err := ParseRun([]string{"--help"}, testEnv(t)); !errors.Is(err, pflag.ErrHelp) {
		t.Errorf("--help: %v", err)
	}
}

func TestTTYWithoutTerminal(t *testing.T) {
	old := os.Stderr
	os.Stderr, _ = os.Open(os.DevNull)
	defer func() { os.Stderr = old }()
	r, err := ParseRun([]string{"-t", "sh"}, testEnv(t))
	if err != nil || r.Sandbox.TTY {
		t.Errorf("-t without a terminal must warn and run without one: %v %+v", err, r)
	}
	env := testEnv(t)
	env.IsTTY, env.Win = true, WinSize{Rows: 40, Cols: 100}
	r, err = ParseRun([]string{"-t", "sh"}, env)
	if err != nil || !r.Sandbox.TTY || r.Sandbox.WinSize.Rows != 40 {
		t.Errorf("-t: %v %+v", err, r)
	}
}

func TestValidHostname(t *testing.T) {
	for s, want := range map[string]bool{
		"caisson": true, "build-7": true, "a.b.c": true, "A1": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "a..b": false, "a/b": false, "a b": false, "é": false,
		strings.Repeat("a", 64): false, strings.Repeat("a.", 32) + "a": false, "a_b": false,
	} {
		if got := ValidHostname(s); got != want {
			t.Errorf("ValidHostname(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestAsPID1Flag(t *testing.T) {
	env := testEnv(t)
	r, err := ParseRun([]string{"--as-pid-1", "sh"}, env)
	if err != nil || !r.Sandbox.AsPID1 {
		t.Fatalf("--as-pid-1: %v %+v", err, r)
	}
	for _, args := range [][]string{{"--share", "pid"}, {"-p", "8080:80", "--net", "pasta"}, {"--map", "keep-id"}, {"--join", "pod"}} {
		_, err := ParseRun(append(append([]string{"--as-pid-1"}, args...), "sh"), env)
		var ue *UsageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--as-pid-1") {
			t.Errorf("--as-pid-1 %v: want a usage error naming --as-pid-1, got %v", args, err)
		}
	}
}

// Asked records the steps an outer sandbox may refuse that the user asked for (a flag or a profile): init fails on
// those and skips the defaults with a notice. The outer sandbox the caller saw reaches init unchanged.
func TestAsked(t *testing.T) {
	profile := t.TempDir() + "/p.toml"
	if err := os.WriteFile(profile, []byte("hostname = \"web\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want Asked
	}{
		{[]string{"true"}, Asked{}},
		{[]string{"--hostname", "caisson", "true"}, Asked{Hostname: true}},
		{[]string{"--profile", profile, "true"}, Asked{Hostname: true}},
		{[]string{"--time-offset", "boottime=0", "true"}, Asked{TimeNS: true}},
		{[]string{"--seccomp", "default", "true"}, Asked{Seccomp: true}},
		{[]string{"--seccomp", "unconfined", "true"}, Asked{Seccomp: true}},
		{[]string{"--security", "strict", "true"}, Asked{Seccomp: true}},
		{[]string{"--security", "default", "true"}, Asked{}},
	} {
		env := testEnv(t)
		env.Outer = outer.Sandbox{Engine: outer.Podman, Rootless: true, UserNS: true, SeccompFilters: 1}
		r, err := ParseRun(tc.args, env)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if r.Sandbox.Asked != tc.want {
			t.Errorf("%v: asked %+v, want %+v", tc.args, r.Sandbox.Asked, tc.want)
		}
		if r.Sandbox.Extra.Outer != env.Outer {
			t.Errorf("%v: outer %+v, want %+v", tc.args, r.Sandbox.Extra.Outer, env.Outer)
		}
	}
}

// lineKey finds the same key as the regular expression it replaced (kept here, where linking regexp costs nothing
// at caisson's start), on lines of every shape a profile may have.
func TestLineKeyMatchesRegexp(t *testing.T) {
	re := regexp.MustCompile(`^\s*("?)([A-Za-z0-9_-]+)("?)\s*=`)
	lines := []string{"map = \"single\"", "  net=\"pasta\"", "\"env\" = []", "\t\"a-b_9\"\t=1", "ro-bind=", "key",
		"= x", "\"\" = 1", "# net = 1", "[table]", "a.b = 1", "x y = 1", "\"q = 1", "q\" = 1", "ünï = 1", "", "   ",
		"a =", "a\r= 1", "\fz = 2", "k  \t  =", "\"k\"\"=1"}
	for _, l := range lines {
		m := re.FindStringSubmatch(l)
		key, ok := lineKey(l)
		if (m != nil) != ok || (ok && key != m[2]) {
			t.Errorf("%q: lineKey = %q, %v; the regexp says %v", l, key, ok, m)
		}
	}
}
