package nsenter

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The test binary links the C half (cgo), so it can be its own stage: TestMain plays the Go half of a re-executed
// process, answering with what it sees of its namespaces and ids.
func TestMain(m *testing.M) {
	if sock, ok := Stage(); ok {
		os.Exit(goHalf(sock))
	}
	os.Exit(m.Run())
}

// goHalf writes "uid gid pid ns..." on the socket, then waits for the parent to close it (so that a test can keep
// the process alive to join it).
func goHalf(sock *os.File) int {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %d %d", os.Getuid(), os.Getgid(), os.Getpid())
	for _, ns := range []string{"user", "mnt", "uts", "pid_for_children", "net"} {
		st, err := os.Stat("/proc/self/ns/" + ns)
		if err != nil {
			return 2
		}
		fmt.Fprintf(&b, " %d", st.Sys().(*syscall.Stat_t).Ino)
	}
	if _, err := sock.Write([]byte(b.String())); err != nil {
		return 3
	}
	buf := make([]byte, 1)
	_, _ = sock.Read(buf) // until the parent closes its end
	return 0
}

func TestProtocolLayout(t *testing.T) {
	if !Linked {
		t.Skip("built without cgo: no C half to compare with")
	}
	req, rep, max, ver := cLayout()
	if req != int(unsafe.Sizeof(request{})) || rep != int(unsafe.Sizeof(reply{})) || max != maxJoin || ver != version {
		t.Fatalf("C and Go disagree: C request %d reply %d max %d version %d; Go %d %d %d %d",
			req, rep, max, ver, unsafe.Sizeof(request{}), unsafe.Sizeof(reply{}), maxJoin, version)
	}
}

func TestOrderJoins(t *testing.T) {
	in := []Join{{Type: unix.CLONE_NEWNS}, {Type: unix.CLONE_NEWNET}, {Type: unix.CLONE_NEWUSER}, {Type: unix.CLONE_NEWPID}}
	var got []int
	for _, j := range OrderJoins(in) {
		got = append(got, j.Type)
	}
	want := []int{unix.CLONE_NEWUSER, unix.CLONE_NEWNET, unix.CLONE_NEWPID, unix.CLONE_NEWNS}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("OrderJoins = %v, want %v", got, want)
	}
}

// report is what goHalf wrote.
type report struct {
	uid, gid, pid int
	ns            map[string]uint64
}

func readReport(t *testing.T, p *Process) report {
	t.Helper()
	buf := make([]byte, 512)
	n, err := p.Sock.Read(buf)
	if err != nil {
		t.Fatalf("read the Go half's report: %v", err)
	}
	f := strings.Fields(string(buf[:n]))
	if len(f) != 8 {
		t.Fatalf("bad report %q", buf[:n])
	}
	num := func(s string) uint64 { v, _ := strconv.ParseUint(s, 10, 64); return v }
	r := report{uid: int(num(f[0])), gid: int(num(f[1])), pid: int(num(f[2])), ns: map[string]uint64{}}
	for i, ns := range []string{"user", "mnt", "uts", "pid_for_children", "net"} {
		r.ns[ns] = num(f[3+i])
	}
	return r
}

func nsIno(t *testing.T, pid int, ns string) uint64 {
	t.Helper()
	st, err := os.Stat(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// selfMaps writes a one-id map of the caller's ids, which any user may write for its own new user namespace.
func selfMaps(pid int) error {
	dir := "/proc/" + strconv.Itoa(pid)
	if err := os.WriteFile(dir+"/setgroups", []byte("deny"), 0); err != nil {
		return err
	}
	if err := os.WriteFile(dir+"/uid_map", []byte(fmt.Sprintf("0 %d 1", os.Geteuid())), 0); err != nil {
		return err
	}
	return os.WriteFile(dir+"/gid_map", []byte(fmt.Sprintf("0 %d 1", os.Getegid())), 0)
}

func stageCmd() *exec.Cmd {
	return &exec.Cmd{Path: "/proc/self/exe", Args: []string{"nsenter-test"}, Env: []string{}, Stderr: os.Stderr}
}

func requireUserns(t *testing.T) {
	t.Helper()
	if !Linked {
		t.Skip("built without cgo")
	}
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err == nil && strings.TrimSpace(string(b)) == "0" {
		t.Skip("user namespaces are disabled here")
	}
}

// A stage creates a user namespace (maps written by the parent), UTS, mount and PID namespaces, forks into the PID
// namespace, and a second stage joins the first one's user, mount and UTS namespaces by descriptor: what no Go
// code could do after its runtime started.
func TestCreateThenJoin(t *testing.T) {
	requireUserns(t)
	first, err := Start(stageCmd(), Request{
		Clone:     unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWPID,
		Fork:      true,
		WriteMaps: selfMaps,
	})
	if err != nil {
		t.Fatalf("first stage: %v", err)
	}
	defer func() { first.Sock.Close(); reap(first.PID) }()
	r1 := readReport(t, first)
	if r1.uid != 0 || r1.gid != 0 {
		t.Fatalf("first stage runs as %d:%d, want root of its user namespace", r1.uid, r1.gid)
	}
	if r1.pid != 1 {
		t.Fatalf("first stage's child has PID %d in its namespace, want 1", r1.pid)
	}
	if !first.Forked || first.PID <= 0 {
		t.Fatalf("Process = %+v, want a forked child", first)
	}
	if r1.ns["user"] == nsIno(t, os.Getpid(), "user") || r1.ns["mnt"] == nsIno(t, os.Getpid(), "mnt") {
		t.Fatal("first stage did not get new user and mount namespaces")
	}

	var joins []Join
	for _, j := range []struct {
		name string
		typ  int
	}{{"mnt", unix.CLONE_NEWNS}, {"uts", unix.CLONE_NEWUTS}, {"user", unix.CLONE_NEWUSER}} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", first.PID, j.name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		joins = append(joins, Join{Type: j.typ, File: f})
	}
	second, err := Start(stageCmd(), Request{Join: OrderJoins(joins), SetIDAfterJoin: true})
	if err != nil {
		t.Fatalf("second stage: %v", err)
	}
	defer func() { second.Sock.Close(); reap(second.PID) }()
	r2 := readReport(t, second)
	for _, ns := range []string{"user", "mnt", "uts"} {
		if r2.ns[ns] != r1.ns[ns] {
			t.Errorf("second stage's %s namespace %d, want the first's %d", ns, r2.ns[ns], r1.ns[ns])
		}
	}
	if r2.uid != 0 {
		t.Errorf("second stage runs as uid %d in the joined user namespace, want 0", r2.uid)
	}
	if second.Forked || r2.pid != second.PID {
		t.Errorf("second stage: Process %+v, reported pid %d: want the stage itself", second, r2.pid)
	}
}

// A descriptor of the wrong namespace type is one error naming the step; nothing is left running.
func TestJoinWrongType(t *testing.T) {
	requireUserns(t)
	f, err := os.Open("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stderr bytes.Buffer
	cmd := stageCmd()
	cmd.Stderr = &stderr
	_, err = Start(cmd, Request{Join: []Join{{Type: unix.CLONE_NEWNET, File: f}}})
	if err == nil || !strings.Contains(err.Error(), "setns: invalid argument") {
		t.Fatalf("err = %v, want setns: invalid argument", err)
	}
	if cmd.ProcessState == nil {
		t.Fatal("the stage was not reaped")
	}
}
