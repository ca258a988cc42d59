package tests

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// caisson inside a CI job's container (issue 19): real Podman containers (podman_test.go: Podman with runc), started the ways a
// runner starts them, each with the static caisson bound in. In each, the seed's exercises run in a sandbox, `caisson
// doctor --json` must say what the container allows, and explicit requests the container refuses must fail with
// the engine's fix. What the container refuses by default is skipped with one notice line each, never a failure.

// ciSetup is one way of starting the job's container, and what it lets caisson do.
type ciSetup struct {
	name  string
	flags []string // the engine's run flags (the --security-opt seccomp= file is added from profile)
	// profile is "" (Podman's default), "shipped" (cmd/caisson/profiles/ci-container-seccomp.json), "refusing"
	// (the shipped one without seccomp and unshare: caisson's filter and the time namespace are refused) or
	// "docker-like" (Docker's rule for namespaces: caisson cannot create its sandbox at all).
	profile string
	// What the container allows.
	hostname  bool // sethostname (the shipped profile)
	freshProc bool // a fresh procfs and sysfs (--security-opt unmask=ALL)
	tun       bool // /dev/net/tun (--device)
	route     bool // a network with a default route (--network slirp4netns), for pasta
	// noNamespaces: the filter refuses new user namespaces (Docker's default rule): caisson cannot run at all.
	noNamespaces bool
}

var ciSetups = []ciSetup{
	{name: "default", flags: []string{"--network", "none"}},
	{name: "profile", flags: []string{"--network", "none"}, profile: "shipped", hostname: true},
	{name: "tun", flags: []string{"--network", "none", "--device", "/dev/net/tun"}, tun: true},
	{name: "all", flags: []string{"--network", "slirp4netns", "--security-opt", "unmask=ALL", "--device", "/dev/net/tun"},
		profile: "shipped", hostname: true, freshProc: true, tun: true, route: true},
	{name: "refusing", flags: []string{"--network", "none"}, profile: "refusing", hostname: true},
	{name: "docker-like", flags: []string{"--network", "none"}, profile: "docker-like", hostname: true, noNamespaces: true},
}

// ciDockerSetups are the Docker containers (Docker's own default profile, its systempaths option; the test's
// daemon has no bridge, so no container network).
var ciDockerSetups = []ciSetup{
	{name: "default", flags: []string{"--network", "none"}, noNamespaces: true},
	{name: "profile", flags: []string{"--network", "none"}, profile: "shipped", hostname: true},
	{name: "all", flags: []string{"--network", "none", "--security-opt", "systempaths=unconfined", "--device", "/dev/net/tun"},
		profile: "shipped", hostname: true, freshProc: true, tun: true},
}

// ciEngine is the engine that starts the job's containers: its name, and the fixes caisson names for it.
type ciEngine struct {
	name     string
	rootless bool
	unmask   string // the flag that lifts the /proc and /sys masks
	route    string // the fix for pasta in a container without a default route
}

func (e ciEngine) seccompFix() string {
	return e.name + " run --security-opt seccomp=ci-container-seccomp.json"
}
func (e ciEngine) unmaskFix() string { return e.name + " run --security-opt " + e.unmask }
func (e ciEngine) tunFix() string    { return e.name + " run --device /dev/net/tun" }

// refusing reports whether the setup's filter refuses seccomp(2) and unshare(2).
func (s ciSetup) refusing() bool { return s.profile == "refusing" }

// ciSeed is the seed's exercises (linux-namespaces module, parts 1-5, and user namespaces), run as
// `caisson run -- sh /ci-seed.sh` in the container: one "key value" line each.
const ciSeed = `echo "ns $(for n in cgroup ipc mnt net pid time user uts; do readlink /proc/self/ns/$n; done | tr '\n' ' ')"
echo "ps $(ps -o pid,comm | awk 'NR > 1 && $1 == 1 {print $2}')"
ip link set lo up
echo "links $(ip -o link | wc -l) $(ip -o -4 addr show lo | awk '{print $4}')"
mkdir -p /tmp/ns-test && mount -t tmpfs tmpfs /tmp/ns-test && echo "namespace secret" >/tmp/ns-test/secret.txt && echo "mount $(cat /tmp/ns-test/secret.txt)"
echo "hostname $(hostname)"
if hostname my-container 2>/dev/null; then echo "sethostname $(hostname)"; else echo "sethostname refused"; fi
echo "userns $(unshare -U -r id -u 2>/dev/null)"
echo "pidns $(unshare -p -f --mount-proc sh -c 'echo $$' 2>/dev/null)"
`

// ciCase is one caisson command the container runs.
type ciCase struct {
	name string
	args []string
}

var ciCases = []ciCase{
	{"seed", []string{"run", "--", "sh", "/ci-seed.sh"}},
	{"doctor", []string{"doctor", "--json"}},
	{"hostname", []string{"run", "--hostname", "web", "--", "hostname"}},
	{"pasta", []string{"run", "--net", "pasta", "--", "sh", "-c", "ip -o -4 addr show tap0 | awk '{print $4}'; ip route | grep default"}},
	{"time-offset", []string{"run", "--share", "uts", "--time-offset", "boottime=86400", "--", "cat", "/proc/uptime"}},
	{"strict", []string{"run", "--share", "uts", "--security", "strict", "--", "echo", "strict-ok"}},
	{"landlock", []string{"run", "--share", "uts", "--landlock", "--", "echo", "landlock-ok"}},
}

// ciScript is the container's command: the outer namespaces and host name, each case between markers, then what
// the container sees after the sandboxes.
func ciScript() string {
	var b strings.Builder
	b.WriteString("echo '@@@ outer'\nfor n in cgroup ipc mnt net pid time user uts; do readlink /proc/self/ns/$n; done | tr '\\n' ' '; echo; hostname\n")
	for _, c := range ciCases {
		b.WriteString("echo '@@@ " + c.name + "'\n/caisson")
		for _, a := range c.args {
			b.WriteString(" '" + strings.ReplaceAll(a, "'", `'\''`) + "'")
		}
		b.WriteString(" 2>/tmp/ci-err\necho \"@@@ exit $?\"\ncat /tmp/ci-err\n")
	}
	b.WriteString("echo '@@@ after'\nif test -e /tmp/ns-test/secret.txt; then echo leaked; else echo gone; fi; hostname\n")
	return b.String()
}

// ciOutput is one case's result.
type ciOutput struct {
	stdout, stderr string
	code           int
}

// parseCI splits the container's output by the script's markers.
func parseCI(t *testing.T, out string) map[string]*ciOutput {
	t.Helper()
	res := map[string]*ciOutput{}
	var cur *ciOutput
	inErr := false
	for _, line := range strings.SplitAfter(out, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "@@@ "); ok {
			if code, ok := strings.CutPrefix(name, "exit "); ok && cur != nil {
				cur.code, _ = strconv.Atoi(code)
				inErr = true
				continue
			}
			cur, inErr = &ciOutput{code: -1}, false
			res[name] = cur
			continue
		}
		if cur == nil {
			continue
		}
		if inErr {
			cur.stderr += line
		} else {
			cur.stdout += line
		}
	}
	for _, c := range ciCases {
		if res[c.name] == nil || res[c.name].code < 0 {
			t.Fatalf("case %s did not run; container output:\n%s", c.name, out)
		}
	}
	return res
}

// shippedProfile is the path of cmd/caisson/profiles/ci-container-seccomp.json.
func shippedProfile(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CAISSON_PROFILES")
	if dir == "" {
		dir, _ = filepath.Abs(filepath.Join("..", "cmd", "caisson", "profiles"))
	}
	p := filepath.Join(dir, "ci-container-seccomp.json")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the shipped seccomp profile: %v (set CAISSON_PROFILES)", err)
	}
	return p
}

// variantProfile writes, as dir/name.json, the shipped profile without the calls drop and with the entries add.
func variantProfile(t *testing.T, shipped, dir, name string, drop []string, add ...map[string]any) string {
	t.Helper()
	data, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var prof map[string]any
	if err := json.Unmarshal(data, &prof); err != nil {
		t.Fatal(err)
	}
	syscalls := prof["syscalls"].([]any)
	for _, e := range syscalls {
		entry := e.(map[string]any)
		entry["names"] = slices.DeleteFunc(entry["names"].([]any), func(n any) bool { return slices.Contains(drop, n.(string)) })
	}
	for _, e := range add {
		syscalls = append(syscalls, e)
	}
	prof["syscalls"] = syscalls
	out, _ := json.Marshal(prof)
	p := filepath.Join(dir, name+".json")
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// dockerLikeProfile is the shipped profile with Docker's default rule for namespaces (moby's profile, for a
// container without CAP_SYS_ADMIN): clone only without namespace flags, clone3 answering ENOSYS (so that the C
// library falls back to clone), unshare refused, EPERM for what it does not list.
func dockerLikeProfile(t *testing.T, shipped, dir string) string {
	t.Helper()
	const namespaceFlags = 0x7E020000 // CLONE_NEWNS|CLONE_NEWCGROUP|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWUSER|CLONE_NEWPID|CLONE_NEWNET
	p := variantProfile(t, shipped, dir, "docker-like", []string{"clone", "clone3", "unshare"},
		map[string]any{"names": []string{"clone"}, "action": "SCMP_ACT_ALLOW",
			"args": []map[string]any{{"index": 0, "value": namespaceFlags, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}}},
		map[string]any{"names": []string{"clone3"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
	data, _ := os.ReadFile(p)
	data = []byte(strings.Replace(string(data), `"defaultErrnoRet":38`, `"defaultErrnoRet":1`, 1))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// ciRootfs makes the job's root file system in dir and returns dir: busybox (testenv.BusyboxRootfs) with pasta and
// its libraries and the seed's script, without /etc/passwd (uid 0 has no user name, as in many CI images) and
// without newuidmap. The caller imports it and removes it.
func ciRootfs(t *testing.T, dir string) string {
	t.Helper()
	testenv.BusyboxRootfs(t, dir)
	for _, f := range []string{"etc/passwd", "etc/group"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	copyProgram(t, dir, "/usr/bin/passt", "pasta")
	if err := os.WriteFile(filepath.Join(dir, "ci-seed.sh"), []byte(ciSeed), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestCIContainer runs caisson in rootless Podman containers, as the test user (a hardened runner's setup).
func TestCIContainer(t *testing.T) {
	testenv.RequireUnprivileged(t)
	testenv.RequireSubIDs(t)
	testCIContainers(t)
}

// TestRootModeCIContainer runs caisson in rootful Podman containers (tests/run-integration.sh runs it as root).
func TestRootModeCIContainer(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs to run as host root (tests/run-integration.sh runs it so)")
	}
	testCIContainers(t)
}

func testCIContainers(t *testing.T) {
	caissonBin := bin(t)
	testenv.RequireCommand(t, "passt")
	shipped := shippedProfile(t)
	p := newRuncPodman(t)
	img := p.importRootfs(t, ciRootfs(t, filepath.Join(p.dir, "rootfs")), "localhost/caisson-ci")
	profiles := map[string]string{"shipped": shipped,
		"refusing": variantProfile(t, shipped, p.dir, "refusing", []string{"seccomp", "unshare",
			"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"}),
		"docker-like": dockerLikeProfile(t, shipped, p.dir)}
	e := ciEngine{name: "podman", rootless: !p.root, unmask: "unmask=ALL", route: "podman run --network slirp4netns"}
	runCISetups(t, e, ciSetups, caissonBin, p.dir, profiles, func(t *testing.T, args []string) result {
		return p.run(t, append([]string{"run", "--rm", "--pull", "never"}, args...)...)
	}, img)
}

// runCISetups runs the job's script (ciScript) in one container per setup, started by run with the given run
// arguments, and checks each case against what the setup allows.
func runCISetups(t *testing.T, e ciEngine, setups []ciSetup, caissonBin, dir string, profiles map[string]string,
	run func(t *testing.T, args []string) result, img string) {
	script := filepath.Join(dir, "ci.sh")
	if err := os.WriteFile(script, []byte(ciScript()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			if s.tun {
				testenv.RequireTun(t)
			}
			args := []string{"-v", caissonBin + ":/caisson:ro", "-v", script + ":/ci.sh:ro"}
			args = append(args, s.flags...)
			if s.profile != "" {
				args = append(args, "--security-opt", "seccomp="+profiles[s.profile])
			}
			r := run(t, append(args, img, "sh", "/ci.sh"))
			if r.code != 0 {
				t.Fatalf("%s run: exit %d\nstdout: %s\nstderr: %s", e.name, r.code, r.stdout, r.stderr)
			}
			if os.Getenv("CAISSON_CI_DEBUG") != "" {
				t.Logf("container output:\n%s", r.stdout)
			}
			res := parseCI(t, r.stdout)
			outerNS := strings.Fields(res["outer"].stdout)
			if len(outerNS) != 9 {
				t.Fatalf("outer namespaces and host name: %q", res["outer"].stdout)
			}
			outerHost := outerNS[8]
			if s.noNamespaces {
				checkCINoNamespaces(t, e, res)
				return
			}
			checkCISeed(t, s, res["seed"], outerNS[:8], outerHost)
			checkCIDoctor(t, e, s, res["doctor"])
			checkCIRefusals(t, e, s, res)
			if after := strings.Fields(res["after"].stdout); len(after) != 2 || after[0] != "gone" || after[1] != outerHost {
				t.Errorf("after the sandboxes the container must have neither the sandbox's mount nor its host name: %q", res["after"].stdout)
			}
		})
	}
}

// ciNotices are the notices an outer sandbox's refusals cause, by a word of each.
var ciNotices = map[string]string{
	"hostname": "caisson: notice: the sandbox keeps the host name ",
	"proc":     "caisson: notice: the sandbox shows the outer /proc, read-only",
	"sys":      "caisson: notice: the sandbox shows the outer /sys, read-only",
	"time":     "caisson: notice: the sandbox shares the outer time namespace",
	"seccomp":  "caisson: notice: the command runs without caisson's seccomp filter",
}

// checkCINotices checks that stderr has exactly the notices want (one line each, naming the fix) and nothing else
// but what caisson says about the ID maps of uid 0 in a container (no passwd entry, no subordinate ranges).
func checkCINotices(t *testing.T, name, stderr string, want map[string]bool) {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if line == "" || strings.HasPrefix(line, "caisson: notice: uid 0 has no user name") ||
			strings.HasPrefix(line, "caisson: warning: /etc/subuid: no range for root") ||
			strings.HasPrefix(line, "caisson: warning: /etc/subgid: no range for root") {
			continue
		}
		found := ""
		for k, prefix := range ciNotices {
			if strings.HasPrefix(line, prefix) {
				found = k
			}
		}
		switch {
		case found == "":
			t.Errorf("%s: unexpected line on stderr: %q", name, line)
		case !want[found]:
			t.Errorf("%s: unexpected %s notice: %q", name, found, line)
		case !strings.Contains(line, "; fix: "):
			t.Errorf("%s: the %s notice names no fix: %q", name, found, line)
		}
	}
	for k, w := range want {
		if n := strings.Count(stderr, ciNotices[k]); w && n != 1 {
			t.Errorf("%s: want one %s notice, got %d in %q", name, k, n, stderr)
		}
	}
}

// checkCISeed checks the seed's exercises in the sandbox against what the container allows.
func checkCISeed(t *testing.T, s ciSetup, o *ciOutput, outerNS []string, outerHost string) {
	t.Helper()
	if o.code != 0 {
		t.Fatalf("seed: exit %d\nstdout: %s\nstderr: %s", o.code, o.stdout, o.stderr)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(o.stdout), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k] = v
	}
	// Part 1: eight namespaces of the sandbox's own (the time namespace is the container's when refused).
	inner := strings.Fields(got["ns"])
	if len(inner) != 8 {
		t.Fatalf("seed: namespaces %q", got["ns"])
	}
	for i, ns := range inner {
		shared := ns == outerNS[i]
		if wantShared := strings.HasPrefix(ns, "time:") && s.refusing(); shared != wantShared {
			t.Errorf("seed: namespace %s shared with the container: %v, want %v", ns, shared, wantShared)
		}
	}
	// Part 2: PID 1 of the sandbox's /proc is caisson's init with a fresh procfs; the container's shell otherwise.
	wantPS := map[bool]string{true: "caisson-init", false: "sh"}[s.freshProc]
	if got["ps"] != wantPS {
		t.Errorf("seed: PID 1 in the sandbox's /proc is %q, want %q", got["ps"], wantPS)
	}
	// Part 3: only the loopback interface, up.
	if got["links"] != "1 127.0.0.1/8" {
		t.Errorf("seed: network namespace: %q, want only lo with 127.0.0.1/8", got["links"])
	}
	// Part 4: a private mount.
	if got["mount"] != "namespace secret" {
		t.Errorf("seed: mount namespace: %q", got["mount"])
	}
	// Part 5: the sandbox's own host name, which root inside may change, where the container's filter allows it.
	wantHost, wantSet := "caisson", "my-container"
	if !s.hostname {
		wantHost, wantSet = outerHost, "refused"
	}
	if got["hostname"] != wantHost || got["sethostname"] != wantSet {
		t.Errorf("seed: host name %q, sethostname %q; want %q and %q", got["hostname"], got["sethostname"], wantHost, wantSet)
	}
	// Nested user and PID namespaces need a writable, fresh /proc.
	if (got["userns"] == "0") != s.freshProc || (got["pidns"] == "1") != s.freshProc {
		t.Errorf("seed: nested unshare -U -r: %q, unshare -p -f --mount-proc: %q (fresh /proc: %v)", got["userns"], got["pidns"], s.freshProc)
	}
	checkCINotices(t, "seed", o.stderr, map[string]bool{"hostname": !s.hostname, "proc": !s.freshProc, "sys": !s.freshProc,
		"time": s.refusing(), "seccomp": s.refusing()})
}

// ciDoctor is the part of `caisson doctor --json` the test reads.
type ciDoctor struct {
	Checks []struct {
		Name, Status, Detail, Fix string
	} `json:"checks"`
	RunWorks  bool `json:"run_works"`
	Container struct {
		Engine         string `json:"engine"`
		Rootless       bool   `json:"rootless"`
		SeccompFilters int    `json:"seccomp_filters"`
	} `json:"container"`
}

// checkCIDoctor checks doctor's verdicts and fixes against what the container allows.
func checkCIDoctor(t *testing.T, e ciEngine, s ciSetup, o *ciOutput) {
	t.Helper()
	var d ciDoctor
	if err := json.Unmarshal([]byte(o.stdout), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, o.stdout)
	}
	if o.code != 0 || !d.RunWorks {
		t.Errorf("doctor: exit %d, run_works %v: run works in every setup", o.code, d.RunWorks)
	}
	if d.Container.Engine != e.name || d.Container.Rootless != e.rootless || d.Container.SeccompFilters < 1 {
		t.Errorf("doctor: container %+v: want %s, rootless %v, a seccomp filter", d.Container, e.name, e.rootless)
	}
	checks := map[string]int{}
	for i, c := range d.Checks {
		checks[c.Name] = i
	}
	for _, w := range []struct {
		name string
		ok   bool
		fix  string
	}{
		{"container", true, ""},
		{"user namespaces", true, ""},
		{"mounts", true, ""},
		{"setns", true, ""},
		{"host name", s.hostname, e.seccompFix()},
		{"fresh /proc", s.freshProc, e.unmaskFix()},
		{"fresh /sys", s.freshProc, e.unmaskFix()},
		{"/dev/net/tun", s.tun, e.tunFix()},
		{"time namespace", !s.refusing(), e.seccompFix()},
		{"seccomp stacking", !s.refusing(), e.seccompFix()},
		{"landlock", !s.refusing(), e.seccompFix()},
	} {
		i, found := checks[w.name]
		if !found {
			t.Errorf("doctor: no %q check", w.name)
			continue
		}
		c := d.Checks[i]
		if (c.Status == "ok") != w.ok || (!w.ok && (c.Status != "warn" || !strings.HasPrefix(c.Fix, w.fix))) {
			t.Errorf("doctor: %s: %s %q fix %q; want ok %v, else warn with fix %q", w.name, c.Status, c.Detail, c.Fix, w.ok, w.fix)
		}
	}
}

// checkCIRefusals checks the explicit requests: each works where the container allows it and otherwise fails
// with one error line naming the container's restriction and the engine's fix.
func checkCIRefusals(t *testing.T, e ciEngine, s ciSetup, res map[string]*ciOutput) {
	t.Helper()
	refused := func(name, prefix, fix string) {
		t.Helper()
		o := res[name]
		errors := 0
		for _, line := range strings.Split(strings.TrimSpace(o.stderr), "\n") {
			if !strings.HasPrefix(line, "caisson: notice: ") && !strings.HasPrefix(line, "caisson: warning: ") {
				errors++
				if !strings.HasPrefix(line, prefix) || !strings.Contains(line, "; fix: "+fix) {
					t.Errorf("%s: error line %q; want %q... with the fix %q", name, line, prefix, fix)
				}
			}
		}
		if o.code != 125 || errors != 1 {
			t.Errorf("%s: exit %d with %d error lines: %q; want 125 and one line", name, o.code, errors, o.stderr)
		}
	}
	worked := func(name string, want *regexp.Regexp) {
		t.Helper()
		o := res[name]
		if o.code != 0 || !want.MatchString(o.stdout) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0 and %s", name, o.code, o.stdout, o.stderr, want)
		}
	}
	seccompFix := e.seccompFix()
	if s.hostname {
		worked("hostname", regexp.MustCompile(`^web\n$`))
	} else {
		refused("hostname", "caisson: --hostname web: operation not permitted: ", seccompFix)
	}
	switch {
	case !s.tun:
		refused("pasta", "caisson: --net pasta: /dev/net/tun: no such file or directory: ", e.tunFix())
	case !s.route:
		refused("pasta", "caisson: slirp: pasta exited before it was ready: ", e.route)
	default:
		worked("pasta", regexp.MustCompile(`^10\.0\.2\.100/24\ndefault via 10\.0\.2\.2 dev tap0`))
	}
	if s.refusing() {
		// ENOSYS from the filter looks like a kernel without Landlock: the error names both.
		refused("landlock", "caisson: harden: --landlock: this kernel has no Landlock (function not implemented)", seccompFix)
	} else {
		worked("landlock", regexp.MustCompile(`^landlock-ok\n$`))
	}
	switch {
	case s.refusing():
		refused("time-offset", "caisson: --time-offset: function not implemented: ", seccompFix)
		refused("strict", "caisson: --security strict: function not implemented: ", seccompFix)
	case !s.freshProc:
		refused("time-offset", "caisson: --time-offset: ", e.unmaskFix())
		refused("strict", "caisson: --security strict: ", e.unmaskFix())
	default:
		o := res["time-offset"]
		f := strings.Fields(o.stdout)
		if up, err := strconv.ParseFloat(strings.Join(f[:min(len(f), 1)], ""), 64); o.code != 0 || err != nil || up < 86400 {
			t.Errorf("time-offset: exit %d, uptime %q: want at least the 86400 s offset; stderr %q", o.code, o.stdout, o.stderr)
		}
		worked("strict", regexp.MustCompile(`^strict-ok\n$`))
	}
	// A request that works says nothing but the notices of the defaults the container refuses (time-offset and
	// strict share the UTS namespace: no host name to set).
	for _, c := range []string{"hostname", "pasta", "time-offset", "strict", "landlock"} {
		if o := res[c]; o.code == 0 {
			checkCINotices(t, c, o.stderr, map[string]bool{"hostname": !s.hostname && c == "pasta",
				"proc": !s.freshProc, "sys": !s.freshProc, "time": s.refusing() && c != "time-offset",
				"seccomp": s.refusing() && c != "strict"})
		}
	}
}

// checkCINoNamespaces: where the container refuses new user namespaces (Docker's default profile) caisson cannot
// run at all; every run fails with one line naming the filter and the fix, and doctor says so.
func checkCINoNamespaces(t *testing.T, e ciEngine, res map[string]*ciOutput) {
	t.Helper()
	fix := e.seccompFix()
	for _, c := range []string{"seed", "hostname", "time-offset", "strict", "landlock"} {
		o := res[c]
		var errs []string
		for _, line := range strings.Split(strings.TrimSpace(o.stderr), "\n") {
			if !strings.HasPrefix(line, "caisson: notice: ") && !strings.HasPrefix(line, "caisson: warning: ") {
				errs = append(errs, line)
			}
		}
		if o.code != 125 || len(errs) != 1 || !strings.HasPrefix(errs[0], "caisson: cannot create the sandbox: ") ||
			!strings.Contains(errs[0], "seccomp filter refuses new user namespaces; fix: "+fix) {
			t.Errorf("%s: exit %d, stderr %q; want 125 and one line naming the filter and %q", c, o.code, o.stderr, fix)
		}
	}
	var d ciDoctor
	if err := json.Unmarshal([]byte(res["doctor"].stdout), &d); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, res["doctor"].stdout)
	}
	ok := false
	for _, c := range d.Checks {
		if c.Name == "user namespaces" {
			ok = c.Status == "fail" && strings.HasPrefix(c.Fix, fix)
		}
	}
	if res["doctor"].code != 1 || d.RunWorks || !ok {
		t.Errorf("doctor: exit %d, run_works %v, user namespaces check right: %v; want 1, false, a failure with %q\n%s",
			res["doctor"].code, d.RunWorks, ok, fix, res["doctor"].stdout)
	}
}

// Inside an outer sandbox whose /dev lacks nodes (here a caisson sandbox whose root removed /dev/full and
// /dev/tty), the inner sandbox's /dev goes without them, with one notice naming them; the rest works.
func TestOuterMissingDevices(t *testing.T) {
	requireSandbox(t)
	r := caisson(t, "run", "--no-cwd", "--ro-bind", bin(t)+":/tmp/caisson", "--", "sh", "-c",
		`umount /dev/full /dev/tty && rm /dev/full /dev/tty && /tmp/caisson run --no-cwd --share pid -- sh -c 'ls /dev | tr "\n" " "; echo x >/dev/null && echo null-ok'`)
	if r.code != 0 || r.stdout != "core fd mqueue null ptmx pts random shm stderr stdin stdout urandom zero null-ok\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var notices []string
	for _, line := range strings.Split(r.stderr, "\n") {
		if strings.Contains(line, "/dev") {
			notices = append(notices, line)
		}
	}
	if len(notices) != 1 || !strings.HasPrefix(notices[0], "caisson: notice: the sandbox's /dev has no /dev/full, /dev/tty ") ||
		!strings.Contains(notices[0], "; fix: ") {
		t.Errorf("want one notice naming both devices and the fix: %q", r.stderr)
	}
}

// TestRootModeCIDocker runs caisson in Docker containers (Debian's docker.io daemon with runc, a daemon of the
// test's own as in engine_docker_test.go: data and exec roots, socket, no bridge, no iptables), as root: Docker's
// own default seccomp profile refuses new user namespaces, the shipped profile lifts that, systempaths=unconfined
// the masks.
func TestRootModeCIDocker(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	testenv.RequireCommand(t, "dockerd")
	testenv.RequireCommand(t, "docker")
	testenv.RequireCommand(t, "passt")
	caissonBin := bin(t)
	shipped := shippedProfile(t)
	dir, err := os.MkdirTemp("/tmp", "dockerd.") // short: the socket's path is bounded
	if err != nil {
		t.Fatal(err)
	}
	host := "unix://" + filepath.Join(dir, "d.sock")
	docker := func(t *testing.T, args ...string) result {
		t.Helper()
		return runCmd(t, 120*time.Second, nil, nil, append([]string{"docker", "-H", host}, args...)...)
	}
	d := startDaemon(t, dir, "dockerd", func() bool {
		return exec.Command("docker", "-H", host, "version").Run() == nil
	}, "dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "-H", host, "--bridge", "none", "--iptables=false",
		"--ip6tables=false", "--ip-masq=false", "--storage-driver", "overlay2")
	t.Cleanup(func() {
		if ids := strings.Fields(docker(t, "ps", "-aq").stdout); len(ids) > 0 {
			docker(t, append([]string{"rm", "-f"}, ids...)...)
		}
		d.stop(t)
		noRuntimeLeft(t, dir)
		exec.Command("umount", "-R", filepath.Join(dir, "data")).Run()
		os.RemoveAll(dir)
	})
	rootfs := ciRootfs(t, filepath.Join(dir, "rootfs"))
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfs, "--owner=0", "--group=0", "--numeric-owner", "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	const img = "localhost/caisson-ci"
	if r := docker(t, "import", "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", tarball, img); r.code != 0 {
		t.Fatalf("docker import: exit %d: %s", r.code, r.stderr)
	}
	e := ciEngine{name: "docker", unmask: "systempaths=unconfined", route: "docker run with a network other than --network none"}
	runCISetups(t, e, ciDockerSetups, caissonBin, dir, map[string]string{"shipped": shipped}, func(t *testing.T, args []string) result {
		return docker(t, append([]string{"run", "--rm", "--pull", "never"}, args...)...)
	}, img)
}
