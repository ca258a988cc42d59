package outer

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeRoot writes files (path -> content) beneath a new directory and returns it; a content starting with "->"
// makes a symbolic link to the rest.
func fakeRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "->"); ok {
			err = os.Symlink(target, p)
		} else {
			err = os.WriteFile(p, []byte(content), 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

const (
	statusFiltered = "Name:\tcaisson\nSeccomp:\t2\nSeccomp_filters:\t1\n"
	statusFree     = "Name:\tcaisson\nSeccomp:\t0\nSeccomp_filters:\t0\n"
	initialPID     = "->pid:[4026531836]"
	containerPID   = "->pid:[4026532180]"
)

// Each engine is recognised by its own marker; the innermost (a caisson sandbox) wins; the markers of an image
// seen from the host's initial PID namespace (this project's machines keep a /.dockerenv) are ignored.
func TestDetect(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	for _, tc := range []struct {
		name     string
		files    map[string]string
		env      func(string) string
		userNS   bool
		want     Engine
		rootless bool
		filters  int
	}{
		{"host", map[string]string{"proc/self/status": statusFree, "proc/self/ns/pid": initialPID}, env(), false, None, false, 0},
		{"host with a leftover /.dockerenv", map[string]string{".dockerenv": "", "proc/self/status": statusFree, "proc/self/ns/pid": initialPID}, env(), false, None, false, 0},
		{"docker", map[string]string{".dockerenv": "", "proc/self/status": statusFiltered, "proc/self/ns/pid": containerPID}, env(), false, Docker, false, 1},
		{"podman rootful", map[string]string{"run/.containerenv": "", "proc/self/status": statusFiltered}, env("container", "podman"), false, Podman, false, 1},
		{"podman rootless", map[string]string{"run/.containerenv": "", "proc/self/status": statusFiltered}, env(), true, Podman, true, 1},
		{"podman privileged says rootless", map[string]string{"run/.containerenv": "engine=\"podman-4.3.1\"\nrootless=1\n"}, env(), false, Podman, true, 0},
		{"cri-o", map[string]string{"run/.containerenv": "engine=\"cri-o\"\n"}, env(), false, Unknown, false, 0},
		{"kubernetes by env", map[string]string{"run/.containerenv": ""}, env(KubernetesEnv, "10.0.0.1"), false, Kubernetes, false, 0},
		{"kubernetes by token", map[string]string{"var/run/secrets/kubernetes.io/serviceaccount/token": "x"}, env(), false, Kubernetes, false, 0},
		{"caisson in podman", map[string]string{"run/caisson/security.json": "{}", "run/.containerenv": ""}, env(), true, Caisson, false, 0},
		{"lxc", map[string]string{}, env("container", "lxc"), false, Unknown, false, 0},
		{"a user namespace", map[string]string{}, env(), true, Unknown, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeRoot(t, tc.files)
			s := Probe{Root: root, Getenv: tc.env, UserNS: func() bool { return tc.userNS }}.Detect()
			if s.Engine != tc.want || s.Rootless != tc.rootless || s.SeccompFilters != tc.filters || s.UserNS != tc.userNS {
				t.Errorf("got %+v; want engine %q, rootless %v, %d filters", s, tc.want, tc.rootless, tc.filters)
			}
			if s.In() != (tc.want != None) || (s.In() && s.Evidence == "") {
				t.Errorf("In() %v, evidence %q", s.In(), s.Evidence)
			}
		})
	}
}

// An AppArmor profile in enforce mode is named; unconfined is not.
func TestDetectAppArmor(t *testing.T) {
	for content, want := range map[string]string{
		"docker-default (enforce)\n": "docker-default (enforce)",
		"unconfined\n":               "",
		"crun (unconfined)":          "",
	} {
		root := fakeRoot(t, map[string]string{"proc/self/attr/apparmor/current": content, ".dockerenv": ""})
		if s := (Probe{Root: root}).Detect(); s.AppArmor != want {
			t.Errorf("%q: AppArmor %q, want %q", content, s.AppArmor, want)
		}
	}
}

// Every refusal is explained and gets a fix naming the engine's own setting; the ones no setting lifts say so.
func TestWhyAndFix(t *testing.T) {
	podman := Sandbox{Engine: Podman, Rootless: true, UserNS: true, SeccompFilters: 1}
	docker := Sandbox{Engine: Docker, SeccompFilters: 1, AppArmor: "docker-default (enforce)"}
	k8s := Sandbox{Engine: Kubernetes, SeccompFilters: 1}
	nested := Sandbox{Engine: Caisson, UserNS: true, SeccompFilters: 2}
	for _, tc := range []struct {
		s        Sandbox
		n        Need
		why, fix string
	}{
		{podman, NeedHostname, "the rootless Podman container's seccomp filter refuses sethostname", "podman run --security-opt seccomp=" + ProfileFile},
		{docker, NeedHostname, "the Docker container's seccomp filter refuses sethostname", "docker run --security-opt seccomp=" + ProfileFile + " --security-opt apparmor=unconfined"},
		{k8s, NeedNamespaces, "the Kubernetes pod's container's seccomp filter refuses new user namespaces", "securityContext.seccompProfile: {type: Localhost, localhostProfile: " + ProfileFile},
		{nested, NeedHostname, "the outer caisson sandbox's seccomp filter refuses sethostname", "start the outer caisson with --security default"},
		{podman, NeedProc, "the rootless Podman container masks paths of /proc", "podman run --security-opt unmask=ALL"},
		{docker, NeedSys, "the Docker container masks paths of /sys", "docker run --security-opt systempaths=unconfined"},
		{k8s, NeedProc, "masks paths of /proc", "procMount: Unmasked"},
		{nested, NeedProc, "the outer caisson sandbox masks paths of /proc", "cannot be lifted"},
		{podman, NeedTun, "the rootless Podman container has no usable /dev/net/tun", "podman run --device /dev/net/tun"},
		{k8s, NeedTun, "has no usable /dev/net/tun", "device plugin"},
		{nested, NeedTun, "has no usable /dev/net/tun", "cannot be lifted"},
		{podman, NeedRoute, "no network interface with a default route", "podman run --network slirp4netns"},
		{docker, NeedCgroup, "does not delegate a cgroup", "docker run --memory, --pids-limit, --cpus"},
		{Sandbox{Engine: Unknown}, NeedSeccomp, "the outer container refuses seccomp(2)", ProfileFile},
		// On a host (no container recognised), the fixes are the host's own.
		{Sandbox{}, NeedTimeNS, "this host refuses new time namespaces", "SystemCallFilter="},
		{Sandbox{}, NeedProc, "this host's /proc has mounts on top of it", "where /proc and /sys are fully visible"},
		{Sandbox{}, NeedTun, "this host has no usable /dev/net/tun", "chmod 0666 /dev/net/tun"},
		{Sandbox{}, NeedCgroup, "does not delegate a cgroup", "Delegate=yes"},
	} {
		why, fix := tc.s.Why(tc.n), tc.s.Fix(tc.n)
		if !strings.Contains(why, tc.why) || !strings.Contains(fix, tc.fix) {
			t.Errorf("%s, %s:\n why %q, want %q\n fix %q, want %q", tc.s.Engine, tc.n, why, tc.why, fix, tc.fix)
		}
	}
}

// A notice is one line: what the sandbox goes without, why, the fix, and the caisson flag that avoids the step.
// A refusal of an explicit request is an error naming the flag, the cause, why and the fix.
func TestNoticeAndRefusedError(t *testing.T) {
	s := Sandbox{Engine: Podman, SeccompFilters: 1}
	n := s.Notice(NeedHostname, `the sandbox keeps the host name "abc"`, "--share uts keeps it without this notice")
	want := `caisson: notice: the sandbox keeps the host name "abc": the Podman container's seccomp filter refuses sethostname; fix: podman run --security-opt seccomp=`
	if !strings.HasPrefix(n, want) || !strings.HasSuffix(n, "; --share uts keeps it without this notice") || strings.Contains(n, "\n") {
		t.Errorf("notice %q", n)
	}
	err := error(&RefusedError{Flag: "--hostname web", Need: NeedHostname, Err: unix.EPERM, In: s})
	if !strings.HasPrefix(err.Error(), "--hostname web: operation not permitted: the Podman container's seccomp filter refuses sethostname; fix: podman run") {
		t.Errorf("error %q", err)
	}
	if !errors.Is(err, unix.EPERM) {
		t.Error("RefusedError does not unwrap to its cause")
	}
}

// Refused knows the errors of a filter or an LSM, and nothing else.
func TestRefused(t *testing.T) {
	for err, want := range map[error]bool{unix.EPERM: true, unix.EACCES: true, unix.ENOSYS: true, unix.EINVAL: false,
		unix.ENOENT: false, &os.PathError{Op: "open", Err: unix.EPERM}: true} {
		if Refused(err) != want {
			t.Errorf("Refused(%v) = %v", err, !want)
		}
	}
}

// What caisson run pays for the detection on every start (a few stat calls and two small reads).
func BenchmarkDetect(b *testing.B) {
	for b.Loop() {
		Detect(func() bool { return false })
	}
}

// Errno strips the step's wording from a wrapped errno and leaves other errors alone.
func TestErrno(t *testing.T) {
	if got := Errno(fmt.Errorf("seccomp: not supported: %w", unix.ENOSYS)); got != unix.ENOSYS {
		t.Errorf("wrapped ENOSYS: %v", got)
	}
	plain := errors.New("no errno")
	if got := Errno(plain); got != plain {
		t.Errorf("plain error: %v", got)
	}
}
