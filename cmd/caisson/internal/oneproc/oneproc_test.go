package oneproc

import (
	"runtime"
	"testing"
)

func TestOneThenRestore(t *testing.T) {
	if n := runtime.GOMAXPROCS(0); n != 1 {
		t.Fatalf("GOMAXPROCS after init = %d, want 1", n)
	}
	Restore()
	if n, want := runtime.GOMAXPROCS(0), runtime.NumCPU(); n != want {
		t.Fatalf("GOMAXPROCS after Restore = %d, want %d", n, want)
	}
}
