package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// ociFaultSyscalls are the system calls of caisson-oci create's setup steps: the stage (namespaces, maps, the
// fork), the root (mounts, devices, pivot), the process's identity, the state and the cgroups.
var ociFaultSyscalls = []string{"unshare", "setns", "mount", "open_tree", "move_mount", "fsopen", "fsconfig",
	"fsmount", "mount_setattr", "openat2", "pivot_root", "umount2", "mkdirat", "mknodat", "symlinkat", "sethostname",
	"openat", "write", "sendmsg", "recvmsg", "capset", "prctl", "setresuid", "setgroups", "chdir", "pidfd_open",
	"flock", "rename", "execve", "socketpair"}

// TestOCIFaultSweep injects EPERM into the N-th call of each setup system call of `caisson-oci create` (the
// runtime's command, its stage's C half and Go half, and their forks) and judges every run: a create that still
// succeeds is deleted; a failed one must exit 1 with its own one-line error last on stderr (no Go panic) and leave
// nothing — no state directory, no process, no cgroup — and the next create of the same ID must work. A fault in
// the Go runtime's own calls (it aborts the process by design) must at least leave nothing that delete --force
// cannot remove.
func TestOCIFaultSweep(t *testing.T) {
	strace := testenv.RequireCommand(t, "strace")
	if probe, err := exec.Command(strace, "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null", "-e", "inject=sethostname:error=EPERM", "true").CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "strace cannot inject faults here: %v: %s", err, probe)
	}
	o := newOCI(t)
	// As root the containers get the default cgroupsPath, /caisson-oci/ID: a group per run.
	b := o.bundle(func(s *specs.Spec) {
		s.Process.Args = []string{"true"}
		if !o.rootless {
			mem := int64(256 << 20)
			s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem},
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
		}
	})
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	// Count each thread's calls in an undisturbed create.
	log := filepath.Join(dir, "count")
	r := o.straced(strace, dir, log, strings.Join(ociFaultSyscalls, ","), "", b, "count")
	if r.code != 0 {
		t.Fatalf("create under strace without faults: exit %d: %s", r.code, r.stderr)
	}
	o.must("delete", "--force", "count")
	perThread := map[[2]string]int{}
	most := map[string]int{}
	for _, c := range readStrace(log) {
		if c[1] == "true" {
			continue
		}
		k := [2]string{c[0], c[2]}
		perThread[k]++
		most[c[2]] = max(most[c[2]], perThread[k])
	}
	type job struct {
		sc   string
		when int
	}
	var jobs []job
	for _, sc := range ociFaultSyscalls {
		for _, w := range spread(most[sc], envInt(t, "CAISSON_OCI_FAULT_PER_SYSCALL", 5)) {
			jobs = append(jobs, job{sc, w})
		}
	}
	t.Logf("OCI fault sweep: %d runs", len(jobs))
	var (
		mu       sync.Mutex
		problems []string
		failed   int
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, 2)
	for i, j := range jobs {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int, j job) {
			defer func() { <-sem; wg.Done() }()
			id := fmt.Sprintf("f%d", i)
			log := filepath.Join(dir, id+".strace")
			r := o.straced(strace, dir, log, j.sc, fmt.Sprintf("%s:error=EPERM:when=%d", j.sc, j.when), b, id)
			var msgs []string
			report := func(format string, args ...any) {
				msgs = append(msgs, fmt.Sprintf("%s:when=%d: ", j.sc, j.when)+fmt.Sprintf(format, args...))
			}
			runtimeAbort := strings.Contains(r.stderr, "runtime: ") || strings.Contains(r.stderr, "fatal error:")
			switch {
			case r.code == 0:
				if d := o.cmd(nil, "delete", "--force", id); d.code != 0 {
					report("created, then delete --force failed: %s", d.stderr)
				}
			case r.code == 1 && !runtimeAbort:
				lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
				last := lines[len(lines)-1]
				if !strings.HasPrefix(last, "caisson-oci: ") || strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
					report("exit 1 without one caisson-oci line last: %q", r.stderr)
				}
				if _, err := os.Stat(filepath.Join(o.root, id)); err == nil {
					report("state directory left: %s", r.stderr)
				}
				if !o.rootless {
					if _, err := os.Stat("/sys/fs/cgroup/memory/caisson-oci/" + id); err == nil {
						report("cgroup left: %s", r.stderr)
					}
				}
			default:
				// The Go runtime aborted (a fault in its own thread creation or poller) or strace lost the tracee:
				// no clean-up could run; delete --force must remove what is left.
				if d := o.cmd(nil, "delete", "--force", id); d.code != 0 {
					report("exit %d, then delete --force failed: %s", r.code, d.stderr)
				}
			}
			mu.Lock()
			if r.code != 0 {
				failed++
			}
			problems = append(problems, msgs...)
			mu.Unlock()
		}(i, j)
	}
	wg.Wait()
	// Nothing of any run is left: no stage process, no state, no group; the same IDs work again.
	waitGone(t, "caisson-oci-init", 10*time.Second)
	if ents, _ := os.ReadDir(o.root); len(ents) != 0 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		problems = append(problems, fmt.Sprintf("state left after the sweep: %v", names))
	}
	if !o.rootless {
		for _, h := range []string{"memory", "pids", "cpu", "devices", "freezer", "blkio", "cpuset", "systemd", "unified"} {
			var left []string
			ents, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", h, "caisson-oci"))
			for _, e := range ents {
				if e.IsDir() && strings.HasPrefix(e.Name(), "f") && strings.Trim(e.Name()[1:], "0123456789") == "" {
					left = append(left, e.Name())
				}
			}
			if len(left) > 0 {
				problems = append(problems, fmt.Sprintf("cgroups left in %s: %v", h, left))
			}
		}
	}
	o.must("run", "--bundle", b, "f0")
	t.Logf("%d of %d runs failed create as injected; %d problems", failed, len(jobs), len(problems))
	for _, p := range problems {
		t.Error(p)
	}
	if failed == 0 {
		t.Errorf("no injected fault failed a create: the sweep hit nothing")
	}
}

// straced runs `create` under strace with the given trace set and injection, stdio on files, at most 30 s; a
// container it creates is started (so that strace, which waits for it, ends) and left stopped.
func (o *ociRT) straced(strace, dir, log, trace, inject, bundle, id string) result {
	o.t.Helper()
	a := []string{"-f", "-Y", "-qq", "--seccomp-bpf", "-o", log, "-e", "trace=" + trace}
	if inject != "" {
		a = append(a, "-e", "inject="+inject)
	}
	a = append(a, o.bin, "--root", o.root, "create", "--bundle", bundle, id)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, strace, a...)
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, id+".out"))
	if err != nil {
		o.t.Fatal(err)
	}
	defer out.Close()
	var stderr bytes.Buffer
	errf, err := os.Create(filepath.Join(dir, id+".err"))
	if err != nil {
		o.t.Fatal(err)
	}
	defer errf.Close()
	cmd.Stdout, cmd.Stderr = out, errf
	if err := cmd.Start(); err != nil {
		o.t.Fatal(err)
	}
	// strace waits for every tracee: the container's process, waiting for start, is one. Start it once it is
	// created, so that it runs its program and ends.
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	started := false
	for !started {
		select {
		case err = <-done:
			started = true
			continue
		case <-time.After(50 * time.Millisecond):
		}
		if o.status(id) == "created" {
			o.cmd(nil, "start", id)
			err = <-done
			started = true
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, id+".err"))
	stderr.Write(b)
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
	}
	if ctx.Err() != nil {
		code = -2
	}
	return result{stderr: stderr.String(), code: code}
}
