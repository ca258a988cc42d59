package tests

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// busyboxRoot builds a root file system from Debian's busybox-static: /bin/busybox and one relative symlink per
// applet, nothing else (caisson creates the mount points).
func busyboxRoot(t *testing.T) string {
	t.Helper()
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		t.Skipf("skipping: %s missing (Debian package busybox-static)", bb)
	}
	dir := filepath.Join(t.TempDir(), "root fs:x") // a space and a colon: paths must work unescaped
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(dir, "bin", a))
		}
	}
	return dir
}

// checkMounts fails the test when the host's mount table changed.
func checkMounts(t *testing.T) {
	before := mountTable(t)
	t.Cleanup(func() {
		if after := mountTable(t); after != before {
			t.Errorf("host mount table changed")
		}
	})
}

func wantFail(t *testing.T, r result, substr string) {
	t.Helper()
	if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: ") || strings.Count(r.stderr, "\n") != 1 || !strings.Contains(r.stderr, substr) {
		t.Errorf("want exit 125 and one caisson: line naming %q, got %d %q", substr, r.code, r.stderr)
	}
}

func TestRootfsBusybox(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	dir := busyboxRoot(t)
	out := mustRun(t, "run", "--rootfs", dir, "--hostname", "bbox", "--", "/bin/sh", "-c",
		"ls /bin/busybox && cat /etc/hosts && ls /dev | tr '\\n' ' ' && echo && echo hi > /written && pwd && id -u && "+
			"[ \"$(stat -c %d:%i /)\" = \"$(stat -c %d:%i /..)\" ] && echo root-ok; test ! -e /oldroot && test ! -e /tmp/root && echo no-leftovers")
	for _, want := range []string{"/bin/busybox", "localhost", "bbox", "null", "root-ok", "no-leftovers", "/\n0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "written")); err != nil || string(b) != "hi\n" {
		t.Errorf("--rootfs is not writable: %q %v", b, err)
	}
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run"} {
		if st, err := os.Lstat(filepath.Join(dir, d)); err != nil || !st.IsDir() {
			t.Errorf("mount point %s not created: %v", d, err)
		}
	}
	// --read-only: writes fail with EROFS; binds, read-only binds and tmpfs still work inside.
	other := filepath.Join(t.TempDir(), `odd:dir, "x"\y`)
	os.MkdirAll(other, 0o755)
	os.WriteFile(filepath.Join(other, "f"), []byte("data"), 0o644)
	esc := strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(other)
	r := caisson(t, "run", "--rootfs", dir, "--read-only", "--ro-bind", esc+":/tmp/ro dir", "--bind", esc+":/tmp/rw",
		"--tmpfs", "/tmp/scratch:size=1m", "--", "/bin/sh", "-c",
		"touch /x 2>&1; cat '/tmp/ro dir/f'; touch '/tmp/ro dir/g' 2>&1; echo w > /tmp/rw/w; echo s > /tmp/scratch/s && echo tmpfs-ok")
	if !strings.Contains(r.stdout, "Read-only file system") || !strings.Contains(r.stdout, "data") || !strings.Contains(r.stdout, "tmpfs-ok") {
		t.Errorf("--read-only with binds: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if b, _ := os.ReadFile(filepath.Join(other, "w")); string(b) != "w\n" {
		t.Errorf("--bind inside --rootfs not written: %q", b)
	}
	// C7: a destination through a symlink of the root, even an absolute one, is resolved inside the root: the
	// bind lands on the link's target there, and nothing is created on the host at the link's absolute target.
	os.MkdirAll(filepath.Join(dir, "target"), 0o755)
	os.Remove(filepath.Join(dir, "link"))
	if err := os.Symlink("/target", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	r = caisson(t, "run", "--rootfs", dir, "--ro-bind", esc+":/link/x", "--", "/bin/sh", "-c", "cat /target/x/f")
	if r.code != 0 || r.stdout != "data" {
		t.Errorf("bind through a symlink: exit %d %q %q, want the file at /target/x inside", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat("/target"); err == nil {
		t.Errorf("/target exists on the host")
	}
}

// Catalogue F12, F15: a rootfs whose /proc or /dev is a symlink is refused and nothing is created outside it; a
// missing mount point in a read-only rootfs is a clear error. F13: /dev/null planted as a symlink to a procfs
// file changes nothing, masks use the real 1:3 device.
func TestRootfsRefusesSymlinks(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	for _, d := range []string{"proc", "dev"} {
		t.Run(d, func(t *testing.T) {
			dir := busyboxRoot(t)
			outside := t.TempDir()
			if err := os.Symlink(outside, filepath.Join(dir, d)); err != nil {
				t.Fatal(err)
			}
			wantFail(t, caisson(t, "run", "--rootfs", dir, "--", "/bin/true"), "symlink")
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("setup wrote outside the rootfs: %v", ents)
			}
		})
	}
	dir := busyboxRoot(t)
	wantFail(t, caisson(t, "run", "--rootfs", dir, "--read-only", "--", "/bin/true"), "missing")
	// F13.
	os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	os.Symlink("/proc/sys/kernel/core_pattern", filepath.Join(dir, "dev/null"))
	out := mustRun(t, "run", "--rootfs", dir, "--", "/bin/sh", "-c", "stat -L -c %t:%T /dev/null; echo x > /dev/null && echo w")
	if out != "1:3\nw\n" {
		t.Errorf("F13: /dev/null is not the real 1:3 device: %q", out)
	}
	// A symlink elsewhere in the tree (absolute, pointing out) is followed inside the root only.
	victim := t.TempDir()
	os.Symlink(victim, filepath.Join(dir, "etc"))
	mustRun(t, "run", "--rootfs", dir, "--", "/bin/true")
	if ents, _ := os.ReadDir(victim); len(ents) != 0 {
		t.Errorf("/etc/hosts followed a symlink out of the rootfs: %v", ents)
	}
}

func TestRootfsBadInput(t *testing.T) {
	requireSandbox(t)
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o644)
	wantFail(t, caisson(t, "run", "--rootfs", "/no/such/dir", "--", "true"), "/no/such/dir")
	wantFail(t, caisson(t, "run", "--rootfs", file, "--", "true"), "not a directory")
	wantFail(t, caisson(t, "run", "--read-only", "--", "true"), "--rootfs")
	wantFail(t, caisson(t, "run", "--persist", file, "--", "true"), "not a directory")
	wantFail(t, caisson(t, "run", "--overlay-size", "1m", "--", "true"), "--overlay")
	wantFail(t, caisson(t, "diff", t.TempDir()), "not a --persist directory")
}

// --overlay of the host view: writes land in a tmpfs upper, the host is untouched; every overlay is nosuid,nodev
// (catalogue F20); an upper that fills up gives ENOSPC (X4).
func TestOverlayHostView(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	home, _ := os.UserHomeDir()
	marker := fmt.Sprintf("caisson-ovl-%d", time.Now().UnixNano())
	out := mustRun(t, "run", "--no-cwd", "--overlay", "--", "sh", "-c",
		"echo x > "+home+"/"+marker+" && mkdir /"+marker+" && rm -f "+home+"/.profile && echo ok; "+
			"grep -E ' (overlay|fuse.fuse-overlayfs) ' /proc/self/mountinfo | grep -vc nosuid; "+
			"grep -E ' (overlay|fuse.fuse-overlayfs) ' /proc/self/mountinfo | grep -vc nodev; true")
	if f := strings.Fields(out); len(f) != 3 || f[0] != "ok" || f[1] != "0" || f[2] != "0" {
		t.Errorf("inside: %q", out)
	}
	if _, err := os.Stat(filepath.Join(home, marker)); err == nil {
		t.Errorf("the overlay wrote to the host")
	}
	if _, err := os.Stat("/" + marker); err == nil {
		t.Errorf("the overlay wrote to the host's /")
	}
	r := caisson(t, "run", "--no-cwd", "--overlay", "--overlay-size", "1m", "--", "sh", "-c",
		"dd if=/dev/zero of=$HOME/big bs=1M count=4 2>&1; echo after")
	if !strings.Contains(r.stdout, "No space left") || !strings.Contains(r.stdout, "after") {
		t.Errorf("--overlay-size 1m: want ENOSPC, got %q %q", r.stdout, r.stderr)
	}
}

// --persist keeps changes across runs, refuses a second concurrent sandbox, survives SIGKILL of caisson, and
// caisson diff lists the changes; setuid files in the upper are the caller's, never root's (catalogue F19).
func TestOverlayPersist(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	dir := busyboxRoot(t)
	pdir := filepath.Join(t.TempDir(), "keep me")
	sandboxCleanup(t, pdir)
	os.WriteFile(filepath.Join(dir, "gone"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "changed"), []byte("x\n"), 0o644)
	mustRun(t, "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/sh", "-c",
		"echo new > /added && echo y >> /changed && rm /gone && cp /bin/busybox /suid && chmod 4755 /suid")
	out := mustRun(t, "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/sh", "-c", "cat /added /changed; ls /gone 2>&1; true")
	if !strings.Contains(out, "new\nx\ny\n") || !strings.Contains(out, "No such file") {
		t.Errorf("second run: %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "changed")); string(b) != "x\n" {
		t.Errorf("the lower rootfs changed: %q", b)
	}
	diff := mustRun(t, "diff", pdir)
	for _, want := range []string{"A /added\n", "C /changed\n", "D /gone\n", "A /suid\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	var js []map[string]string
	if err := json.Unmarshal([]byte(mustRun(t, "diff", "--json", pdir)), &js); err != nil || len(js) < 4 {
		t.Errorf("diff --json: %v %v", js, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(pdir, "upper", "%2F", "suid"), &st); err != nil || st.Uid != uint32(os.Getuid()) {
		t.Errorf("F19: the setuid file in the upper must be the caller's: uid %d, %v", st.Uid, err)
	}
	// Concurrent use is refused while the first sandbox runs.
	first := exec.Command(bin(t), "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/sh", "-c", "echo ready; sleep 30")
	stdout, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	io.ReadFull(stdout, buf)
	wantFail(t, caisson(t, "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/true"), "in use")
	// SIGKILL of caisson in the middle of a write: the lock goes with it and the directory stays usable.
	first.Process.Kill()
	first.Wait()
	writer := exec.Command(bin(t), "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/sh", "-c",
		"echo ready; while :; do dd if=/dev/zero of=/big bs=64k count=16 2>/dev/null; done")
	stdout, _ = writer.StdoutPipe()
	writer.Start()
	io.ReadFull(stdout, buf)
	time.Sleep(200 * time.Millisecond)
	writer.Process.Kill()
	writer.Wait()
	waitGone(t, "caisson-init", 3*time.Second)
	out = mustRun(t, "run", "--rootfs", dir, "--persist", pdir, "--", "/bin/sh", "-c", "cat /added; rm /big; echo again > /added2; cat /added2")
	if out != "new\nagain\n" {
		t.Errorf("after SIGKILL: %q", out)
	}
	// The persisted changes belong to this root: the host view is refused.
	wantFail(t, caisson(t, "run", "--persist", pdir, "--", "true"), "holds changes")
}

// The host view persisted: one upper per overlaid directory, diff names host paths.
func TestOverlayPersistHostView(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	pdir := t.TempDir()
	sandboxCleanup(t, pdir)
	home, _ := os.UserHomeDir()
	mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c", "echo a > $HOME/caisson-persist-file; mkdir /caisson-top")
	out := mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c", "cat $HOME/caisson-persist-file; ls -d /caisson-top")
	if out != "a\n/caisson-top\n" {
		t.Errorf("second run: %q", out)
	}
	diff := mustRun(t, "diff", pdir)
	if !strings.Contains(diff, "A "+home+"/caisson-persist-file\n") || !strings.Contains(diff, "A /caisson-top\n") {
		t.Errorf("diff: %q", diff)
	}
	if _, err := os.Stat(filepath.Join(home, "caisson-persist-file")); err == nil {
		t.Errorf("the host was written")
	}
}

// tarLayer builds one uncompressed layer.
func tarLayer(t *testing.T, entries ...tar.Header) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Linkname)
			h.Linkname = ""
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func file(name, content string, uid int) tar.Header {
	return tar.Header{Name: name, Typeflag: tar.TypeReg, Linkname: content, Uid: uid, Gid: uid}
}

// testImage is a three-layer image with a file whiteout, an opaque directory and an owner from the subordinate
// range; busybox comes in the first layer.
func testImage(t *testing.T) v1.Image {
	bbData, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("skipping: /bin/busybox missing")
	}
	l1 := tarLayer(t,
		tar.Header{Name: "bin/", Typeflag: tar.TypeDir},
		tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Linkname: string(bbData), Mode: 0o755},
		tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		tar.Header{Name: "bin/cat", Typeflag: tar.TypeSymlink, Linkname: "/bin/busybox"},
		tar.Header{Name: "bin/ls", Typeflag: tar.TypeLink, Linkname: "bin/busybox"},
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir},
		file("etc/deleted", "old", 0),
		tar.Header{Name: "opq/", Typeflag: tar.TypeDir},
		file("opq/old", "old", 0),
		tar.Header{Name: "home/u/", Typeflag: tar.TypeDir, Uid: 1000, Gid: 1000, Mode: 0o700},
		file("home/u/mine", "u", 1000),
		tar.Header{Name: "dev/console", Typeflag: tar.TypeChar, Devmajor: 5, Devminor: 1},
	)
	l2 := tarLayer(t,
		file("etc/.wh.deleted", "", 0),
		tar.Header{Name: "opq/", Typeflag: tar.TypeDir},
		file("opq/.wh..wh..opq", "", 0),
		file("opq/new", "new", 0),
	)
	l3 := tarLayer(t, file("etc/motd", "hello\n", 0))
	img, err := mutate.AppendLayers(empty.Image, l1, l2, l3)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// writeArchives writes img as an OCI layout directory, an OCI layout tar and a docker-save tar.
func writeArchives(t *testing.T, img v1.Image) map[string]string {
	dir := t.TempDir()
	lp, err := layout.Write(filepath.Join(dir, "oci-dir"), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := lp.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	ociTar := filepath.Join(dir, "oci.tar")
	if out, err := exec.Command("tar", "-C", filepath.Join(dir, "oci-dir"), "-cf", ociTar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v %s", err, out)
	}
	docker := filepath.Join(dir, "docker.tar")
	tag, _ := name.NewTag("caisson.test/img:latest")
	if err := tarball.WriteToFile(docker, tag, img); err != nil {
		t.Fatal(err)
	}
	return map[string]string{"oci-dir": filepath.Join(dir, "oci-dir"), "oci-tar": ociTar, "docker-save": docker}
}

func TestRootfsUnpack(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	for kind, archive := range writeArchives(t, testImage(t)) {
		t.Run(kind, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "root")
			r := caisson(t, "rootfs", "unpack", archive, dir)
			sandboxCleanup(t, dir)
			if r.code != 0 {
				t.Fatalf("unpack: %d %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stderr, "left out 1") {
				t.Errorf("the device node must be left out with a warning: %q", r.stderr)
			}
			for p, want := range map[string]bool{"etc/deleted": false, "opq/old": false, "opq/new": true, "etc/motd": true, "dev/console": false} {
				if _, err := os.Lstat(filepath.Join(dir, p)); (err == nil) != want {
					t.Errorf("%s: exists=%v, want %v", p, err == nil, want)
				}
			}
			var st syscall.Stat_t
			syscall.Stat(filepath.Join(dir, "etc/motd"), &st)
			if st.Uid != uint32(os.Getuid()) {
				t.Errorf("root's file: host uid %d, want the caller's", st.Uid)
			}
			syscall.Lstat(filepath.Join(dir, "home/u"), &st)
			if st.Uid == uint32(os.Getuid()) || st.Uid == 0 {
				t.Errorf("uid 1000's directory: host uid %d, want a subordinate id", st.Uid)
			}
			out := mustRun(t, "run", "--rootfs", dir, "--", "/bin/sh", "-c", "cat /etc/motd; stat -c %u /home/u/mine; ls /opq")
			if out != "hello\n1000\nnew\n" {
				t.Errorf("inside: %q", out)
			}
		})
	}
}

// A caisson installed alone (go install .../cmd/caisson@latest) finds caisson-image on $PATH; with none there, the
// error says which go install line installs it.
func TestRootfsUnpackCompanion(t *testing.T) {
	requireSandbox(t)
	companion := filepath.Join(filepath.Dir(bin(t)), "caisson-image")
	if _, err := os.Stat(companion); err != nil {
		testenv.SkipOrFail(t, "no caisson-image next to %s: %v", bin(t), err)
	}
	alone := filepath.Join(t.TempDir(), "caisson")
	data, err := os.ReadFile(bin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(alone, data, 0o755); err != nil {
		t.Fatal(err)
	}
	archive := writeArchives(t, testImage(t))["docker-save"]
	run := func(path, dir string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, alone, "rootfs", "unpack", archive, dir)
		cmd.Env = append(os.Environ(), "PATH="+path)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := cmd.ProcessState.ExitCode()
		if err != nil && code < 0 {
			t.Fatalf("caisson rootfs unpack: %v", err)
		}
		return result{out.String(), errb.String(), code}
	}
	r := run("/usr/local/bin:/usr/bin:/bin", filepath.Join(t.TempDir(), "root"))
	want := "caisson: rootfs unpack: caisson-image not found next to " + alone + " nor on $PATH"
	line := "CGO_ENABLED=0 go install github.com/caisson-sandbox/caisson/cmd/caisson/caisson-image@latest"
	if r.code != 125 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, line) || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("without caisson-image: exit %d, stderr %q; want 125 and one line %q ... %q", r.code, r.stderr, want, line)
	}
	dir := filepath.Join(t.TempDir(), "root")
	r = run("/usr/local/bin:/usr/bin:/bin:"+filepath.Dir(companion), dir)
	sandboxCleanup(t, dir)
	if _, err := os.Stat(filepath.Join(dir, "etc/motd")); r.code != 0 || err != nil {
		t.Errorf("with caisson-image on PATH: exit %d, stderr %q; etc/motd: %v", r.code, r.stderr, err)
	}
}

// Archives that escape, or are corrupt or truncated, are refused with one line; nothing is written outside.
func TestRootfsUnpackBad(t *testing.T) {
	requireSandbox(t)
	victim := t.TempDir()
	for name, layer := range map[string]v1.Layer{
		"dotdot":   tarLayer(t, file("../../../../"+victim+"/x", "x", 0)),
		"linkpath": tarLayer(t, tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: victim}, file("evil/x", "x", 0)),
		"hardlink": tarLayer(t, tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}),
	} {
		t.Run(name, func(t *testing.T) {
			img, _ := mutate.AppendLayers(empty.Image, layer)
			archive := writeArchives(t, img)["docker-save"]
			dir := filepath.Join(t.TempDir(), "root")
			r := caisson(t, "rootfs", "unpack", archive, dir)
			if ents, _ := os.ReadDir(victim); len(ents) != 0 {
				t.Fatalf("wrote outside the target: %v", ents)
			}
			if name == "linkpath" {
				// An absolute symlink used as a parent resolves inside the root, where nothing is there: refused.
				wantFail(t, r, "evil/x")
				return
			}
			wantFail(t, r, "escapes")
		})
	}
	good := writeArchives(t, testImage(t))["docker-save"]
	data, _ := os.ReadFile(good)
	truncated := filepath.Join(t.TempDir(), "trunc.tar")
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	wantFail(t, caisson(t, "rootfs", "unpack", truncated, filepath.Join(t.TempDir(), "r")), "rootfs unpack")
	garbage := filepath.Join(t.TempDir(), "garbage.tar")
	os.WriteFile(garbage, bytes.Repeat([]byte("junk"), 1000), 0o644)
	wantFail(t, caisson(t, "rootfs", "unpack", garbage, filepath.Join(t.TempDir(), "r")), "rootfs unpack")
}

// sandboxCleanup empties dir from inside a sandbox when the test ends: files owned by subordinate ids cannot be
// removed by the caller directly.
func sandboxCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		esc := strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(dir)
		caisson(t, "run", "--no-cwd", "--bind", esc+":/tmp/x", "--", "sh", "-c", "rm -rf /tmp/x/* /tmp/x/.[!.]*")
	})
}

// requireFuseOverlay skips (or fails, strictly) when --overlay of the host view cannot use fuse-overlayfs here.
func requireFuseOverlay(t *testing.T) {
	t.Helper()
	testenv.RequireCommand(t, "fuse-overlayfs")
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		testenv.SkipOrFail(t, "/dev/fuse: %v (tests/provision.sh makes it 0666, the distribution default)", err)
	}
	f.Close()
}

// overlayHostState is what the issue's example must leave untouched on the host: /etc/motd, the listing of /usr/local,
// and the mount table as findmnt prints it.
func overlayHostState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	motd, err := os.ReadFile("/etc/motd")
	var st syscall.Stat_t
	syscall.Stat("/etc/motd", &st)
	fmt.Fprintf(&b, "motd %q %v %d:%d %o %d\n", motd, err, st.Uid, st.Gid, st.Mode, st.Mtim.Nano())
	ents, _ := os.ReadDir("/usr/local")
	for _, e := range ents {
		fmt.Fprintf(&b, "/usr/local/%s\n", e.Name())
	}
	out, err := exec.Command("findmnt", "-rn", "-o", "ID,PARENT,TARGET,SOURCE,FSTYPE,OPTIONS").Output()
	if err != nil {
		t.Fatalf("findmnt: %v", err)
	}
	b.Write(out)
	return b.String()
}

// The issue's headline example: with fuse-overlayfs, files owned by the host's root (unmapped in the sandbox) are
// root's inside and writable after copy-up; the host's /etc/motd, /usr/local and mount table stay as they were.
func TestOverlayIssueExample(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	before := overlayHostState(t)
	r := caisson(t, "run", "--overlay", "--", "sh", "-c", "echo x > /etc/motd; mkdir /usr/local/new")
	if r.code != 0 || r.stderr != "" {
		t.Errorf("the issue's example: exit %d, stderr %q", r.code, r.stderr)
	}
	if after := overlayHostState(t); after != before {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, err := os.Stat("/usr/local/new"); err == nil {
		t.Errorf("/usr/local/new was created on the host")
	}
	// Inside: the changes are there, root's files are root's, the root is fuse-overlayfs, nosuid and nodev.
	out := mustRun(t, "run", "--overlay", "--", "sh", "-c",
		"echo x > /etc/motd && mkdir /usr/local/new && cat /etc/motd && stat -c '%u:%g %U' /etc/motd /usr/local/new /usr/bin/env && "+
			"grep ' / / ' /proc/self/mountinfo | cut -d' ' -f6; grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1,2")
	want := "x\n0:0 root\n0:0 root\n0:0 root\nrw,nosuid,nodev,relatime\nfuse.fuse-overlayfs caisson-overlay\n"
	if out != want {
		t.Errorf("inside: got %q, want %q", out, want)
	}
	if after := overlayHostState(t); after != before {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// Without fuse-overlayfs (not in the caller's PATH), --overlay keeps the kernel's overlayfs and says so in one
// line; CAISSON_OVERLAY_DRIVER=kernel forces it silently, and a bad value is a usage error.
func TestOverlayKernelFallback(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	run := func(env []string, args ...string) result {
		cmd := exec.Command(bin(t), args...)
		cmd.Env = append(os.Environ(), env...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return result{out.String(), errb.String(), code}
	}
	script := []string{"--env", "PATH=/usr/bin:/bin", "--", "/bin/sh", "-c",
		"{ echo x > /etc/motd; } 2>/dev/null; echo $?; grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1"}
	r := run([]string{"PATH=" + t.TempDir()}, append([]string{"run", "--no-cwd", "--overlay"}, script...)...)
	if r.stdout != "2\noverlay\n" || !strings.HasPrefix(r.stderr, "caisson: notice: ") || strings.Count(r.stderr, "\n") != 1 ||
		!strings.Contains(r.stderr, "fuse-overlayfs is not installed") || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("without fuse-overlayfs: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = run([]string{"CAISSON_OVERLAY_DRIVER=kernel"}, append([]string{"run", "--no-cwd", "--overlay"}, script...)...)
	if r.stdout != "2\noverlay\n" || r.stderr != "" {
		t.Errorf("CAISSON_OVERLAY_DRIVER=kernel: %d %q %q", r.code, r.stdout, r.stderr)
	}
	wantFail(t, run([]string{"CAISSON_OVERLAY_DRIVER=zfs"}, "run", "--overlay", "--", "true"), "CAISSON_OVERLAY_DRIVER")
	// A --rootfs the caller owns uses the kernel's overlayfs even when fuse-overlayfs is there.
	dir := busyboxRoot(t)
	out := mustRun(t, "run", "--rootfs", dir, "--overlay", "--", "/bin/sh", "-c", "grep ' / / ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1")
	if out != "overlay\n" {
		t.Errorf("--rootfs owned by the caller: root is %q, want the kernel's overlay", out)
	}
}

// descendants lists the processes below pid (by /proc/*/stat's parent field) whose comm is name.
func descendants(pid int, name string) []int {
	parent := map[int]int{}
	comm := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < 0 {
			continue
		}
		comm[p] = s[open+1 : closing]
		var state string
		var pp int
		fmt.Sscan(s[closing+1:], &state, &pp)
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		if comm[p] != name {
			continue
		}
		for q := parent[p]; q > 1; q = parent[q] {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

// The fuse-overlayfs daemon dies with the sandbox on every path: a normal exit, SIGKILL of caisson (with a PID
// namespace of its own and with --share pid), and a daemon killed from inside ends the sandbox with one line
// instead of leaving it on a dead root.
func TestOverlayFuseDaemonLifetime(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	for _, share := range [][]string{nil, {"--share", "pid"}} {
		for _, how := range []string{"exit", "sigkill"} {
			t.Run(strings.Join(append([]string{how}, share...), " "), func(t *testing.T) {
				args := append([]string{"run", "--no-cwd", "--overlay"}, share...)
				cmd := exec.Command(bin(t), append(args, "--", "sh", "-c", "echo ready; read x; echo bye")...)
				stdin, _ := cmd.StdinPipe()
				stdout, _ := cmd.StdoutPipe()
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 6)
				if _, err := io.ReadFull(stdout, buf); err != nil {
					t.Fatalf("no ready: %v", err)
				}
				daemons := descendants(cmd.Process.Pid, "fuse-overlayfs")
				if len(daemons) != 1 {
					t.Fatalf("want one fuse-overlayfs below caisson, got %v", daemons)
				}
				shells := descendants(cmd.Process.Pid, "sh")
				if how == "exit" {
					stdin.Write([]byte("\n"))
					if err := cmd.Wait(); err != nil {
						t.Errorf("exit: %v", err)
					}
				} else {
					cmd.Process.Kill()
					cmd.Wait()
				}
				deadline := time.Now().Add(3 * time.Second)
				for alive(daemons[0]) && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
				if alive(daemons[0]) {
					t.Errorf("fuse-overlayfs %d outlived the sandbox (%s)", daemons[0], how)
					syscall.Kill(daemons[0], syscall.SIGKILL)
				}
				for _, p := range shells {
					// With --share pid the command outlives a SIGKILLed caisson (not the overlay's doing): clean up.
					syscall.Kill(p, syscall.SIGKILL)
				}
			})
		}
	}
	// The daemon killed from inside: while the command keeps running without touching the file system (a shell
	// loop of a few seconds), and when the command fails at once on the dead root (`sleep` gets ENOTCONN) and ends
	// in a race with the daemon's exit. Either way the run ends with caisson's error, said once.
	// The race is rare on an idle machine (about 3 in 100 runs, 12 at a time, before init probed the mount when
	// the command ends), so the second case runs 36 sandboxes, 12 at a time.
	check := func(after string) {
		r := caisson(t, "run", "--no-cwd", "--overlay", "--", "sh", "-c", "pkill -9 -x fuse-overlayfs; "+after+"; echo survived")
		if r.code != 125 || strings.Count(r.stderr, "caisson: fuse-overlayfs, which serves the sandbox's root, ended") != 1 {
			t.Errorf("daemon killed inside, then %q: %d %q %q", after, r.code, r.stdout, r.stderr)
		}
	}
	check("i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done")
	var wg sync.WaitGroup
	sem := make(chan struct{}, 12)
	for i := 0; i < 36; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			check("sleep 10")
		}()
	}
	wg.Wait()
}

// --persist of the host view with fuse-overlayfs: one upper layer in DIR, the driver recorded, the lock refuses
// a second sandbox (and outlives a SIGKILL of caisson only as long as the sandbox), the issue's example persists
// and caisson diff lists it.
func TestOverlayFusePersist(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	before := overlayHostState(t)
	pdir := filepath.Join(t.TempDir(), "p, q:r") // ',' and ':' separate fuse-overlayfs's options and layers
	sandboxCleanup(t, pdir)
	mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c", "echo x > /etc/motd; mkdir /usr/local/new; rm /etc/debian_version")
	meta, _ := os.ReadFile(filepath.Join(pdir, "caisson-persist.json"))
	if !strings.Contains(string(meta), `"overlay": "fuse-overlayfs"`) {
		t.Errorf("metadata: %s", meta)
	}
	out := mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c", "cat /etc/motd; ls -d /usr/local/new; ls /etc/debian_version 2>&1; true")
	if !strings.HasPrefix(out, "x\n/usr/local/new\n") || !strings.Contains(out, "No such file") {
		t.Errorf("second run: %q", out)
	}
	diff := mustRun(t, "diff", pdir)
	for _, want := range []string{"C /etc/motd\n", "A /usr/local/new\n", "D /etc/debian_version\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	if strings.Contains(diff, ".wh.") || strings.Contains(diff, ".opq") {
		t.Errorf("diff shows fuse-overlayfs's markers:\n%s", diff)
	}
	// Concurrent use is refused; SIGKILL of caisson in the middle of writes leaves the directory usable.
	writer := exec.Command(bin(t), "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c",
		"echo ready; while :; do dd if=/dev/zero of=/big bs=64k count=16 2>/dev/null; done")
	stdout, _ := writer.StdoutPipe()
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	io.ReadFull(stdout, buf)
	wantFail(t, caisson(t, "run", "--no-cwd", "--persist", pdir, "--", "true"), "in use")
	time.Sleep(200 * time.Millisecond)
	writer.Process.Kill()
	writer.Wait()
	out = mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c", "cat /etc/motd; rm /big; echo ok")
	if out != "x\nok\n" {
		t.Errorf("after SIGKILL: %q", out)
	}
	if after := overlayHostState(t); after != before {
		t.Errorf("the host changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// caisson doctor says which overlay driver --overlay will use and why.
func TestOverlayDoctor(t *testing.T) {
	requireSandbox(t)
	r := caisson(t, "doctor")
	line := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.Contains(l, "overlay driver") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("doctor has no overlay driver line:\n%s", r.stdout)
	}
	if _, err := exec.LookPath("fuse-overlayfs"); err == nil {
		if f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0); err == nil {
			f.Close()
			if !strings.HasPrefix(line, "ok") || !strings.Contains(line, "uses fuse-overlayfs") {
				t.Errorf("doctor: %q", line)
			}
		}
	}
}
