package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// taskExit is what the kernel reports of one exiting thread through taskstats: its CPU time (the scheduler's
// exact run time, the same clock as perf's task-clock), faults and context switches.
type taskExit struct {
	pid, tgid, ppid int
	comm            string
	cpuNS           uint64
	minflt          uint64
	csw             uint64 // voluntary + involuntary context switches
}

// exitListener receives the kernel's taskstats record of every thread that exits on this machine (generic netlink
// family TASKSTATS, registered for every CPU). It needs CAP_NET_ADMIN.
type exitListener struct {
	fd   int
	mu   sync.Mutex
	recs []taskExit
	lost int // receive errors (ENOBUFS: records dropped by a full socket buffer)
	done chan struct{}
}

// genlFamily resolves a generic netlink family's id.
func genlFamily(fd int, name string) (uint16, error) {
	attr := nlattr(unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	if err := genlSend(fd, unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, attr); err != nil {
		return 0, err
	}
	buf := make([]byte, 8192)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.NLMSG_ERROR {
			if len(m.Data) >= 4 {
				if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
					return 0, fmt.Errorf("genl family %s: %w", name, unix.Errno(-e))
				}
			}
			continue
		}
		if len(m.Data) < unix.GENL_HDRLEN {
			continue
		}
		for a := range nlattrs(m.Data[unix.GENL_HDRLEN:]) {
			if a.typ == unix.CTRL_ATTR_FAMILY_ID && len(a.data) >= 2 {
				return binary.NativeEndian.Uint16(a.data), nil
			}
		}
	}
	return 0, fmt.Errorf("genl family %s not found", name)
}

type attr struct {
	typ  uint16
	data []byte
}

// nlattrs iterates over the netlink attributes in b.
func nlattrs(b []byte) func(func(attr) bool) {
	return func(yield func(attr) bool) {
		for len(b) >= unix.SizeofNlAttr {
			l := int(binary.NativeEndian.Uint16(b))
			t := binary.NativeEndian.Uint16(b[2:]) & ^uint16(unix.NLA_F_NESTED)
			if l < unix.SizeofNlAttr || l > len(b) {
				return
			}
			if !yield(attr{t, b[unix.SizeofNlAttr:l]}) {
				return
			}
			al := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
			if al > len(b) {
				return
			}
			b = b[al:]
		}
	}
}

func nlattr(typ uint16, data []byte) []byte {
	l := unix.SizeofNlAttr + len(data)
	b := make([]byte, (l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1))
	binary.NativeEndian.PutUint16(b, uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[unix.SizeofNlAttr:], data)
	return b
}

func genlSend(fd int, family uint16, cmd uint8, attrs []byte) error {
	l := unix.NLMSG_HDRLEN + unix.GENL_HDRLEN + len(attrs)
	b := make([]byte, l)
	binary.NativeEndian.PutUint32(b, uint32(l))
	binary.NativeEndian.PutUint16(b[4:], family)
	binary.NativeEndian.PutUint16(b[6:], unix.NLM_F_REQUEST)
	b[unix.NLMSG_HDRLEN] = cmd
	b[unix.NLMSG_HDRLEN+1] = 1 // version
	copy(b[unix.NLMSG_HDRLEN+unix.GENL_HDRLEN:], attrs)
	return unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
}

// listenExits registers for the exit records of every CPU's threads.
func listenExits() (*exitListener, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	// A busy machine exits many threads: a large buffer, so that ours are not dropped.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, err
	}
	fam, err := genlFamily(fd, "TASKSTATS")
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	mask := fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	if b, err := os.ReadFile("/sys/devices/system/cpu/possible"); err == nil {
		mask = strings.TrimSpace(string(b))
	}
	if err := genlSend(fd, fam, unix.TASKSTATS_CMD_GET, nlattr(unix.TASKSTATS_CMD_ATTR_REGISTER_CPUMASK, append([]byte(mask), 0))); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("taskstats register: %w", err)
	}
	l := &exitListener{fd: fd, done: make(chan struct{})}
	go l.loop()
	return l, nil
}

func (l *exitListener) loop() {
	defer close(l.done)
	buf := make([]byte, 1<<20)
	for {
		n, _, err := unix.Recvfrom(l.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ENOBUFS {
			l.mu.Lock()
			l.lost++
			l.mu.Unlock()
			continue
		}
		if err != nil || n == 0 {
			return
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			continue
		}
		for _, m := range msgs {
			if len(m.Data) < unix.GENL_HDRLEN {
				continue
			}
			for a := range nlattrs(m.Data[unix.GENL_HDRLEN:]) {
				if a.typ != unix.TASKSTATS_TYPE_AGGR_PID {
					continue // AGGR_TGID records carry no CPU times of their own
				}
				for b := range nlattrs(a.data) {
					if b.typ != unix.TASKSTATS_TYPE_STATS {
						continue
					}
					var ts unix.Taskstats
					copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), b.data)
					comm := make([]byte, 0, len(ts.Ac_comm))
					for _, c := range ts.Ac_comm {
						if c == 0 {
							break
						}
						comm = append(comm, byte(c))
					}
					rec := taskExit{pid: int(ts.Ac_pid), tgid: int(ts.Ac_tgid), ppid: int(ts.Ac_ppid), comm: string(comm),
						cpuNS: ts.Cpu_run_virtual_total, minflt: ts.Ac_minflt, csw: ts.Nvcsw + ts.Nivcsw}
					if ts.Version < 11 || rec.tgid == 0 {
						rec.tgid = rec.pid // no ac_tgid before taskstats version 11: count threads as processes
					}
					l.mu.Lock()
					l.recs = append(l.recs, rec)
					l.mu.Unlock()
				}
			}
		}
	}
}

// take returns the records received so far and forgets them.
func (l *exitListener) take() []taskExit {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.recs
	l.recs = nil
	return r
}

func (l *exitListener) close() {
	unix.Close(l.fd)
}

// procCPU is one exited process of a run: its leader's command name and the CPU of all its threads.
type procCPU struct {
	comm   string
	cpuNS  uint64
	minflt uint64
	csw    uint64
	thread int // threads
}

// descendants groups recs into processes (by thread group) and keeps those of root's tree: root itself and every
// process whose parent at its exit was one of them or self (this program, a child subreaper that adopts orphans).
func descendants(recs []taskExit, root, self int) []procCPU {
	procs := map[int]*procCPU{}
	parent := map[int]int{}
	for _, r := range recs {
		p := procs[r.tgid]
		if p == nil {
			p = &procCPU{}
			procs[r.tgid] = p
		}
		p.cpuNS += r.cpuNS
		p.minflt += r.minflt
		p.csw += r.csw
		p.thread++
		if r.pid == r.tgid {
			p.comm = r.comm
			parent[r.tgid] = r.ppid
		} else if _, ok := parent[r.tgid]; !ok {
			parent[r.tgid] = -1 // known once the leader's record comes
		}
	}
	in := map[int]bool{root: true, self: true}
	for changed := true; changed; {
		changed = false
		for tgid, pp := range parent {
			if !in[tgid] && in[pp] {
				in[tgid] = true
				changed = true
			}
		}
	}
	var out []procCPU
	for tgid, p := range procs {
		if in[tgid] && tgid != self {
			if p.comm == "" {
				p.comm = "?"
			}
			out = append(out, *p)
		}
	}
	return out
}

var errNoTaskstats = errors.New("taskstats unavailable (needs root)")
