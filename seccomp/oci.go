package seccomp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ProfileError reports invalid content in a JSON profile. Field is the JSON
// path of the offending value, e.g. `syscalls[3].action`.
type ProfileError struct {
	Source string // file name or source given to CompileOCI
	Field  string // JSON path; empty for document-level errors
	Err    error
}

// Error implements error.
func (e *ProfileError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("seccomp: %s: %v", e.Source, e.Err)
	}
	return fmt.Sprintf("seccomp: %s: %s: %v", e.Source, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *ProfileError) Unwrap() error { return e.Err }

// ociProfile is specs.LinuxSeccomp plus the Docker (moby/profiles) extensions.
type ociProfile struct {
	DefaultAction   specs.LinuxSeccompAction `json:"defaultAction"`
	DefaultErrnoRet *uint                    `json:"defaultErrnoRet"`
	Architectures   []specs.Arch             `json:"architectures"`
	ArchMap         []struct {
		Arch      specs.Arch   `json:"architecture"`
		SubArches []specs.Arch `json:"subArchitectures"`
	} `json:"archMap"`
	Flags    []specs.LinuxSeccompFlag `json:"flags"`
	Syscalls []ociSyscall             `json:"syscalls"`
}

type ociSyscall struct {
	Names    []string                 `json:"names"`
	Name     string                   `json:"name"` // old Docker format
	Action   specs.LinuxSeccompAction `json:"action"`
	ErrnoRet *uint                    `json:"errnoRet"`
	Args     []specs.LinuxSeccompArg  `json:"args"`
	Includes *ociFilter               `json:"includes"`
	Excludes *ociFilter               `json:"excludes"`
}

type ociFilter struct {
	Caps      []string `json:"caps"`
	Arches    []string `json:"arches"`
	MinKernel string   `json:"minKernel"`
}

// maxErrno is MAX_ERRNO; the kernel clamps larger SECCOMP_RET_ERRNO data.
const maxErrno = 4095

var knownArches = map[specs.Arch]bool{
	specs.ArchX86: true, specs.ArchX86_64: true, specs.ArchX32: true,
	specs.ArchARM: true, specs.ArchAARCH64: true,
	specs.ArchMIPS: true, specs.ArchMIPS64: true, specs.ArchMIPS64N32: true,
	specs.ArchMIPSEL: true, specs.ArchMIPSEL64: true, specs.ArchMIPSEL64N32: true,
	specs.ArchPPC: true, specs.ArchPPC64: true, specs.ArchPPC64LE: true,
	specs.ArchS390: true, specs.ArchS390X: true, specs.ArchPARISC: true, specs.ArchPARISC64: true,
	specs.ArchRISCV64: true, specs.ArchLOONGARCH64: true, specs.ArchM68K: true, specs.ArchSH: true, specs.ArchSHEB: true,
}

// knownFlags maps the profile flags to the SECCOMP_FILTER_FLAG_* bits Install passes. TSYNC is accepted and not
// passed: the filter is installed on the thread that execs the payload, which alone matters.
var knownFlags = map[specs.LinuxSeccompFlag]uint{
	specs.LinuxSeccompFlagLog:              unix.SECCOMP_FILTER_FLAG_LOG,
	specs.LinuxSeccompFlagSpecAllow:        unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW,
	specs.LinuxSeccompFlagWaitKillableRecv: 1 << 5, // SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 5.19)
	"SECCOMP_FILTER_FLAG_TSYNC":            0,
}

var ops = map[specs.LinuxSeccompOperator]op{
	specs.OpEqualTo:      opEQ,
	specs.OpNotEqual:     opNE,
	specs.OpLessThan:     opLT,
	specs.OpLessEqual:    opLE,
	specs.OpGreaterThan:  opGT,
	specs.OpGreaterEqual: opGE,
	specs.OpMaskedEqual:  opMaskedEQ,
}

// parseOCI decodes and validates a profile and builds its policy for a.
func parseOCI(a *archInfo, data []byte, source string) (*policy, error) {
	perr := func(field string, format string, args ...any) error {
		return &ProfileError{Source: source, Field: field, Err: fmt.Errorf(format, args...)}
	}
	var prof ociProfile
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&prof); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return nil, perr(te.Field, "cannot use JSON %s as %s", te.Value, te.Type)
		}
		return nil, &ProfileError{Source: source, Err: err}
	}
	if dec.More() {
		return nil, perr("", "trailing data after the JSON object")
	}

	if prof.DefaultAction == "" {
		return nil, perr("defaultAction", "missing")
	}
	def, err := ociAction(prof.DefaultAction, prof.DefaultErrnoRet)
	if err != nil {
		field := "defaultAction"
		if errors.Is(err, errErrnoRet) {
			field = "defaultErrnoRet"
		}
		return nil, perr(field, "%v", err)
	}
	if len(prof.Architectures) > 0 && len(prof.ArchMap) > 0 {
		return nil, perr("archMap", "cannot be combined with architectures")
	}
	for i, arch := range prof.Architectures {
		if !knownArches[arch] {
			return nil, perr(fmt.Sprintf("architectures[%d]", i), "unknown architecture %q", arch)
		}
	}
	for i, m := range prof.ArchMap {
		if !knownArches[m.Arch] {
			return nil, perr(fmt.Sprintf("archMap[%d].architecture", i), "unknown architecture %q", m.Arch)
		}
		for j, sub := range m.SubArches {
			if !knownArches[sub] {
				return nil, perr(fmt.Sprintf("archMap[%d].subArchitectures[%d]", i, j), "unknown architecture %q", sub)
			}
		}
	}
	var flags uint
	for i, f := range prof.Flags {
		bit, ok := knownFlags[f]
		if !ok {
			return nil, perr(fmt.Sprintf("flags[%d]", i), "unknown flag %q", f)
		}
		flags |= bit
	}

	p := newPolicy(a, def)
	p.flags = flags
	for i, sc := range prof.Syscalls {
		at := func(field string) string { return fmt.Sprintf("syscalls[%d]%s", i, field) }
		names := sc.Names
		if sc.Name != "" {
			if len(names) > 0 {
				return nil, perr(at(".name"), "cannot be combined with names")
			}
			names = []string{sc.Name}
		}
		if len(names) == 0 {
			return nil, perr(at(".names"), "no syscall names")
		}
		for j, n := range names {
			if n == "" {
				return nil, perr(at(fmt.Sprintf(".names[%d]", j)), "empty syscall name")
			}
		}
		if sc.Action == "" {
			return nil, perr(at(".action"), "missing")
		}
		act, err := ociAction(sc.Action, sc.ErrnoRet)
		if err != nil {
			field := ".action"
			if errors.Is(err, errErrnoRet) {
				field = ".errnoRet"
			}
			return nil, perr(at(field), "%v", err)
		}
		var conds []cond
		var perArg [6]int
		for j, arg := range sc.Args {
			if arg.Index > 5 {
				return nil, perr(at(fmt.Sprintf(".args[%d].index", j)), "%d out of range (0..5)", arg.Index)
			}
			o, ok := ops[arg.Op]
			if !ok {
				return nil, perr(at(fmt.Sprintf(".args[%d].op", j)), "unknown operator %q", arg.Op)
			}
			c := cond{arg: int(arg.Index), op: o, value: arg.Value}
			if o == opMaskedEQ {
				c.datum = arg.ValueTwo
			}
			conds = append(conds, c)
			perArg[arg.Index]++
		}
		apply, ferr := includeRule(a, sc)
		if ferr != nil {
			return nil, perr(at(ferr.field), "%v", ferr.err)
		}
		if !apply {
			continue
		}
		// Like runc: conditions are ANDed, unless one argument is compared
		// more than once; then each condition is a rule of its own (ORed).
		repeated := false
		for _, n := range perArg {
			repeated = repeated || n > 1
		}
		if repeated {
			for _, c := range conds {
				p.add(act, names, c)
			}
		} else {
			p.add(act, names, conds...)
		}
	}
	return p, nil
}

var errErrnoRet = errors.New("errnoRet")

// ociAction converts an OCI action and its optional errnoRet.
func ociAction(act specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := uint(unix.EPERM)
	if errnoRet != nil {
		if act != specs.ActErrno && act != specs.ActTrace {
			return 0, fmt.Errorf("%w is only valid with SCMP_ACT_ERRNO and SCMP_ACT_TRACE, not %q", errErrnoRet, act)
		}
		if *errnoRet > maxErrno {
			return 0, fmt.Errorf("%w %d out of range (0..%d)", errErrnoRet, *errnoRet, maxErrno)
		}
		data = *errnoRet
	}
	switch act {
	case specs.ActAllow:
		return retAllow, nil
	case specs.ActErrno:
		return retErrno | uint32(data), nil
	case specs.ActTrace:
		return retTrace | uint32(data), nil
	case specs.ActKill, specs.ActKillThread: // libseccomp's SCMP_ACT_KILL kills the thread
		return retKillThread, nil
	case specs.ActKillProcess:
		return retKillProcess, nil
	case specs.ActTrap:
		return retTrap, nil
	case specs.ActLog:
		return retLog, nil
	case specs.ActNotify:
		return 0, fmt.Errorf("%q is not supported (caisson runs no seccomp agent)", act)
	}
	return 0, fmt.Errorf("unknown action %q", act)
}

type fieldErr struct {
	field string
	err   error
}

// includeRule evaluates Docker's includes/excludes conditions. The sandbox
// grants no capabilities the profile could gate on, so "caps" lists are
// matched against an empty set; "arches" are matched against the native
// architecture's Docker name ("amd64", "arm64"); "minKernel" is taken as
// satisfied (Compile stays independent of the running kernel, and the
// versions used in practice, such as 4.8, predate anything caisson supports).
func includeRule(a *archInfo, sc ociSyscall) (bool, *fieldErr) {
	if f := sc.Excludes; f != nil {
		if err := checkKernel(f.MinKernel); err != nil {
			return false, &fieldErr{".excludes.minKernel", err}
		}
		if slices.Contains(f.Arches, a.mobyArch) || f.MinKernel != "" {
			return false, nil
		}
		// Excluded caps: none are held, so nothing is excluded.
	}
	if f := sc.Includes; f != nil {
		if err := checkKernel(f.MinKernel); err != nil {
			return false, &fieldErr{".includes.minKernel", err}
		}
		if len(f.Arches) > 0 && !slices.Contains(f.Arches, a.mobyArch) {
			return false, nil
		}
		if len(f.Caps) > 0 { // no capability is held
			return false, nil
		}
	}
	return true, nil
}

// checkKernel validates a Docker "minKernel" value ("<kernel>.<major>").
func checkKernel(v string) error {
	if v == "" {
		return nil
	}
	k, m, ok := strings.Cut(v, ".")
	if ok {
		_, err1 := strconv.ParseUint(k, 10, 8)
		_, err2 := strconv.ParseUint(m, 10, 8)
		if err1 == nil && err2 == nil {
			return nil
		}
	}
	return fmt.Errorf("invalid kernel version %q, want \"<kernel>.<major>\"", v)
}
