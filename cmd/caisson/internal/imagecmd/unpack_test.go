package imagecmd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// caisson-image is found next to caisson first, then on $PATH (absolute entries only); missing, the error says
// which go install line installs it.
func TestFindExtractor(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	exe := mk("gobin/caisson", 0o755)
	onPath := mk("usr/bin/"+ExtractorName, 0o755)
	mk("notexec/"+ExtractorName, 0o644)
	if err := os.MkdirAll(filepath.Join(root, "dir/"+ExtractorName), 0o755); err != nil {
		t.Fatal(err)
	}
	pathOf := func(dirs ...string) string {
		for i, d := range dirs {
			if filepath.IsAbs(d) || d == "" {
				continue
			}
			dirs[i] = filepath.Join(root, d)
		}
		return strings.Join(dirs, string(os.PathListSeparator))
	}

	// Not next to caisson (as after `go install .../cmd/caisson@latest`): on PATH, past the entries that do not
	// hold an executable file of that name.
	got, err := findExtractor(exe, pathOf("empty", "notexec", "dir", "usr/bin"))
	if err != nil || got != onPath {
		t.Errorf("on PATH: %q, %v; want %s", got, err, onPath)
	}
	// Next to caisson: preferred to PATH.
	next := mk("gobin/"+ExtractorName, 0o755)
	if got, err := findExtractor(exe, pathOf("usr/bin")); err != nil || got != next {
		t.Errorf("next to caisson: %q, %v; want %s", got, err, next)
	}
	if err := os.Remove(next); err != nil {
		t.Fatal(err)
	}
	// A relative or empty PATH entry (the current directory) is not searched.
	t.Chdir(filepath.Join(root, "usr/bin"))
	if got, err := findExtractor(exe, ":.:bin"); err == nil {
		t.Errorf("found %q through a relative PATH entry", got)
	}
	// Nowhere: the error names the go install line.
	_, err = findExtractor(exe, pathOf("empty", "notexec", "dir"))
	want := "caisson-image not found next to " + exe + " nor on $PATH"
	line := "CGO_ENABLED=0 go install github.com/caisson-sandbox/caisson/cmd/caisson/caisson-image@latest"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), line) {
		t.Errorf("missing: %v; want %q and %q", err, want, line)
	}
}

// ExtractorPackage is the real import path of caisson-image, whose go install line the error gives.
func TestExtractorPackage(t *testing.T) {
	mod, err := os.ReadFile("../../../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(mod), "\n")
	module := strings.TrimSpace(strings.TrimPrefix(first, "module"))
	if ExtractorPackage != module+"/cmd/caisson/caisson-image" {
		t.Errorf("ExtractorPackage %s, want %s/cmd/caisson/caisson-image", ExtractorPackage, module)
	}
	src, err := os.ReadFile("../../caisson-image/main.go")
	if err != nil || !strings.Contains(string(src), "\npackage main\n") {
		t.Errorf("cmd/caisson/caisson-image is not a main package: %v", err)
	}
}
