// Command caisson-oci is caisson as an OCI runtime: runc's command line, for Podman, containerd (and through its
// CRI plugin, Kubernetes) and Docker. See package oci.
//
// It is a program of its own, built with cgo, because joining a container's user and mount namespaces needs code
// that runs before the Go runtime starts (package nsenter's C constructor), and a cgo binary starts slower than the
// pure-Go caisson, which every sandbox starts twice. The same binary is the runtime's stages: main dispatches on
// nsenter.Stage before parsing any flag.
package main

import (
	"os"
	"runtime"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/nsenter"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/oci"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/ociinit"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func init() {
	// The stage's identity (capabilities, seccomp, no_new_privs) is set on the thread that execs the container's
	// process, and the runtime's children's parent-death signals are tied to the thread that made them: the main
	// goroutine keeps the main thread.
	runtime.LockOSThread()
}

func main() {
	if sock, ok := nsenter.Stage(); ok {
		os.Exit(ociinit.Main(sock))
	}
	if !nsenter.Linked {
		os.Stderr.WriteString("caisson-oci: " + nsenter.ErrNotLinked.Error() + "\n")
		os.Exit(1)
	}
	oci.Version = version
	os.Exit(oci.Main(os.Args[1:]))
}
