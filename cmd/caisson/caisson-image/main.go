// Command caisson-image applies an image archive's layers into a root file system: `caisson rootfs unpack` runs
// it inside a sandbox (as root of a user namespace holding the caller's subordinate ranges) as
//
//	caisson-image ARCHIVE DIR
//
// and `caisson rootfs pull` first runs it on the host, as the caller, to fetch an image from a registry into an
// OCI layout (which it then unpacks as above):
//
//	caisson-image pull [--platform OS/ARCH] [--insecure] IMAGE LAYOUT
//
// It is a separate program so that caisson itself, started for every sandbox, does not carry the image formats'
// libraries and their start-up cost.
package main

import (
	"os"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd/extract"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd/fetch"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "pull" {
		os.Exit(fetch.Main(os.Args[2:]))
	}
	os.Exit(extract.Main(os.Args[1:]))
}
