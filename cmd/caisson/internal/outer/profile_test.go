package outer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caisson-sandbox/caisson/seccomp"
)

// profileNeeds are the calls caisson makes to build a sandbox that default container profiles restrict (Docker's
// to CAP_SYS_ADMIN, Podman's sethostname too): the shipped profile must allow them to every process.
var profileNeeds = []string{"clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "sethostname",
	"setdomainname", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "move_mount", "mount_setattr", "seccomp",
	"landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self", "pidfd_open", "pidfd_send_signal",
	"close_range", "openat2", "memfd_create", "prctl", "capset", "setresuid", "setresgid", "setgroups", "keyctl"}

// profileRefuses are calls no build step needs that the profile keeps from everyone (or from a container without
// the capability that the kernel would require anyway).
var profileRefuses = []string{"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
	"open_by_handle_at", "bpf", "perf_event_open", "swapon", "swapoff", "acct", "iopl", "ioperm", "settimeofday",
	"clock_settime", "userfaultfd", "add_key", "request_key", "lookup_dcookie", "quotactl", "vm86"}

type profileEntry struct {
	Names    []string          `json:"names"`
	Action   string            `json:"action"`
	Args     []json.RawMessage `json:"args"`
	Includes *struct {
		Caps   []string `json:"caps"`
		Arches []string `json:"arches"`
	} `json:"includes"`
	Excludes *struct {
		Caps []string `json:"caps"`
	} `json:"excludes"`
}

// The shipped ci-container-seccomp.json compiles (with caisson's own OCI profile compiler), refuses unknown calls
// with ENOSYS, allows every call caisson needs to every process, and still keeps the dangerous ones out.
func TestShippedProfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "profiles", ProfileFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seccomp.CompileOCI(data, ProfileFile); err != nil {
		t.Fatalf("caisson's compiler rejects the profile: %v", err)
	}
	var prof struct {
		DefaultAction   string          `json:"defaultAction"`
		DefaultErrnoRet int             `json:"defaultErrnoRet"`
		ArchMap         json.RawMessage `json:"archMap"`
		Syscalls        []profileEntry  `json:"syscalls"`
	}
	if err := json.Unmarshal(data, &prof); err != nil {
		t.Fatal(err)
	}
	if prof.DefaultAction != "SCMP_ACT_ERRNO" || prof.DefaultErrnoRet != 38 || len(prof.ArchMap) == 0 {
		t.Errorf("default %s errno %d archMap %s: want SCMP_ACT_ERRNO with ENOSYS (38) and an archMap (Docker needs one)",
			prof.DefaultAction, prof.DefaultErrnoRet, prof.ArchMap)
	}
	allowed := map[string]bool{} // to every process, whatever its capabilities and arguments
	for _, e := range prof.Syscalls {
		if e.Action != "SCMP_ACT_ALLOW" || len(e.Args) > 0 || e.Excludes != nil || (e.Includes != nil && len(e.Includes.Caps) > 0) {
			continue
		}
		if e.Includes != nil && len(e.Includes.Arches) > 0 && !slices.Contains(e.Includes.Arches, "amd64") && !slices.Contains(e.Includes.Arches, "arm64") {
			continue
		}
		for _, n := range e.Names {
			allowed[n] = true
		}
	}
	for _, n := range profileNeeds {
		if !allowed[n] {
			t.Errorf("%s: not allowed to every process", n)
		}
	}
	for _, n := range profileRefuses {
		if allowed[n] {
			t.Errorf("%s: allowed to every process", n)
		}
	}
}
