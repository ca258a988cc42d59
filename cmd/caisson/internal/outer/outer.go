// Package outer recognises the sandbox caisson itself runs in — a Podman, Docker or Kubernetes container (a CI
// job's), another caisson sandbox — and words what that outer sandbox refuses and the engine's setting that lifts
// it. `caisson run` uses it for its notices (a default step skipped) and errors (a requested one refused), and
// `caisson doctor` for its fixes, so both name the same flag.
//
// Detection only reads files and the environment; it never starts a process. The wording functions are pure.
package outer

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Engine names the outer sandbox.
type Engine string

// The engines caisson tells apart. None means the initial namespaces of a host (or nothing recognisable and no
// user namespace); Unknown a container or user namespace of unknown origin.
const (
	None       Engine = ""
	Podman     Engine = "podman"
	Docker     Engine = "docker"
	Kubernetes Engine = "kubernetes"
	Caisson    Engine = "caisson"
	Unknown    Engine = "container"
)

// Marker files and environment variables of the engines.
const (
	// PodmanMarker is written by Podman (and CRI-O) into every container.
	PodmanMarker = "/run/.containerenv"
	// DockerMarker is created by Docker in every container's root.
	DockerMarker = "/.dockerenv"
	// KubernetesEnv is set by the kubelet in every container of a pod (with service links, the default).
	KubernetesEnv = "KUBERNETES_SERVICE_HOST"
	// KubernetesToken is where the kubelet mounts the service account's credentials (when automounted).
	KubernetesToken = "/var/run/secrets/kubernetes.io/serviceaccount"
	// CaissonMarker is the read-only record caisson's init leaves in every sandbox (harden.RecordFile).
	CaissonMarker = "/run/caisson/security.json"
)

// Sandbox describes the outer sandbox as seen from inside.
type Sandbox struct {
	Engine Engine `json:"engine"`
	// Evidence is what the engine was recognised by (a file or a variable).
	Evidence string `json:"evidence,omitempty"`
	// Version is the engine's version where it says so (Podman's engine="podman-4.3.1").
	Version string `json:"version,omitempty"`
	// Rootless is true in a rootless Podman container (its rootless=1).
	Rootless bool `json:"rootless,omitempty"`
	// UserNS is true when this process is not in the initial user namespace.
	UserNS bool `json:"user_namespace"`
	// SeccompFilters is the number of seccomp filters on this process (from /proc/self/status): an outer filter
	// is what refuses calls that caisson's own namespaces would allow.
	SeccompFilters int `json:"seccomp_filters"`
	// AppArmor is this process's AppArmor profile when it is confined by one ("" otherwise).
	AppArmor string `json:"apparmor,omitempty"`
}

// In reports whether caisson runs inside an outer sandbox of any kind.
func (s Sandbox) In() bool { return s.Engine != None }

// Probe holds what Detect reads; tests give their own.
type Probe struct {
	// Root is prefixed to every path (the tests' directory; "" or "/" for the real one).
	Root string
	// Getenv reads the environment.
	Getenv func(string) string
	// UserNS reports whether the process is in a user namespace other than the initial one.
	UserNS func() bool
}

// Detect describes the sandbox this process runs in.
func Detect(userNS func() bool) Sandbox {
	return Probe{Getenv: os.Getenv, UserNS: userNS}.Detect()
}

// Detect describes the sandbox seen through p. The innermost engine wins: a caisson sandbox inside a Podman
// container is a caisson sandbox (its /run hides the container's marker anyway). On a host without markers it
// costs a few stat calls (caisson run detects on every start); the seccomp and AppArmor state is read only inside
// an outer sandbox.
func (p Probe) Detect() Sandbox {
	path := func(name string) string { return filepath.Join(p.Root+"/", name) }
	exists := func(name string) bool { _, err := os.Stat(path(name)); return err == nil }
	getenv := func(k string) string {
		if p.Getenv == nil {
			return ""
		}
		return p.Getenv(k)
	}
	var s Sandbox
	if p.UserNS != nil {
		s.UserNS = p.UserNS()
	}
	switch {
	case exists(CaissonMarker):
		s.Engine, s.Evidence = Caisson, CaissonMarker
	case getenv(KubernetesEnv) != "":
		s.Engine, s.Evidence = Kubernetes, KubernetesEnv
	case exists(KubernetesToken):
		s.Engine, s.Evidence = Kubernetes, KubernetesToken
	case exists(PodmanMarker):
		s.Engine, s.Evidence = Podman, PodmanMarker
		// The file has details (engine, rootless) in privileged containers only; a rootless container is in a
		// user namespace.
		s.Version, s.Rootless = readContainerenv(path(PodmanMarker))
		s.Rootless = s.Rootless || s.UserNS
		if s.Version != "" && !strings.HasPrefix(s.Version, "podman") {
			s.Engine = Unknown // CRI-O writes the file too (engine="cri-o")
		}
	case exists(DockerMarker):
		s.Engine, s.Evidence = Docker, DockerMarker
	case getenv("container") != "":
		// systemd's convention: LXC, systemd-nspawn and Podman set it in the container's first process.
		s.Engine, s.Evidence = Unknown, "container="+getenv("container")
	case s.UserNS:
		s.Engine, s.Evidence = Unknown, "a user namespace"
	}
	// A marker seen from the host's own namespaces is a leftover (a machine image made from a container image
	// keeps its /.dockerenv), not a container: the host's kernel threads are visible only there.
	if s.Engine != None && s.Engine != Caisson && !s.UserNS && initialPIDNamespace(path("/proc/self/ns/pid")) {
		return Sandbox{}
	}
	if s.Engine != None {
		s.SeccompFilters, s.AppArmor = readStatus(path("/proc/self/status"), path("/proc/self/attr/apparmor/current"), path("/proc/self/attr/current"))
	}
	return s
}

// initialPIDNamespace reports whether link, /proc/self/ns/pid, names the kernel's initial PID namespace, whose
// inode number is fixed (PROC_PID_INIT_INO): only the host's own processes are there.
func initialPIDNamespace(link string) bool {
	target, err := os.Readlink(link)
	return err == nil && target == "pid:[4026531836]"
}

// readContainerenv returns the engine and rootless lines of Podman's /run/.containerenv.
func readContainerenv(file string) (engine string, rootless bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"`)
		switch k {
		case "engine":
			engine = v
		case "rootless":
			rootless = v == "1"
		}
	}
	return engine, rootless
}

// readStatus returns the number of seccomp filters on the process and its AppArmor profile when confined.
func readStatus(status string, apparmor ...string) (int, string) {
	filters := 0
	if b, err := os.ReadFile(status); err == nil {
		mode := ""
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			switch k {
			case "Seccomp":
				mode = strings.TrimSpace(v)
			case "Seccomp_filters":
				filters, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
		if mode == "2" && filters == 0 {
			filters = 1 // kernels before 5.9 do not count them
		}
	}
	profile := ""
	for _, f := range apparmor {
		if b, err := os.ReadFile(f); err == nil {
			profile = strings.TrimSpace(strings.TrimRight(string(b), "\x00\n"))
			break
		}
	}
	if profile == "unconfined" || strings.HasSuffix(profile, "(unconfined)") {
		profile = ""
	}
	return filters, profile
}

// Name is the outer sandbox as a phrase: "this rootless Podman container", "this caisson sandbox".
func (s Sandbox) Name() string {
	switch s.Engine {
	case Podman:
		if s.Rootless {
			return "the rootless Podman container"
		}
		return "the Podman container"
	case Docker:
		return "the Docker container"
	case Kubernetes:
		return "the Kubernetes pod's container"
	case Caisson:
		return "the outer caisson sandbox"
	case Unknown:
		return "the outer container"
	}
	return "this host"
}
