package tests

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// installLimit bounds one sandbox that installs packages (a first --overlay run also searches the host for the
// files the caller cannot read, which takes seconds on a cold cache).
const installLimit = 3 * time.Minute

// hostInstallState is what installing packages inside an overlay must leave untouched on the host: the content of
// the package databases and account files the caller can read, the metadata of those it cannot, the listings of
// the directories packages go to (checkMounts compares the mount table).
func hostInstallState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, f := range []string{"/etc/passwd", "/etc/group", "/var/lib/dpkg/status", "/var/lib/dpkg/available", "/etc/shells"} {
		data, err := os.ReadFile(f)
		fmt.Fprintf(&b, "%s %x %v\n", f, sha256.Sum256(data), err)
	}
	stat := func(p string) {
		var st syscall.Stat_t
		err := syscall.Lstat(p, &st)
		fmt.Fprintf(&b, "%s %o %d:%d %d %d.%d %d %v\n", p, st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ino, err)
	}
	for _, f := range []string{"/etc/shadow", "/etc/gshadow", "/var/lib/dpkg/lock", "/var/lib/dpkg/lock-frontend",
		"/var/lib/apt/lists/lock", "/var/lib/apt/lists/partial", "/var/cache/apt/archives/lock",
		"/var/cache/apt/archives/partial", "/var/cache/debconf/passwords.dat"} {
		stat(f)
	}
	dirs := []string{"/usr/bin", "/usr/sbin", "/usr/share/doc", "/var/lib/dpkg/info", "/var/lib/apt/lists", "/var/cache/apt",
		"/var/cache/apt/archives", "/usr/local/bin", "/usr/lib/node_modules", "/home", "/var/lib/caisson-test"}
	py, _ := filepath.Glob("/usr/local/lib/python3*/dist-packages")
	for _, d := range append(dirs, py...) {
		ents, err := os.ReadDir(d)
		fmt.Fprintf(&b, "%s: %v\n", d, err)
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			if home, err := os.UserHomeDir(); err == nil && p == filepath.Clean(home) {
				// The caller's own home: a sandbox's run may write there (--overlay's cache of stand-ins,
				// ~/.cache/caisson); what must not appear is another home (a system user's).
				fmt.Fprintf(&b, "%s (the caller's home)\n", p)
				continue
			}
			stat(p)
		}
	}
	return b.String()
}

// checkHostUntouched fails the test when the host's state differs from before, naming the first differing lines.
func checkHostUntouched(t *testing.T, before string) {
	t.Helper()
	after := hostInstallState(t)
	if after == before {
		return
	}
	a, b := strings.Split(before, "\n"), strings.Split(after, "\n")
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			t.Errorf("the host changed: %q became %q", a[i], b[i])
			return
		}
	}
	t.Errorf("the host changed (%d lines before, %d after)", len(a), len(b))
}

// TestOverlayUnreadable: with --overlay of the host view, the entries the caller cannot read (provision.sh makes
// them: a 0600 file, a 0700 directory and a 0711 one, all root's) are stand-ins inside: empty, root's, their
// modes kept, writable; nothing of their content reaches the sandbox (not even the file of the 0711 directory
// that the caller may read by its name: fuse-overlayfs reads directories whole), and the host is untouched. The
// list is searched afresh (an empty cache) and kept for the next run.
func TestOverlayUnreadable(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	fx := "/var/lib/caisson-test/unreadable." + os.Getenv("USER")
	denied := "/var/lib/caisson-test/group-denied." + os.Getenv("USER")
	if _, err := os.Stat(fx + "/secret"); err != nil {
		testenv.SkipOrFail(t, "%s: %v (tests/provision.sh creates it)", fx, err)
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	before := hostInstallState(t)
	script := `fx=` + fx + `; cd $fx
stat -c '%n %s %U:%G %a' secret closed unlisted
cat unlisted/known 2>/dev/null || echo no-known
echo "secret=[$(cat secret)] denied=[$(cat ` + denied + `)] closed=$(ls -A closed | wc -l) unlisted=$(ls -A unlisted | wc -l)"
echo mine > secret && cat secret
touch closed/new && ls -A closed
touch unlisted/new && ls -A unlisted
chmod 0750 closed && stat -c '%a' closed`
	r := caissonFor(t, installLimit, "", nil, "run", "--no-cwd", "--overlay", "--", "sh", "-c", script)
	want := "secret 0 root:root 600\nclosed 40 root:root 700\nunlisted 40 root:root 711\n" +
		"no-known\nsecret=[] denied=[] closed=0 unlisted=0\nmine\nnew\nnew\n750\n"
	// A directory's size is the stand-in's, not the host's: compare the rest.
	got := r.stdout
	for _, l := range strings.Split(got, "\n") {
		if f := strings.Fields(l); len(f) == 4 && (f[0] == "closed" || f[0] == "unlisted") {
			got = strings.Replace(got, l, f[0]+" 40 "+f[2]+" "+f[3], 1)
		}
	}
	if r.code != 0 || got != want || r.stderr != "" {
		t.Errorf("inside: exit %d\nstdout %q\nwant   %q\nstderr %q", r.code, got, want, r.stderr)
	}
	for _, secret := range []string{"host-secret", "closed-secret", "inner", "group-denied", "\nknown"} {
		if strings.Contains(r.stdout, secret) {
			t.Errorf("the sandbox read %q, which the caller cannot read", secret)
		}
	}
	checkHostUntouched(t, before)
	// The list is kept: the next run finds the stand-ins without a search, and they are the same.
	files, _ := filepath.Glob(filepath.Join(cache, "caisson", "standins-*.json"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	data, _ := os.ReadFile(files[0])
	for _, entry := range []string{`"` + fx[1:] + `/secret":"file"`, `"` + fx[1:] + `/closed":"dir"`, `"` + fx[1:] + `/unlisted":"dir"`} {
		if !strings.Contains(string(data), entry) {
			t.Errorf("the cache lacks %s", entry)
		}
	}
	r = caisson(t, "run", "--no-cwd", "--overlay", "--", "sh", "-c", "cd "+fx+" && echo x >> secret && ls -A closed | wc -l")
	if r.code != 0 || r.stdout != "0\n" {
		t.Errorf("from the cache: %d %q %q", r.code, r.stdout, r.stderr)
	}
	checkHostUntouched(t, before)
}

// aptRepo builds an apt repository of one package, caisson-hello (a command, and a postinst that adds the system
// user caissonhello), with dpkg-deb and dpkg-scanpackages, and an apt configuration that uses only it. It returns
// the directory to bind at /srv/caisson-repo, and the shell command that installs that configuration inside.
func aptRepo(t *testing.T) (dir, configure string) {
	t.Helper()
	testenv.RequireCommand(t, "apt-get")
	testenv.RequireCommand(t, "dpkg-deb")
	testenv.RequireCommand(t, "dpkg-scanpackages")
	dir = t.TempDir()
	os.Chmod(dir, 0o755)
	pkg := filepath.Join(t.TempDir(), "pkg")
	files := map[string]string{
		"DEBIAN/control": "Package: caisson-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: caisson tests <tests@caisson.invalid>\n" +
			"Description: caisson's apt test package\n",
		"DEBIAN/postinst": "#!/bin/sh\nset -e\nif [ \"$1\" = configure ] && ! getent passwd caissonhello >/dev/null; then\n" +
			"\tuseradd --system --no-create-home --shell /usr/sbin/nologin caissonhello\nfi\n",
		"usr/bin/caisson-hello": "#!/bin/sh\necho hello from caisson-hello\n",
	}
	for name, body := range files {
		p := filepath.Join(pkg, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(pkg, "DEBIAN/control"), 0o644)
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", pkg, filepath.Join(dir, "caisson-hello_1.0_all.deb")).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, out)
	}
	scan := exec.Command("dpkg-scanpackages", ".", "/dev/null")
	scan.Dir = dir
	index, err := scan.Output()
	if err != nil {
		t.Fatalf("dpkg-scanpackages: %v", err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(index)
	zw.Close()
	os.WriteFile(filepath.Join(dir, "Packages"), index, 0o644)
	os.WriteFile(filepath.Join(dir, "Packages.gz"), gz.Bytes(), 0o644)
	os.WriteFile(filepath.Join(dir, "caisson.list"), []byte("deb [trusted=yes] file:/srv/caisson-repo ./\n"), 0o644)
	configure = `printf '%s\n' 'Dir::Etc::SourceList "/srv/caisson-repo/caisson.list";' 'Dir::Etc::SourceParts "/nonexistent";' ` +
		`'Acquire::Languages "none";' >/etc/apt/apt.conf.d/99caisson-test`
	return dir, configure
}

// aptInstall is the command: update the package lists, install the package, run its command.
const aptInstall = "apt-get update && apt-get install -y caisson-hello && caisson-hello && getent passwd caissonhello"

// TestInstallApt: as an ordinary user, apt-get update and apt-get install of a package whose postinst adds a
// system user work in --overlay of the host view; the package's files and the user exist inside; the host is
// untouched. With --persist DIR the installed package is there in the next run (dpkg -l shows it) and caisson
// diff lists its files.
func TestInstallApt(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	repo, configure := aptRepo(t)
	before := hostInstallState(t)
	bind := []string{"--no-cwd", "--ro-bind", repo + ":/srv/caisson-repo"}
	r := caissonFor(t, installLimit, "", nil, append(append([]string{"run", "--overlay"}, bind...), "--", "sh", "-c", configure+" && "+aptInstall)...)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from caisson-hello\ncaissonhello:x:") {
		t.Fatalf("--overlay: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	checkHostUntouched(t, before)
	if _, err := os.Stat("/usr/bin/caisson-hello"); err == nil {
		t.Errorf("the package was installed on the host")
	}

	pdir := filepath.Join(t.TempDir(), "box")
	t.Cleanup(func() { caisson(t, "rm-tree", pdir) })
	r = caissonFor(t, installLimit, "", nil, append(append([]string{"run", "--persist", pdir}, bind...), "--", "sh", "-c", configure+" && "+aptInstall)...)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from caisson-hello\n") {
		t.Fatalf("--persist, first run: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	r = caissonFor(t, installLimit, "", nil, "run", "--no-cwd", "--persist", pdir, "--", "sh", "-c",
		"dpkg -l caisson-hello | awk '/^ii/ {print $1, $2, $3}'; caisson-hello; getent passwd caissonhello | cut -d: -f1")
	if r.code != 0 || r.stdout != "ii caisson-hello 1.0\nhello from caisson-hello\ncaissonhello\n" {
		t.Errorf("--persist, next run: exit %d\nstdout %q\nstderr %q", r.code, r.stdout, r.stderr)
	}
	diff := mustRun(t, "diff", pdir)
	for _, want := range []string{"A /usr/bin/caisson-hello\n", "C /etc/passwd\n", "C /var/lib/dpkg/status\n", "A /var/lib/dpkg/info/caisson-hello.list\n"} {
		if !strings.Contains(diff, want) {
			t.Errorf("caisson diff lacks %q:\n%s", want, diff)
		}
	}
	checkHostUntouched(t, before)
}

// TestInstallPip: pip installs a local wheel into the system's site-packages inside --overlay; the host's stay as
// they were.
func TestInstallPip(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	py := testenv.RequireCommand(t, "python3")
	if out, err := exec.Command(py, "-m", "pip", "--version").CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "python3 -m pip: %v: %s (Debian package python3-pip)", err, out)
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	info := "caisson_hello_py-1.0.dist-info/"
	files := []struct{ name, body string }{
		{"caisson_hello_py.py", "def hello():\n    return 'hello from pip'\n"},
		{info + "METADATA", "Metadata-Version: 2.1\nName: caisson-hello-py\nVersion: 1.0\n"},
		{info + "WHEEL", "Wheel-Version: 1.0\nGenerator: caisson-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"},
		{info + "RECORD", "caisson_hello_py.py,,\n" + info + "METADATA,,\n" + info + "WHEEL,,\n" + info + "RECORD,,\n"},
	}
	for _, f := range files {
		w, _ := zw.Create(f.name)
		w.Write([]byte(f.body))
	}
	zw.Close()
	wheel := filepath.Join(dir, "caisson_hello_py-1.0-py3-none-any.whl")
	os.WriteFile(wheel, buf.Bytes(), 0o644)
	before := hostInstallState(t)
	r := caissonFor(t, installLimit, "", nil, "run", "--no-cwd", "--overlay", "--ro-bind", dir+":/srv/wheels", "--", "sh", "-c",
		"python3 -m pip install --no-index --break-system-packages -q /srv/wheels/"+filepath.Base(wheel)+" 2>/dev/null && "+
			"python3 -c 'import caisson_hello_py as m; print(m.hello(), m.__file__.startswith(\"/usr/\"))'")
	if r.code != 0 || r.stdout != "hello from pip True\n" {
		t.Errorf("pip install: exit %d\nstdout %q\nstderr %s", r.code, r.stdout, r.stderr)
	}
	checkHostUntouched(t, before)
	if out, _ := exec.Command(py, "-c", "import caisson_hello_py").CombinedOutput(); !strings.Contains(string(out), "No module") {
		t.Errorf("the module is importable on the host: %s", out)
	}
}

// TestInstallNpm: npm install -g of a local package tarball works inside --overlay; the host's global modules
// stay as they were.
func TestInstallNpm(t *testing.T) {
	requireSandbox(t)
	requireFuseOverlay(t)
	checkMounts(t)
	testenv.RequireCommand(t, "npm")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, f := range []struct {
		name, body string
		mode       int64
	}{
		{"package/package.json", `{"name": "caisson-hello-js", "version": "1.0.0", "bin": {"caisson-hello-js": "bin/hello.js"}}` + "\n", 0o644},
		{"package/bin/hello.js", "#!/usr/bin/env node\nconsole.log('hello from npm')\n", 0o755},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body)), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	gz.Close()
	os.WriteFile(filepath.Join(dir, "caisson-hello-js-1.0.0.tgz"), buf.Bytes(), 0o644)
	before := hostInstallState(t)
	r := caissonFor(t, installLimit, "", nil, "run", "--no-cwd", "--overlay", "--ro-bind", dir+":/srv/npm", "--", "sh", "-c",
		"npm install -g --offline --no-audit --no-fund --no-update-notifier /srv/npm/caisson-hello-js-1.0.0.tgz >/dev/null && "+
			"caisson-hello-js && ls \"$(npm root -g)\" | grep -c caisson-hello-js")
	if r.code != 0 || r.stdout != "hello from npm\n1\n" {
		t.Errorf("npm install -g: exit %d\nstdout %q\nstderr %s", r.code, r.stdout, r.stderr)
	}
	checkHostUntouched(t, before)
	if p, err := exec.LookPath("caisson-hello-js"); err == nil {
		t.Errorf("the package's command is on the host: %s", p)
	}
}
