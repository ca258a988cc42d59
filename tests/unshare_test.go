package tests

// caisson unshare and caisson rm-tree (issue 20): what the user's sandboxes wrote as other ids, which the user's
// own rm cannot remove, removed through a user namespace with the maps `caisson run` writes.

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// plannedMaps returns the uid_map and gid_map `caisson idmap --json` says run writes, in /proc's layout.
func plannedMaps(t *testing.T, mode string) (uidMap, gidMap string) {
	t.Helper()
	var plan struct {
		UIDMap []struct{ Inside, Outside, Count uint32 } `json:"uid_map"`
		GIDMap []struct{ Inside, Outside, Count uint32 } `json:"gid_map"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "idmap", "--map", mode, "--json")), &plan); err != nil {
		t.Fatal(err)
	}
	format := func(ms []struct{ Inside, Outside, Count uint32 }) string {
		var b strings.Builder
		for _, m := range ms {
			fmt.Fprintf(&b, "%d %d %d\n", m.Inside, m.Outside, m.Count)
		}
		return b.String()
	}
	return format(plan.UIDMap), format(plan.GIDMap)
}

// normalizeMap rewrites a /proc uid_map (aligned in columns) as "IN OUT COUNT" lines.
func normalizeMap(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		b.WriteString(strings.Join(strings.Fields(l), " ") + "\n")
	}
	return b.String()
}

// The command runs as root of a user namespace with the maps run writes, and nothing else changes: the same
// mount, PID and network namespaces, working directory, environment and standard descriptors; its status is
// caisson's.
func TestUnshareIdentity(t *testing.T) {
	requireSandbox(t)
	if out := mustRun(t, "unshare", "id", "-u"); out != "0\n" {
		t.Errorf("unshare id -u: %q, want 0", out)
	}
	if out := mustRun(t, "unshare", "--", "id", "-g"); out != "0\n" {
		t.Errorf("unshare -- id -g: %q, want 0", out)
	}
	for _, mode := range []string{"auto", "single"} {
		wantUID, wantGID := plannedMaps(t, mode)
		if strings.Count(wantUID, "\n") < 2 && mode == "auto" {
			t.Fatalf("the test user's auto map is not the full map: %q", wantUID)
		}
		got := mustRun(t, "unshare", "--map", mode, "sh", "-c", "cat /proc/self/uid_map; echo; cat /proc/self/gid_map")
		uid, gid, _ := strings.Cut(got, "\n\n")
		if normalizeMap(uid) != wantUID || normalizeMap(gid) != wantGID {
			t.Errorf("--map %s: maps inside\n%s\nwant\n%s\n%s", mode, got, wantUID, wantGID)
		}
	}
	if out := mustRun(t, "unshare", "--map", "keep-id", "id", "-u"); out != strconv.Itoa(os.Getuid())+"\n" {
		t.Errorf("--map keep-id: id -u %q, want the caller's", out)
	}
	// Everything but the user namespace is the caller's.
	for _, ns := range []string{"mnt", "pid", "net", "ipc", "uts", "cgroup"} {
		mine, _ := os.Readlink("/proc/self/ns/" + ns)
		if out := mustRun(t, "unshare", "readlink", "/proc/self/ns/"+ns); strings.TrimSpace(out) != mine {
			t.Errorf("%s namespace: %q inside, %q outside", ns, strings.TrimSpace(out), mine)
		}
	}
	myUserNS, _ := os.Readlink("/proc/self/ns/user")
	if out := mustRun(t, "unshare", "readlink", "/proc/self/ns/user"); strings.TrimSpace(out) == myUserNS {
		t.Errorf("no new user namespace")
	}
	dir := t.TempDir()
	cmd := exec.Command(bin(t), "unshare", "sh", "-c", `pwd; echo "$CAISSON_TEST_MARK"; cat; echo err >&2; exit 7`)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CAISSON_TEST_MARK=kept")
	cmd.Stdin = strings.NewReader("from stdin\n")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || string(out) != dir+"\nkept\nfrom stdin\n" || stderr.String() != "err\n" {
		t.Errorf("cwd, environment, stdio, status: %v %q %q", err, out, stderr.String())
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"sh", "-c", "kill -TERM $$"}, 143, ""},
		{[]string{"caisson-no-such-command"}, 127, "caisson: unshare: caisson-no-such-command: command not found\n"},
		{[]string{"/etc/passwd"}, 126, "caisson: unshare: /etc/passwd: permission denied\n"},
		{[]string{"--map", "bogus", "true"}, 125, "caisson: unshare: --map: unknown mode \"bogus\" (want auto, single or keep-id)\n"},
		{[]string{"--bogus"}, 125, ""},
	} {
		r := caisson(t, append([]string{"unshare"}, tc.args...)...)
		if r.code != tc.code || (tc.msg != "" && r.stderr != tc.msg) {
			t.Errorf("unshare %v: %d %q, want %d %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
	// Without a command: the user's shell ($SHELL, else the passwd entry's), reading its commands from stdin.
	r := caissonIn(t, "", []byte("echo shell-$(id -u)\n"), "unshare")
	if r.code != 0 || r.stdout != "shell-0\n" {
		t.Errorf("unshare with no command: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if out := mustRun(t, "unshare", "--help"); !strings.Contains(out, "nothing but IDs") {
		t.Errorf("--help must say what is isolated: %q", out)
	}
}

// Signals sent to caisson reach the command, whose status is caisson's; a SIGKILL of caisson kills the command.
func TestUnshareSignals(t *testing.T) {
	requireSandbox(t)
	before := snapshotHost(t)
	c := exec.Command(bin(t), "unshare", "sh", "-c", `trap 'echo got-TERM; exit 3' TERM; echo ready; i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done`)
	stdout, _ := c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	readUntil(stdout, "ready")
	c.Process.Signal(syscall.SIGTERM)
	rest, _ := io.ReadAll(stdout)
	err := c.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(rest), "got-TERM") {
		t.Errorf("SIGTERM to caisson: %v %q, want the command's trap and its status 3", err, rest)
	}
	c = exec.Command(bin(t), "unshare", "sh", "-c", `echo $$; exec sleep 300`)
	stdout, _ = c.StdoutPipe()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	line := readUntil(stdout, "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	if pid <= 0 {
		t.Fatalf("command's pid: %q", line)
	}
	c.Process.Kill()
	c.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the command (pid %d) outlived a SIGKILL of caisson", pid)
	}
	if diffs := waitHostClean(t, before, 10*time.Second); len(diffs) > 0 {
		t.Errorf("left behind: %v", diffs)
	}
}

// On a terminal the command gets its own process group, in the terminal's foreground: Ctrl-C reaches it once,
// from the terminal (caisson, in another group, forwards nothing more). Under `script -c` caisson's own group is
// orphaned: a Ctrl-Z must not leave the command stopped forever.
func TestUnshareTerminal(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	runScript := func(cmd string, keys ...string) string {
		t.Helper()
		c := exec.Command(script, "-qec", bin(t)+" unshare "+cmd+"; echo code=$?", "/dev/null")
		stdin, _ := c.StdinPipe()
		stdout, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		timer := time.AfterFunc(30*time.Second, func() { c.Process.Kill() })
		defer timer.Stop()
		out := readUntil(stdout, "ready")
		for _, k := range keys {
			time.Sleep(200 * time.Millisecond)
			stdin.Write([]byte(k))
		}
		rest, _ := io.ReadAll(stdout)
		c.Wait()
		return strings.ReplaceAll(out+string(rest), "\r", "")
	}
	// Fields 5 and 8 of /proc/PID/stat: the process group and the terminal's foreground group.
	out := runScript(`sh -c 'read a b c d pgrp f g tpgid rest </proc/$$/stat; read a b c d ppgrp rest </proc/$PPID/stat; echo ready; echo "own=$(test $pgrp = $$ && echo y) fg=$(test $tpgid = $pgrp && echo y) other=$(test $ppgrp != $pgrp && echo y)"'`)
	if !strings.Contains(out, "own=y fg=y other=y") || !strings.Contains(out, "code=0") {
		t.Errorf("the command must lead its own process group, in the foreground, apart from caisson's: %q", out)
	}
	out = runScript(`bash -c 'n=0; inc() { n=$((n+1)); }; trap inc INT; echo ready; i=0; while [ $i -lt 15 ]; do sleep 0.1; i=$((i+1)); done; echo ints=$n'`, "\x03")
	if !strings.Contains(out, "ints=1\n") || !strings.Contains(out, "code=0") {
		t.Errorf("Ctrl-C must reach the command exactly once: %q", out)
	}
	out = runScript(`sh -c 'echo ready; exec sleep 10'`, "\x03")
	if !strings.Contains(out, "code=130") {
		t.Errorf("Ctrl-C: want code=130, got %q", out)
	}
	out = runScript(`sh -c 'echo ready; sleep 1; echo end'`, "\x1a")
	if !strings.Contains(out, "end\n") || !strings.Contains(out, "code=0") {
		t.Errorf("Ctrl-Z in an orphaned group: the command must go on: %q", out)
	}
}

// fillPersist runs sandboxes on the --persist directory pdir that leave what a user's sandboxes leave: root-owned
// directories of the lower tree copied up, whiteouts of its files and directories, an opaque directory,
// directories of subordinate owners with modes 0500 and 0000; then checks the user's own rm cannot remove it.
func fillPersist(t *testing.T, pdir string, root string) {
	t.Helper()
	base := []string{"run", "--no-cwd", "--persist", pdir}
	if root != "" {
		base = []string{"run", "--rootfs", root, "--persist", pdir}
	}
	mustRun(t, append(base, "--", "sh", "-c", `set -e
		for f in /etc/*; do case $f in /etc/hosts|/etc/resolv.conf|/etc/hostname) ;; *) [ -f "$f" ] && rm -f "$f" && break;; esac; done
		rm -rf "$(ls -d /usr/share/*/ | head -1)"
		echo x >> /etc/caisson-new; mkdir -p /var/lib/caisson-t/a/b/c; echo f > /var/lib/caisson-t/a/b/c/f`)...)
	diff := mustRun(t, "diff", pdir)
	if strings.Count(diff, "D /") < 2 || !strings.Contains(diff, "A /var/lib/caisson-t/a/b/c/f") {
		t.Fatalf("the first run left no whiteouts or no new file: %s", diff)
	}
	mustRun(t, append(base, "--", "sh", "-c", `set -e; d="$(ls -d /usr/share/*/ | head -1)"; rm -rf "$d"; mkdir "$d"; echo o > "$d/o"
		chown -R 1000:1000 /var/lib/caisson-t; chmod 0500 /var/lib/caisson-t/a/b; chmod 0000 /var/lib/caisson-t/a/b/c
		chown 123:456 /etc/caisson-new`)...)
	if err := exec.Command("rm", "-rf", pdir).Run(); err == nil {
		t.Fatalf("the user's own rm removed %s: the test's tree has no subordinate-owned entry", pdir)
	}
}

// A --persist directory of the host view (fuse-overlayfs when installed, else kernel overlayfs) and one of a
// --rootfs (kernel overlayfs: whiteouts are character devices), each removed by rm-tree and by unshare rm -rf.
func TestRmTreePersist(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	bb := busyboxRoot(t)
	for _, d := range []string{"etc", "usr/share/aaa", "usr/share/bbb"} {
		os.MkdirAll(filepath.Join(bb, d), 0o755)
	}
	os.WriteFile(filepath.Join(bb, "etc/victim"), []byte("x\n"), 0o644)
	os.WriteFile(filepath.Join(bb, "usr/share/aaa/f"), []byte("x\n"), 0o644)
	for _, root := range []string{"", bb} {
		for _, how := range []string{"rm-tree", "unshare"} {
			name := how + "/host-view"
			if root != "" {
				name = how + "/rootfs"
			}
			t.Run(name, func(t *testing.T) {
				if root == "" {
					requireFuseOverlay(t) // kernel overlayfs cannot remove the host's root-owned files
				}
				pdir := filepath.Join(t.TempDir(), "keep me")
				sandboxCleanup(t, pdir)
				fillPersist(t, pdir, root)
				if how == "rm-tree" {
					if r := caisson(t, "rm-tree", pdir); r.code != 0 || r.stderr != "" {
						t.Fatalf("rm-tree: %d %q", r.code, r.stderr)
					}
				} else {
					mustRun(t, "unshare", "rm", "-rf", pdir)
				}
				if _, err := os.Lstat(pdir); err == nil {
					t.Errorf("%s is still there", pdir)
				}
			})
		}
	}
}

// deepImage is an image with a deep tree of directories of subordinate owners, every other one mode 0500, a mode
// 0000 directory with files in it, and symlinks that point out of the tree.
func deepImage(t *testing.T, victim string) string {
	t.Helper()
	var entries []tar.Header
	p := "srv"
	entries = append(entries, tar.Header{Name: "srv/", Typeflag: tar.TypeDir})
	for i := 0; i < 40; i++ {
		p += "/d" + strconv.Itoa(i)
		mode := int64(0o755)
		if i%2 == 1 {
			mode = 0o500
		}
		entries = append(entries, tar.Header{Name: p + "/", Typeflag: tar.TypeDir, Uid: 1000 + i, Gid: 1000 + i, Mode: mode},
			file(p+"/f", "x", 2000+i))
	}
	entries = append(entries,
		tar.Header{Name: "zero/", Typeflag: tar.TypeDir, Uid: 33, Gid: 33, Mode: 0o000},
		file("zero/secret", "s", 33),
		tar.Header{Name: "srv/out", Typeflag: tar.TypeSymlink, Linkname: victim},
		tar.Header{Name: "srv/abs", Typeflag: tar.TypeSymlink, Linkname: "/"},
	)
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, entries...))
	if err != nil {
		t.Fatal(err)
	}
	return writeArchives(t, img)["docker-save"]
}

// An unpacked image with a deep tree of subordinate owners: rootfs unpack into it again names rm-tree; rm-tree
// and unshare rm -rf remove it, never following its symlinks out.
func TestRmTreeUnpacked(t *testing.T) {
	requireSandbox(t)
	victim := t.TempDir()
	os.WriteFile(filepath.Join(victim, "keep"), []byte("x"), 0o644)
	archive := deepImage(t, victim)
	for _, how := range []string{"rm-tree", "unshare"} {
		t.Run(how, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "u1")
			sandboxCleanup(t, dir)
			if r := caisson(t, "rootfs", "unpack", archive, dir); r.code != 0 {
				t.Fatalf("unpack: %d %s", r.code, r.stderr)
			}
			var st syscall.Stat_t
			if err := syscall.Lstat(filepath.Join(dir, "srv/d0/d1"), &st); err != nil || st.Mode&0o777 != 0o500 || st.Uid == uint32(os.Getuid()) {
				t.Fatalf("srv/d0/d1: want mode 0500 and a subordinate owner, got %o uid %d (%v)", st.Mode&0o777, st.Uid, err)
			}
			if err := exec.Command("rm", "-rf", dir).Run(); err == nil {
				t.Fatalf("the user's own rm removed the unpacked tree")
			}
			r := caisson(t, "rootfs", "unpack", archive, dir)
			wantFail(t, r, "caisson rm-tree "+dir)
			if how == "rm-tree" {
				if r := caisson(t, "rm-tree", dir); r.code != 0 || r.stderr != "" {
					t.Fatalf("rm-tree: %d %q", r.code, r.stderr)
				}
			} else {
				mustRun(t, "unshare", "rm", "-rf", dir)
			}
			if _, err := os.Lstat(dir); err == nil {
				t.Errorf("%s is still there", dir)
			}
			if _, err := os.Stat(filepath.Join(victim, "keep")); err != nil {
				t.Fatalf("a symlink was followed out of the tree: %v", err)
			}
			// And the directory is usable again.
			if r := caisson(t, "rootfs", "unpack", archive, dir); r.code != 0 {
				t.Errorf("unpack after the removal: %d %s", r.code, r.stderr)
			}
		})
	}
}

// What rm-tree refuses, before removing anything: a --persist directory (or a directory in one) while its sandbox
// runs, a path owned by someone else, and the paths that are never a tree to remove.
func TestRmTreeRefusals(t *testing.T) {
	requireSandbox(t)
	base := t.TempDir()
	pdir := filepath.Join(base, "p1")
	sandboxCleanup(t, pdir)
	first := exec.Command(bin(t), "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c",
		"mkdir -p /var/lib/caisson-t && chown 1000 /var/lib/caisson-t && echo ready; sleep 30")
	stdout, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		first.Process.Kill()
		first.Wait()
	}()
	if out := readUntil(stdout, "ready"); !strings.Contains(out, "ready") {
		t.Fatalf("the sandbox did not start: %q", out)
	}
	keep := filepath.Join(base, "other")
	os.MkdirAll(filepath.Join(keep, "x"), 0o755)
	wantFail(t, caisson(t, "rm-tree", keep, pdir), "in use by a running sandbox")
	wantFail(t, caisson(t, "rm-tree", filepath.Join(pdir, "upper", "%2F")), "inside the --persist directory "+pdir)
	if _, err := os.Stat(filepath.Join(keep, "x")); err != nil {
		t.Errorf("a refusal must remove nothing: %v", err)
	}
	// A tree holding it: everything else goes, the directory in use stays whole.
	r := caisson(t, "rm-tree", base)
	if r.code != 125 || !strings.Contains(r.stderr, pdir+": in use by a running sandbox") {
		t.Errorf("rm-tree of a tree holding a --persist directory in use: %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(keep); err == nil {
		t.Errorf("%s must be gone", keep)
	}
	if _, err := os.Stat(filepath.Join(pdir, "upper", "%2F", "var", "lib", "caisson-t")); err != nil {
		t.Errorf("the --persist directory in use must stay whole: %v", err)
	}
	// Once the sandbox has ended (its init exits with caisson, releasing the lock), the directory goes.
	first.Process.Kill()
	first.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		r := caisson(t, "rm-tree", pdir)
		if r.code == 0 {
			break
		}
		if !strings.Contains(r.stderr, "in use") || time.Now().After(deadline) {
			t.Fatalf("rm-tree once the sandbox ended: %d %q", r.code, r.stderr)
		}
	}
	if _, err := os.Lstat(pdir); err == nil {
		t.Errorf("%s is still there", pdir)
	}

	home, _ := os.UserHomeDir()
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(t.TempDir(), link)
	for _, tc := range []struct{ arg, msg string }{
		{"/tmp", "/tmp is owned by uid 0, neither you"},
		{"/usr/share", "/usr/share is owned by uid 0"},
		{"/", "refusing to remove /"},
		{home, "refusing to remove your home directory"},
		{filepath.Dir(home), "it holds your home directory"},
		{".", `refusing to remove "."`},
		{file, "is not a directory"},
		{link, "is a symbolic link"},
		{"/proc", "is a mount point"},
		{filepath.Join(base, "missing"), "no such directory"},
	} {
		wantFail(t, caisson(t, "rm-tree", tc.arg), tc.msg)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("a refused path must be kept: %v", err)
	}
}

// `--persist` on a directory whose entries belong to ids the sandbox's map does not cover (here: written with the
// full map, used with --map single) fails naming the command that removes it, and that command works.
func TestPersistForeignEntries(t *testing.T) {
	requireSandbox(t)
	pdir := filepath.Join(t.TempDir(), "p")
	sandboxCleanup(t, pdir)
	mustRun(t, "run", "--no-cwd", "--persist", pdir, "--", "true")
	// A work directory left with a subordinate-owned, unreadable entry (as a copy-up interrupted by a SIGKILL).
	esc := strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace(pdir)
	mustRun(t, "run", "--no-cwd", "--bind", esc+":/tmp/p", "--", "sh", "-c",
		"for w in /tmp/p/work/*; do mkdir -p $w/left/x; chown -R 1000:1000 $w/left; chmod 0500 $w/left; done")
	r := caisson(t, "run", "--no-cwd", "--map", "single", "--persist", pdir, "--", "true")
	wantFail(t, r, "caisson rm-tree "+pdir)
	if !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("the error must give the cause: %q", r.stderr)
	}
	if r := caisson(t, "rm-tree", pdir); r.code != 0 {
		t.Errorf("rm-tree: %d %q", r.code, r.stderr)
	}
}

// As host root (which the user namespace would not map) rm-tree removes the tree itself: root's and other users'
// entries, unreadable directories included; its refusals stay.
func TestRootModeRmTree(t *testing.T) {
	if os.Getuid() != 0 {
		testenv.SkipOrFail(t, "needs to run as host root (tests/run-integration.sh runs it so)")
	}
	top := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(top, "a", "b", "c"), 0o755)
	os.WriteFile(filepath.Join(top, "a", "b", "c", "f"), nil, 0o644)
	os.Chown(filepath.Join(top, "a", "b"), 12345, 12345)
	os.Chmod(filepath.Join(top, "a", "b"), 0)
	if r := caisson(t, "rm-tree", top); r.code != 0 || r.stderr != "" {
		t.Errorf("rm-tree as root: %d %q", r.code, r.stderr)
	}
	if _, err := os.Lstat(top); err == nil {
		t.Errorf("%s is still there", top)
	}
	wantFail(t, caisson(t, "rm-tree", "/"), "refusing to remove /")
}

// An extraction that ends half-way (here: caisson is sent SIGTERM while it writes) leaves files of subordinate
// ids behind; caisson names the command that removes them, and that command does.
func TestRootfsUnpackInterrupted(t *testing.T) {
	requireSandbox(t)
	var entries []tar.Header
	for d := 0; d < 100; d++ {
		dir := fmt.Sprintf("data/d%03d", d)
		entries = append(entries, tar.Header{Name: dir + "/", Typeflag: tar.TypeDir, Uid: 1000, Gid: 1000, Mode: 0o700})
		for f := 0; f < 200; f++ {
			entries = append(entries, file(fmt.Sprintf("%s/f%03d", dir, f), strings.Repeat("x", 512), 1000))
		}
	}
	img, err := mutate.AppendLayers(empty.Image, tarLayer(t, entries...))
	if err != nil {
		t.Fatal(err)
	}
	archive := writeArchives(t, img)["docker-save"]
	for attempt := 0; attempt < 3; attempt++ {
		dir := filepath.Join(t.TempDir(), "u")
		sandboxCleanup(t, dir)
		c := exec.Command(bin(t), "rootfs", "unpack", archive, dir)
		var stderr strings.Builder
		c.Stderr = &stderr
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		// Once the extraction has written its first directory, stop it.
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(2 * time.Millisecond) {
			if ents, _ := os.ReadDir(filepath.Join(dir, "data")); len(ents) > 0 {
				break
			}
		}
		c.Process.Signal(syscall.SIGTERM)
		c.Wait()
		if c.ProcessState.ExitCode() == 0 {
			continue // the extraction was faster than the signal: try again
		}
		want := "caisson: hint: " + dir + " holds a partial extraction; remove it with: caisson rm-tree " + dir + "\n"
		if !strings.HasSuffix(stderr.String(), want) {
			t.Fatalf("interrupted unpack: %s, stderr %q; want it to end with %q", c.ProcessState, stderr.String(), want)
		}
		if err := exec.Command("rm", "-rf", dir).Run(); err == nil {
			t.Fatalf("the user's own rm removed the partial extraction: nothing to hint at")
		}
		if r := caisson(t, "rm-tree", dir); r.code != 0 {
			t.Fatalf("rm-tree: %d %q", r.code, r.stderr)
		}
		return
	}
	t.Fatalf("every extraction finished before the signal")
}
