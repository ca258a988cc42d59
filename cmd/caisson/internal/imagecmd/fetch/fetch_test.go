package fetch

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// References resolve as Docker and Podman resolve them: Docker Hub, library/, latest by default.
func TestParseReference(t *testing.T) {
	for in, want := range map[string]string{
		"alpine":                    "index.docker.io/library/alpine:latest",
		"debian:12":                 "index.docker.io/library/debian:12",
		"docker.io/library/busybox": "index.docker.io/library/busybox:latest",
		"someone/tool:1.2":          "index.docker.io/someone/tool:1.2",
		"127.0.0.1:5000/img":        "127.0.0.1:5000/img:latest",
		"ghcr.io/org/app@sha256:" + strings.Repeat("a", 64): "ghcr.io/org/app@sha256:" + strings.Repeat("a", 64),
	} {
		ref, err := ParseReference(in, false)
		if err != nil || ref.Name() != want {
			t.Errorf("%q: got %v %v, want %s", in, ref, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a b", "img@sha256:short", "x:y:z"} {
		if _, err := ParseReference(bad, false); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: want one error line, got %v", bad, err)
		}
	}
	ref, _ := ParseReference("127.0.0.1:5000/img", false)
	if ref.Context().Registry.Scheme() != "http" {
		t.Errorf("a registry on 127.0.0.1 is plain HTTP, as every client has it")
	}
	ref, _ = ParseReference("registry.example/img", true)
	if ref.Context().Registry.Scheme() != "http" {
		t.Errorf("--insecure allows plain HTTP")
	}
}

func TestParsePlatform(t *testing.T) {
	if p, err := ParsePlatform(""); err != nil || p.OS != "linux" || p.Architecture != runtime.GOARCH {
		t.Errorf("default: %v %v", p, err)
	}
	if p, err := ParsePlatform("linux/arm/v7"); err != nil || p.Variant != "v7" {
		t.Errorf("variant: %v %v", p, err)
	}
	for _, bad := range []string{"linux", "/amd64", "linux/", "a/b/c/d", "linux/arm/"} {
		if _, err := ParsePlatform(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if !matches(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}, v1.Platform{OS: "linux", Architecture: "arm"}) ||
		matches(v1.Platform{OS: "linux", Architecture: "arm", Variant: "v6"}, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}) {
		t.Errorf("matches: a variant is checked only when asked for")
	}
}

// The credential files are read in Podman's order, the most specific key first; Docker's URL keys work.
func TestAuthFiles(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("DOCKER_CONFIG", "")
	write := func(p, body string) {
		os.MkdirAll(filepath.Dir(p), 0o700)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	resolve := func(ref string) authn.AuthConfig {
		t.Helper()
		r, _ := name.ParseReference(ref)
		a, err := AuthFiles().Resolve(r.Context())
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		cfg, _ := a.Authorization()
		return *cfg
	}
	if cfg := resolve("reg.example/app"); cfg.Username != "" {
		t.Errorf("no files: %+v", cfg)
	}
	write(filepath.Join(home, ".docker/config.json"), `{"auths": {"https://index.docker.io/v1/": {"auth": "`+b64("hub:1")+`"}, "reg.example": {"auth": "`+b64("docker:2")+`"}}}`)
	if cfg := resolve("alpine"); cfg.Username != "hub" || cfg.Password != "1" {
		t.Errorf("Docker Hub from Docker's URL key: %+v", cfg)
	}
	if cfg := resolve("reg.example/app"); cfg.Username != "docker" {
		t.Errorf("docker config: %+v", cfg)
	}
	write(filepath.Join(home, ".config/containers/auth.json"), `{"auths": {"reg.example/team": {"username": "team", "password": "3"}, "reg.example": {"auth": "`+b64("podman:4")+`"}}}`)
	if cfg := resolve("reg.example/team/app"); cfg.Username != "team" || cfg.Password != "3" {
		t.Errorf("a namespace key wins: %+v", cfg)
	}
	if cfg := resolve("reg.example/other"); cfg.Username != "podman" {
		t.Errorf("containers auth.json before Docker's: %+v", cfg)
	}
	auth := filepath.Join(t.TempDir(), "auth.json")
	write(auth, `{"auths": {"reg.example": {"auth": "`+b64("env:5")+`"}}}`)
	t.Setenv("REGISTRY_AUTH_FILE", auth)
	if cfg := resolve("reg.example/other"); cfg.Username != "env" {
		t.Errorf("$REGISTRY_AUTH_FILE first: %+v", cfg)
	}
	write(auth, `{"auths": {"reg.example": {"auth": "not base64!"}}}`)
	r, _ := name.ParseReference("reg.example/x")
	if _, err := AuthFiles().Resolve(r.Context()); err == nil || !strings.Contains(err.Error(), auth) {
		t.Errorf("a bad entry must name its file: %v", err)
	}
	write(auth, `{"auths": `)
	if _, err := AuthFiles().Resolve(r.Context()); err == nil || !strings.Contains(err.Error(), auth) {
		t.Errorf("a bad file must be named: %v", err)
	}
}

// The progress line shows the layer and the bytes against the total of the layers' sizes.
func TestProgress(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, "reg/img:1", []v1.Descriptor{{Size: 1e6}, {Size: 3e6}})
	io.Copy(io.Discard, p.reader(0, io.NopCloser(bytes.NewReader(make([]byte, 1e6)))))
	io.Copy(io.Discard, p.reader(1, io.NopCloser(bytes.NewReader(make([]byte, 1e6)))))
	if l := p.line(); !strings.HasPrefix(l, "caisson: pulling reg/img:1: layer 2/2 [###############...............] 2.0/4.0 MB ") {
		t.Errorf("line: %q", l)
	}
	p.done()
	s := out.String()
	if !strings.HasPrefix(s, "\r\033[Kcaisson: pulling reg/img:1: layer 1/2 [") || !strings.HasSuffix(s, "\r\033[K") {
		t.Errorf("drawn: %q", s)
	}
	var none *progress = newProgress(nil, "x", nil)
	io.Copy(io.Discard, none.reader(0, io.NopCloser(strings.NewReader("abc"))))
	none.done()
}
