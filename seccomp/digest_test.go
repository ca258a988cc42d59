package seccomp

import (
	"strings"
	"testing"
)

// goldenDigests pins the exact programs. They change whenever the rules, the
// code generator or the syscall tables (`go generate` after a
// golang.org/x/sys upgrade moves the highest syscall number) change; review
// the diff of the disassembly, then update the values from the failure
// message.
var goldenDigests = map[string]struct {
	insns  int
	digest string
}{
	"amd64/default": {184, "sha256:fbfe7ac7a43f5ec514e0572183660b86909567cae5a0b785a324350939a61a04"},
	"amd64/strict":  {232, "sha256:1f59e1b916b699ffb40e27d566c0e1ec59e060dbf5428747811faf0c469cd4af"},
	"arm64/default": {169, "sha256:bcc13989aa863515c37f78c95ffaad17d2d4ce54c91e88fe97585815a82a9e89"},
	"arm64/strict":  {205, "sha256:2d8e18945b22cfe2a7979afc199463194ffd65caa81d94493f3159d6b502197c"},
}

func TestGoldenDigest(t *testing.T) {
	for _, a := range testArches {
		for _, p := range []Profile{Default, Strict} {
			key := a.goarch + "/" + string(p)
			prog, err := compileFor(a, p)
			if err != nil {
				t.Fatal(err)
			}
			// Compiling again gives the same bytes (no map-order dependence).
			for range 5 {
				again, err := compileFor(a, p)
				if err != nil {
					t.Fatal(err)
				}
				if again.Digest != prog.Digest {
					t.Fatalf("%s: digest not stable: %s then %s", key, prog.Digest, again.Digest)
				}
			}
			if !strings.HasPrefix(prog.Digest, "sha256:") || len(prog.Digest) != len("sha256:")+64 {
				t.Errorf("%s: malformed digest %q", key, prog.Digest)
			}
			want := goldenDigests[key]
			if prog.Len() != want.insns || prog.Digest != want.digest {
				t.Errorf("%s: program changed: got {%d, %q}, golden {%d, %q}\n%s",
					key, prog.Len(), prog.Digest, want.insns, want.digest, prog.Disassemble())
			}
		}
	}
}

func TestUnconfined(t *testing.T) {
	prog, err := Compile(Unconfined)
	if err != nil {
		t.Fatal(err)
	}
	if prog.Len() != 0 || prog.Digest != "" || prog.Name != "unconfined" {
		t.Errorf("unconfined = %+v", prog)
	}
	// Installing an empty program is a no-op, safe in the test process.
	if err := Install(prog); err != nil {
		t.Errorf("Install(unconfined) = %v", err)
	}
	if err := Install(nil); err != nil {
		t.Errorf("Install(nil) = %v", err)
	}
}

func TestNativeCompile(t *testing.T) {
	if _, err := nativeArch(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	for _, p := range []Profile{Default, Strict} {
		prog, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		if prog.Name != string(p) || prog.Len() == 0 {
			t.Errorf("Compile(%s) = %v", p, prog)
		}
		if s := prog.Disassemble(); !strings.HasPrefix(s, "   0: ld [4]\n") {
			t.Errorf("Disassemble starts with %q", s[:min(len(s), 40)])
		}
	}
	if nr, ok := SyscallNumber("clone3"); !ok || nr != 435 {
		t.Errorf("SyscallNumber(clone3) = %d, %v", nr, ok)
	}
}

func TestUnsupportedArch(t *testing.T) {
	if _, err := archByGOARCH("riscv64"); err == nil || !strings.Contains(err.Error(), `unsupported architecture "riscv64"`) {
		t.Errorf("riscv64: %v", err)
	}
}
