package tests

// Issue 18: nothing caisson starts outlives it, not even as a zombie. Every scenario runs under the non-reaping
// subreaper harness (tests/subreaper, testenv.Subreaper), which stands where a CI container's PID 1 or a
// `tini -s` stands: whatever caisson leaves behind is re-parented to it and stays there, alive or as a zombie.

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

// runLimit bounds each caisson command of these tests.
const runLimit = 60 * time.Second

// tapPersistent is a shell test, run in a sandbox, that its tap0 is a persistent tap device.
const tapPersistent = `[ $(( $(cat /sys/class/net/tap0/tun_flags) & 0x800 )) -ne 0 ]`

// requireLeftNothing fails the test when the harness holds anything but its own running commands.
func requireLeftNothing(t *testing.T, h *testenv.Subreaper, after string) {
	t.Helper()
	left, err := h.Left()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after %s, %d processes were left to the subreaper:\n  %s", after, len(left), testenv.FormatProcs(left))
	}
}

// harnessRun runs caisson args under h, and fails the test unless it exits with want.
func harnessRun(t *testing.T, h *testenv.Subreaper, want int, args ...string) (stdout, stderr string) {
	t.Helper()
	st, stdout, stderr, err := h.Run(runLimit, testenv.Command{Args: append([]string{bin(t)}, args...)})
	if err != nil {
		t.Fatalf("caisson %s: %v; stderr %q", strings.Join(args, " "), err, stderr)
	}
	if st.ExitCode() != want {
		t.Fatalf("caisson %s: %v, want exit %d; stdout %q stderr %q", strings.Join(args, " "), st, want, stdout, stderr)
	}
	return stdout, stderr
}

// waitOutput waits (bounded) until p's stdout contains s.
func waitOutput(t *testing.T, p *testenv.Process, s string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(p.Stdout(), s) {
			return
		}
	}
	t.Fatalf("caisson (pid %d) never printed %q; stdout %q stderr %q", p.PID, s, p.Stdout(), p.Stderr())
}

// TestSubreaperHarnessSeesZombies checks the harness itself: what a command leaves behind is reported, alive and
// then as a zombie, and Reap collects it (otherwise the tests below could not fail).
func TestSubreaperHarnessSeesZombies(t *testing.T) {
	h := testenv.NewSubreaper(t)
	st, stdout, _, err := h.Run(runLimit, testenv.Command{Args: []string{"sh", "-c", "sleep 0.3 >/dev/null 2>&1 & echo $!"}})
	if err != nil || st.ExitCode() != 0 {
		t.Fatalf("sh: %v %v", st, err)
	}
	var orphan int
	if _, err := fmt.Sscan(stdout, &orphan); err != nil {
		t.Fatalf("sh printed %q", stdout)
	}
	left, err := h.Left()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0].PID != orphan || left[0].State == "Z" {
		t.Fatalf("harness children %v, want the running sleep %d", left, orphan)
	}
	var zombie bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !zombie; time.Sleep(20 * time.Millisecond) {
		left, err = h.Left()
		zombie = err == nil && len(left) == 1 && left[0].State == "Z"
	}
	if !zombie {
		t.Fatalf("the orphaned sleep never showed as a zombie of the harness: %v %v", left, err)
	}
	if st, err := h.Reap(orphan, 5*time.Second); err != nil || st.ExitCode() != 0 {
		t.Fatalf("reap %d: %v %v", orphan, st, err)
	}
	requireLeftNothing(t, h, "reaping the orphan")
}

// TestReapRunNetworks: `caisson run` with each network helper, with a published port alone (--net none -p), and
// a command that cannot be found (the error path) leaves nothing behind.
func TestReapRunNetworks(t *testing.T) {
	requireSandbox(t)
	testenv.RequireTun(t)
	cases := []struct {
		name, helper string
		want         int
		args         []string
	}{
		// tap0 is persistent (IFF_PERSIST, 0x800): init created it for the helper (slirp.PrepareTap), so the helper's
		// exit does not wait for the device's removal.
		{"pasta", "pasta", 0, []string{"run", "--net", "pasta", "--", "sh", "-c", tapPersistent}},
		{"slirp4netns", "slirp4netns", 0, []string{"run", "--net", "slirp4netns", "--", "sh", "-c", tapPersistent}},
		{"none -p", "", 0, []string{"run", "--net", "none", "-p", fmt.Sprintf("127.0.0.1:%d:8080", freeLowPort()), "--", "true"}},
		{"pasta -p", "pasta", 3, []string{"run", "--net", "pasta", "-p", fmt.Sprintf("127.0.0.1:%d:8080", freeLowPort()), "--", "sh", "-c", "exit 3"}},
		{"pasta, command not found", "pasta", 127, []string{"run", "--net", "pasta", "--", "/no/such/command"}},
		{"slirp4netns, command not found", "slirp4netns", 127, []string{"run", "--net", "slirp4netns", "--", "/no/such/command"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.helper != "" {
				testenv.RequireCommand(t, tc.helper)
			}
			h := testenv.NewSubreaper(t)
			harnessRun(t, h, tc.want, tc.args...)
			requireLeftNothing(t, h, "caisson "+strings.Join(tc.args, " "))
		})
	}
}

// TestReapHelperKilled: the network helper SIGKILLed while the command runs; caisson reports it, the sandbox
// finishes, and nothing is left.
func TestReapHelperKilled(t *testing.T) {
	for _, mode := range []string{"pasta", "slirp4netns"} {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			h := testenv.NewSubreaper(t)
			// The device stays when its helper dies (it goes with the sandbox's network namespace).
			p, err := h.Start(testenv.Command{Args: []string{bin(t), "run", "--net", mode, "--", "sh", "-c",
				"echo up; sleep 1; " + tapPersistent + " && exit 7"}})
			if err != nil {
				t.Fatal(err)
			}
			waitOutput(t, p, "up")
			helper := 0
			for _, c := range testenv.Children(p.PID) {
				if isNetworkHelper(c) {
					helper = c
				}
			}
			if helper == 0 {
				t.Fatalf("no %s among the children of caisson %d", mode, p.PID)
			}
			if err := unix.Kill(helper, unix.SIGKILL); err != nil {
				t.Fatal(err)
			}
			st, err := p.Wait(runLimit)
			if err != nil || st.ExitCode() != 7 {
				t.Fatalf("caisson: %v %v, want exit 7; stderr %q", st, err, p.Stderr())
			}
			if !strings.Contains(p.Stderr(), "caisson: network helper exited") {
				t.Errorf("stderr %q does not report the helper's death", p.Stderr())
			}
			requireLeftNothing(t, h, "killing "+mode+" mid-run")
		})
	}
}

// TestReapCaissonTerminated: caisson SIGTERMed while the command runs forwards the signal, the sandbox ends with
// 128+15, and nothing is left.
func TestReapCaissonTerminated(t *testing.T) {
	for _, mode := range []string{"pasta", "slirp4netns"} {
		t.Run(mode, func(t *testing.T) {
			requireNet(t, mode)
			h := testenv.NewSubreaper(t)
			p, err := h.Start(testenv.Command{Args: []string{bin(t), "run", "--net", mode, "--", "sh", "-c", "echo up; exec sleep 30"}})
			if err != nil {
				t.Fatal(err)
			}
			waitOutput(t, p, "up")
			time.Sleep(50 * time.Millisecond) // the exec of sleep
			if err := p.Signal(unix.SIGTERM); err != nil {
				t.Fatal(err)
			}
			st, err := p.Wait(runLimit)
			if err != nil || st.ExitCode() != 128+int(unix.SIGTERM) {
				t.Fatalf("caisson: %v %v, want exit 143; stderr %q", st, err, p.Stderr())
			}
			requireLeftNothing(t, h, "SIGTERM to caisson --net "+mode)
		})
	}
}

// TestReapDetached: `run -d` leaves its supervisor to the caller's subreaper, as it must (it outlives its client);
// `exec` into the sandbox leaves nothing more; after `stop`, the supervisor ends having reaped everything it
// started, so once the subreaper has collected the supervisor itself, nothing is left.
func TestReapDetached(t *testing.T) {
	requireNet(t, "pasta")
	h := testenv.NewSubreaper(t)
	name := fmt.Sprintf("reap-%d", os.Getpid())
	t.Cleanup(func() {
		_, _, _, _ = h.Run(runLimit, testenv.Command{Args: []string{bin(t), "stop", "--time", "0", name}})
	})
	stdout, _ := harnessRun(t, h, 0, "run", "-d", "--name", name, "--net", "pasta", "-p",
		fmt.Sprintf("127.0.0.1:%d:8080", freeLowPort()), "--", "sleep", "60")
	if strings.TrimSpace(stdout) != name {
		t.Fatalf("run -d printed %q, want %q", stdout, name)
	}
	left, err := h.Left()
	if err != nil {
		t.Fatal(err)
	}
	// The supervisor is caisson re-executed (as /proc/self/exe, hence its command name "exe").
	if len(left) != 1 || !strings.Contains(left[0].Cmdline, "run -d --name "+name) || left[0].State == "Z" {
		t.Fatalf("after run -d, the subreaper holds %v; want the sandbox's running supervisor alone", left)
	}
	supervisor := left[0]
	stdout, _ = harnessRun(t, h, 0, "exec", name, "--", "sh", "-c", "echo in; [ -e /sys/class/net/tap0 ]")
	if stdout != "in\n" {
		t.Errorf("exec printed %q", stdout)
	}
	if left, err := h.Left(); err != nil || len(left) != 1 || left[0].PID != supervisor.PID {
		t.Errorf("after exec, the subreaper holds %v (%v); want the supervisor %d alone", testenv.FormatProcs(left), err, supervisor.PID)
	}
	harnessRun(t, h, 0, "stop", "--time", "5", name)
	st, err := h.Reap(supervisor.PID, runLimit)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 128+int(unix.SIGTERM) {
		t.Errorf("the supervisor ended with %v, want exit 143 (sleep killed by stop's SIGTERM)", st)
	}
	requireLeftNothing(t, h, "stop and the supervisor's exit")
}
