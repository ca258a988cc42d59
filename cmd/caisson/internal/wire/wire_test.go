package wire

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/rootfs"
	"golang.org/x/sys/unix"
)

func pair(t *testing.T) (a, b *os.File) {
	t.Helper()
	a, child, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Dup(int(child.Fd())) // the peer's end, served by the poller as init's is
	child.Close()
	if err != nil {
		t.Fatal(err)
	}
	b = Pollable(fd, "peer")
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A configuration arrives as it was sent, bytes that are not UTF-8 included (catalogue C8, C13: a file name in
// Latin-1, an environment value), inline or, when larger than a datagram may be, through a memfd; descriptors
// sent with it arrive in order and the memfd is not among them.
func TestRoundTrip(t *testing.T) {
	odd := "a\xff\xfeb"
	for _, size := range []int{0, 3 << 20} {
		a, b := pair(t)
		m := Message{Type: "config", Config: &config.Sandbox{
			Args:    []string{"printf", "%s", odd, strings.Repeat("x", size)},
			Env:     []string{"X=" + odd},
			Workdir: "/tmp/" + odd,
			Rootfs:  rootfs.Spec{Ops: []rootfs.Op{{Kind: rootfs.KindBind, Src: "/tmp/d" + odd, Dst: "/mnt/" + odd}}},
		}}
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		if err := Send(a, m, p[0], p[1]); err != nil {
			t.Fatalf("size %d: send: %v", size, err)
		}
		unix.Close(p[0])
		unix.Close(p[1])
		got, fds, err := Recv(b)
		if err != nil {
			t.Fatalf("size %d: recv: %v", size, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("size %d: the message changed on the way", size)
		}
		if len(fds) != 2 {
			t.Fatalf("size %d: want the 2 pipe descriptors, got %v", size, fds)
		}
		var st unix.Stat_t
		for _, fd := range fds {
			if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
				t.Errorf("size %d: descriptor %d is not one of the pipe's (%v, mode %o)", size, fd, err, st.Mode)
			}
			unix.Close(fd)
		}
	}
}

// A peer that announces a message in a descriptor which is not a file (a pipe it could keep empty) gets an error,
// not a reader blocked for ever; the descriptors it sent are closed.
func TestRecvRefusesNonFilePayload(t *testing.T) {
	a, b := pair(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if err := unix.Sendmsg(int(a.Fd()), []byte{tagMemfd}, unix.UnixRights(p[0]), nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, fds, err := Recv(b); err == nil || len(fds) != 0 || !strings.Contains(err.Error(), "not a file") {
		t.Errorf("want an error naming the descriptor, got %v (fds %v)", err, fds)
	}
	if err := unix.Sendmsg(int(a.Fd()), []byte("junk"), nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Recv(b); err == nil {
		t.Errorf("unknown framing: want an error")
	}
}
