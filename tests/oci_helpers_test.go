package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// ociBin is the caisson-oci binary under test.
func ociBin(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CAISSON_OCI_BIN")
	if p == "" {
		p, _ = filepath.Abs("../bin/caisson-oci")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFail(t, "caisson-oci binary %s: %v (run make build, or set CAISSON_OCI_BIN)", p, err)
	}
	return p
}

// ociRT drives caisson-oci with a state root and a JSON log of its own.
type ociRT struct {
	t        testing.TB
	bin      string
	root     string
	log      string
	rootless bool
}

// newOCI prepares a runtime for the test: as root the rootful mode, otherwise rootless.
func newOCI(t testing.TB) *ociRT {
	t.Helper()
	dir := t.TempDir()
	o := &ociRT{t: t, bin: ociBin(t), root: filepath.Join(dir, "state"), log: filepath.Join(dir, "log.json"),
		rootless: os.Getuid() != 0}
	t.Cleanup(func() { o.cleanup() })
	return o
}

// cleanup force-deletes whatever containers the test left and checks that nothing of them is left.
func (o *ociRT) cleanup() {
	ents, _ := os.ReadDir(o.root)
	for _, e := range ents {
		o.cmd(nil, "delete", "--force", e.Name())
	}
	if ents, _ := os.ReadDir(o.root); len(ents) > 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		o.t.Errorf("state left under --root after delete --force: %v", names)
	}
}

// cmd runs caisson-oci with the global flags and args; stdin may be nil.
func (o *ociRT) cmd(stdin []byte, args ...string) result {
	o.t.Helper()
	return o.cmdEnv(stdin, nil, args...)
}

func (o *ociRT) cmdEnv(stdin []byte, env []string, args ...string) result {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	full := append([]string{"--root", o.root, "--log", o.log, "--log-format", "json"}, args...)
	c := exec.CommandContext(ctx, o.bin, full...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	if env != nil {
		c.Env = append(os.Environ(), env...)
	}
	err := c.Run()
	if ctx.Err() != nil {
		o.t.Fatalf("caisson-oci %s: timed out; stderr: %s", strings.Join(args, " "), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if err != nil {
		o.t.Fatalf("caisson-oci %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errb.String(), code}
}

// must runs a command that must succeed and returns its stdout.
func (o *ociRT) must(args ...string) string {
	o.t.Helper()
	r := o.cmd(nil, args...)
	if r.code != 0 {
		o.t.Fatalf("caisson-oci %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// state returns the container's state.
func (o *ociRT) state(id string) map[string]any {
	o.t.Helper()
	out := o.must("state", id)
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		o.t.Fatalf("state %s: not JSON: %v: %q", id, err, out)
	}
	return m
}

// status returns the container's status, or "" when it does not exist.
func (o *ociRT) status(id string) string {
	o.t.Helper()
	r := o.cmd(nil, "state", id)
	if r.code != 0 {
		return ""
	}
	var m map[string]any
	_ = json.Unmarshal([]byte(r.stdout), &m)
	s, _ := m["status"].(string)
	return s
}

// waitStatus waits (at most 10 s) for the container to reach status.
func (o *ociRT) waitStatus(id, want string) {
	o.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := o.status(id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("container %s: status %q after 10 s, want %q", id, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bundle makes a bundle with a busybox root and caisson-oci's default config (rootless when the test runs as an
// ordinary user), changed by edit. The root and the bundle are writable by the caller.
func (o *ociRT) bundle(edit func(*specs.Spec)) string {
	o.t.Helper()
	dir := o.t.TempDir()
	testenv.BusyboxRootfs(o.t, filepath.Join(dir, "rootfs"))
	args := []string{"spec", "--bundle", dir}
	if o.rootless {
		args = append(args, "--rootless")
	}
	o.must(args...)
	s := readSpec(o.t, dir)
	s.Process.Terminal = false
	s.Root.Readonly = false
	if edit != nil {
		edit(s)
	}
	writeSpec(o.t, dir, s)
	return dir
}

func readSpec(t testing.TB, bundle string) *specs.Spec {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

func writeSpec(t testing.TB, bundle string, s *specs.Spec) {
	t.Helper()
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// containerID returns a unique container ID for the test.
func containerID(t testing.TB, suffix string) string {
	return fmt.Sprintf("t%d-%s", os.Getpid(), suffix)
}

// logLines returns the JSON log's lines.
func (o *ociRT) logLines() []map[string]string {
	o.t.Helper()
	b, _ := os.ReadFile(o.log)
	var out []map[string]string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var m map[string]string
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			o.t.Fatalf("log line is not JSON: %q", l)
		}
		out = append(out, m)
	}
	return out
}

// readPid reads a pid file.
func readPid(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

// procGone reports whether pid has exited (gone, or a zombie).
func procGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z' || s[i+2] == 'X'
}

// created is a container made by create, whose process writes its output to files.
type created struct {
	id, bundle     string
	stdout, stderr string
	pidFile        string
}

// create runs `create` with the container's stdio on files (a pipe would keep this command's output open for as
// long as the container runs); extra flags go before the ID.
func (o *ociRT) create(id, bundle string, extra ...string) (created, result) {
	o.t.Helper()
	dir := o.t.TempDir()
	c := created{id: id, bundle: bundle, stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr"),
		pidFile: filepath.Join(dir, "pid")}
	out, err := os.Create(c.stdout)
	if err != nil {
		o.t.Fatal(err)
	}
	defer out.Close()
	errf, err := os.Create(c.stderr)
	if err != nil {
		o.t.Fatal(err)
	}
	defer errf.Close()
	args := append([]string{"--root", o.root, "--log", o.log, "--log-format", "json", "create", "--bundle", bundle,
		"--pid-file", c.pidFile}, extra...)
	args = append(args, id)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.bin, args...)
	cmd.Stdout, cmd.Stderr = out, errf
	err = cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		o.t.Fatalf("create: %v", err)
	}
	b, _ := os.ReadFile(c.stderr)
	return c, result{stderr: string(b), code: code}
}

// mustCreate is create that must succeed.
func (o *ociRT) mustCreate(id, bundle string, extra ...string) created {
	o.t.Helper()
	c, r := o.create(id, bundle, extra...)
	if r.code != 0 {
		o.t.Fatalf("create %s: exit %d: %s", id, r.code, r.stderr)
	}
	return c
}

// output returns what the container wrote on stdout.
func (c created) output(t testing.TB) string {
	t.Helper()
	b, _ := os.ReadFile(c.stdout)
	return string(b)
}
