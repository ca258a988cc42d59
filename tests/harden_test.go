package tests

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// probe returns the static probe binary (tests/probe, built by run-integration.sh as CAISSON_PROBE) and the flags
// that make it /tmp/probe inside a sandbox.
func probe(t testing.TB) []string {
	t.Helper()
	p := os.Getenv("CAISSON_PROBE")
	if p == "" {
		p, _ = filepath.Abs("../bin/probe")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFail(t, "probe binary %s: %v (run tests/run-integration.sh, or set CAISSON_PROBE)", p, err)
	}
	return []string{"--ro-bind", p + ":/tmp/probe"}
}

// runProbe runs `probe ARGS` in a sandbox with flags and returns NAME -> RESULT from its output lines.
func runProbe(t testing.TB, flags []string, args ...string) map[string]string {
	t.Helper()
	argv := append(append(append([]string{"run"}, flags...), probe(t)...), append([]string{"--", "/tmp/probe"}, args...)...)
	out := mustRun(t, argv...)
	res := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			res[k] = v
		}
	}
	return res
}

// kRows is the seccomp probe matrix of the security catalogue (§1G) plus the rows of §1C/§1D answered by the
// filter: for each probe call, the errno of the default and strict postures. A call the filter allows fails in the
// kernel on its invalid arguments: "kernel" stands for "not the filter's errno", checked against unconfined.
var kRows = []struct {
	row, call, def, strict string
}{
	{"K1", "mount", "kernel", "EPERM"}, {"K1", "umount2", "kernel", "EPERM"},
	{"K1", "pivot_root", "kernel", "EPERM"}, {"K1", "chroot", "kernel", "EPERM"},
	{"K2", "unshare", "kernel", "EPERM"}, {"K2", "unshare-user", "kernel", "EPERM"}, {"K2", "setns", "kernel", "EPERM"},
	{"K3", "clone-newuser", "kernel", "EPERM"}, {"K3", "clone-newpid", "kernel", "EPERM"},
	{"K3", "clone-thread", "kernel", "kernel"},
	{"K4", "clone3", "ENOSYS", "ENOSYS"},
	{"K5", "open_tree", "kernel", "ENOSYS"}, {"K5", "move_mount", "kernel", "ENOSYS"}, {"K5", "fsopen", "kernel", "ENOSYS"},
	{"K5", "fsconfig", "kernel", "ENOSYS"}, {"K5", "fsmount", "kernel", "ENOSYS"}, {"K5", "fspick", "kernel", "ENOSYS"},
	{"K5", "mount_setattr", "ENOSYS", "ENOSYS"}, // default too: it can clear a mount's read-only flag
	{"K6", "keyctl", "EPERM", "EPERM"}, {"K6", "add_key", "EPERM", "EPERM"}, {"K6", "request_key", "EPERM", "EPERM"},
	{"K7", "bpf", "EPERM", "EPERM"}, {"K8", "perf_event_open", "EPERM", "EPERM"}, {"K9", "userfaultfd", "EPERM", "EPERM"},
	{"K10", "io_uring_setup", "ENOSYS", "ENOSYS"}, {"K10", "io_uring_enter", "ENOSYS", "ENOSYS"},
	{"K10", "io_uring_register", "ENOSYS", "ENOSYS"},
	{"K11", "kexec_load", "EPERM", "EPERM"}, {"K11", "kexec_file_load", "EPERM", "EPERM"},
	{"K11", "init_module", "EPERM", "EPERM"}, {"K11", "finit_module", "EPERM", "EPERM"},
	{"K11", "delete_module", "EPERM", "EPERM"}, {"K11", "reboot", "EPERM", "EPERM"}, {"K11", "swapon", "EPERM", "EPERM"},
	{"K11", "swapoff", "EPERM", "EPERM"}, {"K11", "acct", "EPERM", "EPERM"}, {"K11", "quotactl", "EPERM", "EPERM"},
	{"K11", "syslog", "EPERM", "EPERM"}, {"K11", "iopl", "EPERM", "EPERM"}, {"K11", "ioperm", "EPERM", "EPERM"},
	{"K11", "settimeofday", "EPERM", "EPERM"}, {"K11", "clock_settime", "EPERM", "EPERM"},
	{"K11", "clock_adjtime", "EPERM", "EPERM"}, {"K11", "adjtimex", "EPERM", "EPERM"}, {"K11", "vhangup", "EPERM", "EPERM"},
	{"K11", "lookup_dcookie", "EPERM", "EPERM"}, {"K11", "fanotify_init", "EPERM", "EPERM"},
	{"K12", "open_by_handle_at", "EPERM", "EPERM"},
	{"K13", "ptrace", "kernel", "EPERM"}, {"K13", "process_vm_readv", "kernel", "EPERM"},
	{"K13", "process_vm_writev", "kernel", "EPERM"}, {"K13", "kcmp", "kernel", "EPERM"},
	{"K13", "pidfd_getfd", "kernel", "EPERM"}, {"K13", "process_madvise", "kernel", "EPERM"},
	{"K14", "move_pages", "EPERM", "EPERM"}, {"K14", "mbind", "EPERM", "EPERM"}, {"K14", "get_mempolicy", "EPERM", "EPERM"},
	{"K14", "set_mempolicy", "EPERM", "EPERM"}, {"K14", "set_mempolicy_home_node", "EPERM", "EPERM"},
	{"K14", "migrate_pages", "EPERM", "EPERM"},
	{"K15", "personality-bad", "EPERM", "EPERM"}, {"K15", "personality-query", "OK", "OK"},
	{"K16", "uselib", "EPERM", "EPERM"}, {"K16", "ustat", "EPERM", "EPERM"}, {"K16", "sysfs", "EPERM", "EPERM"},
	{"K16", "_sysctl", "EPERM", "EPERM"}, {"K16", "nfsservctl", "EPERM", "EPERM"},
	{"K17", "modify_ldt", "EPERM", "EPERM"},
	{"N8", "socket-alg", "EAFNOSUPPORT", "EAFNOSUPPORT"}, {"N8", "socket-vsock", "EAFNOSUPPORT", "EAFNOSUPPORT"},
	{"N8", "socket-inet", "OK", "OK"},
	{"D5", "ioctl-tiocsti", "EPERM", "EPERM"}, {"D5", "ioctl-tiocsti-hi", "EPERM", "EPERM"},
	{"D7", "ioctl-tioclinux", "EPERM", "EPERM"}, {"D5", "ioctl-tcgets", "kernel", "kernel"},
	{"-", "getpid", "OK", "OK"},
}

// Every K row answered with the errno the filter chose, in both postures; unconfined shows the kernel's own answer
// to the same invalid call, which proves the refusals come from the filter.
func TestSeccompMatrix(t *testing.T) {
	requireSandbox(t)
	var calls []string
	for _, r := range kRows {
		calls = append(calls, r.call)
	}
	args := append([]string{"sys"}, calls...)
	unconfined := runProbe(t, []string{"--seccomp", "unconfined"}, args...)
	def := runProbe(t, nil, args...)
	strict := runProbe(t, []string{"--security", "strict"}, args...)
	for _, r := range kRows {
		kernel := unconfined[r.call]
		if kernel == "" {
			t.Fatalf("%s: no result for %s unconfined", r.row, r.call)
		}
		if kernel == "SKIP" {
			continue // not a system call of this architecture
		}
		for _, p := range []struct {
			name, want string
			got        map[string]string
		}{{"default", r.def, def}, {"strict", r.strict, strict}} {
			want := p.want
			if want == "kernel" {
				want = kernel
			}
			if p.got[r.call] != want {
				t.Errorf("%s %s (%s): got %s, want %s (unconfined: %s)", r.row, r.call, p.name, p.got[r.call], want, kernel)
			}
		}
	}
	// The filter is what refuses: the same calls behave differently unconfined.
	for call, filtered := range map[string]string{"keyctl": "EPERM", "clone3": "ENOSYS", "modify_ldt": "EPERM", "ioctl-tiocsti": "EPERM", "personality-bad": "EPERM"} {
		if unconfined[call] == filtered {
			t.Errorf("unconfined %s: %s, the same as the filter's answer", call, filtered)
		}
	}
	// S1: ptrace of init is refused in both postures (strict: the filter; default: no CAP_SYS_PTRACE).
	for _, posture := range []string{"default", "strict"} {
		if got := runProbe(t, []string{"--security", posture}, "sys", "ptrace-attach-init"); got["ptrace-attach-init"] != "EPERM" {
			t.Errorf("S1 %s: ptrace(PTRACE_ATTACH, 1): %v, want EPERM", posture, got)
		}
	}
}

// S1, S3: the command cannot reach into init, whose descriptors include its channel to caisson outside: not by
// pidfd_getfd, process_vm_readv, /proc/1/mem, kcmp or PTRACE_SEIZE. In the default posture init is non-dumpable
// and the command lacks CAP_SYS_PTRACE, which would override that (init lives in the sandbox's user namespace);
// --cap-add sys_ptrace gives it back, and with it every one of these (which shows the probe can succeed).
func TestHardenInitReach(t *testing.T) {
	requireSandbox(t)
	want := map[string]string{"pidfd_getfd-init": "EPERM", "process_vm_readv-init": "EPERM", "open-proc1-mem": "EACCES",
		"kcmp-init": "EPERM", "ptrace-seize-init": "EPERM"}
	for _, flags := range [][]string{{"--security", "default"}, {"--security", "strict"}, {"--cap-drop", "all"}} {
		got := runProbe(t, flags, "reach-init")
		for k, v := range want {
			if got[k] != v && !(k == "kcmp-init" && got[k] == "ENOSYS") { // kernel built without kcmp
				t.Errorf("%v: %s: %s, want %s (all: %v)", flags, k, got[k], v, got)
			}
		}
	}
	got := runProbe(t, []string{"--cap-add", "sys_ptrace"}, "reach-init")
	for _, k := range []string{"pidfd_getfd-init", "process_vm_readv-init", "open-proc1-mem", "kcmp-init"} {
		if got[k] != "OK" && !(k == "kcmp-init" && got[k] == "ENOSYS") {
			t.Errorf("--cap-add sys_ptrace: %s: %s, want OK (the capability is what stands between the command and init): %v", k, got[k], got)
		}
	}
	out := mustRun(t, "run", "--", "sh", "-c", "strace -f -o /dev/null true && echo traced")
	if strings.TrimSpace(out) != "traced" {
		t.Errorf("default posture: strace of the command's own processes: %q", out)
	}
}

// K22: a process cannot loosen its filter: stacking an allow-all filter keeps the refusals, mode 2 stays.
func TestSeccompCannotLoosen(t *testing.T) {
	requireSandbox(t)
	for _, posture := range []string{"default", "strict"} {
		got := runProbe(t, []string{"--security", posture}, "loosen")
		if got["stack-allow"] != "OK" || got["keyctl"] != "EPERM" || got["Seccomp:"] != "2" || got["prctl-seccomp-disable"] != "EINVAL" {
			t.Errorf("%s: %v: want stacking allowed, keyctl still EPERM, Seccomp: 2", posture, got)
		}
	}
}

// --seccomp FILE.json: an OCI profile with a sentinel errno; a broken file is a one-line usage error.
func TestSeccompProfileFile(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	prof := filepath.Join(dir, "p.json")
	os.WriteFile(prof, []byte(`{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["keyctl","reboot"],"action":"SCMP_ACT_ERRNO","errnoRet":111}]}`), 0o644)
	got := runProbe(t, []string{"--seccomp", prof}, "sys", "keyctl", "reboot", "mount")
	if got["keyctl"] != "ECONNREFUSED" || got["reboot"] != "ECONNREFUSED" || got["mount"] != "EFAULT" {
		t.Errorf("profile %s: %v", prof, got)
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"defaultAction":"SCMP_ACT_FOO"}`), 0o644)
	for _, p := range []string{bad, filepath.Join(dir, "missing.json")} {
		r := caisson(t, "run", "--seccomp", p, "--", "true")
		if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: --seccomp") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("--seccomp %s: want exit 125 and one caisson: --seccomp line, got %d %q", p, r.code, r.stderr)
		}
	}
}

// statusFields reads capability, no_new_privs and seccomp lines of /proc/self/status inside a sandbox.
func statusFields(t *testing.T, flags ...string) map[string]string {
	t.Helper()
	out := mustRun(t, append(append([]string{"run"}, flags...), "--", "grep", "-E", "^(Cap|NoNewPrivs|Seccomp)", "/proc/self/status")...)
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, ":")
		m[k] = strings.TrimSpace(v)
	}
	return m
}

// P8, U6: strict leaves no capability in any set, sets no_new_privs and a filter; default keeps root's.
func TestHardenCapabilities(t *testing.T) {
	requireSandbox(t)
	last, _ := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	n, _ := strconv.Atoi(strings.TrimSpace(string(last)))
	const ptrace = 1 << 19 // CAP_SYS_PTRACE: left out of the default posture (TestHardenInitReach)
	all := uint64(1)<<uint(n+1) - 1
	full := fmt.Sprintf("%016x", all&^ptrace)
	zero := "0000000000000000"
	s := statusFields(t, "--security", "strict")
	for _, k := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if s[k] != zero {
			t.Errorf("strict: %s = %s, want 0", k, s[k])
		}
	}
	if s["NoNewPrivs"] != "1" || s["Seccomp"] != "2" {
		t.Errorf("strict: %v", s)
	}
	d := statusFields(t)
	if d["CapEff"] != full || d["CapBnd"] != full || d["NoNewPrivs"] != "1" || d["Seccomp"] != "2" {
		t.Errorf("default: %v, want all capabilities but CAP_SYS_PTRACE (%s), no_new_privs and a filter", d, full)
	}
	u := statusFields(t, "--seccomp", "unconfined")
	if u["Seccomp"] != "0" || u["NoNewPrivs"] != "0" {
		t.Errorf("--seccomp unconfined: %v", u)
	}
	// --cap-drop in default, --cap-add in strict (CAP_NET_ADMIN is bit 12, CAP_NET_RAW 13).
	c := statusFields(t, "--cap-drop", "net_admin,CAP_NET_RAW")
	if c["CapEff"] != fmt.Sprintf("%016x", all&^ptrace&^(3<<12)) || c["CapBnd"] != c["CapEff"] {
		t.Errorf("--cap-drop net_admin,CAP_NET_RAW: %v", c)
	}
	c = statusFields(t, "--security", "strict", "--cap-add", "CAP_NET_ADMIN")
	if c["CapEff"] != fmt.Sprintf("%016x", 1<<12) || c["CapBnd"] != c["CapEff"] || c["CapInh"] != zero {
		t.Errorf("strict --cap-add CAP_NET_ADMIN: %v", c)
	}
	c = statusFields(t, "--cap-drop", "all")
	if c["CapEff"] != zero || c["CapBnd"] != zero {
		t.Errorf("--cap-drop all: %v", c)
	}
	// keep-id: a non-root command gets added capabilities as ambient ones.
	c = statusFields(t, "--map", "keep-id", "--cap-add", "net_raw")
	if c["CapAmb"] != fmt.Sprintf("%016x", 1<<13) || c["CapEff"] != c["CapAmb"] {
		t.Errorf("keep-id --cap-add net_raw: %v", c)
	}
	// What strict means in practice: net admin, mount and hostname fail; with --cap-add the one capability works.
	out := mustRun(t, "run", "--security", "strict", "--", "sh", "-c",
		"ip link set lo down 2>/dev/null || echo f1; hostname x 2>/dev/null || echo f2; mount -t tmpfs t /tmp 2>/dev/null || echo f3")
	if strings.Fields(out) == nil || strings.Join(strings.Fields(out), " ") != "f1 f2 f3" {
		t.Errorf("strict: ip link, hostname and mount must all fail: %q", out)
	}
	testenv.RequireCommand(t, "ip")
	mustRun(t, "run", "--security", "strict", "--cap-add", "net_admin", "--", "ip", "link", "set", "lo", "down")
}

// U9, P5, S8: strict refuses nested user namespaces twice over: the filter (EPERM) and user.max_user_namespaces
// pinned to 0 in the sandbox's namespace (ENOSPC with the filter off), which the command cannot raise.
func TestHardenNestedUserNamespaces(t *testing.T) {
	requireSandbox(t)
	testenv.RequireCommand(t, "unshare")
	r := caisson(t, "run", "--security", "strict", "--", "unshare", "-Up", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "not permitted") {
		t.Errorf("strict: unshare -Up: %d %q, want EPERM", r.code, r.stderr)
	}
	script := "{ cat /proc/sys/user/max_user_namespaces; unshare -U true; echo 100 > /proc/sys/user/max_user_namespaces; " +
		"cat /proc/sys/user/max_user_namespaces; unshare -U true; echo done; } 2>&1"
	out := mustRun(t, "run", "--security", "strict", "--seccomp", "unconfined", "--", "sh", "-c", script)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 6 || lines[0] != "0" || !strings.Contains(lines[1], "No space left") || lines[3] != "0" ||
		!strings.Contains(lines[4], "No space left") || !strings.Contains(out, "Read-only file system") {
		t.Errorf("strict with the filter off: want max_user_namespaces 0, ENOSPC, a refused write and ENOSPC again, got %q", out)
	}
	// X7: caisson itself, run there, names the limit.
	r = caisson(t, "run", "--no-cwd", "--security", "strict", "--seccomp", "unconfined", "--ro-bind", bin(t)+":/tmp/caisson",
		"--", "/tmp/caisson", "run", "--", "true")
	if last := lastLine(r.stderr); r.code != 125 || !strings.HasPrefix(last, "caisson: cannot create the sandbox: no space left on device") ||
		!strings.Contains(last, "user.max_user_namespaces=0") {
		t.Errorf("caisson inside strict with the filter off: want exit 125 naming user.max_user_namespaces=0, got %d %q", r.code, r.stderr)
	}
	// M11: with the filter on, the clone is refused with EPERM, and caisson says by what.
	r = caisson(t, "run", "--no-cwd", "--security", "strict", "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "run", "--", "true")
	if last := lastLine(r.stderr); r.code != 125 || !strings.HasPrefix(last, "caisson: cannot create the sandbox: operation not permitted") ||
		!strings.Contains(last, "seccomp filter refuses new namespaces") {
		t.Errorf("caisson inside strict: want exit 125 naming the outer filter, got %d %q", r.code, r.stderr)
	}
	// The pin is the sandbox's own: the host's limit is unchanged.
	hostMax, _ := os.ReadFile("/proc/sys/user/max_user_namespaces")
	if strings.TrimSpace(string(hostMax)) == "0" {
		t.Errorf("the host's user.max_user_namespaces is 0 after a strict run")
	}
	// Default posture: nested namespaces work (the teaching use case).
	out = mustRun(t, "run", "--", "unshare", "-Urpf", "sh", "-c", "id -u; echo $$")
	if strings.Fields(out)[0] != "0" || strings.Fields(out)[1] != "1" {
		t.Errorf("default: nested unshare -Urpf: %q", out)
	}
	r = caisson(t, "run", "--security", "strict", "--cap-add", "sys_resource", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "max_user_namespaces") {
		t.Errorf("strict --cap-add sys_resource must be refused: %d %q", r.code, r.stderr)
	}
}

// The filter denies only what it should: a Debian userland works in both postures; mount, hostname, ip and nested
// namespaces work in default.
func TestHardenUserland(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	common := "set -e; cd /tmp; mkdir d; echo hello > d/f; cp -r d e; tar cf x.tar e; rm -r e; tar xf x.tar; " +
		"ls e | grep -q f; awk '{print toupper($0)}' e/f; sed s/hello/bye/ e/f; sort e/f | uniq | wc -l; " +
		"sh -c 'sleep 0.01 & wait'; find / -maxdepth 1 -name etc; id -u"
	for _, posture := range []string{"default", "strict"} {
		r := caissonIn(t, dir, nil, "run", "--security", posture, "--", "sh", "-c", common)
		if r.code != 0 || !strings.Contains(r.stdout, "HELLO") || !strings.Contains(r.stdout, "bye") || !strings.Contains(r.stdout, "/etc") {
			t.Errorf("%s: userland: exit %d\n%s\n%s", posture, r.code, r.stdout, r.stderr)
		}
	}
	testenv.RequireCommand(t, "ip")
	out := mustRun(t, "run", "--", "sh", "-c", "set -e; mkdir -p /tmp/m; mount -t tmpfs x /tmp/m; umount /tmp/m; hostname h2; hostname; "+
		"ip link set lo down; ip link set lo up; ip addr add 10.1.2.3/32 dev lo; ip -o addr show lo | grep -c 10.1.2.3")
	if !strings.Contains(out, "h2\n1\n") {
		t.Errorf("default: mount, hostname, ip link: %q", out)
	}
	// Compilers, when installed, run under the strict filter.
	if gcc, err := exec.LookPath("gcc"); err == nil {
		os.WriteFile(filepath.Join(dir, "h.c"), []byte("#include <stdio.h>\nint main(void){puts(\"compiled\");return 0;}\n"), 0o644)
		r := caissonIn(t, dir, nil, "run", "--security", "strict", "--", "sh", "-c", gcc+" -o /tmp/h h.c && /tmp/h")
		if r.code != 0 || r.stdout != "compiled\n" {
			t.Errorf("gcc under strict: %d %q %q", r.code, r.stdout, r.stderr)
		}
	}
	if gobin, err := exec.LookPath("go"); err == nil {
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module h\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(dir, "m.go"), []byte("package main\nfunc main(){println(\"built\")}\n"), 0o644)
		r := caissonIn(t, dir, nil, "run", "--security", "strict", "--env", "GOCACHE=/tmp/gocache", "--env", "GOPATH=/tmp/gopath",
			"--env", "GOTOOLCHAIN=local", "--env", "GOFLAGS=-mod=mod", "--", gobin, "run", ".")
		if r.code != 0 || !strings.Contains(r.stderr, "built") {
			t.Errorf("go run under strict: %d %q %q", r.code, r.stdout, r.stderr)
		}
	}
}

// F7, S1, CVE-2019-5736, CVE-2024-21626: init's image, fds, root and environment are out of reach; writing caisson's
// binary through /proc/1/exe fails whether init runs from the binary (not writable by the caller) or, when the caller
// can write it, from a read-only bind of it (or a sealed copy where the kernel refuses the bind); the host binary is
// unchanged afterwards.
func TestHardenInitUnreachable(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--security", "strict", "--", "sh", "-c",
		"for l in exe cwd root fd/0 fd/3; do readlink /proc/1/$l >/dev/null 2>&1 && echo reached $l; done; cat /proc/1/environ >/dev/null 2>&1 && echo reached environ; echo end")
	if strings.TrimSpace(out) != "end" {
		t.Errorf("strict: init reachable through /proc/1: %q", out)
	}
	out = mustRun(t, "run", "--", "sh", "-c",
		"for l in exe cwd root fd/0 fd/3; do readlink /proc/1/$l >/dev/null 2>&1 && echo reached $l; done; echo end")
	if strings.TrimSpace(out) != "end" {
		t.Errorf("default: init reachable through /proc/1: %q", out)
	}
	// With --cap-add sys_ptrace root reads /proc/1, but no fd of init is a directory (nothing to walk out of), its
	// root and cwd are the sandbox's.
	out = mustRun(t, "run", "--cap-add", "sys_ptrace", "--", "sh", "-c", "for f in /proc/1/fd/*; do stat -L -c %F $f; done; readlink /proc/1/root /proc/1/cwd")
	if strings.Contains(out, "directory") || !strings.HasSuffix(out, "/\n/\n") {
		t.Errorf("default with sys_ptrace: init holds a directory or lives outside the root: %q", out)
	}

	check := func(name, binPath string, sealed bool) {
		t.Helper()
		before := fileHash(t, binPath)
		for _, posture := range []string{"default", "strict"} {
			flags := []string{"run", "--security", posture}
			if posture == "default" {
				flags = append(flags, "--cap-add", "sys_ptrace") // the most the command can hold over init
			}
			cmd := exec.Command(binPath, append(append(flags, probe(t)...),
				"--", "sh", "-c", "readlink /proc/1/exe; /tmp/probe write-exe /proc/1/exe")...)
			b, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%s %s: %v: %s", name, posture, err, b)
			}
			o := string(b)
			if strings.Contains(o, "write OK") {
				t.Errorf("%s %s: caisson's image was written through /proc/1/exe: %q", name, posture, o)
			}
			if posture == "default" {
				// Protected: a sealed copy, or the binary through a read-only bind (the link's open fails EROFS,
				// or ETXTBSY first on kernels that refuse writes to a running executable).
				protected := strings.HasPrefix(o, "/memfd:caisson") || strings.Contains(o, "open EROFS") ||
					(strings.Contains(o, "open ETXTBSY") && !strings.HasPrefix(o, binPath))
				if sealed != protected {
					t.Errorf("%s: /proc/1/exe: %q (want a sealed copy or a read-only bind: %v)", name, o, sealed)
				}
			}
		}
		if after := fileHash(t, binPath); after != before {
			t.Errorf("%s: the host binary changed", name)
		}
	}
	// The test binary under test is root-owned in CI (not writable by the test user): no sealing needed.
	need := unix.Access(bin(t), unix.W_OK) == nil
	var st unix.Stat_t
	unix.Stat(bin(t), &st)
	check("CAISSON_BIN", bin(t), need || st.Uid == uint32(os.Getuid()))
	// A copy owned by the caller must run sealed.
	own := filepath.Join(t.TempDir(), "caisson")
	data, err := os.ReadFile(bin(t))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(own, data, 0o755)
	check("caller-owned copy", own, true)
}

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// S7: kill -9 1 and kill -STOP 1 from inside do nothing to init (every other signal: TestInitIgnoresSignals); P7: the
// ID maps cannot be rewritten.
func TestHardenInitSignalsAndMaps(t *testing.T) {
	requireSandbox(t)
	for _, posture := range []string{"default", "strict"} {
		out := mustRun(t, "run", "--security", posture, "--", "sh", "-c",
			"kill -9 1; kill -STOP 1; sleep 0.1; echo alive; { echo '0 0 1' > /proc/self/uid_map; echo deny > /proc/self/setgroups; } 2>&1; "+
				"head -1 /proc/self/uid_map; cat /proc/self/setgroups")
		// A refused write shows as "Permission denied" (open) or "I/O error" (dash's report of a failed write).
		failed := strings.Count(out, "ermission denied") + strings.Count(out, "I/O error")
		want := fmt.Sprintf("0 %d 1", os.Getuid())
		if !strings.HasPrefix(out, "alive\n") || failed != 2 || !strings.Contains(strings.Join(strings.Fields(out), " "), want+" allow") {
			t.Errorf("%s: want init alive, both map writes refused and the maps unchanged (%s, allow): %q", posture, want, out)
		}
	}
}

// U7: a setuid-root binary gives nothing (no_new_privs, and host root is not mapped); D11: no kernel log.
func TestHardenNoPrivilegeGain(t *testing.T) {
	requireSandbox(t)
	suid := strings.TrimSuffix(probe(t)[1], ":/tmp/probe") + "-suid"
	var st unix.Stat_t
	if err := unix.Stat(suid, &st); err != nil || st.Uid != 0 || st.Mode&unix.S_ISUID == 0 {
		testenv.SkipOrFail(t, "no setuid-root probe at %s (run-integration.sh creates it when run as root): %v", suid, err)
	}
	for _, posture := range []string{"default", "strict"} {
		out := mustRun(t, "run", "--map", "keep-id", "--security", posture, "--ro-bind", suid+":/tmp/probe-suid", "--", "/tmp/probe-suid", "ids")
		want := fmt.Sprintf("%d %d\n", os.Getuid(), os.Getuid())
		if out != want {
			t.Errorf("%s: setuid-root probe ran as %q, want %q", posture, out, want)
		}
		r := caisson(t, "run", "--security", posture, "--", "dmesg")
		if r.code == 0 {
			t.Errorf("%s: dmesg succeeded", posture)
		}
	}
}

// X1: a fork bomb in a strict sandbox with --rlimit nproc, or with --pids (cgroup), is bounded, the host stays
// responsive, nothing survives.
func TestHardenForkBomb(t *testing.T) {
	for _, limit := range [][]string{{"--rlimit", "nproc=64"}, {"--pids", "64"}} {
		t.Run(limit[0], func(t *testing.T) {
			if limit[0] == "--pids" {
				requireCgroup(t, "pids")
			}
			forkBomb(t, limit)
		})
	}
}

func forkBomb(t *testing.T, limit []string) {
	requireSandbox(t)
	marker := fmt.Sprintf("caisson-bomb-%d", time.Now().UnixNano())
	// The shell forks its sleep and the bomb (in a subshell) before the limit is reached, and counts with builtins
	// only: once the limit is reached it cannot fork any more (dash gives up on "Cannot fork").
	bomb := "sleep 2 & s=$!; (b(){ b | b & }; b) & wait $s; set -- /proc/[0-9]*; echo procs=$#"
	cmd := exec.Command(bin(t), append(append([]string{"run", "--security", "strict"}, limit...), "--", "sh", "-c", bomb, marker)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The host answers while the bomb runs: fork+exec of a trivial command stays fast.
	time.Sleep(500 * time.Millisecond)
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		if err := exec.Command("true").Run(); err != nil {
			t.Errorf("host fork+exec during the bomb: %v", err)
		}
		if d := time.Since(t0); d > time.Second {
			t.Errorf("host fork+exec took %v during the bomb", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the bomb's sandbox did not end within 30s")
	}
	m := regexp.MustCompile(`procs=(\d+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no process count: %q %q", out.String(), errb.String())
	}
	if n, _ := strconv.Atoi(m[1]); n > 64 {
		t.Errorf("%d processes inside, want at most 64 (%s)", n, strings.Join(limit, " "))
	}
	if !strings.Contains(errb.String(), "fork") && !strings.Contains(errb.String(), "unavailable") {
		t.Errorf("the bomb never hit the limit: %q", errb.String())
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("sandbox took %v", d)
	}
	waitGone(t, marker, 5*time.Second)
}

// X2 and the other limits: --rlimit values reach the command; init survives an address-space limit.
func TestHardenRlimits(t *testing.T) {
	requireSandbox(t)
	out := mustRun(t, "run", "--rlimit", "nofile=64:128", "--rlimit", "cpu=30", "--rlimit", "core=0", "--rlimit", "fsize=1m:unlimited",
		"--", "sh", "-c", "ulimit -n; ulimit -H -n; ulimit -t; ulimit -c; ulimit -f; ulimit -H -f")
	if f := strings.Fields(out); strings.Join(f, " ") != "64 128 30 0 2048 unlimited" {
		t.Errorf("limits inside: %q", out)
	}
	r := caisson(t, "run", "--rlimit", "fsize=4k", "--", "sh", "-c", "head -c 8192 /dev/zero > /tmp/f; echo code=$?; wc -c < /tmp/f")
	if !strings.Contains(r.stdout, "4096") {
		t.Errorf("fsize=4k: %q %q", r.stdout, r.stderr)
	}
	// Limits are set after init's own setup: a low nofile still starts the command; one too low for init to fork
	// is caisson's error (125) with a hint, not a failure of the command.
	if out := mustRun(t, "run", "--rlimit", "nofile=8", "--", "sh", "-c", "ulimit -n"); strings.TrimSpace(out) != "8" {
		t.Errorf("nofile=8: %q", out)
	}
	if r := caisson(t, "run", "--rlimit", "nofile=4", "--", "true"); r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: ") || !strings.Contains(r.stderr, "--rlimit nofile") {
		t.Errorf("nofile=4: want 125 and a hint naming --rlimit nofile, got %d %q", r.code, r.stderr)
	}
	// An address-space limit applies to init too; init must still forward signals and reap.
	cmd := exec.Command(bin(t), "run", "--rlimit", "as=256m", "--", "sh", "-c", "ulimit -v; trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.05; done")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := stdout.Read(buf)
	for !strings.Contains(string(buf[:n]), "ready") {
		m, err := stdout.Read(buf[n:])
		if err != nil {
			break
		}
		n += m
	}
	cmd.Process.Signal(unix.SIGTERM)
	rest := make([]byte, 64)
	m, _ := stdout.Read(rest)
	err := cmd.Wait()
	got := string(buf[:n]) + string(rest[:m])
	if !strings.HasPrefix(got, "262144\n") || !strings.Contains(got, "got-term") || cmd.ProcessState.ExitCode() != 3 {
		t.Errorf("as=256m: %q, %v", got, err)
	}
}

// Bad hardening flags: one caisson: line naming the flag, exit 125 (limits without a delegated cgroup:
// TestCgroupUndelegated).
func TestHardenBadFlags(t *testing.T) {
	requireSandbox(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--security", "paranoid"}, "--security"},
		{[]string{"--seccomp", "nope"}, "--seccomp"},
		{[]string{"--cap-add", "CAP_FLY"}, "--cap-add"},
		{[]string{"--cap-drop", "x,y"}, "--cap-drop"},
		{[]string{"--rlimit", "stack=1"}, "--rlimit"},
		{[]string{"--rlimit", "nofile=10:5"}, "--rlimit"},
		{[]string{"--rlimit", "nofile=lots"}, "--rlimit"},
		{[]string{"--landlock=maybe"}, "--landlock"},
		{[]string{"--rw", "/tmp"}, "--rw"},
		{[]string{"--landlock", "--rw", "rel"}, "--rw"},
		{[]string{"--memory", "lots"}, "--memory"},
		{[]string{"--memory", "4k"}, "--memory"},
		{[]string{"--pids", "0"}, "--pids"},
		{[]string{"--cpus", "0.001"}, "--cpus"},
	} {
		r := caisson(t, append(append([]string{"run"}, tc.args...), "--", "true")...)
		if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: "+tc.want) || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("%v: want exit 125 with one line starting caisson: %s, got %d %q", tc.args, tc.want, r.code, r.stderr)
		}
	}
	// Init-side errors: a --rw path missing inside.
	r := caisson(t, "run", "--landlock", "--rw", "/no/such/dir", "--", "true")
	if r.code != 125 || !strings.Contains(r.stderr, "/no/such/dir") {
		t.Errorf("--rw missing path: %d %q", r.code, r.stderr)
	}
}

// F23, S4, N5: Landlock limits writes to /tmp, /dev, the working directory and --rw; strict scopes signals and
// abstract sockets to the sandbox.
func TestLandlock(t *testing.T) {
	requireSandbox(t)
	dir := t.TempDir()
	script := "touch /tmp/a && echo tmp-ok; touch w && echo cwd-ok; echo x > /dev/null && echo dev-ok; " +
		"{ touch /run/x; touch /run/scratch/x && echo scratch-ok; } 2>&1; cat /etc/hostname >/dev/null && echo read-ok; ls / >/dev/null && echo ls-ok"
	r := caissonIn(t, dir, nil, "run", "--landlock", "--tmpfs", "/run/scratch", "--", "sh", "-c", script)
	for _, want := range []string{"tmp-ok", "cwd-ok", "dev-ok", "read-ok", "ls-ok", "/run/x", "Permission denied"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--landlock: want %q in %q (%s)", want, r.stdout, r.stderr)
		}
	}
	if strings.Contains(r.stdout, "scratch-ok") {
		t.Errorf("--landlock: /run/scratch is writable without --rw: %q", r.stdout)
	}
	r = caissonIn(t, dir, nil, "run", "--landlock", "--tmpfs", "/run/scratch", "--rw", "/run/scratch", "--", "sh", "-c", script)
	if !strings.Contains(r.stdout, "scratch-ok") {
		t.Errorf("--rw /run/scratch: %q %q", r.stdout, r.stderr)
	}
	// Without --landlock the same writes work: the refusals above are Landlock's.
	r = caissonIn(t, dir, nil, "run", "--tmpfs", "/run/scratch", "--", "sh", "-c", "touch /run/x /run/scratch/x && echo ok")
	if r.stdout != "ok\n" {
		t.Errorf("without --landlock: %q %q", r.stdout, r.stderr)
	}

	// S4: with the host's PID namespace, strict + Landlock cannot signal a host process of the same user.
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { victim.Process.Kill(); victim.Wait() }()
	pid := strconv.Itoa(victim.Process.Pid)
	for _, flags := range [][]string{{"--landlock"}, nil} { // nil: the strict posture's own Landlock
		args := append(append([]string{"run", "--share", "pid", "--security", "strict"}, flags...), "--", "sh", "-c", "kill -USR1 "+pid+" 2>&1; echo done")
		r = caisson(t, args...)
		if !strings.Contains(r.stdout, "not permitted") {
			t.Errorf("S4: strict %v: kill of a host process: %q %q", flags, r.stdout, r.stderr)
		}
	}
	if err := victim.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("S4: the host process died: %v", err)
	}
	// N5: with the host's network namespace, strict + Landlock cannot connect to a host abstract socket; strict
	// alone can (the control).
	name := fmt.Sprintf("caisson-test-%d", time.Now().UnixNano())
	ln, err := net.Listen("unix", "@"+name)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for _, flags := range [][]string{{"--landlock"}, nil} { // nil: the strict posture's own Landlock
		got := runProbe(t, append([]string{"--net", "host", "--security", "strict"}, flags...), "connect-abstract", name)
		if got["connect"] != "EPERM" {
			t.Errorf("N5: strict %v connect to a host abstract socket: %v, want EPERM", flags, got)
		}
	}
	got := runProbe(t, []string{"--net", "host", "--security", "strict", "--landlock=off"}, "connect-abstract", name)
	if got["connect"] != "OK" {
		t.Errorf("N5 control: strict without Landlock: %v, want OK", got)
	}
}

// inspectJSON runs `caisson inspect --json` inside a sandbox with flags.
func inspectJSON(t *testing.T, flags ...string) map[string]any {
	t.Helper()
	args := append(append([]string{"run"}, flags...), "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "inspect", "--json")
	out := mustRun(t, args...)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("inspect --json: %v: %q", err, out)
	}
	return m
}

// `caisson inspect` reports what is in force, from the kernel's view and init's record.
func TestInspect(t *testing.T) {
	requireSandbox(t)
	m := inspectJSON(t, "--security", "strict", "--landlock")
	rec, _ := m["record"].(map[string]any)
	if rec == nil || rec["posture"] != "strict" || rec["net_mode"] != "none" || rec["max_user_namespaces"] != "0" {
		t.Fatalf("record: %v", m["record"])
	}
	sc, _ := rec["seccomp"].(map[string]any)
	if m["seccomp"] != "filter" || m["no_new_privs"] != true || sc["profile"] != "strict" || !strings.HasPrefix(fmt.Sprint(sc["digest"]), "sha256:") {
		t.Errorf("seccomp: %v %v", m["seccomp"], sc)
	}
	caps, _ := m["capabilities"].(map[string]any)
	for _, set := range []string{"effective", "permitted", "inheritable", "bounding", "ambient"} {
		if l, _ := caps[set].([]any); len(l) != 0 {
			t.Errorf("strict: %s capabilities %v", set, l)
		}
	}
	ll, _ := rec["landlock"].(map[string]any)
	abi, _ := ll["abi"].(float64)
	kabi, _ := m["landlock_kernel_abi"].(float64)
	if kabi >= 6 && abi != 6 || ll["scopes"] == nil {
		t.Errorf("landlock: %v (kernel ABI %v)", ll, kabi)
	}
	nss, _ := m["namespaces"].(map[string]any)
	for _, ns := range []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"} {
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		if nss[ns] == nil || nss[ns] == host {
			t.Errorf("namespace %s: %v (host %s)", ns, nss[ns], host)
		}
	}
	if um, _ := m["uid_map"].([]any); len(um) == 0 || !strings.HasPrefix(fmt.Sprint(um[0]), "0 "+strconv.Itoa(os.Getuid())+" 1") {
		t.Errorf("uid_map: %v", m["uid_map"])
	}
	wm, _ := json.Marshal(m["writable_mounts"])
	if !strings.Contains(string(wm), `"target":"/tmp"`) || strings.Contains(string(wm), `"target":"/usr"`) {
		t.Errorf("writable mounts: %s", wm)
	}

	d := inspectJSON(t)
	rec, _ = d["record"].(map[string]any)
	caps, _ = d["capabilities"].(map[string]any)
	if b, _ := caps["bounding"].([]any); rec["posture"] != "default" || len(b) < 38 || rec["landlock"] != nil {
		t.Errorf("default: %v %v", rec, caps["bounding"])
	}
	u := inspectJSON(t, "--seccomp", "unconfined", "--net", "host")
	if u["seccomp"] != "disabled" || u["record"].(map[string]any)["net_mode"] != "host" {
		t.Errorf("unconfined --net host: seccomp %v, record %v", u["seccomp"], u["record"])
	}
	// The text form names the Landlock ABI and the filter digest.
	out := mustRun(t, "run", "--security", "strict", "--landlock", "--ro-bind", bin(t)+":/tmp/caisson", "--", "/tmp/caisson", "inspect")
	if !regexp.MustCompile(`landlock: +ABI \d+ enforced`).MatchString(out) || !strings.Contains(out, "sha256:") || !strings.Contains(out, "bounding:     none") {
		t.Errorf("inspect text:\n%s", out)
	}
	// The record cannot be changed from inside (a read-only mount).
	r := caisson(t, "run", "--", "sh", "-c", "echo x > /run/caisson/security.json")
	if r.code == 0 || !strings.Contains(r.stderr, "Read-only") {
		t.Errorf("record writable inside: %d %q", r.code, r.stderr)
	}
}

// Catalogue F9 in the default posture: root inside keeps CAP_SYS_ADMIN over its mount namespace, yet cannot make
// the read-only host view writable again (the default filter refuses bind remounts to read-write and
// mount_setattr); the file it tried to write is untouched. It can still unmount the private /tmp, /run and /proc
// (README, Security postures), but what it finds there is read-only too.
func TestHardenDefaultViewReadOnly(t *testing.T) {
	requireSandbox(t)
	home, victim := victimDir(t)
	script := "exec 2>&1\n" + makeWritable + `umount -l /tmp && for m in /tmp; do mount -o remount,rw,bind "$m" && echo REMOUNTED-TMP; done
mount -t tmpfs t /mnt && mount -o remount,ro,bind /mnt && echo OWN-MOUNTS-OK
true`
	r := caisson(t, "run", "--no-cwd", "--", "sh", "-c", script, "sh", home)
	for _, bad := range []string{"REMOUNTED-ROOT", "REMOUNTED-DIR", "REBOUND", "WROTE", "REMOUNTED-TMP"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("default posture: %s: %q", bad, r.stdout)
		}
	}
	if !strings.Contains(r.stdout, "OWN-MOUNTS-OK") {
		t.Errorf("default posture: mounting a tmpfs and remounting it read-only must keep working: %q", r.stdout)
	}
	checkVictim(t, victim)
}

// Catalogue F9 and the hidden host paths, in the strict posture: the command cannot make the read-only host view
// writable (bind remount, in place or moved), nor unmount the private /tmp, /run and /proc to see what the host
// has beneath them; the file it tried to write is untouched. (In the default posture root inside can unmount
// them, though not make anything writable: see README, Security postures.)
func TestHardenStrictViewHolds(t *testing.T) {
	requireSandbox(t)
	home, victim := victimDir(t)
	script := "exec 2>&1\n" + makeWritable + `umount -l /run && echo UNMOUNTED-RUN
umount -l /tmp && echo UNMOUNTED-TMP
umount -l /proc && echo UNMOUNTED-PROC
mount --move /tmp /mnt && echo MOVED
true`
	r := caisson(t, "run", "--no-cwd", "--security", "strict", "--", "sh", "-c", script, "sh", home)
	for _, bad := range []string{"REMOUNTED-ROOT", "REMOUNTED-DIR", "REBOUND", "WROTE", "UNMOUNTED-RUN", "UNMOUNTED-TMP", "UNMOUNTED-PROC", "MOVED"} {
		if strings.Contains(r.stdout, bad) {
			t.Errorf("strict posture: %s: %q", bad, r.stdout)
		}
	}
	checkVictim(t, victim)
}

// makeWritable is the shell of the attempts to make the read-only host view writable and write the victim file
// (victimDir's directory is $1); each success prints a word in capitals.
const makeWritable = `mount -o remount,rw,bind / && echo REMOUNTED-ROOT
mount -o remount,rw,bind "$1" && echo REMOUNTED-DIR
mount --bind "$1" /mnt && mount -o remount,rw,bind /mnt && echo REBOUND
echo pwned > "$1/victim" && echo WROTE
`

// victimDir makes a directory of the caller's in the host view (under the home directory: the sandbox's own /tmp
// hides the host's) holding the file "victim" with "orig\n", for tests that try to write it from inside.
func victimDir(t *testing.T) (dir, victim string) {
	t.Helper()
	base, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	dir, err = os.MkdirTemp(base, ".caisson-victim-")
	if err != nil {
		testenv.SkipOrFail(t, "no writable home directory for the test: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	victim = filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("orig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, victim
}

// checkVictim fails the test when the victim file of victimDir changed.
func checkVictim(t *testing.T, victim string) {
	t.Helper()
	if b, _ := os.ReadFile(victim); string(b) != "orig\n" {
		t.Errorf("the host file was changed from inside: %q", b)
	}
}

// The host-view rows of the escape catalogue in both postures: what the caller cannot read stays unreadable, also
// bound in (F1, F2), no pivot leftovers (F3), host processes cannot be signalled (P2), /sys and the cgroup files
// refuse writes (P10), init's environment is empty (P15), files of unmapped owners show as 65534 (U2), setuid to
// an unmapped uid is EINVAL (U8), the sandbox's network namespace lists no host socket (N6), its devpts holds no
// host pty (D4). In the default posture, where root may unmount /proc and mount a fresh one: a nested user
// namespace cannot mount a cgroup v1 hierarchy to write a release_agent (P6, CVE-2022-0492), and a network
// sysctl written there changes the sandbox's namespace only (P14); core_pattern stays refused.
func TestHardenCatalogueView(t *testing.T) {
	requireSandbox(t)
	testenv.RequireCommand(t, "setpriv")
	host := exec.Command("sleep", "60")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { host.Process.Kill(); host.Wait() }()
	script := `echo "host pid: $HOSTPID"
cat /etc/shadow >/dev/null 2>&1 && echo F1-read || echo F1-refused
cat /tmp/shadow >/dev/null 2>&1 && echo F1-bound-read || echo F1-bound-refused
ls /root >/dev/null 2>&1 && echo F2-read || echo F2-refused
test -e /oldroot -o -e /tmp/newroot -o -e /.pivot_root && echo F3-leftover || echo F3-none
kill -0 "$HOSTPID" 2>/dev/null && echo P2-signalled || echo P2-refused
{ echo 1 >/sys/kernel/mm/ksm/run; } 2>/dev/null && echo P10-sys-written || echo P10-sys-refused
{ touch /sys/fs/cgroup/x; } 2>/dev/null && echo P10-cgroup-written || echo P10-cgroup-refused
test -n "$(tr '\0' '\n' </proc/1/environ 2>/dev/null)" && echo P15-env || echo P15-empty
echo "U2 $(stat -c %u:%g /etc/shadow)"
setpriv --reuid=5000000 true 2>&1 | grep -q 'Invalid argument' && echo U8-EINVAL || echo U8-other
echo "N6 $(tail -n +2 /proc/net/unix | wc -l)"
echo "D4 $(ls /dev/pts | tr '\n' ' ')"
`
	want := []string{"F1-refused", "F1-bound-refused", "F2-refused", "F3-none", "P2-refused", "P10-sys-refused",
		"P10-cgroup-refused", "P15-empty", "U2 65534:65534", "U8-EINVAL", "N6 0", "D4 ptmx "}
	for _, posture := range []string{"default", "strict"} {
		out := mustRun(t, "run", "--no-cwd", "--security", posture, "--bind", "/etc/shadow:/tmp/shadow",
			"-e", fmt.Sprintf("HOSTPID=%d", host.Process.Pid), "--", "sh", "-c", script)
		if !strings.Contains(out, fmt.Sprintf("host pid: %d\n", host.Process.Pid)) {
			t.Fatalf("%s: the host process's pid did not reach the script: %q", posture, out)
		}
		for _, w := range want {
			if !strings.Contains(out, w+"\n") {
				t.Errorf("%s: want %q in:\n%s", posture, w, out)
			}
		}
	}
	testenv.RequireCommand(t, "unshare")
	before, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	want2 := "0"
	if strings.TrimSpace(string(before)) == "0" {
		want2 = "1"
	}
	out := mustRun(t, "run", "--no-cwd", "--", "sh", "-c", `unshare -Urm sh -c '
mkdir -p /tmp/cg
if mount -t cgroup -o pids cg /tmp/cg 2>/dev/null || mount -t cgroup -o rdma cg /tmp/cg 2>/dev/null; then
	{ echo /x >/tmp/cg/release_agent; } 2>/dev/null && echo P6-written || echo P6-refused
else
	echo P6-refused-mount
fi'
umount -l /proc && mount -t proc proc /proc && echo P14-proc-remounted
{ echo `+want2+` >/proc/sys/net/ipv4/ip_forward; } 2>/dev/null && echo "P14-ip-forward $(cat /proc/sys/net/ipv4/ip_forward)"
{ echo core >/proc/sys/kernel/core_pattern; } 2>/dev/null && echo P14-core-written || echo P14-core-refused`)
	if !strings.Contains(out, "P6-refused") {
		t.Errorf("P6: a nested user namespace wrote a cgroup v1 release_agent: %q", out)
	}
	if !strings.Contains(out, "P14-proc-remounted\n") || !strings.Contains(out, "P14-ip-forward "+want2+"\n") ||
		!strings.Contains(out, "P14-core-refused\n") {
		t.Errorf("P14: want /proc remounted, ip_forward set to %s inside and core_pattern refused: %q", want2, out)
	}
	if after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); string(after) != string(before) {
		t.Errorf("P14: the host's net.ipv4.ip_forward changed from %q to %q", before, after)
	}
}

// F25: the host view shows the caller's files, secrets included (it is the caller's own view, read-only); a
// --tmpfs over a directory hides it, in both postures.
func TestHardenHideSecrets(t *testing.T) {
	requireSandbox(t)
	home, err := os.UserHomeDir()
	if err != nil || unix.Access(home, unix.W_OK) != nil {
		testenv.SkipOrFail(t, "no writable home directory (%v)", err)
	}
	dir := filepath.Join(home, fmt.Sprintf(".caisson-secret-%d", time.Now().UnixNano()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "id_test"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, "run", "--no-cwd", "--", "cat", filepath.Join(dir, "id_test")); out != "secret\n" {
		t.Errorf("the host view does not show the caller's file: %q", out)
	}
	for _, posture := range []string{"default", "strict"} {
		out := mustRun(t, "run", "--no-cwd", "--security", posture, "--tmpfs", dir, "--", "ls", "-A", dir)
		if out != "" {
			t.Errorf("%s: --tmpfs %s still shows %q", posture, dir, out)
		}
	}
}

// U4: a file that denies the caller's group and allows others (mode 0604, group the caller's) stays unreadable
// inside with --map single and keep-id; with --map auto root inside may drop its groups and take a subordinate
// gid, and reads it (documented under Limitations, as with Podman). Supplementary groups stay, as 65534 (U5).
func TestHardenGroupDenied(t *testing.T) {
	requireSandbox(t)
	testenv.RequireSubIDs(t)
	f := "/var/lib/caisson-test/group-denied." + os.Getenv("USER")
	if _, err := os.Stat(f); err != nil {
		testenv.SkipOrFail(t, "%v (tests/provision.sh creates it: run make test as root)", err)
	}
	if _, err := os.ReadFile(f); err == nil {
		t.Fatalf("%s is readable by the caller: want it denied to the caller's group", f)
	}
	try := "cat " + f + " 2>/dev/null || echo direct-refused; setpriv --clear-groups --regid=1 cat " + f + " 2>/dev/null || echo dropped-refused"
	for mode, want := range map[string]string{
		"auto":    "direct-refused\ngroup-denied\n",
		"single":  "direct-refused\ndropped-refused\n",
		"keep-id": "direct-refused\ndropped-refused\n",
	} {
		if out := mustRun(t, "run", "--no-cwd", "--map", mode, "--", "sh", "-c", try); out != want {
			t.Errorf("--map %s: %q, want %q", mode, out, want)
		}
	}
	groups, _ := os.Getgroups()
	if len(groups) < 2 {
		testenv.SkipOrFail(t, "U5: the caller has no supplementary group (%v; tests/provision.sh adds caisson-extra)", groups)
	}
	out := mustRun(t, "run", "--no-cwd", "--", "grep", "^Groups:", "/proc/self/status")
	if !strings.Contains(out, "65534") {
		t.Errorf("U5: the caller's supplementary groups %v inside: %q, want them kept as 65534", groups, out)
	}
}

// N10: nf_tables, the kernel surface most exploits from a user namespace go through, answers root inside in the
// default posture (CAP_NET_ADMIN over its own network namespace, which `ip link` and the seed's exercises need),
// and refuses it with --security strict or --cap-drop net_admin.
func TestHardenNetfilter(t *testing.T) {
	requireSandbox(t)
	if got := runProbe(t, nil, "nft")["nft"]; got == "EPROTONOSUPPORT" {
		testenv.SkipOrFail(t, "this kernel has no nf_tables (NETLINK_NETFILTER: %s)", got)
	}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{nil, "OK"},
		{[]string{"--security", "strict"}, "EPERM"},
		{[]string{"--cap-drop", "net_admin"}, "EPERM"},
	} {
		if got := runProbe(t, tc.flags, "nft")["nft"]; got != tc.want {
			t.Errorf("%v: nf_tables dump: %s, want %s", tc.flags, got, tc.want)
		}
	}
}
