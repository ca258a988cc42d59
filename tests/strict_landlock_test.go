package tests

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// handOver listens on a UNIX socket in a new directory and, to each client, hands the descriptors of files (opened
// read-only) over SCM_RIGHTS, as a helper outside the sandbox might. It returns the directory.
func handOver(t *testing.T, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var fds []int
			for _, f := range files {
				fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err == nil {
					fds = append(fds, fd)
				}
			}
			uc := c.(*net.UnixConn)
			_, _, _ = uc.WriteMsgUnix([]byte("x"), unix.UnixRights(fds...), nil)
			for _, fd := range fds {
				unix.Close(fd)
			}
			c.Close()
		}
	}()
	return dir
}

// The strict posture applies Landlock by default (where the kernel has it): a host file or directory that reaches
// the command by any descriptor, not only stdio (here handed over a UNIX socket by a process outside), cannot be
// written through its /proc/self/fd link, while every read-write mount of the sandbox stays writable. With
// --landlock=off, and in the default posture, the writes go through (the documented control).
func TestStrictLandlockHostDescriptors(t *testing.T) {
	requireSandbox(t)
	if !landlockAvailable() {
		testenv.SkipOrFail(t, "this kernel has no Landlock: --security strict runs without it (best-effort)")
	}
	for _, c := range []struct {
		name  string
		flags []string
		want  string // the probe's result for both the file and the directory
	}{
		{"strict", []string{"--security", "strict"}, "EACCES"},
		{"strict --landlock=off", []string{"--security", "strict", "--landlock=off"}, "OK"},
		{"default", []string{"--security", "default"}, "OK"},
	} {
		t.Run(c.name, func(t *testing.T) {
			host := t.TempDir()
			victim := writeFile(t, filepath.Join(host, "victim"), "original\n")
			sock := handOver(t, victim, host)
			flags := append(append([]string{"--no-cwd", "--bind", sock + ":/tmp/sock"}, c.flags...), probe(t)...)
			got := runProbe(t, flags, "recv-fd", "/tmp/sock/s")
			if got["reopen"] != c.want || got["create"] != c.want {
				t.Errorf("reopen %q, create %q; want %s for both (%v)", got["reopen"], got["create"], c.want, got)
			}
			_, err := os.Stat(filepath.Join(host, "pwned"))
			content := readFile(t, victim)
			if c.want == "EACCES" && (content != "original\n" || err == nil) {
				t.Errorf("the host file holds %q, pwned created: %v", content, err == nil)
			}
		})
	}
}

// landlockAvailable reports whether the kernel offers Landlock (ABI 1+).
func landlockAvailable() bool {
	v, _, errno := unix.Syscall(unix.SYS_LANDLOCK_CREATE_RULESET, 0, 0, unix.LANDLOCK_CREATE_RULESET_VERSION)
	return errno == 0 && v >= 1
}

// The strict posture's own Landlock allows writes beneath every read-write mount: an --overlay root, a --bind, /run,
// /tmp, the work directory (unlike --landlock, which narrows writes to /tmp, /dev, the work directory and --rw).
func TestStrictLandlockMounts(t *testing.T) {
	requireSandbox(t)
	if !landlockAvailable() {
		testenv.SkipOrFail(t, "this kernel has no Landlock")
	}
	data := t.TempDir()
	work := t.TempDir()
	script := "echo a > /etc/caisson-test && mkdir /usr/local/caisson-test && echo b > /data/f && touch /run/r /tmp/t ./w && echo ok"
	r := caissonIn(t, work, nil, "run", "--security", "strict", "--overlay", "--bind", data+":/data", "--", "sh", "-c", script)
	if r.code != 0 || r.stdout != "ok\n" {
		t.Fatalf("strict: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if got := readFile(t, filepath.Join(data, "f")); got != "b\n" {
		t.Errorf("the bind's file holds %q", got)
	}
	// The record says so: mode auto, the mounts listed.
	m := inspectJSON(t, "--security", "strict", "--overlay", "--bind", data+":/data")
	ll, _ := m["record"].(map[string]any)["landlock"].(map[string]any)
	w, _ := ll["writable"].([]any)
	var ws []string
	for _, x := range w {
		ws = append(ws, x.(string))
	}
	if ll["mode"] != "auto" || !strings.Contains(" "+strings.Join(ws, " ")+" ", " / ") || !strings.Contains(strings.Join(ws, " "), "/data") {
		t.Errorf("record: mode %v, writable %v; want auto, with / (the overlay) and /data", ll["mode"], ws)
	}
	// --landlock narrows it: /etc is refused there.
	r = caissonIn(t, work, nil, "run", "--security", "strict", "--landlock", "--overlay", "--", "sh", "-c", "echo a > /etc/caisson-test")
	if r.code == 0 || !strings.Contains(r.stderr, "Permission denied") {
		t.Errorf("--landlock: a write to /etc: exit %d, %q", r.code, r.stderr)
	}
}

// /dev/stdout and /dev/stderr reopen the command's own descriptors: with Landlock (the strict posture's, or
// --landlock) that works for a host terminal and /dev/null too, which no path rule covers (they are the host's
// device nodes): init allows the character devices among the command's stdio.
func TestStrictLandlockStdioDevices(t *testing.T) {
	requireSandbox(t)
	if !landlockAvailable() {
		testenv.SkipOrFail(t, "this kernel has no Landlock")
	}
	for _, flags := range [][]string{{"--security", "strict"}, {"--landlock"}, {"--security", "strict", "--landlock"}} {
		args := append(append([]string{"run", "--no-cwd"}, flags...), "--", "sh", "-c", "echo x > /dev/stdout && echo ok >&2")
		cmd := exec.Command(bin(t), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr // stdout: nil is /dev/null
		if err := cmd.Run(); err != nil || stderr.String() != "ok\n" {
			t.Errorf("%v, stdout /dev/null: %v %q", flags, err, stderr.String())
		}
		script := testenv.RequireCommand(t, "script")
		line := bin(t) + " run --no-cwd " + strings.Join(flags, " ") + " -- sh -c 'echo via-stdout > /dev/stdout && : < /dev/stdin && echo tty-ok'"
		out, err := exec.Command(script, "-qec", line, "/dev/null").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "via-stdout") || !strings.Contains(string(out), "tty-ok") {
			t.Errorf("%v, stdout a terminal: %v %q", flags, err, out)
		}
	}
}
