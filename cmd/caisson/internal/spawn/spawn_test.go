package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// userNS skips when this machine refuses new user namespaces to this process.
func userNS(t *testing.T) {
	t.Helper()
	pid, err := forkExec(&Attr{Path: "/bin/true", Args: []string{"true"}, Cloneflags: unix.CLONE_NEWUSER})
	if err != nil {
		t.Skipf("no user namespaces here: %v", err)
	}
	_, _ = Reap(pid)
}

// run starts sh -c script with a, its stdout and stderr in a pipe (descriptors 1 and 2, unless a.Files says
// otherwise), and returns the output and exit status.
func run(t *testing.T, start func(*Attr) (int, error), a Attr, script string) (string, unix.WaitStatus) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a.Path, a.Args = "/bin/sh", []string{"sh", "-c", script}
	if a.Files == nil {
		a.Files = []int{0, int(w.Fd()), int(w.Fd())}
	}
	pid, err := start(&a)
	w.Close()
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(r)
	ws, err := Reap(pid)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), ws
}

// A child in new namespaces, a user namespace among them, executes its program with its arguments, environment
// and descriptors, every signal at its default action and none blocked, and the ambient capabilities asked for,
// which it keeps across the execve although its user id is not mapped.
func TestStartUserNamespace(t *testing.T) {
	userNS(t)
	for name, start := range map[string]func(*Attr) (int, error){"Start": Start, "syscall.ForkExec": forkExec} {
		t.Run(name, func(t *testing.T) { testUserNamespace(t, start, name == "Start") })
	}
}

// defaults: Start resets every signal to its default action; syscall.ForkExec keeps those this process inherited
// ignored and the Go runtime does not handle (signal 32 under some shells).
func testUserNamespace(t *testing.T, start func(*Attr) (int, error), defaults bool) {
	out, ws := run(t, start, Attr{Env: []string{"A=b c", "PATH=/bin:/usr/bin"},
		Cloneflags:  unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET,
		AmbientCaps: []uintptr{unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN}},
		`echo "$0 [$A]"; grep -E '^(CapAmb|SigBlk|SigIgn):' /proc/self/status; readlink /proc/self/ns/user /proc/self/ns/uts`)
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("status %v, output %q", ws, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || lines[0] != "sh [b c]" {
		t.Fatalf("output %q", out)
	}
	want := uint64(1)<<unix.CAP_SYS_ADMIN | uint64(1)<<unix.CAP_NET_ADMIN
	for _, l := range lines[1:4] {
		f := strings.Fields(l)
		switch f[0] {
		case "CapAmb:":
			if f[1] != fmt.Sprintf("%016x", want) {
				t.Errorf("ambient capabilities %s, want %x", f[1], want)
			}
		case "SigBlk:", "SigIgn:":
			if strings.Trim(f[1], "0") != "" && (defaults || f[0] == "SigBlk:") {
				t.Errorf("%s %s: want nothing", f[0], f[1])
			}
		}
	}
	self, _ := os.Readlink("/proc/self/ns/user")
	selfUTS, _ := os.Readlink("/proc/self/ns/uts")
	if lines[4] == self || lines[5] == selfUTS {
		t.Errorf("the child shares this process's namespaces: %q", out)
	}
}

// Descriptors are placed whatever their numbers, also when a source is another one's target: this process's 3
// and 4 change places in the child, the pipe's write end becomes 1, 2 and 5.
func TestStartDescriptors(t *testing.T) {
	for _, p := range []string{"/dev/null", "/dev/zero"} { // 3 and 4 exist, whatever the runtime holds
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
	}
	three, err3 := os.Readlink("/proc/self/fd/3")
	four, err4 := os.Readlink("/proc/self/fd/4")
	if err3 != nil || err4 != nil {
		t.Fatal(err3, err4)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	wfd := int(w.Fd())
	pid, err := Start(&Attr{Path: "/bin/sh", Args: []string{"sh", "-c", `readlink /proc/self/fd/3 /proc/self/fd/4 >&5; test -e /proc/self/fd/6 || echo only-5 >&2`},
		Files: []int{0, wfd, wfd, 4, 3, wfd}})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	_, _ = out.ReadFrom(r)
	if ws, err := Reap(pid); err != nil || ws.ExitStatus() != 0 {
		t.Fatalf("%v %v", ws, err)
	}
	if got, want := out.String(), four+"\n"+three+"\nonly-5\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A failure of the child before its program runs comes back as the step and its errno, and no child is left.
func TestStartErrors(t *testing.T) {
	_, err := Start(&Attr{Path: "/nonexistent", Args: []string{"x"}, Files: []int{0, 1, 2}})
	var se *StepError
	if !errors.As(err, &se) || se.Step != "execve" || !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing program: %v", err)
	}
	if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err != unix.ECHILD {
		t.Errorf("a child is left: %v", err)
	}
	_, err = Start(&Attr{Path: "/bin/true", Args: []string{"true"}, Files: []int{0, 1, 2, 999}})
	if !errors.As(err, &se) || !errors.Is(err, unix.EBADF) {
		t.Errorf("bad descriptor: %v", err)
	}
	// A namespace this process may not create: the clone's own error.
	if os.Getuid() != 0 {
		_, err = Start(&Attr{Path: "/bin/true", Args: []string{"true"}, Cloneflags: unix.CLONE_NEWNS})
		if !errors.Is(err, unix.EPERM) {
			t.Errorf("CLONE_NEWNS without a user namespace: %v", err)
		}
	}
}

// The offsets spawn_linux_amd64.s uses are request's.
func TestRequestLayout(t *testing.T) {
	testRequestLayout(t)
}

// Many children started at once from several goroutines while others allocate (and the garbage collector runs):
// the parent's stack and runtime survive the children that ran on them.
func TestStartConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = make([]byte, 1<<16)
			}
		}
	}()
	errs := make(chan error, 200)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				pid, err := Start(&Attr{Path: "/bin/true", Args: []string{"true"}, Files: []int{0, 1, 2}})
				if err != nil {
					errs <- err
					return
				}
				if ws, err := Reap(pid); err != nil || ws.ExitStatus() != 0 {
					errs <- errors.Join(err, syscall.Errno(ws.ExitStatus()))
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// CVE-2019-5736: with ReadOnlyExec, the child's /proc/PID/exe cannot be reopened for writing, neither while the
// child runs nor after it exited (through a descriptor taken while it ran), although the file itself is writable
// by whoever holds that link; without it, the same sequence writes the file (the test can tell).
func TestReadOnlyExec(t *testing.T) {
	userNS(t)
	if !ReadOnlyExecSupported {
		t.Skip("no ReadOnlyExec on this architecture")
	}
	src, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	prog := t.TempDir() + "/sleep"
	if err := os.WriteFile(prog, src, 0o755); err != nil {
		t.Fatal(err)
	}
	try := func(ro bool) error {
		pid, err := Start(&Attr{Path: prog, Args: []string{"sleep", "30"}, Files: []int{0, 1, 2}, ReadOnlyExec: ro,
			Cloneflags: unix.CLONE_NEWUSER | unix.CLONE_NEWNS})
		if err != nil {
			if ro && ReadOnlyExecRefused(err) {
				t.Skipf("this kernel refuses the read-only bind: %v", err)
			}
			t.Fatal(err)
		}
		var fd int
		for i := 0; ; i++ { // until the child has executed prog
			if fd, err = unix.Open(fmt.Sprintf("/proc/%d/exe", pid), unix.O_PATH|unix.O_CLOEXEC, 0); err == nil {
				if l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)); strings.HasSuffix(l, "sleep") || ro {
					break
				}
				unix.Close(fd)
			}
			if i > 1000 {
				t.Fatalf("/proc/%d/exe: %v", pid, err)
			}
		}
		defer unix.Close(fd)
		_ = unix.Kill(pid, unix.SIGKILL)
		_, _ = Reap(pid)
		w, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(w)
		}
		return err
	}
	if err := try(false); err != nil {
		t.Fatalf("without ReadOnlyExec the binary could not be reopened for writing (%v): this test proves nothing here", err)
	}
	if err := try(true); err != unix.EROFS {
		t.Errorf("with ReadOnlyExec: reopening the child's exe for writing gave %v, want EROFS", err)
	}
	if got, _ := os.ReadFile(prog); !bytes.Equal(got, src) {
		t.Error("the binary changed")
	}
}
