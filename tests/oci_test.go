package tests

// The OCI runtime's integration tests. Each TestOCI* runs twice: as the unprivileged test user (caisson-oci in
// rootless mode, with runc spec --rootless's kind of config: a user namespace mapping the caller's ids) and, in
// run-integration.sh's root phase, as root (rootful, no user namespace, cgroups). TestRootModeOCI* run as root only.

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

func args(a ...string) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Process.Args = a }
}

// The lifecycle an engine drives: create leaves the process waiting (state created, pid file = state's pid,
// args not run yet), start runs it, state reads stopped once it exits, delete removes everything.
func TestOCILifecycle(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(args("sh", "-c", "echo started; id -u; hostname"))
	id := containerID(t, "life")
	c := o.mustCreate(id, b)
	st := o.state(id)
	if st["status"] != "created" || st["id"] != id || st["bundle"] != b {
		t.Fatalf("state after create: %v", st)
	}
	pid := readPid(t, c.pidFile)
	if int(st["pid"].(float64)) != pid || procGone(pid) {
		t.Fatalf("pid file %d, state pid %v: want the same, alive", pid, st["pid"])
	}
	if _, err := time.Parse(time.RFC3339Nano, st["created"].(string)); err != nil {
		t.Errorf("created %v is not RFC 3339: %v", st["created"], err)
	}
	if out := c.output(t); out != "" {
		t.Fatalf("the process ran before start: %q", out)
	}
	o.must("start", id)
	o.waitStatus(id, "stopped")
	if out := c.output(t); out != "started\n0\ncaisson\n" {
		t.Errorf("container output %q", out)
	}
	if r := o.cmd(nil, "start", id); r.code == 0 || !strings.Contains(r.stderr, "stopped") {
		t.Errorf("start of a stopped container: exit %d %q, want an error", r.code, r.stderr)
	}
	o.must("delete", id)
	if _, err := os.Stat(filepath.Join(o.root, id)); !os.IsNotExist(err) {
		t.Errorf("state directory left after delete: %v", err)
	}
	if r := o.cmd(nil, "state", id); r.code != 1 || !strings.Contains(r.stderr, "container does not exist") {
		t.Errorf("state after delete: exit %d %q, want runc's \"container does not exist\"", r.code, r.stderr)
	}
}

// run passes the process's exit status through and deletes the container.
func TestOCIRunStatus(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(args("sh", "-c", "exit 7"))
	r := o.cmd(nil, "run", "--bundle", b, containerID(t, "run"))
	if r.code != 7 {
		t.Fatalf("run: exit %d (want 7): %s", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(o.root); len(ents) != 0 {
		t.Errorf("run left state: %v", ents)
	}
	// A process killed by a signal (from outside: PID 1 ignores its own) exits 128+N.
	b2 := o.bundle(args("sleep", "100"))
	id := containerID(t, "run9")
	done := make(chan result, 1)
	go func() { done <- o.cmd(nil, "run", "--bundle", b2, id) }()
	o.waitStatus(id, "running")
	o.must("kill", id, "KILL")
	if r := <-done; r.code != 137 {
		t.Errorf("run of a process killed by SIGKILL: exit %d, want 137 (%s)", r.code, r.stderr)
	}
}

// exec runs processes in a running container: in its PID namespace (not PID 1), with its environment and the
// changes asked for, exit status passed through; --detach with --pid-file leaves the process running.
func TestOCIExec(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "100"}
		s.Process.Env = append(s.Process.Env, "FROM_CONFIG=yes")
	})
	id := containerID(t, "exec")
	c := o.mustCreate(id, b)
	o.must("start", id)
	r := o.cmd(nil, "exec", "--env", "EXTRA=1", "--cwd", "/tmp", id, "sh", "-c",
		"echo $$ $FROM_CONFIG $EXTRA $(pwd); ps -o pid,args | grep -c 'sleep 100'; exit 3")
	if r.code != 3 {
		t.Fatalf("exec: exit %d (want 3): %s", r.code, r.stderr)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 5 || f[0] == "1" || f[1] != "yes" || f[2] != "1" || f[3] != "/tmp" || f[4] == "0" {
		t.Errorf("exec output %q: want a PID other than 1, the config's and the flag's env, cwd /tmp, and the sleep seen", r.stdout)
	}
	// The exec'd process is in the container's namespaces.
	init := readPid(t, c.pidFile)
	// --detach: the process outlives the command (its stdio on a file: a pipe would keep the test waiting).
	pf := filepath.Join(t.TempDir(), "exec.pid")
	devnull, _ := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	defer devnull.Close()
	ex := exec.Command(o.bin, "--root", o.root, "exec", "--detach", "--pid-file", pf, id, "sleep", "50")
	ex.Stdout, ex.Stderr = devnull, devnull
	if err := ex.Run(); err != nil {
		t.Fatalf("exec --detach: %v", err)
	}
	epid := readPid(t, pf)
	for _, ns := range []string{"mnt", "pid", "uts", "ipc", "user", "net"} {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", init, ns))
		b, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", epid, ns))
		if a != b || a == "" {
			t.Errorf("exec'd process's %s namespace %q, the container's %q", ns, b, a)
		}
	}
	if r := o.cmd(nil, "exec", id, "sh", "-c", "kill -KILL $$"); r.code != 137 {
		t.Errorf("exec of a process killed by SIGKILL: exit %d, want 137", r.code)
	}
	if r := o.cmd(nil, "exec", id, "no-such-program"); r.code == 0 || !strings.Contains(r.stderr, "executable file not found in $PATH") {
		t.Errorf("exec of a missing program: exit %d %q, want runc's \"executable file not found in $PATH\"", r.code, r.stderr)
	}
	o.must("kill", id, "KILL")
	o.waitStatus(id, "stopped")
	if r := o.cmd(nil, "exec", id, "true"); r.code == 0 {
		t.Errorf("exec into a stopped container succeeded")
	}
	o.must("delete", id)
}

// kill by name, number and with --all; a stopped container is "container not running".
func TestOCIKill(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(args("sh", "-c", "trap 'echo got-usr1' USR1; sleep 100 & wait; sleep 100 & wait"))
	id := containerID(t, "kill")
	c := o.mustCreate(id, b)
	o.must("start", id)
	time.Sleep(200 * time.Millisecond) // the trap is set
	o.must("kill", id, "SIGUSR1")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.output(t), "got-usr1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(c.output(t), "got-usr1") {
		t.Fatalf("SIGUSR1 did not reach the process: %q", c.output(t))
	}
	if r := o.cmd(nil, "kill", id, "NOSUCH"); r.code == 0 {
		t.Errorf("kill with an unknown signal succeeded")
	}
	o.must("kill", "--all", id, "9")
	o.waitStatus(id, "stopped")
	if r := o.cmd(nil, "kill", id, "TERM"); r.code != 1 || !strings.Contains(r.stderr, "container not running") {
		t.Errorf("kill of a stopped container: exit %d %q, want \"container not running\"", r.code, r.stderr)
	}
	o.must("delete", id)
}

// delete refuses a running container, --force kills it; an unknown ID is "container does not exist" (0 with
// --force); a created container is deleted (as runc and crun do: containerd deletes created tasks).
func TestOCIDelete(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(args("sleep", "100"))
	id := containerID(t, "del")
	c := o.mustCreate(id, b)
	o.must("start", id)
	if r := o.cmd(nil, "delete", id); r.code != 1 || !strings.Contains(r.stderr, "not stopped") {
		t.Fatalf("delete of a running container: exit %d %q", r.code, r.stderr)
	}
	if o.status(id) != "running" {
		t.Fatalf("the refused delete changed the container")
	}
	pid := readPid(t, c.pidFile)
	o.must("delete", "--force", id)
	if !procGone(pid) {
		t.Errorf("delete --force left the process %d running", pid)
	}
	if r := o.cmd(nil, "delete", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "container does not exist") {
		t.Errorf("delete of an unknown container: exit %d %q", r.code, r.stderr)
	}
	o.must("delete", "--force", "nosuch")
	c2 := o.mustCreate(id, b)
	pid2 := readPid(t, c2.pidFile)
	o.must("delete", id)
	if !procGone(pid2) {
		t.Errorf("delete of a created container left its process %d", pid2)
	}
}

// The console socket: the pty master is sent during create; the process has the slave as its controlling
// terminal with the config's size.
func TestOCIConsoleSocket(t *testing.T) {
	o := newOCI(t)
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.ConsoleSize = &specs.Box{Height: 33, Width: 101}
		s.Process.Args = []string{"sh", "-c", "tty; stty size; read line; echo got:$line"}
	})
	sockPath := filepath.Join(t.TempDir(), "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	masters := make(chan *os.File, 1)
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			masters <- nil
			return
		}
		defer conn.Close()
		buf, oob := make([]byte, 256), make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			masters <- nil
			return
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		if len(msgs) != 1 {
			masters <- nil
			return
		}
		fds, _ := unix.ParseUnixRights(&msgs[0])
		masters <- os.NewFile(uintptr(fds[0]), "master")
	}()
	id := containerID(t, "tty")
	o.mustCreate(id, b, "--console-socket", sockPath)
	var master *os.File
	select {
	case master = <-masters:
	case <-time.After(10 * time.Second):
	}
	if master == nil {
		t.Fatal("no terminal master received on the console socket during create")
	}
	defer master.Close()
	o.must("start", id)
	if _, err := master.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	var out []byte
	buf := make([]byte, 1024)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(out), "got:hello") && time.Now().Before(deadline) {
		_ = master.SetReadDeadline(time.Now().Add(time.Second))
		n, err := master.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil && !os.IsTimeout(err) {
			break
		}
	}
	s := strings.ReplaceAll(string(out), "\r", "")
	if !strings.Contains(s, "/dev/pts/") || !strings.Contains(s, "33 101") || !strings.Contains(s, "got:hello") {
		t.Errorf("terminal output %q: want a /dev/pts tty of 33x101 that reads input", s)
	}
	o.waitStatus(id, "stopped")
	o.must("delete", id)
	// A console socket that is not a socket is one error, and nothing is left.
	notSock := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notSock, nil, 0o644)
	if _, r := o.create(containerID(t, "tty2"), b, "--console-socket", notSock); r.code != 1 || !strings.Contains(r.stderr, "is not a socket") {
		t.Errorf("--console-socket FILE: exit %d %q", r.code, r.stderr)
	}
	if _, r := o.create(containerID(t, "tty3"), b); r.code != 1 || !strings.Contains(r.stderr, "--console-socket is required") {
		t.Errorf("terminal without --console-socket: exit %d %q", r.code, r.stderr)
	}
}

// Hooks run at their points, in order, with the state on stdin (status and pid), in the right namespaces; a failing
// or hanging create-time hook fails create and leaves nothing.
func TestOCIHooks(t *testing.T) {
	o := newOCI(t)
	out := filepath.Join(t.TempDir(), "hooks")
	os.MkdirAll(out, 0o777)
	hk := func(name string) specs.Hook {
		// Each hook records its name, the state's status and pid, and the UTS namespace it runs in.
		return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c",
			`s=$(cat); st=$(echo "$s" | sed 's/.*"status":"\([a-z]*\)".*/\1/'); echo "` + name +
				` $st $(readlink /proc/self/ns/uts)" >> ` + out + "/log"}}
	}
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"true"}
		s.Hooks = &specs.Hooks{
			Prestart: []specs.Hook{hk("prestart")}, CreateRuntime: []specs.Hook{hk("createRuntime")},
			CreateContainer: []specs.Hook{hk("createContainer")}, StartContainer: []specs.Hook{hk("startContainer")},
			Poststart: []specs.Hook{hk("poststart")}, Poststop: []specs.Hook{hk("poststop")},
		}
	})
	// createContainer and startContainer run in the container, whose root is the bundle's: /bin/sh is busybox there
	// too, and the log directory is reached through the bundle (bound in).
	s := readSpec(t, b)
	s.Mounts = append(s.Mounts, specs.Mount{Destination: out, Type: "bind", Source: out, Options: []string{"bind"}})
	writeSpec(t, b, s)
	id := containerID(t, "hooks")
	o.mustCreate(id, b)
	o.must("start", id)
	o.waitStatus(id, "stopped")
	o.must("delete", id)
	log, _ := os.ReadFile(filepath.Join(out, "log"))
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	hostUTS, _ := os.Readlink("/proc/self/ns/uts")
	want := []struct {
		name, status string
		host         bool
	}{
		{"prestart", "creating", true}, {"createRuntime", "creating", true}, {"createContainer", "creating", false},
		{"startContainer", "created", false}, {"poststart", "running", true}, {"poststop", "stopped", true},
	}
	if len(lines) != len(want) {
		t.Fatalf("hooks log:\n%s\nwant %d lines", log, len(want))
	}
	for i, w := range want {
		f := strings.Fields(lines[i])
		if len(f) != 3 || f[0] != w.name || f[1] != w.status || (f[2] == hostUTS) != w.host {
			t.Errorf("hook line %d %q: want %s with status %s in the %s's UTS namespace", i, lines[i], w.name, w.status,
				map[bool]string{true: "runtime", false: "container"}[w.host])
		}
	}
	// A failing startContainer hook fails start (the program does not run), and the container ends stopped.
	bs := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "echo program-ran"}
		s.Hooks = &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c", "exit 3"}}}}
	})
	sid := containerID(t, "starthook")
	cs := o.mustCreate(sid, bs)
	if r := o.cmd(nil, "start", sid); r.code != 1 || !strings.Contains(r.stderr, "startContainer") {
		t.Errorf("start with a failing startContainer hook: exit %d %q", r.code, r.stderr)
	}
	o.waitStatus(sid, "stopped")
	if strings.Contains(cs.output(t), "program-ran") {
		t.Errorf("the program ran although its startContainer hook failed")
	}
	o.must("delete", sid)
	// A failing prestart hook fails create; a hanging one past its timeout too; nothing is left.
	one := 1
	for name, h := range map[string]specs.Hook{
		"fail":    {Path: "/bin/sh", Args: []string{"sh", "-c", "echo bad hook >&2; exit 3"}},
		"timeout": {Path: "/bin/sh", Args: []string{"sh", "-c", "sleep 30"}, Timeout: &one},
	} {
		b := o.bundle(func(s *specs.Spec) {
			s.Process.Args = []string{"true"}
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{h}}
		})
		start := time.Now()
		_, r := o.create(containerID(t, "hook"+name), b)
		if r.code != 1 || !strings.Contains(r.stderr, "prestart[0] hook") {
			t.Errorf("create with a %s prestart hook: exit %d %q", name, r.code, r.stderr)
		}
		if name == "timeout" && time.Since(start) > 10*time.Second {
			t.Errorf("the hook's 1 s timeout took %v", time.Since(start))
		}
		if ents, _ := os.ReadDir(o.root); len(ents) != 0 {
			t.Errorf("failed create left state: %v", ents)
		}
	}
}

// Namespaces joined by path, every kind the container can share, user and mount included (what the pre-runtime
// stage is for): a second container joins the first's; PID and time joins fork into them.
func TestOCIJoinNamespaces(t *testing.T) {
	o := newOCI(t)
	b1 := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "100"}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
		if !hasNS(s, specs.NetworkNamespace) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}
	})
	first := containerID(t, "pod")
	c1 := o.mustCreate(first, b1)
	o.must("start", first)
	pid := readPid(t, c1.pidFile)
	kinds := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.IPCNamespace: "ipc",
		specs.UTSNamespace: "uts", specs.PIDNamespace: "pid", specs.CgroupNamespace: "cgroup"}
	if o.rootless {
		kinds[specs.UserNamespace] = "user"
	}
	b2 := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'; exec sleep 100"}
		ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
		for t, f := range kinds {
			ns = append(ns, specs.LinuxNamespace{Type: t, Path: fmt.Sprintf("/proc/%d/ns/%s", pid, f)})
		}
		s.Linux.Namespaces = ns
		s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
		s.Hostname = ""
		// The first container's /sys and mqueue are its own: a second instance is refused from outside the
		// namespaces' owner; bind them as runc would fall back to.
		for i := range s.Mounts {
			if s.Mounts[i].Type == "sysfs" {
				s.Mounts[i] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "ro"}}
			}
		}
	})
	second := containerID(t, "app")
	c2 := o.mustCreate(second, b2)
	pid2 := readPid(t, c2.pidFile)
	// Read once the process runs its program: until then it is not dumpable, and an unprivileged caller cannot
	// read its namespace links.
	o.must("start", second)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readCmdline(pid2), "sleep") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, f := range kinds {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, f))
		b, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid2, f))
		if a == "" || a != b {
			t.Errorf("joined %s namespace: %q, the first container's %q", f, b, a)
		}
	}
	for len(strings.Fields(c2.output(t))) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := strings.Fields(c2.output(t))
	if len(out) != 2 || out[0] == "1" || out[1] == "1" {
		t.Errorf("second container's output %q: want a PID other than 1 and the first container's processes", c2.output(t))
	}
	o.must("delete", "--force", second)
	o.must("delete", "--force", first)

	// A mount namespace joined by path (made by unshare(1): a copy of the host's, where the bundle is visible) gets
	// the container's root and mounts like a new one, as with runc; as an ordinary user with its user namespace.
	holderArgs := []string{"--mount", "--propagation", "private", "sleep", "100"}
	if o.rootless {
		holderArgs = append([]string{"--user", "--map-root-user"}, holderArgs...)
	}
	holder := exec.Command("unshare", holderArgs...)
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	hp := holder.Process.Pid
	deadline = time.Now().Add(5 * time.Second)
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for {
		cur, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", hp))
		if (cur != "" && cur != self) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b3 := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "cat /proc/self/mountinfo | wc -l; exec sleep 100"}
		var ns []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			switch n.Type {
			case specs.MountNamespace:
				n.Path = fmt.Sprintf("/proc/%d/ns/mnt", hp)
			case specs.UserNamespace:
				n.Path = fmt.Sprintf("/proc/%d/ns/user", hp)
			}
			ns = append(ns, n)
		}
		s.Linux.Namespaces = ns
		s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
	})
	third := containerID(t, "mntjoin")
	c3 := o.mustCreate(third, b3)
	pid3 := readPid(t, c3.pidFile)
	o.must("start", third)
	for !strings.Contains(readCmdline(pid3), "sleep") && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(10 * time.Millisecond)
	}
	a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", hp))
	m3, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid3))
	if a == "" || a != m3 {
		t.Errorf("joined mount namespace %q, the holder's %q", m3, a)
	}
	o.must("delete", "--force", third)
}

func readCmdline(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return string(b)
}

func hasNS(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}

// Bad input: one clear error each, exit 1, nothing left behind, other containers untouched.
func TestOCIBadInput(t *testing.T) {
	o := newOCI(t)
	other := containerID(t, "other")
	bo := o.bundle(args("sleep", "100"))
	o.mustCreate(other, bo)
	good := o.bundle(args("true"))
	cases := []struct {
		name  string
		setup func() (bundle string, flags []string)
		want  string
	}{
		{"missing bundle", func() (string, []string) { return "/nonexistent/bundle", nil }, "no such file or directory"},
		{"not JSON", func() (string, []string) {
			b := o.bundle(nil)
			os.WriteFile(filepath.Join(b, "config.json"), []byte("{\n \"ociVersion\": \"1.0.2\",\n oops"), 0o644)
			return b, nil
		}, "config.json:3: not valid JSON"},
		{"ociVersion 2", func() (string, []string) { return o.bundle(func(s *specs.Spec) { s.Version = "2.0.0" }), nil }, "ociVersion: major version 2"},
		{"unknown namespace", func() (string, []string) {
			return o.bundle(func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "foo"})
			}), nil
		}, `unknown namespace type "foo"`},
		{"namespace path not a namespace", func() (string, []string) {
			return o.bundle(func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace, Path: "/etc/hostname"})
			}), nil
		}, "is not a namespace file"},
		{"namespace of the wrong type", func() (string, []string) {
			return o.bundle(func(s *specs.Spec) {
				s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace, Path: "/proc/self/ns/uts"})
			}), nil
		}, "is a uts namespace, not cgroup"},
		{"mappings without a user namespace", func() (string, []string) {
			return o.bundle(func(s *specs.Spec) {
				var ns []specs.LinuxNamespace
				for _, n := range s.Linux.Namespaces {
					if n.Type != specs.UserNamespace {
						ns = append(ns, n)
					}
				}
				s.Linux.Namespaces = ns
				s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}}
			}), nil
		}, "mappings given without a user namespace"},
		{"duplicate ID", func() (string, []string) { return good, []string{"id:" + other} }, "container with id exists"},
		{"ID with a slash", func() (string, []string) { return good, []string{"id:a/b"} }, "invalid container ID"},
		{"ID dot-dot", func() (string, []string) { return good, []string{"id:.."} }, "invalid container ID"},
		{"relative cwd", func() (string, []string) { return o.bundle(func(s *specs.Spec) { s.Process.Cwd = "tmp" }), nil }, "process.cwd"},
		{"missing program", func() (string, []string) { return o.bundle(args("no-such-program")), nil }, "executable file not found in $PATH"},
		{"hostname without UTS", func() (string, []string) {
			return o.bundle(func(s *specs.Spec) {
				var ns []specs.LinuxNamespace
				for _, n := range s.Linux.Namespaces {
					if n.Type != specs.UTSNamespace {
						ns = append(ns, n)
					}
				}
				s.Linux.Namespaces = ns
			}), nil
		}, "hostname: cannot be set without a UTS namespace"},
	}
	for i, c := range cases {
		b, flags := c.setup()
		id := fmt.Sprintf("bad%d", i)
		var extra []string
		for _, f := range flags {
			if v, ok := strings.CutPrefix(f, "id:"); ok {
				id = v
			} else {
				extra = append(extra, f)
			}
		}
		before, _ := os.ReadFile(o.log)
		_, r := o.create(id, b, extra...)
		if r.code != 1 || !strings.Contains(r.stderr, c.want) || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 {
			t.Errorf("%s: exit %d, stderr %q: want 1 and one line with %q", c.name, r.code, r.stderr, c.want)
		}
		after, _ := os.ReadFile(o.log)
		added := strings.TrimSpace(strings.TrimPrefix(string(after), string(before)))
		var line map[string]string
		if json.Unmarshal([]byte(added), &line) != nil || line["level"] != "error" || !strings.Contains(line["msg"], c.want) {
			t.Errorf("%s: the JSON log got %q: want one error line", c.name, added)
		}
		ents, _ := os.ReadDir(o.root)
		if len(ents) != 1 || ents[0].Name() != other {
			t.Errorf("%s: state left: %v", c.name, ents)
		}
	}
	if o.status(other) != "created" {
		t.Errorf("the other container's status is %q after the bad input", o.status(other))
	}
	// start of a container that is not created, kill/delete of unknown ones.
	o.must("start", other)
	if r := o.cmd(nil, "start", other); r.code != 1 || !strings.Contains(r.stderr, "already running") {
		t.Errorf("start of a running container: exit %d %q", r.code, r.stderr)
	}
	for _, a := range [][]string{{"kill", "nosuch"}, {"state", "nosuch"}, {"start", "nosuch"}, {"exec", "nosuch", "true"}} {
		if r := o.cmd(nil, a...); r.code != 1 || !strings.Contains(r.stderr, "container does not exist") {
			t.Errorf("%v: exit %d %q", a, r.code, r.stderr)
		}
	}
	// state and list print nothing on stderr when they succeed (containerd parses both streams together).
	if r := o.cmd(nil, "state", other); r.code != 0 || r.stderr != "" {
		t.Errorf("state: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := o.cmd(nil, "list", "--format", "json"); r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, other) {
		t.Errorf("list: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := o.cmd(nil, "ps", "--format", "json", other); r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "[") {
		t.Errorf("ps --format json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	o.must("delete", "--force", other)
}

// A create killed half-way (SIGKILL of the runtime, as when an engine's shim dies) leaves no process; the next
// delete --force cleans the state and the ID can be used again.
func TestOCICreateKilled(t *testing.T) {
	o := newOCI(t)
	hookDir := t.TempDir()
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"true"}
		// A prestart hook that waits, so that create is surely mid-way when it is killed.
		s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/sh", Args: []string{"sh", "-c",
			"touch " + hookDir + "/in; sleep 30"}}}}
	})
	id := containerID(t, "killed")
	cmd := exec.Command(o.bin, "--root", o.root, "create", "--bundle", b, id)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(hookDir + "/in"); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stages := userProcesses(t, "caisson-oci-init")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	// The stage dies with its parent: its socket closes.
	waitGone(t, "caisson-oci-init", 5*time.Second)
	if len(stages) == 0 {
		t.Errorf("no stage process was seen while create ran")
	}
	_ = exec.Command("pkill", "-f", hookDir).Run() // the hook is the test's own process tree's
	o.must("delete", "--force", id)
	o.must("run", "--bundle", o.bundle(args("true")), id)
}

// The runtime's JSON log gets exactly one error line per failed invocation (Podman parses the file as one object).
func TestOCILogJSON(t *testing.T) {
	o := newOCI(t)
	r := o.cmd(nil, "state", "nosuch")
	if r.code != 1 {
		t.Fatalf("state nosuch: exit %d", r.code)
	}
	lines := o.logLines()
	if len(lines) != 1 || lines[0]["level"] != "error" || lines[0]["msg"] != "container does not exist" {
		t.Fatalf("log: %v", lines)
	}
	if _, err := time.Parse(time.RFC3339Nano, lines[0]["time"]); err != nil {
		t.Errorf("log time %q: %v", lines[0]["time"], err)
	}
	if !json.Valid([]byte(mustRead(t, o.log))) {
		t.Errorf("the log file is not one JSON object")
	}
}

func mustRead(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// features and spec: engines introspect the runtime (containerd runs `features`), users start from `spec`.
func TestOCIFeaturesAndSpec(t *testing.T) {
	o := newOCI(t)
	var f map[string]any
	if err := json.Unmarshal([]byte(o.must("features")), &f); err != nil {
		t.Fatal(err)
	}
	if f["ociVersionMax"] != specs.Version || f["linux"] == nil {
		t.Errorf("features: %v", f)
	}
	lin := f["linux"].(map[string]any)
	me := lin["mountExtensions"].(map[string]any)["idmap"].(map[string]any)
	if me["enabled"] != false {
		t.Errorf("features says idmapped mounts are %v; caisson-oci does not support them", me["enabled"])
	}
	dir := t.TempDir()
	o.must("spec", "--bundle", dir)
	if r := o.cmd(nil, "spec", "--bundle", dir); r.code != 1 || !strings.Contains(r.stderr, "exists") {
		t.Errorf("spec over an existing config.json: exit %d %q", r.code, r.stderr)
	}
}

// A rootless container whose user namespace maps the caller's subordinate ranges (newuidmap), as Podman's and
// runc's rootless configs with --userns do: ids inside map to subordinate ids outside.
func TestRootlessOCISubordinateMaps(t *testing.T) {
	if os.Getuid() == 0 {
		testenv.SkipOrFail(t, "as root there are no subordinate ranges to use (run as the test user)")
	}
	testenv.RequireSubIDs(t)
	o := newOCI(t)
	start := subStart(t, "/etc/subuid")
	gstart := subStart(t, "/etc/subgid")
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "cat /proc/self/uid_map; chown 1000:1000 /tmp && stat -c %u /tmp"}
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getuid()), Size: 1}, {ContainerID: 1, HostID: start, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: uint32(os.Getgid()), Size: 1}, {ContainerID: 1, HostID: gstart, Size: 65536}}
		s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_CHOWN")
		s.Process.Capabilities.Effective = append(s.Process.Capabilities.Effective, "CAP_CHOWN")
		s.Process.Capabilities.Permitted = append(s.Process.Capabilities.Permitted, "CAP_CHOWN")
	})
	r := o.cmd(nil, "run", "--bundle", b, containerID(t, "sub"))
	if r.code != 0 {
		t.Fatalf("run: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, strconv.Itoa(int(start))) || !strings.HasSuffix(strings.TrimSpace(r.stdout), "1000") {
		t.Errorf("output %q: want the subordinate range in the map and /tmp owned by 1000 inside", r.stdout)
	}
	st, err := os.Stat(filepath.Join(b, "rootfs/tmp"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != start+999 {
		t.Errorf("/tmp's owner on the host: %v, want subordinate uid %d", st.Sys().(*syscall.Stat_t).Uid, start+999)
	}
	chownBack(t, o, b) // the test's temporary directory must stay removable by the test user

}

// chownBack gives the bundle's /tmp back to the caller (its owner is a subordinate id after the test).
func chownBack(t *testing.T, o *ociRT, b string) {
	s := readSpec(t, b)
	s.Process.Args = []string{"chown", "0:0", "/tmp"}
	writeSpec(t, b, s)
	o.cmd(nil, "run", "--bundle", b, containerID(t, "chownback"))
}

func subStart(t testing.TB, file string) uint32 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) == 3 && (f[0] == os.Getenv("USER") || f[0] == strconv.Itoa(os.Getuid())) {
			n, _ := strconv.ParseUint(f[1], 10, 32)
			return uint32(n)
		}
	}
	t.Fatalf("no %s entry", file)
	return 0
}

// cgroupFile reads one file of the container's group in a v1 hierarchy (or the unified one on a v2 host).
func cgroupFile(t *testing.T, hierarchy, path, file string) string {
	t.Helper()
	for _, base := range []string{"/sys/fs/cgroup/" + hierarchy, "/sys/fs/cgroup"} {
		b, err := os.ReadFile(filepath.Join(base, path, file))
		if err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

// As root: linux.cgroupsPath and linux.resources through the cgroupfs driver (v1 on a hybrid host, v2 on a unified
// one), kill --all through the group, pause/resume through the freezer, update, and the groups removed by delete.
func TestRootModeOCICgroups(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	o := newOCI(t)
	id := containerID(t, "cg")
	cgPath := "/caisson-oci-test/" + id
	mem, pids, shares, quota, period := int64(64<<20), int64(50), uint64(512), int64(20000), uint64(100000)
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "sleep 100 & sleep 100 & wait"}
		s.Linux.CgroupsPath = cgPath
		s.Linux.Resources = &specs.LinuxResources{
			Memory:  &specs.LinuxMemory{Limit: &mem},
			Pids:    &specs.LinuxPids{Limit: &pids},
			CPU:     &specs.LinuxCPU{Shares: &shares, Quota: &quota, Period: &period},
			Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		}
	})
	c := o.mustCreate(id, b)
	v2 := cgroupFile(t, "", cgPath, "cgroup.controllers") != "" && cgroupFile(t, "memory", cgPath, "memory.limit_in_bytes") == ""
	if v2 {
		if got := cgroupFile(t, "", cgPath, "memory.max"); got != strconv.FormatInt(mem, 10) {
			t.Errorf("memory.max %q", got)
		}
	} else {
		for _, w := range [][3]string{{"memory", "memory.limit_in_bytes", strconv.FormatInt(mem, 10)},
			{"pids", "pids.max", "50"}, {"cpu", "cpu.shares", "512"}, {"cpu", "cpu.cfs_quota_us", "20000"}} {
			if got := cgroupFile(t, w[0], cgPath, w[1]); got != w[2] {
				t.Errorf("%s %s = %q, want %q", w[0], w[1], got, w[2])
			}
		}
		// The config's device rules first, then the defaults every container needs (/dev/null...).
		if l := cgroupFile(t, "devices", cgPath, "devices.list"); !strings.Contains(l, "c 1:3 rwm") || strings.Contains(l, "a *:* rwm") {
			t.Errorf("devices.list %q: want deny-all with the default allows", l)
		}
	}
	pid := readPid(t, c.pidFile)
	procs := cgroupFile(t, "pids", cgPath, "cgroup.procs")
	if !strings.Contains(procs, strconv.Itoa(pid)) {
		t.Errorf("the container's process %d is not in its group (cgroup.procs %q)", pid, procs)
	}
	o.must("start", id)
	// The process works with the default devices despite deny-all.
	if r := o.cmd(nil, "exec", id, "sh", "-c", "echo x > /dev/null && head -c 4 /dev/urandom | wc -c"); r.code != 0 || strings.TrimSpace(r.stdout) != "4" {
		t.Errorf("exec using /dev/null and /dev/urandom: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	var ps []int
	if err := json.Unmarshal([]byte(o.must("ps", "--format", "json", id)), &ps); err != nil || len(ps) < 3 {
		t.Errorf("ps --format json: %v, %v: want the shell and its two sleeps", ps, err)
	}
	o.must("pause", id)
	if s := o.status(id); s != "paused" {
		t.Errorf("status after pause %q", s)
	}
	if r := o.cmd(nil, "exec", id, "true"); r.code == 0 {
		t.Errorf("exec into a paused container succeeded")
	}
	o.must("resume", id)
	if s := o.status(id); s != "running" {
		t.Errorf("status after resume %q", s)
	}
	o.must("update", "--pids-limit", "40", "--memory", strconv.FormatInt(mem*2, 10), id)
	if !v2 {
		if got := cgroupFile(t, "pids", cgPath, "pids.max"); got != "40" {
			t.Errorf("pids.max after update %q", got)
		}
		if got := cgroupFile(t, "memory", cgPath, "memory.limit_in_bytes"); got != strconv.FormatInt(mem*2, 10) {
			t.Errorf("memory.limit_in_bytes after update %q", got)
		}
	}
	o.must("kill", "--all", id, "KILL")
	o.waitStatus(id, "stopped")
	for _, p := range ps {
		if !procGone(p) {
			t.Errorf("process %d of the container survived kill --all", p)
		}
	}
	o.must("delete", id)
	for _, h := range []string{"memory", "pids", "cpu", "devices", "freezer", ""} {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", h, cgPath)); err == nil {
			t.Errorf("group %s left in %s after delete", cgPath, h)
		}
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""} {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", h, "caisson-oci-test"))
	}
	// A limit the host cannot enforce is one error naming the field, and nothing is left.
	bad := o.bundle(func(s *specs.Spec) {
		s.Linux.CgroupsPath = "/caisson-oci-test/bad"
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptrU64(500)}}
	})
	if _, r := o.create(containerID(t, "cgbad"), bad); r.code != 1 || !strings.Contains(r.stderr, "memory.swappiness") {
		t.Errorf("an invalid swappiness: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/caisson-oci-test/bad"); err == nil {
		t.Errorf("the failed create left its group")
	}
	for _, h := range []string{"memory", "pids", "cpu", "cpuacct", "cpuset", "devices", "freezer", "blkio", "systemd", "unified", ""} {
		_ = os.Remove(filepath.Join("/sys/fs/cgroup", h, "caisson-oci-test"))
	}
}

func ptrU64(v uint64) *uint64 { return &v }

// As root, process.oomScoreAdj is written; a value this root may not set (lowering needs CAP_SYS_RESOURCE, which
// this machine's root lacks) is an error naming the field and the capability, not runc's riddle.
func TestRootModeOCIOOMScoreAdj(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root (run-integration.sh runs it in its root phase)")
	}
	o := newOCI(t)
	up := 500
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"cat", "/proc/self/oom_score_adj"}
		s.Process.OOMScoreAdj = &up
	})
	r := o.cmd(nil, "run", "--bundle", b, containerID(t, "oom"))
	if r.code != 0 || strings.TrimSpace(r.stdout) != "500" {
		t.Errorf("oomScoreAdj 500: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	down := -998
	b2 := o.bundle(func(s *specs.Spec) { s.Process.OOMScoreAdj = &down })
	_, r = o.create(containerID(t, "oom2"), b2)
	capSysResource := hasCap(24)
	switch {
	case capSysResource && r.code != 0:
		t.Errorf("oomScoreAdj -998 with CAP_SYS_RESOURCE: exit %d %q", r.code, r.stderr)
	case !capSysResource && (r.code != 1 || !strings.Contains(r.stderr, "process.oomScoreAdj -998") || !strings.Contains(r.stderr, "CAP_SYS_RESOURCE")):
		t.Errorf("oomScoreAdj -998 without CAP_SYS_RESOURCE: exit %d %q: want an error naming the field and the capability", r.code, r.stderr)
	}
}

// hasCap reports whether this process's bounding set holds capability c.
func hasCap(c int) bool {
	v, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
	return err == nil && v == 1
}

// probeFile returns the static probe binary's path (probe returns it as --ro-bind flags).
func probeFile(t testing.TB) string {
	t.Helper()
	return strings.TrimSuffix(probe(t)[1], ":/tmp/probe")
}

// What caisson adds in OCI mode: TIOCSTI and TIOCLINUX refused under a profile that allows every ioctl (the upper
// bits of the request included), the stage running from a sealed copy of the runtime when the caller could write
// it; and the config fields no other test covers: a time namespace's offsets, the LINUX32 personality, --no-pivot,
// --preserve-fds.
func TestOCIHardeningAndFields(t *testing.T) {
	o := newOCI(t)
	pb := probeFile(t)
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"/probe", "sys", "ioctl-tiocsti", "ioctl-tiocsti-hi"}
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/probe", Type: "bind", Source: pb, Options: []string{"bind", "ro"}})
	})
	r := o.cmd(nil, "run", "--bundle", b, containerID(t, "tiocsti"))
	if r.code != 0 || !strings.Contains(r.stdout, "ioctl-tiocsti EPERM") || !strings.Contains(r.stdout, "ioctl-tiocsti-hi EPERM") {
		t.Errorf("TIOCSTI under an allow-all profile: exit %d %q %q: want EPERM for both", r.code, r.stdout, r.stderr)
	}
	// The waiting process runs from a sealed copy of the runtime when the caller could write the binary (the
	// tests' own copy: yes).
	id := containerID(t, "sealed")
	c := o.mustCreate(id, o.bundle(args("true")))
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", readPid(t, c.pidFile)))
	if !strings.HasPrefix(exe, "/memfd:") {
		t.Errorf("the stage runs from %q, want a sealed memfd copy of the runtime", exe)
	}
	o.must("delete", id)

	// timeOffsets in a new time namespace; the LINUX32 personality.
	bt := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", "cat /proc/self/timens_offsets; uname -m"}
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 86400}, "boottime": {Secs: 3600}}
		s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32}
	})
	r = o.cmd(nil, "run", "--bundle", bt, containerID(t, "timens"))
	f := strings.Fields(r.stdout)
	if r.code != 0 || len(f) != 7 || f[0] != "monotonic" || f[1] != "86400" || f[3] != "boottime" || f[4] != "3600" || f[6] != "i686" {
		t.Errorf("time offsets and LINUX32: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// --no-pivot: the root moved over "/" and chrooted into.
	r = o.cmd(nil, "run", "--no-pivot", "--bundle", o.bundle(args("ls", "/bin/busybox")), containerID(t, "nopivot"))
	if r.code != 0 || !strings.Contains(r.stdout, "/bin/busybox") {
		t.Errorf("--no-pivot: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	// --preserve-fds 1: the caller's fd 3 reaches the container's process as fd 3.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	cmd := exec.Command(o.bin, "--root", o.root, "run", "--preserve-fds", "1", "--bundle",
		o.bundle(args("sh", "-c", "echo through-fd-3 >&3")), containerID(t, "fds"))
	cmd.ExtraFiles = []*os.File{pw}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("--preserve-fds: %v: %s", err, out)
	}
	pw.Close()
	buf := make([]byte, 64)
	n, _ := pr.Read(buf)
	if string(buf[:n]) != "through-fd-3\n" {
		t.Errorf("--preserve-fds 1: fd 3 gave %q", buf[:n])
	}
}

// A full disk under --root (a 64 KiB tmpfs here): create fails with one line naming the state file, and leaves
// no process and no state; the engines' next create (after freeing room) works.
func TestRootModeOCIFullDisk(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs root to mount a small tmpfs (run-integration.sh runs it in its root phase)")
	}
	o := newOCI(t)
	full := filepath.Join(t.TempDir(), "full")
	os.Mkdir(full, 0o700)
	if err := syscall.Mount("tmpfs", full, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Unmount(full, syscall.MNT_DETACH)
	filler, _ := os.Create(filepath.Join(full, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := filler.Write(buf); err != nil {
			break
		}
	}
	filler.Close()
	o.root = filepath.Join(full, "state")
	b := o.bundle(args("true"))
	_, r := o.create(containerID(t, "full"), b)
	if r.code != 1 || strings.Count(strings.TrimSpace(r.stderr), "\n") != 0 || !strings.Contains(r.stderr, "no space left on device") {
		t.Errorf("create on a full disk: exit %d %q: want one line saying no space is left", r.code, r.stderr)
	}
	noRuntimeLeft(t, "")
	os.Remove(filepath.Join(full, "filler"))
	if ents, _ := os.ReadDir(o.root); len(ents) != 0 {
		t.Errorf("state left on the full disk: %v", ents)
	}
	o.must("run", "--bundle", b, containerID(t, "full2"))
}
