package seccomp

import (
	"fmt"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
)

// Seccomp return values (SECCOMP_RET_*, linux/seccomp.h).
const (
	retKillProcess = unix.SECCOMP_RET_KILL_PROCESS // 0x80000000
	retKillThread  = unix.SECCOMP_RET_KILL_THREAD  // 0
	retTrap        = unix.SECCOMP_RET_TRAP         // 0x00030000
	retErrno       = unix.SECCOMP_RET_ERRNO        // 0x00050000 | errno
	retUserNotif   = unix.SECCOMP_RET_USER_NOTIF   // 0x7fc00000
	retTrace       = unix.SECCOMP_RET_TRACE        // 0x7ff00000 | data
	retLog         = unix.SECCOMP_RET_LOG          // 0x7ffc0000
	retAllow       = unix.SECCOMP_RET_ALLOW        // 0x7fff0000

	retActionMask = 0xffff0000 // SECCOMP_RET_ACTION_FULL
	retDataMask   = 0x0000ffff // SECCOMP_RET_DATA
)

// errno returns the seccomp return value that fails a call with e.
func errno(e unix.Errno) uint32 { return retErrno | uint32(e)&retDataMask }

// actionRank orders actions by strictness, following the precedence the
// kernel applies between stacked filters (seccomp(2), "Filter return
// values"): when several rules of one syscall match, the strictest wins.
func actionRank(ret uint32) int {
	switch ret & retActionMask {
	case retKillProcess:
		return 7
	case retKillThread:
		return 6
	case retTrap:
		return 5
	case retErrno:
		return 4
	case retUserNotif:
		return 3
	case retTrace:
		return 2
	case retLog:
		return 1
	}
	return 0 // allow
}

// op is an argument comparison. All comparisons are unsigned, like libseccomp's.
type op uint8

const (
	opEQ       op = iota + 1 // arg == value
	opNE                     // arg != value
	opLT                     // arg <  value
	opLE                     // arg <= value
	opGT                     // arg >  value
	opGE                     // arg >= value
	opMaskedEQ               // arg & value == datum
	opMaskedNE               // arg & value != datum (internal: "any of these bits set" with datum 0)
)

// cond is one argument comparison of a rule.
type cond struct {
	arg   int // 0..5
	op    op
	value uint64 // comparand, or the mask for the masked ops
	datum uint64 // masked ops only
	low32 bool   // compare only the low 32 bits (for int/unsigned int arguments)
}

// rule is a set of conditions that must all hold for action to apply.
type rule struct {
	conds  []cond
	action uint32
}

// policy is the architecture-bound intermediate form both the built-in
// postures and OCI profiles compile to.
type policy struct {
	arch          *archInfo
	defaultAction uint32
	rules         map[uint32][]rule // syscall number -> rules, in insertion order
	skipped       []string          // names the arch's table lacks
	flags         uint              // SECCOMP_FILTER_FLAG_* to load the program with (OCI profiles' flags)
}

func newPolicy(a *archInfo, def uint32) *policy {
	return &policy{arch: a, defaultAction: def, rules: map[uint32][]rule{}}
}

// add appends a rule for each named syscall the architecture knows and
// records the others in p.skipped.
func (p *policy) add(action uint32, names []string, conds ...cond) {
	for _, name := range names {
		nr, ok := p.arch.table()[name]
		if !ok {
			if !slices.Contains(p.skipped, name) {
				p.skipped = append(p.skipped, name)
			}
			continue
		}
		p.rules[nr] = append(p.rules[nr], rule{conds: conds, action: action})
	}
}

// plan returns, for syscall nr, the rules to test in order: sorted by
// decreasing strictness (stable, so profile order breaks ties), cut after
// the first unconditional rule, which always matches.
func (p *policy) plan(nr uint32) (rules []rule, fallback uint32) {
	rules = slices.Clone(p.rules[nr])
	sort.SliceStable(rules, func(i, j int) bool { return actionRank(rules[i].action) > actionRank(rules[j].action) })
	fallback = p.defaultAction
	for i, r := range rules {
		if len(r.conds) == 0 {
			fallback = r.action
			rules = rules[:i]
			break
		}
	}
	// Trailing conditional rules that end in the fallback anyway are dead code.
	for len(rules) > 0 && rules[len(rules)-1].action == fallback {
		rules = rules[:len(rules)-1]
	}
	return rules, fallback
}

// String renders the condition for disassembly and errors.
func (c cond) String() string {
	names := map[op]string{opEQ: "==", opNE: "!=", opLT: "<", opLE: "<=", opGT: ">", opGE: ">=", opMaskedEQ: "&", opMaskedNE: "&"}
	s := fmt.Sprintf("arg%d %s %#x", c.arg, names[c.op], c.value)
	switch c.op {
	case opMaskedEQ:
		s += fmt.Sprintf(" == %#x", c.datum)
	case opMaskedNE:
		s += fmt.Sprintf(" != %#x", c.datum)
	}
	if c.low32 {
		s = "(u32)" + s
	}
	return s
}
