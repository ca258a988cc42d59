package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// notLinked are packages whose initialisation or size every sandbox start paid for twice (the parent and init are
// both this binary) although a start needs none of them (issue 14): they must not come back into caisson.
var notLinked = map[string]string{
	"encoding/gob":  "its init registers types (0.3 M instructions per start); package wire has its own codec",
	"regexp":        "its syntax tables and Unicode maps are built at every start; write the matcher out",
	"regexp/syntax": "see regexp",
	"net/http":      "huge init and binary",
	"text/template": "reflection-heavy, large",
	"html/template": "see text/template",
	"encoding/xml":  "reflection-heavy, large",
	"crypto/tls":    "large init",
	"crypto/x509":   "large init",
	"compress/gzip": "image code belongs to caisson-image",
	"archive/zip":   "image code belongs to caisson-image",
	"github.com/google/go-containerregistry/pkg/v1": "image code belongs to caisson-image",
	"golang.org/x/sys/cpu":                          "its init runs CPUID at every start (a trap to the hypervisor on VMs); read /proc/cpuinfo",
}

func TestLeanDependencies(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go tool to list the dependencies: %v", err)
	}
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if why, ok := notLinked[pkg]; ok {
			t.Errorf("caisson links %s: %s", pkg, why)
		}
	}
}

// TestOneProcFirst checks, in the initialisation trace of the built binary, that package oneproc sets one processor
// before any package of the binary allocates (issue 14): a package initialised earlier that allocates could run on
// the second processor and fill caches that setting GOMAXPROCS then has to flush.
func TestOneProcFirst(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("no go tool to build caisson: %v", err)
	}
	bin := t.TempDir() + "/caisson"
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("caisson version: %v\n%s", err, out)
	}
	const self = "github.com/caisson-sandbox/caisson/cmd/caisson/internal/oneproc"
	var before []string
	for _, line := range strings.Split(string(out), "\n") {
		// init PKG @T ms, C ms clock, B bytes, A allocs
		f := strings.Fields(line)
		if len(f) != 11 || f[0] != "init" {
			continue
		}
		if f[1] == self {
			if len(before) == 0 {
				t.Fatal("no package is initialised before oneproc: the trace's format changed?")
			}
			return
		}
		if f[7] != "0" || f[9] != "0" || strings.HasPrefix(f[1], "github.com/caisson-sandbox/") {
			t.Errorf("package %s is initialised before oneproc (%s bytes in %s allocations)", f[1], f[7], f[9])
		}
		before = append(before, f[1])
	}
	t.Fatalf("oneproc is not in the initialisation trace:\n%s", out)
}
