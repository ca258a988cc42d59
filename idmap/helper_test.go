package idmap

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// writeScript creates an executable shell script in dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindHelper(t *testing.T) {
	dir := t.TempDir()
	empty := t.TempDir()

	h := findHelperIn([]string{empty}, "newuidmap")
	if h.Usable() || !errors.Is(h.Err, fs.ErrNotExist) || h.Path != "" ||
		h.Err.Error() != "idmap: newuidmap not found in "+empty+": file does not exist" {
		t.Errorf("missing: %+v", h)
	}

	writeScript(t, dir, "newuidmap", "exit 0\n")
	h = findHelperIn([]string{empty, dir}, "newuidmap")
	if h.Usable() || h.Setuid || h.Path != filepath.Join(dir, "newuidmap") ||
		!strings.Contains(h.Err.Error(), "is neither setuid root nor has file capability cap_setuid (mode 0755") {
		t.Errorf("plain file (M2): %+v", h)
	}

	if err := os.WriteFile(filepath.Join(dir, "newgidmap"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if h := findHelperIn([]string{dir}, "newgidmap"); h.Usable() || !strings.Contains(h.Err.Error(), "not executable") {
		t.Errorf("non-executable: %+v", h)
	}
	if err := os.Mkdir(filepath.Join(dir, "getsubids"), 0o755); err != nil {
		t.Fatal(err)
	}
	if h := findHelperIn([]string{dir}, "getsubids"); h.Usable() || !strings.Contains(h.Err.Error(), "not a regular file") {
		t.Errorf("directory: %+v", h)
	}

	// Setuid root: only testable as root (chown). A nosuid mount makes it
	// unusable even then.
	if os.Geteuid() == 0 {
		p := filepath.Join(dir, "newuidmap")
		if err := os.Chmod(p, 0o755|fs.ModeSetuid); err != nil {
			t.Fatal(err)
		}
		h := findHelperIn([]string{dir}, "newuidmap")
		var sfs unix.Statfs_t
		if err := unix.Statfs(p, &sfs); err != nil {
			t.Fatal(err)
		}
		if !h.Setuid {
			t.Errorf("setuid root not detected: %+v", h)
		}
		if nosuid := sfs.Flags&unix.ST_NOSUID != 0; nosuid != !h.Usable() {
			t.Errorf("nosuid=%v but usable=%v: %v", nosuid, h.Usable(), h.Err)
		}
	}

	// The real FindHelper never consults $PATH (M13).
	fake := t.TempDir()
	writeScript(t, fake, "newuidmap", "exit 0\n")
	t.Setenv("PATH", fake)
	if h := FindHelper("newuidmap"); strings.HasPrefix(h.Path, fake) {
		t.Errorf("FindHelper used $PATH: %+v", h)
	}
}

func TestHelperJSON(t *testing.T) {
	b, err := json.Marshal(Helper{Name: "newuidmap", Path: "/usr/bin/newuidmap", Err: errors.New("idmap: broken")})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"newuidmap","path":"/usr/bin/newuidmap","setuid":false,"file_caps":false,"usable":false,"error":"idmap: broken"}`
	if string(b) != want {
		t.Errorf("got %s", b)
	}
}

func TestParseFileCaps(t *testing.T) {
	v2 := make([]byte, 20)
	binary.LittleEndian.PutUint32(v2, 0x02000001)
	binary.LittleEndian.PutUint32(v2[4:], 1<<unix.CAP_SETUID)
	binary.LittleEndian.PutUint32(v2[12:], 1) // bit 32
	v1 := make([]byte, 12)
	binary.LittleEndian.PutUint32(v1, 0x01000000)
	binary.LittleEndian.PutUint32(v1[4:], 1<<unix.CAP_SETGID)
	v3 := append(append([]byte(nil), v2...), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(v3, 0x03000000)
	tests := []struct {
		name string
		in   []byte
		want uint64
		ok   bool
	}{
		{"v2", v2, 1<<unix.CAP_SETUID | 1<<32, true},
		{"v1", v1, 1 << unix.CAP_SETGID, true},
		{"v3", v3, 1<<unix.CAP_SETUID | 1<<32, true},
		{"short", v2[:10], 0, false},
		{"empty", nil, 0, false},
		{"bad magic", []byte{0, 0, 0, 0x09, 1, 2, 3, 4, 5, 6, 7, 8}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseFileCaps(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("got %#x %v, want %#x %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestRunHelpers(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	maps := []Mapping{{0, 1000, 1}, {1, 100000, 65536}}
	ok := func(p string) Helper { return Helper{Name: filepath.Base(p), Path: p, Setuid: true} }

	// Both tools run concurrently: each waits for the other to start.
	wait := func(me, other string) string {
		return fmt.Sprintf(`echo "$@" > %[1]s/%[2]s.args; touch %[1]s/%[2]s.started
i=0; while [ ! -e %[1]s/%[3]s.started ]; do i=$((i+1)); [ $i -gt 500 ] && exit 3; sleep 0.01; done
exit 0
`, dir, me, other)
	}
	u := writeScript(t, dir, "newuidmap", wait("uid", "gid"))
	g := writeScript(t, dir, "newgidmap", wait("gid", "uid"))
	if err := RunHelpers(ctx, 4321, ok(u), ok(g), maps, maps[:1]); err != nil {
		t.Fatalf("RunHelpers: %v", err)
	}
	for f, want := range map[string]string{"uid.args": "4321 0 1000 1 1 100000 65536\n", "gid.args": "4321 0 1000 1\n"} {
		b, _ := os.ReadFile(filepath.Join(dir, f))
		if string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}

	// Failure: argv and trimmed stderr quoted; both errors joined.
	msg := "newuidmap: uid range [1-65537) -> [100000-165536) not allowed"
	bu := writeScript(t, dir, "bad-newuidmap", "echo '"+msg+"' >&2; echo >&2; exit 1\n")
	bg := writeScript(t, dir, "bad-newgidmap", "echo 'newgidmap: write to gid_map failed: Operation not permitted' >&2; exit 1\n")
	err := RunHelpers(ctx, 1234, ok(bu), ok(bg), maps, maps)
	want := "idmap: " + bu + ` 1234 0 1000 1 1 100000 65536: exit status 1: "` + msg + `"`
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), bg+" 1234") {
		t.Fatalf("err = %v\nwant to contain %s", err, want)
	}
	var he *HelperError
	if !errors.As(err, &he) || he.Output != msg {
		t.Errorf("HelperError = %+v", he)
	}
	var ee ExitStatus
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("no ExitStatus in chain: %v", err)
	}
	if h := HintFor(err); !strings.Contains(h, "/etc/subuid has a line for your user") {
		t.Errorf("hint = %q", h)
	}

	// Unusable helper and invalid maps are refused before anything runs (M8).
	marker := filepath.Join(dir, "ran")
	touch := writeScript(t, dir, "touch-newuidmap", "touch "+marker+"\n")
	bad := Helper{Name: "newgidmap", Err: errors.New("idmap: newgidmap not found")}
	err = RunHelpers(ctx, 1, ok(touch), bad, maps, maps)
	if err == nil || !strings.Contains(err.Error(), "newgidmap not found") {
		t.Errorf("unusable: %v", err)
	}
	err = RunHelpers(ctx, 1, ok(touch), ok(touch), []Mapping{{0, 1000, 1}, {1, 1000, 5}}, maps)
	if err == nil || !strings.Contains(err.Error(), "overlap outside") {
		t.Errorf("overlap: %v", err)
	}
	if err := RunHelpers(ctx, 0, ok(touch), ok(touch), maps, maps); err == nil {
		t.Errorf("pid 0 accepted")
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("a helper ran despite invalid input")
	}

	// A helper that hangs is killed when ctx ends; one that leaves a child holding its output does not make the
	// wait hang.
	hang := writeScript(t, dir, "hang-newuidmap", "exec sleep 60\n")
	bgh := writeScript(t, dir, "bg-newgidmap", "sleep 2 & echo started\n")
	tctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = RunHelpers(tctx, 1, ok(hang), ok(bgh), maps, maps)
	if time.Since(start) > 10*time.Second || err == nil || !strings.Contains(err.Error(), hang+" 1 0 1000 1 1 100000 65536: signal: killed") {
		t.Errorf("hanging helper: %v after %v", err, time.Since(start))
	}
	if strings.Contains(err.Error(), bgh) {
		t.Errorf("the helper that exited 0 was reported: %v", err)
	}
}

func TestGetSubIDs(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	tool := writeScript(t, dir, "getsubids", `if [ "$1" = -g ]; then echo "0: $2 200000 1000"; exit 0; fi
case "$1" in
alice) echo "0: alice 100000 65536"; echo "1: alice 300000 10";;
nobody) echo "Error fetching ranges" >&2; exit 1;;
weird) echo "garbage";;
zero) echo "0: zero 5 0";;
*) exit 2;;
esac
`)
	tests := []struct {
		name   string
		user   string
		groups bool
		want   []Range
		err    string
	}{
		{"user", "alice", false, []Range{{100000, 65536}, {300000, 10}}, ""},
		{"groups", "alice", true, []Range{{200000, 1000}}, ""},
		{"B26 none", "nobody", false, nil, ""},
		{"bad output", "weird", false, nil, `want "N: OWNER START COUNT"`},
		{"count zero", "zero", false, nil, "invalid range"},
		{"dash name", "-g", false, nil, "invalid user name"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := getSubIDsWith(ctx, tool, tc.user, tc.groups)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	// A missing getsubids in the fixed dirs gives nil, nil; a real one must
	// not fail for an unknown user.
	if rs, err := GetSubIDs(ctx, "caisson-no-such-user", false); rs != nil || err != nil {
		t.Errorf("unknown user: %v %v", rs, err)
	}
}

func TestHintFor(t *testing.T) {
	he := func(tool, out string) error {
		return fmt.Errorf("wrapped: %w", &HelperError{Argv: []string{"/usr/bin/" + tool, "1"}, Output: out, Err: errors.New("exit status 1")})
	}
	pathErr := func(p string, e error) error {
		return fmt.Errorf("idmap: %w", &fs.PathError{Op: "write", Path: p, Err: e})
	}
	tests := []struct {
		name string
		err  error
		want string // substring; "" means no hint
	}{
		{"nil", nil, ""},
		{"unrelated", errors.New("x"), ""},
		{"M4 not allowed uid", he("newuidmap", "newuidmap: uid range [1-65537) -> [100000-165536) not allowed"), "/etc/subuid has a line"},
		{"M4 not allowed gid", he("newgidmap", "newgidmap: gid range [1-2) -> [5-6) not allowed"), "/etc/subgid has a line"},
		{"M2 not setuid", he("newuidmap", "newuidmap: write to uid_map failed: Operation not permitted"), "must be setuid root or have cap_setuid"},
		{"M5 gid differs", he("newgidmap", "newgidmap: Target process is owned by a different user: uid:1 pw_uid:1 st_uid:1, gid:2 pw_gid:1 st_gid:2"), "sg/newgrp"},
		{"B27 no user name", he("newuidmap", "newuidmap: Cannot determine your user name."), "no passwd entry"},
		{"M9 overflow", he("newuidmap", "newuidmap: subuid overflow detected."), "beyond 4294967295"},
		{"M8 EINVAL", he("newuidmap", "newuidmap: write to uid_map failed: Invalid argument"), "overlapping"},
		{"M6 child gone", he("newuidmap", "newuidmap: Could not open proc directory for target 1"), "exited"},
		{"M1 missing", &HelperError{Argv: []string{"/usr/bin/newuidmap"}, Err: fs.ErrNotExist}, "apt-get install uidmap"},
		{"not procfs", fmt.Errorf("idmap: /proc/1: %w", ErrNotProcfs), "not a real procfs"},
		{"gid_map EPERM", pathErr("/proc/1/gid_map", unix.EPERM), "setgroups denied first"},
		{"uid_map EPERM", pathErr("/proc/1/uid_map", unix.EPERM), "only its own id"},
		{"proc ENOENT", pathErr("/proc/1", unix.ENOENT), "exited"},
		{"no sub ids", &PlanError{Mode: ModeKeepID, Err: ErrNoSubIDs}, "usermod --add-subuids"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := HintFor(tc.err)
			if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) || strings.Contains(got, "\n") {
				t.Errorf("HintFor = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWriteDirectErrors(t *testing.T) {
	maps := []Mapping{{0, 1000, 1}}
	if err := WriteDirect(0, maps, maps, true); err == nil {
		t.Error("pid 0 accepted")
	}
	// Validation happens before /proc is touched.
	err := WriteDirect(os.Getpid(), []Mapping{{0, 1, 0}}, maps, true)
	if err == nil || !strings.Contains(err.Error(), "count must be >= 1") {
		t.Errorf("invalid map: %v", err)
	}
	// A pid that does not exist: ENOENT on /proc/PID, with a hint.
	err = WriteDirect(1<<30, maps, maps, true)
	if !errors.Is(err, unix.ENOENT) || !strings.HasPrefix(err.Error(), "idmap: open /proc/1073741824: ") {
		t.Errorf("missing pid: %v", err)
	}
	if HintFor(err) == "" {
		t.Errorf("no hint for %v", err)
	}
	// The procfs check rejects other filesystems (F17).
	fd, err := unix.Open(t.TempDir(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	_ = unix.Fstatfs(fd, &st)
	if err := checkProcfs(fd, "tmp"); st.Type != unix.PROC_SUPER_MAGIC && !errors.Is(err, ErrNotProcfs) {
		t.Errorf("checkProcfs on a temp dir: %v", err)
	}
	pfd, err := openProcDir("/proc/self")
	if err == nil {
		t.Errorf("/proc/self is a symlink and must not be followed (O_NOFOLLOW)")
		unix.Close(pfd)
	}
	pfd, err = openProcDir(fmt.Sprintf("/proc/%d", os.Getpid()))
	if err != nil {
		t.Fatalf("open own /proc dir: %v", err)
	}
	unix.Close(pfd)
}
