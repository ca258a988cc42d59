package initproc

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/rootfs"
	"github.com/caisson-sandbox/caisson/slirp"
	"golang.org/x/sys/unix"
)

// What init does when the sandbox caisson runs in (a CI job's container, another caisson) refuses a setup step
// that its own namespaces would allow: a step the user did not ask for is skipped with one notice line (what the
// sandbox goes without, why, and the engine's fix); a step the user asked for is an error saying the same.

// notice prints one notice line on init's standard error (caisson's).
func notice(line string) { fmt.Fprintln(os.Stderr, line) }

// setHostname gives the sandbox its host name. When the outer sandbox refuses sethostname (Podman's and Docker's
// default seccomp profiles do, to a process without CAP_SYS_ADMIN, even in its own UTS namespace), the default
// name is skipped: the sandbox keeps the outer host name, and its /etc/hostname and /etc/hosts say so.
func setHostname(cfg *config.Sandbox) error {
	err := unix.Sethostname([]byte(cfg.Hostname))
	if err == nil {
		return nil
	}
	// Root of its own new UTS namespace, init holds CAP_SYS_ADMIN there: only an outer filter or LSM refuses.
	if !outer.Refused(err) {
		return fmt.Errorf("init: sethostname %q: %w", cfg.Hostname, err)
	}
	o := cfg.Extra.Outer
	if cfg.Asked.Hostname {
		return &outer.RefusedError{Flag: "--hostname " + cfg.Hostname, Need: outer.NeedHostname, Err: err, In: o}
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	name := unix.ByteSliceToString(u.Nodename[:])
	keepHostname(cfg, name)
	notice(o.Notice(outer.NeedHostname, fmt.Sprintf("the sandbox keeps the host name %q", name), "--share uts keeps it without this notice"))
	return nil
}

// keepHostname rewrites the generated /etc/hostname and /etc/hosts for the host name name the sandbox keeps.
func keepHostname(cfg *config.Sandbox, name string) {
	cfg.Hostname = name
	for i, op := range cfg.Rootfs.Ops {
		if op.Kind != rootfs.KindFile {
			continue
		}
		switch op.Dst {
		case "/etc/hostname":
			cfg.Rootfs.Ops[i].Data = []byte(name + "\n")
		case "/etc/hosts":
			cfg.Rootfs.Ops[i].Data = slirp.Hosts(name, cfg.Extra.Guest)
		}
	}
}

// reportFallbacks prints one notice for each step rootfs.Setup did without (one for all the missing device
// nodes), and notes an outer /proc in cfg.
func reportFallbacks(cfg *config.Sandbox, fbs []rootfs.Fallback) {
	o := cfg.Extra.Outer
	var devices []string
	for _, fb := range fbs {
		switch {
		case fb.Step == rootfs.FallbackProc:
			cfg.Extra.OuterProc = true
			notice(o.Notice(outer.NeedProc, "the sandbox shows the outer /proc, read-only, with the outer processes",
				"--share pid shares it without this notice"))
		case fb.Step == rootfs.FallbackSys:
			notice(o.Notice(outer.NeedSys, "the sandbox shows the outer /sys, read-only", ""))
		case strings.HasPrefix(fb.Step, "/dev/"):
			devices = append(devices, fb.Step)
		default:
			notice(fmt.Sprintf("caisson: notice: the sandbox goes without %s: %s", fb.Step, outer.Errno(fb.Err).Error()))
		}
	}
	if len(devices) > 0 {
		notice(o.Notice(outer.NeedDevice, "the sandbox's /dev has no "+strings.Join(devices, ", ")+" (not found outside)", ""))
	}
}

// explainSetup adds, to a setup error that an outer sandbox's refusal caused (a mount its AppArmor profile or
// seccomp filter refuses), why and the engine's fix.
func explainSetup(o outer.Sandbox, err error) error {
	if err == nil || !o.In() || !outer.Refused(err) {
		return err
	}
	var me *rootfs.MountError
	if !errors.As(err, &me) {
		return err
	}
	return fmt.Errorf("%w: %s; fix: %s", err, o.Why(outer.NeedMountAPI), o.Fix(outer.NeedMountAPI))
}

// timeNamespaceRefused handles a refused unshare(CLONE_NEWTIME): without --time-offset the sandbox shares the outer
// time namespace (the clocks are the same either way), with it the refusal is an error.
func timeNamespaceRefused(cfg *config.Sandbox, err error) error {
	o := cfg.Extra.Outer
	if cfg.Asked.TimeNS {
		return &outer.RefusedError{Flag: "--time-offset", Need: outer.NeedTimeNS, Err: err, In: o}
	}
	notice(o.Notice(outer.NeedTimeNS, "the sandbox shares the outer time namespace ("+outer.Errno(err).Error()+")",
		"--share time shares it without this notice"))
	return nil
}

// outerProcRefused is the error of a step the user asked for that must write to /proc when the sandbox has the
// outer one, read-only (--time-offset, --security strict).
func outerProcRefused(cfg *config.Sandbox, flag string, err error) error {
	if !cfg.Extra.OuterProc {
		return err
	}
	return &outer.RefusedError{Flag: flag, Need: outer.NeedProc, Err: fmt.Errorf("%w (the sandbox has the outer /proc, read-only)", err), In: cfg.Extra.Outer}
}
