package outer

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Need is one thing caisson needs that an outer sandbox can refuse.
type Need string

// The needs, named as the notices and doctor's checks name them.
const (
	// NeedNamespaces is clone(2) with CLONE_NEWUSER and the other namespace flags.
	NeedNamespaces Need = "new user namespaces"
	// NeedHostname is sethostname(2) in the sandbox's own UTS namespace.
	NeedHostname Need = "sethostname"
	// NeedProc is a fresh procfs for the sandbox's PID namespace (refused when the outer /proc has masked paths).
	NeedProc Need = "fresh /proc"
	// NeedSys is a fresh sysfs for the sandbox's network namespace (refused when the outer /sys has masked paths).
	NeedSys Need = "fresh /sys"
	// NeedTun is /dev/net/tun, which pasta and slirp4netns open.
	NeedTun Need = "/dev/net/tun"
	// NeedRoute is a network interface with a default route, which pasta copies into the sandbox.
	NeedRoute Need = "a default route"
	// NeedSetns is setns(2), which the network helpers and caisson exec use to enter the sandbox.
	NeedSetns Need = "setns"
	// NeedTimeNS is unshare(CLONE_NEWTIME).
	NeedTimeNS Need = "new time namespaces"
	// NeedSeccomp is seccomp(2): caisson's own filter stacked on the outer one.
	NeedSeccomp Need = "seccomp(2)"
	// NeedLandlock is the Landlock system calls.
	NeedLandlock Need = "Landlock"
	// NeedMountAPI is mounting in the sandbox's own mount namespace, through the new mount API (fsopen, open_tree,
	// move_mount) that caisson uses for everything.
	NeedMountAPI Need = "mounts"
	// NeedCgroup is a cgroup delegated to the caller, for --memory, --pids, --cpus and --cgroup.
	NeedCgroup Need = "cgroup"
	// NeedDevice is a host device node bound into the sandbox's /dev (/dev/null, /dev/tty, ...).
	NeedDevice Need = "device"
)

// ProfileFile is the seccomp profile shipped for the container that runs caisson (cmd/caisson/profiles/): the
// engine's default profile plus what caisson's namespaces need (README: Inside CI containers).
const ProfileFile = "ci-container-seccomp.json"

// filtered lists the needs that an outer seccomp filter refuses (lifted by a profile).
var filtered = map[Need]bool{NeedNamespaces: true, NeedHostname: true, NeedSetns: true, NeedTimeNS: true,
	NeedSeccomp: true, NeedLandlock: true, NeedMountAPI: true}

// Refused reports whether err is how an outer sandbox refuses a call caisson is entitled to in its own namespaces:
// a seccomp filter's EPERM, EACCES or ENOSYS (Docker's and Podman's profiles answer EPERM or ENOSYS), or an
// LSM's EACCES. Callers use it only for calls the kernel itself cannot refuse there.
func Refused(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.ENOSYS)
}

// Errno returns the errno that err wraps, or err itself: the refusal's own words, without those of the step that
// met it (the seccomp package's, for one, assume a kernel without seccomp).
func Errno(err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// Why says why the outer sandbox refuses n: its seccomp filter, its masked paths, a device it did not pass.
func (s Sandbox) Why(n Need) string {
	where := s.Name()
	switch {
	case filtered[n] && s.SeccompFilters > 0:
		return where + "'s seccomp filter refuses " + string(n)
	case filtered[n] && s.AppArmor != "":
		return where + "'s AppArmor profile " + s.AppArmor + " refuses " + string(n)
	case filtered[n]:
		return where + " refuses " + string(n)
	case n == NeedProc || n == NeedSys:
		dir := strings.TrimPrefix(string(n), "fresh ")
		fs := map[string]string{"/proc": "procfs", "/sys": "sysfs"}[dir]
		if s.Engine == None {
			return where + "'s " + dir + " has mounts on top of it, so the kernel refuses a new " + fs + " (\"mount too revealing\")"
		}
		return where + " masks paths of " + dir + ", so the kernel refuses a new " + fs + " (\"mount too revealing\")"
	case n == NeedTun:
		return where + " has no usable /dev/net/tun"
	case n == NeedRoute:
		return where + " has no network interface with a default route"
	case n == NeedCgroup:
		return where + " does not delegate a cgroup to caisson"
	case n == NeedDevice:
		return where + " lacks these devices"
	}
	return where + " refuses " + string(n)
}

// Fix returns the setting of the outer sandbox's engine that lifts the refusal of n, or says that none can.
func (s Sandbox) Fix(n Need) string {
	if filtered[n] {
		return s.filterFix(n)
	}
	switch n {
	case NeedProc, NeedSys:
		switch s.Engine {
		case Podman:
			return "podman run --security-opt unmask=ALL"
		case Docker:
			return "docker run --security-opt systempaths=unconfined"
		case Kubernetes:
			return "the container's securityContext.procMount: Unmasked (needs the pod's hostUsers: false)"
		case Caisson:
			return "cannot be lifted: every caisson sandbox masks /proc and /sys paths (the inner sandbox shows the outer ones, read-only)"
		case None:
			return "run caisson where /proc and /sys are fully visible"
		}
		return "run the container without masked /proc and /sys paths (podman run --security-opt unmask=ALL, docker run --security-opt systempaths=unconfined)"
	case NeedTun:
		switch s.Engine {
		case Podman, Docker:
			return string(s.Engine) + " run --device /dev/net/tun"
		case Kubernetes:
			return "no pod setting gives it: a device plugin that offers /dev/net/tun, or a privileged container; or use --net none"
		case Caisson:
			return "cannot be lifted: a caisson sandbox's /dev has no net/tun; use --net none, or --net host to share the outer network"
		case None:
			return "as root: chmod 0666 /dev/net/tun (the distribution default)"
		}
		return "pass the host's /dev/net/tun into the container (podman/docker run --device /dev/net/tun)"
	case NeedRoute:
		switch s.Engine {
		case Podman:
			return "podman run --network slirp4netns (or pasta, or a bridge), not --network none; or use --net slirp4netns, which needs no route"
		case Docker:
			return "docker run with a network other than --network none; or use --net slirp4netns, which needs no route"
		case None:
			return "give this host a default route, or use --net slirp4netns, which needs no route"
		}
		return "give the container a network with a default route; or use --net slirp4netns, which needs no route"
	case NeedCgroup:
		switch s.Engine {
		case Podman, Docker:
			return "limit the whole container instead (" + string(s.Engine) + " run --memory, --pids-limit, --cpus), or use --rlimit"
		case Kubernetes:
			return "limit the whole container instead (resources.limits), or use --rlimit"
		case Caisson:
			return "give the outer sandbox the limits (--memory, --pids, --cpus), or use --rlimit"
		case None:
			return "run caisson in a delegated cgroup (systemd-run --user --scope -p Delegate=yes caisson run ...), or use --rlimit"
		}
		return "limit the whole container instead, or use --rlimit"
	case NeedDevice:
		switch s.Engine {
		case Podman, Docker:
			return string(s.Engine) + " run --device /dev/NAME"
		case Caisson:
			return "leave the outer sandbox's /dev as caisson made it (null, zero, full, random, urandom, tty)"
		case None:
			return "create the device node (as root: mknod, or load its driver)"
		}
		return "give the container the device"
	}
	return ""
}

// filterFix is the fix for a call refused by the outer seccomp filter (or AppArmor profile).
func (s Sandbox) filterFix(n Need) string {
	profile := ProfileFile + " (shipped with caisson)"
	var fix string
	switch s.Engine {
	case Podman, Docker:
		fix = fmt.Sprintf("%s run --security-opt seccomp=%s", s.Engine, ProfileFile)
		if s.AppArmor != "" {
			fix += " --security-opt apparmor=unconfined"
		}
		fix += ", the profile shipped with caisson"
		if n == NeedHostname && s.Engine == Podman {
			fix += "; --cap-add SYS_ADMIN lifts it too but gives the container's root much more"
		}
	case Kubernetes:
		fix = "the container's securityContext.seccompProfile: {type: Localhost, localhostProfile: " + ProfileFile +
			"} (the file in the node's kubelet seccomp directory)"
		if s.AppArmor != "" {
			fix += " and appArmorProfile: {type: Unconfined}"
		}
	case Caisson:
		return "start the outer caisson with --security default (strict refuses " + string(n) + ") or --seccomp unconfined"
	case None:
		return "lift the seccomp filter or LSM policy that confines caisson (systemd's SystemCallFilter=, a parent sandbox)"
	default:
		fix = "run the container with a seccomp profile that allows " + string(n) + " (" + profile + "; README: Inside CI containers)"
	}
	return fix
}

// Notice is the one line printed when a default step is skipped: what the sandbox does without, why, and how to
// lift it. avoid names the caisson flag that skips the step on purpose (and silences the notice), if any.
func (s Sandbox) Notice(n Need, without, avoid string) string {
	line := fmt.Sprintf("caisson: notice: %s: %s; fix: %s", without, s.Why(n), s.Fix(n))
	if avoid != "" {
		line += "; " + avoid
	}
	return line
}

// RefusedError is a step the user asked for explicitly that the outer sandbox refuses.
type RefusedError struct {
	// Flag is what the user asked with ("--hostname web").
	Flag string
	Need Need
	Err  error
	In   Sandbox
}

// Error implements error: the flag, the cause, why the outer sandbox refuses and the fix.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s: %v: %s; fix: %s", e.Flag, e.Err, e.In.Why(e.Need), e.In.Fix(e.Need))
}

// Unwrap returns the cause.
func (e *RefusedError) Unwrap() error { return e.Err }
