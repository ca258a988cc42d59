package seccomp

import (
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Classic BPF opcodes used by the generator (linux/filter.h, linux/bpf_common.h).
const (
	bpfLdAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfAndK   = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
	bpfJa     = unix.BPF_JMP | unix.BPF_JA
	bpfJeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJgtK   = unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K
	bpfJgeK   = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJsetK  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRetK   = unix.BPF_RET | unix.BPF_K
)

// Offsets into struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]; }.
const (
	offNr           = 0
	offArch         = 4
	offArgs         = 16
	seccompDataSize = 64
)

// maxInsns is BPF_MAXINSNS, the kernel's limit on one classic BPF program.
const maxInsns = 4096

// argLo and argHi return the offsets of the low and high 32-bit words of
// args[i] on a little-endian machine (amd64 and arm64 are both little-endian).
func argLo(i int) uint32 { return uint32(offArgs + 8*i) }
func argHi(i int) uint32 { return uint32(offArgs + 8*i + 4) }

// label names an instruction index that is resolved when the program is
// finished. next is the implicit "following instruction" target.
type label int

const next label = -1

type insn struct {
	code   uint16
	k      uint32
	jt, jf label // conditional jumps
	target label // ja
}

// assembler collects instructions with symbolic jump targets. All jumps are
// forward, as classic BPF requires.
type assembler struct {
	insns  []insn
	labels []int // label -> instruction index; -1 until bound
}

func (a *assembler) newLabel() label {
	a.labels = append(a.labels, -1)
	return label(len(a.labels) - 1)
}

// bind places l at the next instruction to be emitted.
func (a *assembler) bind(l label) { a.labels[l] = len(a.insns) }

func (a *assembler) emit(in insn) { a.insns = append(a.insns, in) }

func (a *assembler) load(off uint32)   { a.emit(insn{code: bpfLdAbsW, k: off}) }
func (a *assembler) and(k uint32)      { a.emit(insn{code: bpfAndK, k: k}) }
func (a *assembler) ret(k uint32)      { a.emit(insn{code: bpfRetK, k: k}) }
func (a *assembler) jump(target label) { a.emit(insn{code: bpfJa, target: target}) }

// jmp emits a conditional jump: if A <cond> k goto jt else goto jf.
func (a *assembler) jmp(code uint16, k uint32, jt, jf label) {
	a.emit(insn{code: code, k: k, jt: jt, jf: jf})
}

// finish resolves labels and returns the program.
func (a *assembler) finish() ([]unix.SockFilter, error) {
	if len(a.insns) > maxInsns {
		return nil, fmt.Errorf("seccomp: program has %d instructions, the kernel accepts at most %d", len(a.insns), maxInsns)
	}
	out := make([]unix.SockFilter, len(a.insns))
	for i, in := range a.insns {
		f := unix.SockFilter{Code: in.code, K: in.k}
		off := func(l label, limit int) (int, error) {
			if l == next {
				return 0, nil
			}
			t := a.labels[l]
			if t < 0 {
				return 0, fmt.Errorf("seccomp: internal error: instruction %d jumps to an unbound label", i)
			}
			d := t - (i + 1)
			if d < 0 || d > limit || t >= len(a.insns) {
				return 0, fmt.Errorf("seccomp: internal error: instruction %d jumps %d instructions (limit %d)", i, d, limit)
			}
			return d, nil
		}
		switch in.code {
		case bpfJa:
			d, err := off(in.target, len(a.insns))
			if err != nil {
				return nil, err
			}
			f.K = uint32(d)
		case bpfJeqK, bpfJgtK, bpfJgeK, bpfJsetK:
			jt, err := off(in.jt, 255)
			if err != nil {
				return nil, err
			}
			jf, err := off(in.jf, 255)
			if err != nil {
				return nil, err
			}
			f.Jt, f.Jf = uint8(jt), uint8(jf)
		}
		out[i] = f
	}
	return out, nil
}

// leafSize is the largest number of syscalls compared one by one at a leaf of
// the dispatch tree.
const leafSize = 4

// assemble generates the program for p:
//
//	arch != native             -> KILL_PROCESS
//	nr & 0x40000000 (amd64)    -> ERRNO(ENOSYS)   x32 ABI
//	nr > highest known number  -> ERRNO(ENOSYS)
//	binary search on nr over the syscalls with rules; each leaf either
//	returns the syscall's action or jumps to its argument checks;
//	everything else            -> default action
func assemble(p *policy) ([]unix.SockFilter, error) {
	var a assembler
	enosys := errno(unix.ENOSYS)

	archOK := a.newLabel()
	a.load(offArch)
	a.jmp(bpfJeqK, p.arch.auditArch, archOK, next)
	a.ret(retKillProcess)
	a.bind(archOK)

	tooHigh, dispatch := a.newLabel(), a.newLabel()
	a.load(offNr)
	if p.arch.x32 {
		a.jmp(bpfJsetK, x32SyscallBit, tooHigh, next)
	}
	a.jmp(bpfJgtK, p.arch.highest(), tooHigh, dispatch)
	a.bind(tooHigh)
	a.ret(enosys)
	a.bind(dispatch)

	// Collect the syscalls whose outcome differs from the default action.
	type entry struct {
		nr       uint32
		rules    []rule
		fallback uint32
		body     label // valid when len(rules) > 0
	}
	var entries []entry
	for nr := range p.rules {
		rules, fallback := p.plan(nr)
		if len(rules) == 0 && fallback == p.defaultAction {
			continue
		}
		e := entry{nr: nr, rules: rules, fallback: fallback}
		if len(rules) > 0 {
			e.body = a.newLabel()
		}
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(x, y entry) int { return int(x.nr) - int(y.nr) })

	// Binary search; A holds nr throughout. Conditional jumps only ever skip
	// one instruction, long distances use ja.
	var tree func(es []entry)
	tree = func(es []entry) {
		if len(es) <= leafSize {
			for _, e := range es {
				a.jmp(bpfJeqK, e.nr, next, a.skip1())
				if len(e.rules) == 0 {
					a.ret(e.fallback)
				} else {
					a.jump(e.body)
				}
			}
			a.ret(p.defaultAction)
			return
		}
		mid := len(es) / 2
		right := a.newLabel()
		a.jmp(bpfJgeK, es[mid].nr, next, a.skip1())
		a.jump(right)
		tree(es[:mid])
		a.bind(right)
		tree(es[mid:])
	}
	tree(entries)

	// Argument checks.
	for _, e := range entries {
		if len(e.rules) == 0 {
			continue
		}
		a.bind(e.body)
		for _, r := range e.rules {
			fail := a.newLabel()
			for _, c := range r.conds {
				a.cond(c, fail)
			}
			a.ret(r.action)
			a.bind(fail)
		}
		a.ret(e.fallback)
	}
	return a.finish()
}

// skip1 returns a label bound to the instruction after the next one: the
// "false" target of a conditional jump that guards a single instruction.
func (a *assembler) skip1() label {
	l := a.newLabel()
	a.labels[l] = len(a.insns) + 2 // the jump itself, then the guarded instruction
	return l
}

// cond emits code that falls through when c holds and jumps to fail when it
// does not. A is clobbered.
func (a *assembler) cond(c cond, fail label) {
	ok := a.newLabel()
	hi, lo := uint32(c.value>>32), uint32(c.value)
	dhi, dlo := uint32(c.datum>>32), uint32(c.datum)
	loOff, hiOff := argLo(c.arg), argHi(c.arg)

	switch c.op {
	case opEQ:
		if !c.low32 {
			a.load(hiOff)
			a.jmp(bpfJeqK, hi, next, fail)
		}
		a.load(loOff)
		a.jmp(bpfJeqK, lo, next, fail)
	case opNE:
		if !c.low32 {
			a.load(hiOff)
			a.jmp(bpfJeqK, hi, next, ok)
		}
		a.load(loOff)
		a.jmp(bpfJeqK, lo, fail, next)
	case opGT, opGE:
		code := uint16(bpfJgtK)
		if c.op == opGE {
			code = bpfJgeK
		}
		if !c.low32 {
			a.load(hiOff)
			a.jmp(bpfJgtK, hi, ok, next)
			a.jmp(bpfJeqK, hi, next, fail)
		}
		a.load(loOff)
		a.jmp(code, lo, next, fail)
	case opLT, opLE:
		// arg < v  <=>  !(arg >= v);  arg <= v  <=>  !(arg > v)
		code := uint16(bpfJgeK)
		if c.op == opLE {
			code = bpfJgtK
		}
		if !c.low32 {
			a.load(hiOff)
			a.jmp(bpfJgtK, hi, fail, next)
			a.jmp(bpfJeqK, hi, next, ok)
		}
		a.load(loOff)
		a.jmp(code, lo, fail, next)
	case opMaskedEQ:
		if !c.low32 {
			a.load(hiOff)
			a.and(hi)
			a.jmp(bpfJeqK, dhi, next, fail)
		}
		a.load(loOff)
		a.and(lo)
		a.jmp(bpfJeqK, dlo, next, fail)
	case opMaskedNE:
		if !c.low32 {
			a.load(hiOff)
			a.and(hi)
			a.jmp(bpfJeqK, dhi, next, ok)
		}
		a.load(loOff)
		a.and(lo)
		a.jmp(bpfJeqK, dlo, fail, next)
	default:
		panic(fmt.Sprintf("seccomp: internal error: unknown op %d", c.op))
	}
	a.bind(ok)
}
