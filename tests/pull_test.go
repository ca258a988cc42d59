package tests

import (
	"archive/tar"
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// testRegistry is a running tests/registry on 127.0.0.1 (see its doc for the repositories that misbehave).
type testRegistry struct {
	url, host string
}

// registryAuth is the private/ repositories' USER:PASSWORD.
const registryAuth = "caisson:secret"

// startRegistry runs the test registry (CAISSON_REGISTRY, which run-integration.sh builds) until the test ends.
func startRegistry(t *testing.T, args ...string) testRegistry {
	t.Helper()
	p := os.Getenv("CAISSON_REGISTRY")
	if p == "" {
		p, _ = filepath.Abs("../bin/registry")
	}
	if _, err := os.Stat(p); err != nil {
		testenv.SkipOrFail(t, "test registry %s: %v (run-integration.sh builds it from tests/registry; or set CAISSON_REGISTRY)", p, err)
	}
	cmd := exec.Command(p, append([]string{"-auth", registryAuth}, args...)...)
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("test registry: %v", err)
	}
	u := strings.TrimSpace(line)
	return testRegistry{url: u, host: strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")}
}

// push writes an image or an index to the registry as repo:tag (with the test credentials).
func (r testRegistry) push(t *testing.T, ref string, obj any) string {
	t.Helper()
	tag, err := name.ParseReference(r.host+"/"+ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := strings.Cut(registryAuth, ":")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the test registry's own certificate
	opts := []remote.Option{remote.WithTransport(tr), remote.WithAuth(authn.FromConfig(authn.AuthConfig{Username: user, Password: pass}))}
	var digest v1.Hash
	switch o := obj.(type) {
	case v1.Image:
		err = remote.Write(tag, o, opts...)
		digest, _ = o.Digest()
	case v1.ImageIndex:
		err = remote.WriteIndex(tag, o, opts...)
		digest, _ = o.Digest()
	}
	if err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return digest.String()
}

// platformImage is a busybox root for arch, with /etc/caisson-platform naming it.
func platformImage(t *testing.T, arch string) v1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.SkipOrFail(t, "/bin/busybox: %v (Debian package busybox-static)", err)
	}
	layer := tarLayer(t,
		tar.Header{Name: "bin/", Typeflag: tar.TypeDir},
		tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Linkname: string(bb), Mode: 0o755},
		tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		tar.Header{Name: "bin/cat", Typeflag: tar.TypeSymlink, Linkname: "busybox"},
		tar.Header{Name: "etc/", Typeflag: tar.TypeDir},
		file("etc/caisson-platform", arch+"\n", 0),
	)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// multiPlatform is an index of this machine's image and an s390x one (another architecture whatever runs this).
func multiPlatform(t *testing.T) (v1.ImageIndex, v1.Image, v1.Image) {
	t.Helper()
	other := "s390x"
	if runtime.GOARCH == other {
		other = "arm64"
	}
	here, there := platformImage(t, runtime.GOARCH), platformImage(t, other)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: here, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
		mutate.IndexAddendum{Add: there, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}})
	return idx, here, there
}

// otherArch is the architecture of multiPlatform's second image.
func otherArch() string {
	if runtime.GOARCH == "s390x" {
		return "arm64"
	}
	return "s390x"
}

// leftovers lists what a pull into dir may leave beside it (its temporary directories) and dir itself.
func leftovers(dir string) []string {
	var out []string
	ents, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "."+filepath.Base(dir)+".") || e.Name() == filepath.Base(dir) {
			out = append(out, e.Name())
		}
	}
	return out
}

// platformOf reads the marker of a pulled root.
func platformOf(t *testing.T, dir string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(dir, "etc/caisson-platform"))
	return strings.TrimSpace(string(b))
}

// pullDir returns a path for a pulled root, removed (with subordinate-owned files) when the test ends.
func pullDir(t *testing.T, name string) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), name)
	t.Cleanup(func() {
		if _, err := os.Lstat(d); err == nil {
			caisson(t, "rm-tree", d)
		}
	})
	return d
}

// TestRootfsPull: a multi-platform image by tag and by digest, this machine's platform by default and another
// with --platform; the pulled root runs with --rootfs and --rootfs --overlay; nothing is left beside DIR.
func TestRootfsPull(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	reg := startRegistry(t)
	idx, _, there := multiPlatform(t)
	idxDigest := reg.push(t, "multi:1", idx)
	otherDigest := reg.push(t, "single:other", there)

	dir := pullDir(t, "root")
	r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", reg.host+"/multi:1", dir)
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("pull: exit %d %q %q", r.code, r.stdout, r.stderr)
	}
	if got := platformOf(t, dir); got != runtime.GOARCH {
		t.Errorf("pulled the %q image, want %s", got, runtime.GOARCH)
	}
	if l := leftovers(dir); len(l) != 1 {
		t.Errorf("beside DIR: %v", l)
	}
	out := mustRun(t, "run", "--rootfs", dir, "--", "/bin/cat", "/etc/caisson-platform")
	if out != runtime.GOARCH+"\n" {
		t.Errorf("--rootfs: %q", out)
	}
	out = mustRun(t, "run", "--rootfs", dir, "--overlay", "--", "/bin/sh", "-c", "echo new > /etc/caisson-platform && cat /etc/caisson-platform")
	if out != "new\n" || platformOf(t, dir) != runtime.GOARCH {
		t.Errorf("--rootfs --overlay: %q, the root: %q", out, platformOf(t, dir))
	}
	// By digest: the index (this machine's image), and another architecture's image with --platform.
	dir2 := pullDir(t, "by digest")
	if r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", reg.host+"/multi@"+idxDigest, dir2); r.code != 0 || platformOf(t, dir2) != runtime.GOARCH {
		t.Errorf("pull by the index's digest: %d %q, %q", r.code, r.stderr, platformOf(t, dir2))
	}
	for _, ref := range []string{reg.host + "/multi:1", reg.host + "/single@" + otherDigest} {
		d := pullDir(t, "other")
		if r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", "--platform", "linux/"+otherArch(), ref, d); r.code != 0 || platformOf(t, d) != otherArch() {
			t.Errorf("pull --platform linux/%s %s: %d %q, %q", otherArch(), ref, r.code, r.stderr, platformOf(t, d))
		}
		caisson(t, "rm-tree", d)
	}
	// DIR not empty: refused, untouched; --force replaces it.
	full := pullDir(t, "full")
	os.MkdirAll(full, 0o755)
	os.WriteFile(filepath.Join(full, "mine"), []byte("keep"), 0o644)
	r = caisson(t, "rootfs", "pull", reg.host+"/multi:1", full)
	wantFail(t, r, "--force")
	if b, _ := os.ReadFile(filepath.Join(full, "mine")); string(b) != "keep" || len(leftovers(full)) != 1 {
		t.Errorf("a refused pull changed DIR: %q %v", b, leftovers(full))
	}
	r = caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", "--force", reg.host+"/multi:1", full)
	if _, err := os.Stat(filepath.Join(full, "mine")); r.code != 0 || err == nil || platformOf(t, full) != runtime.GOARCH || len(leftovers(full)) != 1 {
		t.Errorf("--force: exit %d %q, old file %v, beside: %v", r.code, r.stderr, err, leftovers(full))
	}
}

// TestRootfsPullAuth: a private repository is refused without credentials (one line naming the files to put
// them in) and pulled with them from $REGISTRY_AUTH_FILE, ~/.config/containers/auth.json or ~/.docker/config.json.
func TestRootfsPullAuth(t *testing.T) {
	requireSandbox(t)
	reg := startRegistry(t)
	reg.push(t, "private/img:1", platformImage(t, runtime.GOARCH))
	ref := reg.host + "/private/img:1"
	dir := pullDir(t, "root")
	r := caisson(t, "rootfs", "pull", ref, dir)
	wantFail(t, r, "REGISTRY_AUTH_FILE")
	if len(leftovers(dir)) != 0 {
		t.Errorf("left: %v", leftovers(dir))
	}
	entry := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.host, base64.StdEncoding.EncodeToString([]byte(registryAuth)))
	for _, where := range []string{"REGISTRY_AUTH_FILE", ".config/containers/auth.json", ".docker/config.json"} {
		t.Run(strings.ReplaceAll(where, "/", "_"), func(t *testing.T) {
			home := t.TempDir()
			t.Setenv("HOME", home)
			t.Setenv("XDG_CONFIG_HOME", "")
			t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
			t.Setenv("REGISTRY_AUTH_FILE", "")
			p := filepath.Join(home, where)
			if where == "REGISTRY_AUTH_FILE" {
				p = filepath.Join(home, "auth.json")
				t.Setenv("REGISTRY_AUTH_FILE", p)
			}
			os.MkdirAll(filepath.Dir(p), 0o700)
			os.WriteFile(p, []byte(entry), 0o600)
			d := pullDir(t, "root")
			if r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", ref, d); r.code != 0 || platformOf(t, d) != runtime.GOARCH {
				t.Errorf("with %s: exit %d %q", where, r.code, r.stderr)
			}
			// Wrong credentials: refused in one line.
			os.WriteFile(p, []byte(strings.Replace(entry, base64.StdEncoding.EncodeToString([]byte(registryAuth)),
				base64.StdEncoding.EncodeToString([]byte("caisson:wrong")), 1)), 0o600)
			d2 := pullDir(t, "root2")
			wantFail(t, caisson(t, "rootfs", "pull", ref, d2), "refused access")
		})
	}
}

// TestRootfsPullBad: each bad input or bad registry is one clear error, exit 125, and nothing is left: neither
// DIR nor anything beside it.
func TestRootfsPullBad(t *testing.T) {
	requireSandbox(t)
	checkMounts(t)
	reg := startRegistry(t)
	good := platformImage(t, runtime.GOARCH)
	for _, repo := range []string{"html/img:1", "broken/img:1", "corrupt/img:1", "cut/img:1"} {
		reg.push(t, repo, good)
	}
	reg.push(t, "single:other", platformImage(t, otherArch()))
	odd, err := mutate.Append(empty.Image, mutate.Addendum{Layer: static.NewLayer([]byte("not a tar"), types.MediaType("application/vnd.caisson.unknown")),
		MediaType: types.MediaType("application/vnd.caisson.unknown")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := odd.ConfigFile()
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	if odd, err = mutate.ConfigFile(odd, cfg); err != nil {
		t.Fatal(err)
	}
	reg.push(t, "odd/img:1", odd)
	idx, _, _ := multiPlatform(t)
	reg.push(t, "multi:1", idx)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unparseable", []string{"Bad::Reference"}, "not an image reference"},
		{"html", []string{reg.host + "/html/img:1"}, "HTML"},
		{"500", []string{reg.host + "/broken/img:1"}, "HTTP 500"},
		{"unknown media type", []string{reg.host + "/odd/img:1"}, "application/vnd.caisson.unknown"},
		{"missing tag", []string{reg.host + "/multi:nope"}, "no such tag"},
		{"bad digest", []string{reg.host + "/corrupt/img:1"}, "sha256"},
		{"cut transfer", []string{reg.host + "/cut/img:1"}, "layer 1 of 1"},
		{"other architecture", []string{reg.host + "/single:other"}, "--platform linux/" + otherArch()},
		{"no such platform", []string{"--platform", "linux/mips64", reg.host + "/multi:1"}, "has no image for linux/mips64"},
		{"bad platform", []string{"--platform", "linux", reg.host + "/multi:1"}, "--platform"},
		{"no registry", []string{"127.0.0.1:1/img:1"}, "127.0.0.1:1"},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			dir := pullDir(t, "root")
			args := append([]string{"rootfs", "pull"}, tc.args...)
			r := caissonFor(t, 2*time.Minute, "", nil, append(args, dir)...)
			wantFail(t, r, tc.want)
			t.Logf("%s", r.stderr)
			if l := leftovers(dir); len(l) != 0 {
				t.Errorf("left beside DIR: %v", l)
			}
		})
	}
	// Bad arguments.
	wantFail(t, caisson(t, "rootfs", "pull", reg.host+"/multi:1"), "want IMAGE and DIR")
	wantFail(t, caisson(t, "rootfs", "pull", "--bogus", reg.host+"/multi:1", t.TempDir()+"/x"), "bogus")
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	wantFail(t, caisson(t, "rootfs", "pull", reg.host+"/multi:1", file), "not a directory")
}

// TestRootfsPullTLS: a registry with a certificate that does not verify is refused with a hint, and pulled with
// --insecure.
func TestRootfsPullTLS(t *testing.T) {
	requireSandbox(t)
	reg := startRegistry(t, "-tls")
	reg.push(t, "img:1", platformImage(t, runtime.GOARCH))
	dir := pullDir(t, "root")
	wantFail(t, caisson(t, "rootfs", "pull", reg.host+"/img:1", dir), "--insecure")
	if r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", "--insecure", reg.host+"/img:1", dir); r.code != 0 || platformOf(t, dir) != runtime.GOARCH {
		t.Errorf("--insecure: exit %d %q", r.code, r.stderr)
	}
}

// TestRootfsPullInterrupted: SIGINT or SIGTERM while a layer is on its way (the registry stalls half-way) ends
// the pull with 128+N and a line saying DIR is as it was; nothing is left, no process either.
func TestRootfsPullInterrupted(t *testing.T) {
	requireSandbox(t)
	reg := startRegistry(t)
	reg.push(t, "stall/img:1", platformImage(t, runtime.GOARCH))
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		dir := pullDir(t, "root")
		cmd := exec.Command(bin(t), "rootfs", "pull", reg.host+"/stall/img:1", dir)
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait (bounded) until the layer's blob is being written beside DIR.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			blobs, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".pull-*/oci/blobs/sha256/*"))
			if len(blobs) > 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		sent := time.Now()
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%v: the pull did not end", sig)
		}
		t.Logf("%v: the pull ended %v after the signal", sig, time.Since(sent).Round(time.Millisecond))
		if code := cmd.ProcessState.ExitCode(); code != 128+int(sig) || !strings.Contains(errb.String(), "is as it was") {
			t.Errorf("%v: exit %d, stderr %q", sig, code, errb.String())
		}
		if l := leftovers(dir); len(l) != 0 {
			t.Errorf("%v: left beside DIR: %v", sig, l)
		}
		waitGone(t, "caisson-image", 5*time.Second)
	}
}

// TestRootfsPullProgress: on a terminal, a progress bar with the layers' sizes, and the line naming what was
// pulled.
func TestRootfsPullProgress(t *testing.T) {
	requireSandbox(t)
	script := testenv.RequireCommand(t, "script")
	reg := startRegistry(t)
	reg.push(t, "img:1", platformImage(t, runtime.GOARCH))
	dir := pullDir(t, "root")
	out, err := exec.Command(script, "-qec", bin(t)+" rootfs pull "+reg.host+"/img:1 "+dir, "/dev/null").CombinedOutput()
	s := string(out)
	if err != nil || !strings.Contains(s, "caisson: pulling "+reg.host+"/img:1: layer 1/1 [") || !strings.Contains(s, " MB") ||
		!strings.Contains(s, "caisson: pulled "+reg.host+"/img@sha256:") {
		t.Errorf("on a terminal: %v %q", err, s)
	}
}

// TestRootfsPullProxy: the fetch goes through $HTTP_PROXY. The registry is named by a host name that does not
// resolve (.invalid); only the proxy, on 127.0.0.1, knows where it is.
func TestRootfsPullProxy(t *testing.T) {
	requireSandbox(t)
	reg := startRegistry(t)
	reg.push(t, "img:1", platformImage(t, runtime.GOARCH))
	var seen atomic.Int32
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect || r.URL.Host != "registry.caisson.invalid:5000" {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		seen.Add(1)
		rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "http", reg.host
		}}
		rp.ServeHTTP(w, r)
	}))
	defer proxy.Close()
	t.Setenv("HTTP_PROXY", proxy.URL)
	t.Setenv("HTTPS_PROXY", proxy.URL)
	t.Setenv("NO_PROXY", "")
	dir := pullDir(t, "root")
	r := caissonFor(t, 2*time.Minute, "", nil, "rootfs", "pull", "--insecure", "registry.caisson.invalid:5000/img:1", dir)
	if r.code != 0 || platformOf(t, dir) != runtime.GOARCH || seen.Load() == 0 {
		t.Errorf("through the proxy: exit %d %q, %d requests proxied", r.code, r.stderr, seen.Load())
	}
}
