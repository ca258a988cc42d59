package harden

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
)

func TestCapDecode(t *testing.T) {
	for _, tc := range []struct {
		mask, want string
	}{
		{"0000000000000000", ""},
		{"0000000000003000", "CAP_NET_ADMIN CAP_NET_RAW"},
		{"0000000000200001", "CAP_CHOWN CAP_SYS_ADMIN"},
		{"000001ffffffffff", strings.Join(config.CapNames, " ")},
		{"0000020000000000", "cap_41"},
	} {
		s, err := ParseCapMask(tc.mask)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(CapList(s), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.mask, got, tc.want)
		}
	}
	if _, err := ParseCapMask("xyz"); err == nil {
		t.Errorf("bad mask: want an error")
	}
}

func TestCommandCaps(t *testing.T) {
	const last = 40
	full := all(last)
	def := full &^ (1 << 19) // CAP_SYS_PTRACE is left out of the default posture
	for _, tc := range []struct {
		name string
		sec  config.Security
		want CapSet
		add  CapSet
	}{
		{"default", config.Security{Posture: "default"}, def, 0},
		{"default add ptrace", config.Security{Posture: "default", CapAdd: []string{"sys_ptrace"}}, full, 1 << 19},
		{"default add all", config.Security{Posture: "default", CapAdd: []string{"ALL"}}, full, full},
		{"strict", config.Security{Posture: "strict"}, 0, 0},
		{"default drop", config.Security{Posture: "default", CapDrop: []string{"CAP_NET_ADMIN"}}, def &^ (1 << 12), 0},
		{"strict add", config.Security{Posture: "strict", CapAdd: []string{"CAP_NET_ADMIN", "CAP_KILL"}}, 1<<12 | 1<<5, 1<<12 | 1<<5},
		{"strict add all drop one", config.Security{Posture: "strict", CapAdd: []string{"ALL"}, CapDrop: []string{"CAP_SYS_ADMIN"}},
			full &^ (1 << 21), full &^ (1 << 21)},
		{"drop all add one", config.Security{Posture: "default", CapAdd: []string{"CAP_CHOWN"}, CapDrop: []string{"ALL"}}, 0, 0},
		{"default add", config.Security{Posture: "default", CapAdd: []string{"CAP_NET_RAW"}}, def, 1 << 13},
	} {
		got, err := CommandCaps(tc.sec, last)
		if err != nil || got != tc.want {
			t.Errorf("%s: CommandCaps = %x, %v; want %x", tc.name, got, err, tc.want)
		}
		add, err := AddedCaps(tc.sec, last)
		if err != nil || add != tc.add {
			t.Errorf("%s: AddedCaps = %x, %v; want %x", tc.name, add, err, tc.add)
		}
	}
	// A capability the running kernel does not know is an error when named.
	if _, err := CommandCaps(config.Security{Posture: "strict", CapAdd: []string{"CAP_CHECKPOINT_RESTORE"}}, 39); err == nil {
		t.Errorf("CAP_CHECKPOINT_RESTORE on a kernel with cap_last_cap 39: want an error")
	}
	if s, err := CommandCaps(config.Security{Posture: "default"}, 39); err != nil || s != all(39)&^(1<<19) || s.Has(40) {
		t.Errorf("default on cap_last_cap 39: %x %v", s, err)
	}
	if l := LastCap(); l < 36 || l > 63 {
		t.Errorf("LastCap() = %d", l)
	}
}

func TestWritableMounts(t *testing.T) {
	mi := `22 1 0:21 / / ro,nosuid,nodev - tmpfs caisson rw
23 22 0:22 / /proc rw,nosuid,nodev,noexec - proc proc rw
24 22 0:23 / /tmp rw,nosuid,nodev shared:1 - tmpfs tmpfs rw,mode=1777
25 22 0:24 /home/u /home/my\040dir rw,relatime - ext4 /dev/sda1 rw
26 22 0:25 / /usr ro,relatime - ext4 /dev/sda1 rw
garbage line
`
	got := WritableMounts(mi)
	var targets []string
	for _, m := range got {
		targets = append(targets, m.Target+":"+m.FSType)
	}
	if strings.Join(targets, " ") != "/proc:proc /tmp:tmpfs /home/my dir:ext4" {
		t.Errorf("writable mounts: %v", targets)
	}
	if len(got) == 3 && (got[0].ID != 23 || got[2].ID != 25) {
		t.Errorf("mount IDs: %+v", got)
	}
}

func TestParseStatus(t *testing.T) {
	status := "Name:\tsh\nCapInh:\t0000000000000000\nCapPrm:\t0000000000001000\nCapEff:\t0000000000001000\n" +
		"CapBnd:\t0000000000001000\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n"
	var r Report
	if err := r.parseStatus(status); err != nil {
		t.Fatal(err)
	}
	if r.Seccomp != "filter" || r.SeccompFilters != 1 || !r.NoNewPrivs || strings.Join(r.Capabilities.Effective, ",") != "CAP_NET_ADMIN" ||
		len(r.Capabilities.Inheritable) != 0 || strings.Join(r.Capabilities.Bounding, ",") != "CAP_NET_ADMIN" {
		t.Errorf("%+v", r)
	}
	if err := r.parseStatus("CapEff:\tzz\n"); err == nil {
		t.Errorf("bad mask: want an error")
	}
	r = Report{}
	r.parseStatus("Seccomp:\t0\nNoNewPrivs:\t0\n")
	if r.Seccomp != "disabled" || r.NoNewPrivs {
		t.Errorf("%+v", r)
	}
}

func TestLandlockRights(t *testing.T) {
	if got := rightNames(fsRights(1)); len(got) != 13 {
		t.Errorf("ABI 1: %v", got)
	}
	r3 := rightNames(fsRights(3))
	if len(r3) != 15 || r3[13] != "refer" || r3[14] != "truncate" {
		t.Errorf("ABI 3: %v", r3)
	}
	if got := rightNames(fsRights(7)); len(got) != 16 || got[15] != "ioctl_dev" {
		t.Errorf("ABI 7: %v", got)
	}
	w := landlockWritable(config.Security{RW: []string{"/data"}}, "/home/u")
	if strings.Join(w, " ") != "/tmp /dev /home/u /data" {
		t.Errorf("writable: %v", w)
	}
	if w := landlockWritable(config.Security{}, "/"); strings.Join(w, " ") != "/tmp /dev" {
		t.Errorf("workdir / must not make everything writable: %v", w)
	}
}

// The Landlock domain is enforced on the calling thread only: a locked goroutine's thread is restricted (writes
// outside the writable paths fail with EACCES), while the rest of the process is not.
func TestLandlockThreadOnly(t *testing.T) {
	if _, err := LandlockABI(); err != nil {
		t.Skipf("skipping: no Landlock on this kernel: %v", err)
	}
	outside, err := os.MkdirTemp("/var/tmp", "caisson-ll-")
	if err != nil {
		t.Skipf("skipping: /var/tmp not writable: %v", err)
	}
	defer os.RemoveAll(outside)
	work := t.TempDir()
	type result struct{ inside, outside, tmp error }
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the restricted thread exits with the goroutine
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			ch <- result{inside: err}
			return
		}
		p, err := planLandlock(config.Security{Posture: "default", Landlock: config.LandlockOn}, work, nil)
		if err == nil {
			err = p.restrict()
			p.close()
		}
		if err != nil {
			ch <- result{inside: err}
			return
		}
		ch <- result{
			inside:  unix.Mkdir(work+"/d", 0o755),
			outside: unix.Mkdir(outside+"/d", 0o755),
			tmp:     unix.Mkdir("/tmp/"+filepath.Base(work)+"-x", 0o755),
		}
	}()
	r := <-ch
	defer os.Remove("/tmp/" + filepath.Base(work) + "-x")
	if r.inside != nil || r.tmp != nil {
		t.Errorf("writes beneath the work directory and /tmp: %v, %v", r.inside, r.tmp)
	}
	if !errors.Is(r.outside, unix.EACCES) {
		t.Errorf("write outside the writable paths: %v, want EACCES", r.outside)
	}
	// This goroutine's thread is not in the domain.
	if err := unix.Mkdir(outside+"/e", 0o755); err != nil {
		t.Errorf("an unrestricted thread cannot write: %v", err)
	}
}

// The strict posture's own Landlock (auto) in a locked thread: writes beneath read-write mounts (the test's
// temporary directory) work, the thread's /dev/null descriptor, handed as stdio, reopens for writing, and the
// record lists the mounts.
func TestLandlockAuto(t *testing.T) {
	if _, err := LandlockABI(); err != nil {
		t.Skipf("skipping: no Landlock on this kernel: %v", err)
	}
	work := t.TempDir()
	null, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	type result struct {
		plan          *landlockPlan
		write, reopen error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the restricted thread exits with the goroutine
		var r result
		if r.write = unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); r.write != nil {
			ch <- r
			return
		}
		r.plan, r.write = planLandlock(config.Security{Posture: config.PostureStrict, Landlock: config.LandlockAuto}, "/", []uintptr{null.Fd()})
		if r.write == nil {
			r.write = r.plan.restrict()
			r.plan.close()
		}
		if r.write != nil {
			ch <- r
			return
		}
		r.write = unix.Mkdir(work+"/d", 0o755)
		fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", null.Fd()), unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			unix.Close(fd)
		}
		r.reopen = err
		ch <- r
	}()
	r := <-ch
	if r.write != nil || r.reopen != nil {
		t.Fatalf("write beneath a read-write mount: %v; reopen of the stdio /dev/null: %v", r.write, r.reopen)
	}
	rec := r.plan.record
	if rec.Mode != config.LandlockAuto || len(rec.Writable) == 0 || len(rec.Stdio) != 1 || !strings.HasPrefix(rec.Stdio[0], "stdin: /dev/null (write_file") {
		t.Errorf("record: %+v", rec)
	}
}

// BenchmarkPlanLandlock measures building the ruleset (the part of Landlock's start-up cost that grows with the
// mount table): the strict posture's own (auto: a rule per read-write mount, read from /proc/self/mountinfo) and
// --landlock's fixed paths. Enforcing it (landlock_restrict_self) is not included: it would restrict the benchmark.
func BenchmarkPlanLandlock(b *testing.B) {
	if _, err := LandlockABI(); err != nil {
		b.Skipf("no Landlock: %v", err)
	}
	for _, mode := range []string{config.LandlockAuto, config.LandlockOn} {
		b.Run(mode, func(b *testing.B) {
			sec := config.Security{Posture: config.PostureStrict, Landlock: mode}
			stdio := []uintptr{0, 1, 2}
			var rules int
			for i := 0; i < b.N; i++ {
				p, err := planLandlock(sec, "/", stdio)
				if err != nil {
					b.Fatal(err)
				}
				rules = len(p.record.Writable)
				p.close()
			}
			b.ReportMetric(float64(rules), "writable")
		})
	}
}
