package initproc

import (
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
)

// When the outer sandbox refuses sethostname, the sandbox keeps the outer host name and its generated
// /etc/hostname and /etc/hosts name that one; a file the user binds there is left alone.
func TestKeepHostname(t *testing.T) {
	guest := slirp.PlannedGuest(slirp.ModePasta, 0, false)
	cfg := &config.Sandbox{Hostname: "caisson", Extra: config.ExtraOptions{Guest: guest}}
	cfg.Rootfs.Ops = []rootfs.Op{
		{Kind: rootfs.KindFile, Dst: "/etc/hostname", Data: []byte("caisson\n")},
		{Kind: rootfs.KindFile, Dst: "/etc/hosts", Data: slirp.Hosts("caisson", guest)},
		{Kind: rootfs.KindROBind, Src: "/srv/hosts", Dst: "/etc/hosts"},
	}
	keepHostname(cfg, "a1b2c3")
	if cfg.Hostname != "a1b2c3" || string(cfg.Rootfs.Ops[0].Data) != "a1b2c3\n" {
		t.Errorf("host name %q, /etc/hostname %q", cfg.Hostname, cfg.Rootfs.Ops[0].Data)
	}
	if hosts := string(cfg.Rootfs.Ops[1].Data); !strings.Contains(hosts, guest.IP+"\ta1b2c3\n") || strings.Contains(hosts, "\tcaisson\n") {
		t.Errorf("/etc/hosts:\n%s", hosts)
	}
	if op := cfg.Rootfs.Ops[2]; op.Data != nil || op.Src != "/srv/hosts" {
		t.Errorf("a bound /etc/hosts was changed: %+v", op)
	}
}
