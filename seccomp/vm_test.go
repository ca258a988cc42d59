package seccomp

import (
	"encoding/binary"
	"fmt"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// call is the seccomp_data of one syscall, for running programs in the
// golang.org/x/net/bpf VM.
type call struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// encode lays out seccomp_data for the VM. The VM's 32-bit loads are
// big-endian while the kernel's are native (little-endian); the generated
// programs only load aligned 32-bit words (nr, arch, and the low and high
// word of each argument at their little-endian offsets), so writing each of
// those words big-endian at its little-endian position makes the VM read
// exactly what the kernel would.
func (c call) encode() []byte {
	b := make([]byte, seccompDataSize)
	be := binary.BigEndian
	be.PutUint32(b[offNr:], c.nr)
	be.PutUint32(b[offArch:], c.arch)
	for i, v := range c.args {
		be.PutUint32(b[argLo(i):], uint32(v))
		be.PutUint32(b[argHi(i):], uint32(v>>32))
	}
	return b
}

// vm runs a Program in the x/net/bpf interpreter.
type vm struct {
	t    testing.TB
	prog *Program
	m    *bpf.VM
}

func newVM(t testing.TB, prog *Program) *vm {
	t.Helper()
	checkKernelRules(t, prog)
	insns := make([]bpf.Instruction, len(prog.Filter))
	for i, f := range prog.Filter {
		insns[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}.Disassemble()
	}
	m, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("%s: bpf.NewVM: %v", prog.Name, err)
	}
	return &vm{t: t, prog: prog, m: m}
}

func (v *vm) run(c call) uint32 {
	v.t.Helper()
	ret, err := v.m.Run(c.encode())
	if err != nil {
		v.t.Fatalf("%s: vm.Run(%+v): %v", v.prog.Name, c, err)
	}
	return uint32(ret)
}

// checkKernelRules applies the checks of the kernel's classic-BPF and
// seccomp verifiers (sk_chk_filter, seccomp_check_filter): known opcodes
// only, aligned 32-bit loads inside seccomp_data, jumps inside the program,
// a return at the end, at most BPF_MAXINSNS instructions.
func checkKernelRules(t testing.TB, prog *Program) {
	t.Helper()
	f := prog.Filter
	if len(f) == 0 || len(f) > maxInsns {
		t.Fatalf("%s: %d instructions", prog.Name, len(f))
	}
	for i, in := range f {
		switch in.Code {
		case bpfLdAbsW:
			if in.K%4 != 0 || in.K >= seccompDataSize {
				t.Fatalf("%s: insn %d: bad load offset %d", prog.Name, i, in.K)
			}
		case bpfAndK, bpfRetK:
		case bpfJa:
			if uint64(i)+1+uint64(in.K) >= uint64(len(f)) {
				t.Fatalf("%s: insn %d: ja out of range", prog.Name, i)
			}
		case bpfJeqK, bpfJgtK, bpfJgeK, bpfJsetK:
			if i+1+int(max(in.Jt, in.Jf)) >= len(f) {
				t.Fatalf("%s: insn %d: jump out of range", prog.Name, i)
			}
		default:
			t.Fatalf("%s: insn %d: unexpected opcode %#x", prog.Name, i, in.Code)
		}
	}
	if f[len(f)-1].Code != bpfRetK {
		t.Fatalf("%s: last instruction is not a return", prog.Name)
	}
}

// retString names a seccomp return value for test messages.
func retString(r uint32) string {
	switch r & retActionMask {
	case retKillProcess:
		return "KILL_PROCESS"
	case retKillThread:
		return "KILL_THREAD"
	case retTrap:
		return "TRAP"
	case retErrno:
		if name := unix.ErrnoName(unix.Errno(r & retDataMask)); name != "" {
			return fmt.Sprintf("ERRNO(%s)", name)
		}
		return fmt.Sprintf("ERRNO(%d)", r&retDataMask)
	case retTrace:
		return fmt.Sprintf("TRACE(%d)", r&retDataMask)
	case retLog:
		return "LOG"
	case retAllow:
		return "ALLOW"
	}
	return fmt.Sprintf("%#x", r)
}
