package fetch

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
)

// Main runs `caisson-image pull [--platform OS/ARCH] [--insecure] IMAGE LAYOUT`, which `caisson rootfs pull` starts
// on the host: it writes the image into the new OCI layout directory LAYOUT and prints the pulled reference with
// its digest on stdout. Errors are one "caisson: rootfs pull: ..." line, exit status 125; SIGINT and SIGTERM stop
// the transfer (exit status 130 or 143, nothing printed: caisson says it).
func Main(args []string) int {
	fs := pflag.NewFlagSet("pull", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	platform := fs.String("platform", "", "")
	insecure := fs.Bool("insecure", false, "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "caisson: rootfs pull: internal: want [--platform OS/ARCH] [--insecure] IMAGE LAYOUT")
		return 125
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGINT, unix.SIGTERM, unix.SIGHUP)
	var got os.Signal
	go func() {
		got = <-sigs
		stop()
	}()
	o := Options{Image: fs.Arg(0), Platform: *platform, Insecure: *insecure, Dir: fs.Arg(1)}
	if _, err := unix.IoctlGetTermios(2, unix.TCGETS); err == nil {
		o.Progress = os.Stderr
	}
	pulled, err := Fetch(ctx, o)
	if ctx.Err() != nil && got != nil {
		return 128 + int(got.(unix.Signal))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "caisson: rootfs pull: %v\n", err)
		return 125
	}
	fmt.Println(pulled)
	return 0
}
