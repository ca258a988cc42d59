package tests

// Helpers of the engine tests (engine_*_test.go): real Podman, containerd (with ctr and crictl) and Docker daemons,
// each started by its test with state directories of its own under a temporary directory and stopped afterwards,
// with caisson-oci as their runtime, and images made offline from the host's static busybox.

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// rootfsTar writes a tar of a busybox root file system (testenv.BusyboxRootfs) to dir/rootfs.tar, entries owned by
// root, and returns its path.
func rootfsTar(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "bb-rootfs")
	testenv.BusyboxRootfs(t, root)
	out := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if d.Type()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(root, p)
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "root", "root"
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if _, err := tw.Write(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatalf("rootfs tar: %v", err)
	}
	return out
}

// imageArchive writes a docker-save archive of the busybox image named ref (with cmd as its command and PATH set),
// which `ctr images import` and `docker load` read.
func imageArchive(t testing.TB, dir, ref string, cmd []string) string {
	t.Helper()
	rt := rootfsTar(t, dir)
	layer, err := tarball.LayerFromFile(rt)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtimeArch()
	cf.Config = v1.Config{Cmd: cmd, Env: []string{"PATH=/bin"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		t.Fatalf("image archive: %v", err)
	}
	return out
}

func runtimeArch() string {
	out, _ := exec.Command("uname", "-m").Output()
	switch strings.TrimSpace(string(out)) {
	case "aarch64":
		return "arm64"
	}
	return "amd64"
}

// daemon is an engine's daemon started by a test.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
}

// startDaemon starts an engine's daemon (its own process group, output in dir/NAME.log) and waits (at most 30 s)
// for ready to hold.
func startDaemon(t testing.TB, dir, name string, ready func() bool, argv ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		testenv.SkipOrFail(t, "%s: %v", name, err)
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for !ready() {
		if time.Now().After(deadline) || d.cmd.ProcessState != nil {
			d.stop(t)
			b, _ := os.ReadFile(d.log)
			t.Fatalf("%s did not become ready in 30 s: %s", name, tail(string(b), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

// stop ends the daemon (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (d *daemon) stop(t testing.TB) {
	if d == nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// run runs a client command with a bounded time; it returns stdout, stderr and the exit code.
func runCmd(t testing.TB, timeout time.Duration, stdin []byte, env []string, argv ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if stdin != nil {
		c.Stdin = bytes.NewReader(stdin)
	}
	if env != nil {
		c.Env = env
	}
	err := c.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s: timed out after %v; stderr: %s", strings.Join(argv, " "), timeout, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	}
	return result{out.String(), errb.String(), code}
}

// noRuntimeLeft checks that no caisson-oci stage and no process of a container whose state lived under root is left.
func noRuntimeLeft(t testing.TB, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err != nil || e.Name() == fmt.Sprint(os.Getpid()) {
				continue
			}
			cl := strings.ReplaceAll(string(b), "\x00", " ")
			if strings.Contains(cl, "caisson-oci-init") || (marker != "" && strings.Contains(cl, marker)) {
				if !procGone(atoiOr(e.Name())) {
					left = append(left, e.Name()+": "+cl)
				}
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes left: %v", left)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func atoiOr(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// copyFile copies src to dst with mode.
func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
