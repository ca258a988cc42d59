package main

import (
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
		t.Skipf("no go tool to list the dependencies: %v", err)
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
