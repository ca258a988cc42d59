package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// Docker (Debian's docker.io) with caisson-oci added as a runtime (dockerd --add-runtime), a daemon of the test's
// own (data root, exec root, socket, its own containerd), no bridge and no iptables: containers use --network none.
// run --rm with the status, -it through a pty, -d then exec, logs and stop.
func TestRootModeDocker(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	testenv.RequireCommand(t, "dockerd")
	testenv.RequireCommand(t, "docker")
	oci := ociBin(t)
	dir, err := os.MkdirTemp("/tmp", "dockerd.")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "d.sock")
	host := "unix://" + sock
	d := startDaemon(t, dir, "dockerd", func() bool {
		return exec.Command("docker", "-H", host, "version").Run() == nil
	}, "dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"), "-H", host, "--bridge", "none", "--iptables=false",
		"--ip6tables=false", "--ip-masq=false", "--storage-driver", "overlay2", "--add-runtime", "caisson="+oci)
	docker := func(args ...string) result {
		t.Helper()
		return runCmd(t, 120*time.Second, nil, nil, append([]string{"docker", "-H", host}, args...)...)
	}
	must := func(args ...string) string {
		t.Helper()
		r := docker(args...)
		if r.code != 0 {
			t.Fatalf("docker %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
		}
		return r.stdout
	}
	t.Cleanup(func() {
		ids := strings.Fields(docker("ps", "-aq").stdout)
		if len(ids) > 0 {
			docker(append([]string{"rm", "-f"}, ids...)...)
		}
		d.stop(t)
		noRuntimeLeft(t, dir)
		// dockerd's own containerd keeps overlay mounts until it exits; then everything goes.
		exec.Command("umount", "-R", filepath.Join(dir, "data")).Run()
		os.RemoveAll(dir)
	})
	must("import", "--change", "ENV PATH=/bin", rootfsTar(t, t.TempDir()), "localhost/bb")
	run := []string{"run", "--runtime", "caisson", "--network", "none"}

	r := docker(append(run, "--rm", "localhost/bb", "sh", "-c", "echo hi-docker; exit 4")...)
	if r.code != 4 || r.stdout != "hi-docker\n" {
		t.Errorf("docker run --rm: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if rt := strings.TrimSpace(must("info", "--format", "{{range $k, $v := .Runtimes}}{{$k}} {{end}}")); !strings.Contains(rt, "caisson") {
		t.Errorf("docker info lists runtimes %q", rt)
	}
	script := testenv.RequireCommand(t, "script")
	out, err := exec.Command(script, "-qec", "stty rows 21 cols 55; docker -H "+host+" run -it --rm --runtime caisson --network none localhost/bb sh -c 'tty; stty size; exit 3'", "/dev/null").CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	if code != 3 || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "21 55") {
		t.Errorf("docker run -it: exit %d %q", code, out)
	}
	must(append(run, "-d", "--name", "d1", "localhost/bb", "sh", "-c", `echo started; trap "echo got-term; exit 0" TERM; while :; do sleep 0.2; done`)...)
	r = docker("exec", "d1", "sh", "-c", "echo exec-ok; exit 6")
	if r.code != 6 || r.stdout != "exec-ok\n" {
		t.Errorf("docker exec: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	time.Sleep(300 * time.Millisecond)
	must("stop", "-t", "10", "d1")
	if logs := must("logs", "d1"); !strings.Contains(logs, "started") || !strings.Contains(logs, "got-term") {
		t.Errorf("docker logs %q", logs)
	}
	if code := strings.TrimSpace(must("inspect", "--format", "{{.State.ExitCode}}", "d1")); code != "0" {
		t.Errorf("exit code after stop %q", code)
	}
	must("rm", "d1")
	r = docker(append(run, "--rm", "localhost/bb", "no-such-command")...)
	if r.code != 127 || !strings.Contains(r.stderr, "executable file not found") {
		t.Errorf("missing command: exit %d %q", r.code, r.stderr)
	}
}
