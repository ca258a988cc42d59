package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// ctrdEnv is a containerd daemon of the test's own (root, state, sockets and CNI configuration under a temporary
// directory) whose CRI plugin has a runtime handler "caisson" (the runc shim with caisson-oci as BinaryName), as a
// Kubernetes node with a RuntimeClass "caisson" has.
type ctrdEnv struct {
	t      testing.TB
	dir    string
	sock   string
	d      *daemon
	crictl string
}

// The CNI bridge of the CRI tests: traffic only between its pods and the host's address on it.
const (
	cniBridge = "cni-caisson0"
	cniSubnet = "10.213.0.0/24"
	cniName   = "caisson-test"
)

func newContainerd(t testing.TB) *ctrdEnv {
	t.Helper()
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	for _, c := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		testenv.RequireCommand(t, c)
	}
	oci := ociBin(t)
	// Short paths: containerd's sockets must fit sun_path.
	dir, err := os.MkdirTemp("/tmp", "ctrd.")
	if err != nil {
		t.Fatal(err)
	}
	e := &ctrdEnv{t: t, dir: dir, sock: filepath.Join(dir, "c.sock")}
	os.MkdirAll(filepath.Join(dir, "cni"), 0o755)
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	conf := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:latest"
  # This machine's root lacks CAP_SYS_RESOURCE, and the CRI asks oomScoreAdj -998 for the pause container.
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.caisson]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.caisson.options]
        BinaryName = %[5]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), e.sock, e.sock+".ttrpc", oci, filepath.Join(dir, "cni"))
	confPath := filepath.Join(dir, "config.toml")
	os.WriteFile(confPath, []byte(conf), 0o644)
	cni := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [
 {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
  "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": %q}]}},
 {"type": "loopback"}]}`, cniName, cniBridge, cniSubnet, cniSubnet)
	os.WriteFile(filepath.Join(dir, "cni", "10-caisson.conflist"), []byte(cni), 0o644)
	t.Cleanup(e.cleanup)
	e.d = startDaemon(t, dir, "containerd", func() bool {
		return exec.Command("ctr", "--address", e.sock, "version").Run() == nil
	}, "containerd", "--config", confPath)
	return e
}

// ctr runs ctr in namespace ns.
func (e *ctrdEnv) ctr(ns string, args ...string) result {
	e.t.Helper()
	return runCmd(e.t, 120*time.Second, nil, nil, append([]string{"ctr", "--address", e.sock, "-n", ns}, args...)...)
}

func (e *ctrdEnv) mustCtr(ns string, args ...string) string {
	e.t.Helper()
	r := e.ctr(ns, args...)
	if r.code != 0 {
		e.t.Fatalf("ctr %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// importImages imports the busybox image (localhost/bb) and a pause image whose command sleeps (localhost/pause)
// into namespace ns, made offline as docker-save archives.
func (e *ctrdEnv) importImages(ns string) {
	e.t.Helper()
	dir := e.t.TempDir()
	e.mustCtr(ns, "images", "import", imageArchive(e.t, dir, "localhost/bb:latest", nil))
	e.mustCtr(ns, "images", "import", imageArchive(e.t, filepath.Join(dir, "p"), "localhost/pause:latest", []string{"/bin/sleep", "infinity"}))
}

// cleanup removes every pod, task and container the tests left, stops containerd, and checks that no shim, stage
// or container process of this daemon is left; the CNI bridge and IPAM state go too.
func (e *ctrdEnv) cleanup() {
	if e.crictl != "" {
		e.cri("rmp", "--all", "--force")
	}
	for _, ns := range []string{"caisson-test", "k8s.io"} {
		r := runCmd(e.t, 60*time.Second, nil, nil, "ctr", "--address", e.sock, "-n", ns, "tasks", "ls", "-q")
		for _, id := range strings.Fields(r.stdout) {
			runCmd(e.t, 30*time.Second, nil, nil, "ctr", "--address", e.sock, "-n", ns, "tasks", "kill", "-s", "KILL", id)
			time.Sleep(100 * time.Millisecond)
			runCmd(e.t, 30*time.Second, nil, nil, "ctr", "--address", e.sock, "-n", ns, "tasks", "rm", "-f", id)
		}
		r = runCmd(e.t, 60*time.Second, nil, nil, "ctr", "--address", e.sock, "-n", ns, "containers", "ls", "-q")
		for _, id := range strings.Fields(r.stdout) {
			runCmd(e.t, 30*time.Second, nil, nil, "ctr", "--address", e.sock, "-n", ns, "containers", "rm", id)
		}
	}
	e.d.stop(e.t)
	noRuntimeLeft(e.t, e.sock)
	exec.Command("ip", "link", "del", cniBridge).Run()
	os.RemoveAll("/var/lib/cni/networks/" + cniName)
	os.RemoveAll(e.dir)
}

// containerd's ctr drives caisson-oci through its runc shim (--runc-binary): run with the status passed through,
// task exec, task ps, task kill, a terminal.
func TestRootModeContainerd(t *testing.T) {
	e := newContainerd(t)
	const ns = "caisson-test"
	e.importImages(ns)
	oci := ociBin(t)
	run := []string{"run", "--runtime", "io.containerd.runc.v2", "--runc-binary", oci}
	r := e.ctr(ns, append(run, "--rm", "localhost/bb:latest", "s1", "sh", "-c", "echo hi-ctr; exit 5")...)
	if r.code != 5 || r.stdout != "hi-ctr\n" {
		t.Errorf("ctr run: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	e.mustCtr(ns, append(run, "-d", "localhost/bb:latest", "d1", "sh", "-c", `trap "exit 9" TERM; while :; do sleep 0.2; done`)...)
	time.Sleep(300 * time.Millisecond)
	r = e.ctr(ns, "tasks", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in-exec; exit 6")
	if r.code != 6 || r.stdout != "in-exec\n" {
		t.Errorf("task exec: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	ps := e.mustCtr(ns, "tasks", "ps", "d1")
	if len(strings.Split(strings.TrimSpace(ps), "\n")) < 2 {
		t.Errorf("task ps: %q", ps)
	}
	e.mustCtr(ns, "tasks", "kill", "d1")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(e.mustCtr(ns, "tasks", "ls"), "STOPPED") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if ls := e.mustCtr(ns, "tasks", "ls"); !strings.Contains(ls, "STOPPED") {
		t.Errorf("after task kill: %q", ls)
	}
	e.mustCtr(ns, "tasks", "rm", "d1")
	e.mustCtr(ns, "containers", "rm", "d1")
	script := testenv.RequireCommand(t, "script")
	out, err := exec.Command(script, "-qec", "ctr --address "+e.sock+" -n "+ns+" run --rm -t --runtime io.containerd.runc.v2 --runc-binary "+
		oci+" localhost/bb:latest t1 sh -c 'tty; exit 7'", "/dev/null").CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 7 || !strings.Contains(string(out), "/dev/pts/") {
		t.Errorf("ctr run -t: exit %d %q", code, out)
	}
	// The shim killed with SIGKILL: containerd cleans up after it (its delete, which runs caisson-oci delete
	// --force): no container process is left and the ID works again.
	e.mustCtr(ns, append(run, "-d", "localhost/bb:latest", "k1", "sleep", "123")...)
	time.Sleep(300 * time.Millisecond)
	shims := pidsMatching("containerd-shim-runc-v2", "-id k1")
	if len(shims) == 0 {
		t.Fatalf("no shim of k1 found")
	}
	for _, pid := range shims {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	noRuntimeLeft(t, "sleep 123")
	e.ctr(ns, "tasks", "rm", "-f", "k1")
	e.ctr(ns, "containers", "rm", "k1")
	if r := e.ctr(ns, append(run, "--rm", "localhost/bb:latest", "k1", "true")...); r.code != 0 {
		t.Errorf("k1 after its shim was killed: exit %d %s", r.code, r.stderr)
	}
	// A command the image lacks: an error naming it, and nothing left.
	r = e.ctr(ns, append(run, "--rm", "localhost/bb:latest", "s2", "no-such-command")...)
	if r.code == 0 || !strings.Contains(r.stderr, "executable file not found in $PATH") {
		t.Errorf("missing command: exit %d %q", r.code, r.stderr)
	}
	if ls := e.mustCtr(ns, "containers", "ls", "-q"); strings.Contains(ls, "s2") {
		t.Errorf("the failed container is left: %q", ls)
	}
}

// cri runs crictl against the daemon.
func (e *ctrdEnv) cri(args ...string) result {
	e.t.Helper()
	a := append([]string{e.crictl, "--config", filepath.Join(e.dir, "crictl.yaml")}, args...)
	return runCmd(e.t, 120*time.Second, nil, nil, a...)
}

func (e *ctrdEnv) mustCri(args ...string) string {
	e.t.Helper()
	r := e.cri(args...)
	if r.code != 0 {
		e.t.Fatalf("crictl %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// writeJSON writes v as JSON into the daemon's directory.
func (e *ctrdEnv) writeJSON(name string, v any) string {
	e.t.Helper()
	b, _ := json.Marshal(v)
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return p
}

type obj = map[string]any

// podConfig is a CRI pod sandbox config: network 2 = the node's, 0 = the pod's own (CNI); pid 0 = shared in the
// pod, 1 = per container.
func podConfig(name string, network, pid int, logDir string) obj {
	c := obj{"metadata": obj{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"log_directory": logDir,
		"linux":         obj{"security_context": obj{"namespace_options": obj{"network": network, "pid": pid}}}}
	if network != 2 {
		c["hostname"] = name + "-host" // a pod on the node's network has the node's name (and UTS namespace)
	}
	return c
}

// with returns a copy of e whose helpers report to t (a subtest).
func (e *ctrdEnv) with(t testing.TB) *ctrdEnv {
	c := *e
	c.t = t
	return &c
}

// containerConfig is a CRI container config; pid is its PID namespace mode (0: the pod's, as with
// shareProcessNamespace; 1: its own).
func containerConfig(name string, pid int, cmd ...string) obj {
	return obj{"metadata": obj{"name": name}, "image": obj{"image": "localhost/bb:latest"}, "command": cmd,
		"log_path": name + ".log", "linux": obj{"security_context": obj{"namespace_options": obj{"pid": pid}}}}
}

// The CRI path a kubelet takes for a pod with runtimeClassName "caisson": containerd's CRI plugin maps the handler
// to the runc shim with caisson-oci as BinaryName. Driven with crictl: a pod sandbox (the pause container), app
// containers in it, exec (sync and with a terminal), logs, stop and removal; host networking and a CNI bridge;
// containers of one pod sharing its network, IPC and UTS namespaces (joined by path); a shared PID namespace.
func TestRootModeCRI(t *testing.T) {
	e := newContainerd(t)
	e.crictl = os.Getenv("CAISSON_CRICTL")
	if e.crictl == "" {
		e.crictl = testenv.RequireCommand(t, "crictl")
	}
	os.WriteFile(filepath.Join(e.dir, "crictl.yaml"), []byte(fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.sock, e.sock)), 0o644)
	e.importImages("k8s.io")
	logs := filepath.Join(e.dir, "logs")

	t.Run("host-network", func(t *testing.T) {
		e := e.with(t)
		pc := e.writeJSON("pod1.json", podConfig("p1", 2, 0, logs))
		pod := e.mustCri("runp", "--runtime", "caisson", pc)
		if !strings.Contains(e.mustCri("pods", "--id", pod), "caisson") {
			t.Errorf("the pod does not run on the caisson handler")
		}
		cc := e.writeJSON("c1.json", containerConfig("c1", 0, "sh", "-c", "echo hello-cri; sleep 100"))
		c := e.mustCri("create", pod, cc, pc)
		e.mustCri("start", c)
		var out string
		for i := 0; i < 100 && !strings.Contains(out, "hello-cri"); i++ {
			out = e.mustCri("logs", c)
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out, "hello-cri") {
			t.Errorf("crictl logs: %q", out)
		}
		if out := e.mustCri("exec", "-s", c, "ps"); !strings.Contains(out, "sleep infinity") {
			t.Errorf("crictl exec -s ps: %q: want the pause process seen (the pod's PID namespace is shared)", out)
		}
		// crictl reports a failed command with its status.
		if r := e.cri("exec", "-s", c, "sh", "-c", "exit 3"); r.code == 0 || !strings.Contains(r.stderr, "exited with 3") {
			t.Errorf("crictl exec -s of a failing command: exit %d %q", r.code, r.stderr)
		}
		script := testenv.RequireCommand(t, "script")
		o, _ := exec.Command(script, "-qec", e.crictl+" --config "+filepath.Join(e.dir, "crictl.yaml")+" exec -it "+c+" tty", "/dev/null").CombinedOutput()
		if !strings.Contains(string(o), "/dev/pts/") {
			t.Errorf("crictl exec -it: %q", o)
		}
		e.mustCri("stop", c)
		e.mustCri("rm", c)
		e.mustCri("stopp", pod)
		e.mustCri("rmp", pod)
	})

	t.Run("cni-bridge", func(t *testing.T) {
		e := e.with(t)
		pc := e.writeJSON("pod2.json", podConfig("p2", 0, 1, logs))
		pod := e.mustCri("runp", "--runtime", "caisson", pc)
		srv := e.mustCri("create", pod, e.writeJSON("srv.json", containerConfig("srv", 1, "sh", "-c",
			"echo pod-served > /tmp/i; while :; do nc -l -p 8080 < /tmp/i; done")), pc)
		e.mustCri("start", srv)
		cli := e.mustCri("create", pod, e.writeJSON("cli.json", containerConfig("cli", 1, "sleep", "100")), pc)
		e.mustCri("start", cli)
		// The two containers share the pod's network, IPC and UTS namespaces; each has its own PID namespace.
		ns := func(c, kind string) string {
			return strings.TrimSpace(e.mustCri("exec", "-s", c, "readlink", "/proc/self/ns/"+kind))
		}
		for _, kind := range []string{"net", "ipc", "uts"} {
			if a, b := ns(srv, kind), ns(cli, kind); a == "" || a != b {
				t.Errorf("%s namespace: srv %q, cli %q", kind, a, b)
			}
		}
		if a, b := ns(srv, "pid"), ns(cli, "pid"); a == b {
			t.Errorf("pid namespace shared (%q) with per-container PID namespaces", a)
		}
		if h := strings.TrimSpace(e.mustCri("exec", "-s", cli, "hostname")); h != "p2-host" {
			t.Errorf("hostname %q, want the pod's", h)
		}
		var got string
		for i := 0; i < 100 && got != "pod-served"; i++ {
			got = strings.TrimSpace(e.cri("exec", "-s", cli, "sh", "-c", "nc 127.0.0.1 8080 </dev/null").stdout)
			time.Sleep(50 * time.Millisecond)
		}
		if got != "pod-served" {
			t.Errorf("a container reaching its pod's server on localhost: %q", got)
		}
		// The host reaches the pod on the bridge (and nothing else is reached: the bridge has no way out).
		var insp struct {
			Status struct {
				Network struct{ IP string } `json:"network"`
			} `json:"status"`
		}
		json.Unmarshal([]byte(e.mustCri("inspectp", pod)), &insp)
		ip := insp.Status.Network.IP
		if !strings.HasPrefix(ip, "10.213.0.") {
			t.Fatalf("pod IP %q, want one of %s", ip, cniSubnet)
		}
		if got := dialReadAddr(ip + ":8080"); got != "pod-served" {
			t.Errorf("the host reaching the pod at %s:8080: %q", ip, got)
		}
		if os.Getenv("CAISSON_KEEP_POD") == "" {
			e.mustCri("stopp", pod)
			e.mustCri("rmp", pod)
		}
	})
}

// dialReadAddr connects to addr and returns the first line it reads (retrying for up to 5 s).
func dialReadAddr(addr string) string {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp4", addr, time.Second); err == nil {
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err == nil {
				return strings.TrimSpace(line)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}
