package doctor

import (
	"fmt"
	"os"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/outer"
	"github.com/caisson-sandbox/caisson/seccomp"
	"golang.org/x/sys/unix"
)

// The checks of what an outer sandbox — a CI job's container, another caisson — refuses. The probe process tries
// each call in namespaces of its own, where the kernel itself would allow it: a refusal there is the outer
// sandbox's (its seccomp filter, AppArmor profile or masked paths), and the fix names the engine's setting.

// containerCheck says which outer sandbox caisson runs in, and how it was recognised.
func containerCheck(o outer.Sandbox) Check {
	c := Check{Name: "container", Status: OK, Detail: "none recognised: caisson runs on the host"}
	if !o.In() {
		return c
	}
	var parts []string
	engine := string(o.Engine)
	if o.Engine == outer.Unknown {
		engine = "a container of unknown engine"
	}
	parts = append(parts, fmt.Sprintf("%s (%s)", engine, o.Evidence))
	if o.Version != "" {
		parts = append(parts, o.Version)
	}
	if o.Rootless {
		parts = append(parts, "rootless")
	}
	if o.SeccompFilters > 0 {
		parts = append(parts, fmt.Sprintf("%d seccomp filter(s) on caisson", o.SeccompFilters))
	} else {
		parts = append(parts, "no seccomp filter")
	}
	if o.AppArmor != "" {
		parts = append(parts, "AppArmor profile "+o.AppArmor)
	}
	c.Detail = strings.Join(parts, ", ") + ": the checks below say what it refuses and the setting that lifts it"
	return c
}

// probeOuter tries, in the probe's own namespaces, each call an outer sandbox may refuse (see probeResult).
// Preconditions: ProbeMain's private tmpfs is mounted on /tmp.
func probeOuter(r *probeResult) {
	r.Hostname = errString(unix.Sethostname([]byte("caisson-probe")))
	if err := os.Mkdir("/tmp/sys", 0o755); err == nil {
		r.Sys = errString(unix.Mount("sysfs", "/tmp/sys", "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""))
	}
	r.MountAPI = probeMountAPI()
	// The probe's threads stay where they are; only later children would enter it. (A kernel without time
	// namespaces answers EINVAL: timeNSCheck tells that case apart first.)
	r.TimeNS = errString(unix.Unshare(unix.CLONE_NEWTIME))
	if fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
		r.Setns = err.Error()
	} else {
		r.Setns = errString(unix.Setns(fd, unix.CLONE_NEWNET)) // its own namespace: a no-op when allowed
		unix.Close(fd)
	}
	// The same check run's hardening makes before it stacks caisson's filter.
	if err := seccomp.Supported(); err != nil {
		r.Seccomp = outer.Errno(err).Error()
	}
}

// probeMountAPI creates (and drops) a detached tmpfs through fsopen, fsconfig and fsmount, as rootfs mounts.
func probeMountAPI() string {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return "fsopen: " + err.Error()
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return "fsconfig: " + err.Error()
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return "fsmount: " + err.Error()
	}
	unix.Close(mfd)
	return ""
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// refusedCheck is a probe-based check: OK when the probe's call worked; otherwise status, with what it means for
// run (effect) and the outer sandbox's reason and fix.
func (r probeResult) refusedCheck(name string, got string, status Status, okDetail, effect string, o outer.Sandbox, n outer.Need) Check {
	c := Check{Name: name, Status: OK, Detail: okDetail}
	switch {
	case r.StartErr != "":
		c.Status, c.Detail = Warn, "not tested: no user namespace"
	case got != "":
		c.Status = status
		c.Detail = fmt.Sprintf("refused (%s): %s: %s", got, o.Why(n), effect)
		c.Fix = o.Fix(n)
	}
	return c
}

// hostnameCheck: Podman's and Docker's default profiles refuse sethostname to a process without CAP_SYS_ADMIN.
func (r probeResult) hostnameCheck(o outer.Sandbox) Check {
	return r.refusedCheck("host name", r.Hostname, Warn, "sethostname works in a new UTS namespace",
		"sandboxes keep the outer host name (a notice says so) and --hostname fails; --share uts keeps it quietly", o, outer.NeedHostname)
}

// sysCheck: a fresh sysfs is refused when the outer /sys has masked paths.
func (r probeResult) sysCheck(o outer.Sandbox) Check {
	return r.refusedCheck("fresh /sys", r.Sys, Warn, "sysfs mounts in a new network namespace",
		"sandboxes with a network namespace of their own show the outer /sys, read-only (a notice says so)", o, outer.NeedSys)
}

// mountsCheck: every step of run mounts through the new mount API; without it run cannot work.
func (r probeResult) mountsCheck(o outer.Sandbox) Check {
	return r.refusedCheck("mounts", r.MountAPI, Fail, "the new mount API works in a new mount namespace",
		"caisson run cannot build a sandbox", o, outer.NeedMountAPI)
}

// setnsCheck: pasta, slirp4netns and caisson exec enter the sandbox's namespaces with setns.
func (r probeResult) setnsCheck(o outer.Sandbox) Check {
	return r.refusedCheck("setns", r.Setns, Warn, "setns works",
		"--net pasta, --net slirp4netns and caisson exec will not work", o, outer.NeedSetns)
}

// seccompCheck: caisson stacks its own filter on the outer one.
func (r probeResult) seccompCheck(o outer.Sandbox) Check {
	c := r.refusedCheck("seccomp stacking", r.Seccomp, Warn, "caisson's seccomp filter can be added",
		"the default posture runs without caisson's filter (a notice says so); --security strict and --seccomp fail", o, outer.NeedSeccomp)
	if c.Status == OK && o.SeccompFilters > 0 {
		c.Detail += fmt.Sprintf(" on top of the %d outer filter(s)", o.SeccompFilters)
	}
	return c
}
