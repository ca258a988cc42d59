// Command caisson-image applies an image archive's layers into a root file system: `caisson rootfs unpack` runs
// it inside a sandbox (as root of a user namespace holding the caller's subordinate ranges) as
//
//	caisson-image ARCHIVE DIR
//
// It is a separate program so that caisson itself, started for every sandbox, does not carry the image formats'
// libraries and their start-up cost.
package main

import (
	"os"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/imagecmd/extract"
)

func main() {
	os.Exit(extract.Main(os.Args[1:]))
}
