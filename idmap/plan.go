package idmap

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Plan is the id mapping decided for one sandbox. "caisson run" applies it
// with Apply, and "caisson idmap --json" prints it.
type Plan struct {
	User      string `json:"user"`
	UID       uint32 `json:"uid"`
	GID       uint32 `json:"gid"`
	Mode      Mode   `json:"mode"`      // mode actually used, after any fallback
	Requested Mode   `json:"requested"` // mode asked for

	SubUIDs []Range `json:"subuids"` // merged, own uid removed
	SubGIDs []Range `json:"subgids"` // merged, own gid removed

	Warnings []string `json:"warnings"` // "file:line: msg" and similar
	// OtherWarnings are the warnings about invalid lines of other users'
	// (Warning.Foreign): "caisson run" does not show them, "caisson idmap"
	// and "caisson doctor" do.
	OtherWarnings []string `json:"other_warnings,omitempty"`
	Notice        string   `json:"notice,omitempty"`

	UIDMap []Mapping `json:"uid_map"`
	GIDMap []Mapping `json:"gid_map"`

	UseHelpers    bool `json:"use_helpers"`    // false => WriteDirect
	DenySetgroups bool `json:"deny_setgroups"` // write "deny" to setgroups before gid_map

	// NewuidmapArgv and NewgidmapArgv are the helper command lines, with the
	// literal string "PID" where the child's pid goes. They are set only
	// when UseHelpers is true.
	NewuidmapArgv []string `json:"newuidmap_argv,omitempty"`
	NewgidmapArgv []string `json:"newgidmap_argv,omitempty"`

	UIDHelper Helper `json:"uid_helper"`
	GIDHelper Helper `json:"gid_helper"`
}

// Apply writes the plan's maps for process pid. It uses RunHelpers when
// UseHelpers is set and WriteDirect otherwise.
func (p *Plan) Apply(ctx context.Context, pid int) error {
	if p.UseHelpers {
		return RunHelpers(ctx, pid, p.UIDHelper, p.GIDHelper, p.UIDMap, p.GIDMap)
	}
	return WriteDirect(pid, p.UIDMap, p.GIDMap, p.DenySetgroups)
}

// PlanOptions are NewPlan's inputs. Only Mode, UID, GID and User matter for
// most callers. The function fields let tests inject fakes.
type PlanOptions struct {
	Mode  Mode   // "" means ModeAuto
	UID   uint32 // caller's uid
	GID   uint32 // caller's primary gid
	User  string // caller's user name; "" if the uid has no passwd entry
	Group string // name of GID; informational only

	SubUIDFile string // default /etc/subuid
	SubGIDFile string // default /etc/subgid

	NoNewPrivs bool // caller has no_new_privs set (see NoNewPrivs)

	// Resolve maps a user name to its uid (Passwd.UID). It is used for both
	// files, because newgidmap keys /etc/subgid by user too, not by group.
	// May be nil.
	Resolve func(string) (uint32, bool)

	FindHelper func(string) Helper                                                  // nil => FindHelper
	GetSubIDs  func(ctx context.Context, name string, groups bool) ([]Range, error) // nil => GetSubIDs
	// Nested is true when the caller runs inside a user namespace (another sandbox, a container): uid 0 there is
	// not the host's root, and is mapped like any user (usually with a single-id map).
	Nested bool
}

// PlanError is returned by NewPlan when the requested mode cannot be
// honoured. Reason names the cause and Fix the remedy.
type PlanError struct {
	Mode   Mode
	Reason string
	Fix    string
	Err    error // underlying cause, e.g. ErrNoSubIDs or a Helper.Err
}

// Error renders "idmap: --map MODE: REASON (FIX)".
func (e *PlanError) Error() string {
	return fmt.Sprintf("idmap: --map %s: %s (%s)", e.Mode, e.Reason, e.Fix)
}

// Unwrap returns the underlying cause.
func (e *PlanError) Unwrap() error { return e.Err }

// kernelExtents returns how many map lines the running kernel accepts. It is
// a variable so tests can replace it.
var kernelExtents = func() int {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return MaxExtents
	}
	return extentsForRelease(unix.ByteSliceToString(u.Release[:]))
}

// extentsForRelease returns 5 for kernels before 4.15 and MaxExtents
// otherwise (catalogue B29).
func extentsForRelease(rel string) int {
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return MaxExtents
	}
	major, err1 := strconv.Atoi(parts[0])
	m := parts[1]
	if i := strings.IndexFunc(m, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		m = m[:i]
	}
	minor, err2 := strconv.Atoi(m)
	if err1 != nil || err2 != nil {
		return MaxExtents
	}
	if major < 4 || major == 4 && minor < 15 {
		return 5
	}
	return MaxExtents
}

// NewPlan decides how to map the caller's ids.
//
// As host root (UID 0 and not Nested): maps come from BuildRoot with root's own
// /etc/subuid and /etc/subgid ranges, or DefaultRootRange. Host id 0 is
// never mapped. The maps are written directly (UseHelpers false,
// DenySetgroups false). The requested mode does not change this, and a
// non-auto request gets a Notice.
//
// Otherwise, with ModeSingle: "0 UID 1" and "0 GID 1", written directly with
// setgroups denied.
//
// With ModeAuto and ModeKeepID: both files are read, with the owner matched
// by user name or uid as newuidmap and newgidmap do. If a file has nothing
// for the user, getsubids is asked (NSS). The ranges are merged with the own
// id removed, and the helpers are located. Each of these makes the
// subordinate ids unusable:
//
//   - the uid has no user name (newuidmap needs one);
//   - no subuid or no subgid range;
//   - newuidmap or newgidmap missing or neither setuid root nor cap-enabled;
//   - no_new_privs set;
//   - the map is invalid, or too long for this kernel.
//
// In that case auto falls back to single, and Notice says why in one line.
// keep-id returns a *PlanError that names the cause and the fix. An unreadable
// file, a getsubids failure and bad lines become Warnings, except the bad
// lines of other users (Warning.Foreign), which become OtherWarnings.
func NewPlan(ctx context.Context, o PlanOptions) (*Plan, error) {
	mode := o.Mode
	if mode == "" {
		mode = ModeAuto
	}
	if _, err := ParseMode(string(mode)); err != nil {
		return nil, err
	}
	if o.SubUIDFile == "" {
		o.SubUIDFile = "/etc/subuid"
	}
	if o.SubGIDFile == "" {
		o.SubGIDFile = "/etc/subgid"
	}
	if o.FindHelper == nil {
		o.FindHelper = FindHelper
	}
	if o.GetSubIDs == nil {
		o.GetSubIDs = GetSubIDs
	}
	p := &Plan{
		User: o.User, UID: o.UID, GID: o.GID, Requested: mode,
		Warnings:  []string{},
		UIDHelper: o.FindHelper("newuidmap"),
		GIDHelper: o.FindHelper("newgidmap"),
	}

	if o.UID == 0 && !o.Nested {
		return p, p.root(o)
	}
	if mode == ModeSingle {
		return p, p.single()
	}

	owner := Owner{Name: o.User, ID: o.UID}
	p.SubUIDs = Merge(p.subIDs(ctx, o, o.SubUIDFile, owner, false), o.UID)
	p.SubGIDs = Merge(p.subIDs(ctx, o, o.SubGIDFile, owner, true), o.GID)

	var fail *PlanError
	switch {
	case o.User == "":
		fail = &PlanError{Reason: fmt.Sprintf("uid %d has no user name (passwd entry), which newuidmap requires", o.UID),
			Fix: "add a passwd entry for it, or use --map single", Err: ErrNoSubIDs}
	case len(p.SubUIDs) == 0:
		fail = &PlanError{Reason: fmt.Sprintf("no %s range for %s", o.SubUIDFile, o.User),
			Fix: fmt.Sprintf("add one, e.g. usermod --add-subuids 100000-165535 %s", o.User), Err: ErrNoSubIDs}
	case len(p.SubGIDs) == 0:
		fail = &PlanError{Reason: fmt.Sprintf("no %s range for %s", o.SubGIDFile, o.User),
			Fix: fmt.Sprintf("add one, e.g. usermod --add-subgids 100000-165535 %s", o.User), Err: ErrNoSubIDs}
	case !p.UIDHelper.Usable():
		fail = helperFail(p.UIDHelper)
	case !p.GIDHelper.Usable():
		fail = helperFail(p.GIDHelper)
	case o.NoNewPrivs:
		fail = &PlanError{Reason: "no_new_privs is set, so setuid newuidmap/newgidmap cannot gain privileges",
			Fix: "run caisson outside the no_new_privs context (e.g. systemd NoNewPrivileges=, docker --security-opt no-new-privileges)",
			Err: errors.New("no_new_privs is set")}
	}
	if fail == nil {
		var err error
		if p.UIDMap, err = Build(mode, o.UID, p.SubUIDs); err == nil {
			p.GIDMap, err = Build(mode, o.GID, p.SubGIDs)
		}
		if err != nil {
			fail = &PlanError{Reason: strings.TrimPrefix(err.Error(), "idmap: "),
				Fix: "fix " + o.SubUIDFile + " and " + o.SubGIDFile + ", or use --map single", Err: err}
		} else if lim := kernelExtents(); len(p.UIDMap) > lim || len(p.GIDMap) > lim {
			fail = &PlanError{Reason: fmt.Sprintf("the map has %d uid and %d gid lines but this kernel accepts only %d", len(p.UIDMap), len(p.GIDMap), lim),
				Fix: "merge or remove subordinate ranges, or use --map single", Err: errors.New("too many map lines for this kernel")}
		}
	}
	if fail != nil {
		if mode == ModeKeepID {
			fail.Mode = mode
			return nil, fail
		}
		if err := p.single(); err != nil {
			return nil, err
		}
		p.Notice = fmt.Sprintf("caisson: notice: %s; mapping only uid %d and gid %d (--map single)", fail.Reason, o.UID, o.GID)
		return p, nil
	}
	p.Mode = mode
	p.UseHelpers = true
	p.NewuidmapArgv = helperArgv(p.UIDHelper.Path, "PID", p.UIDMap)
	p.NewgidmapArgv = helperArgv(p.GIDHelper.Path, "PID", p.GIDMap)
	return p, nil
}

func helperFail(h Helper) *PlanError {
	fix := "install it setuid root: apt-get install uidmap (Debian/Ubuntu) or dnf install shadow-utils (Fedora)"
	if h.Path != "" {
		fix = fmt.Sprintf("make it setuid root (chmod u+s %s) or reinstall uidmap/shadow-utils", h.Path)
	}
	return &PlanError{Reason: strings.TrimPrefix(h.Err.Error(), "idmap: "), Fix: fix, Err: h.Err}
}

// single sets the self-only maps, written directly with setgroups denied.
func (p *Plan) single() error {
	var err error
	if p.UIDMap, err = Build(ModeSingle, p.UID, nil); err != nil {
		return err
	}
	if p.GIDMap, err = Build(ModeSingle, p.GID, nil); err != nil {
		return err
	}
	p.Mode = ModeSingle
	p.UseHelpers = false
	p.DenySetgroups = true
	p.NewuidmapArgv, p.NewgidmapArgv = nil, nil
	return nil
}

// root fills the plan for a caller that is host root.
func (p *Plan) root(o PlanOptions) error {
	name := o.User
	if name == "" {
		name = "root"
	}
	owner := Owner{Name: name, ID: 0}
	for _, f := range []struct {
		file string
		rs   *[]Range
		m    *[]Mapping
	}{{o.SubUIDFile, &p.SubUIDs, &p.UIDMap}, {o.SubGIDFile, &p.SubGIDs, &p.GIDMap}} {
		rs, ws, err := ParseFile(f.file, owner, o.Resolve)
		p.addWarnings(ws, err)
		*f.rs = Merge(rs, 0)
		if len(*f.rs) == 0 {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: no range for %s; using host ids %s (DefaultRootRange, shared by all such sandboxes)",
				f.file, name, DefaultRootRange))
		}
		if *f.m, err = BuildRoot(*f.rs); err != nil {
			return err
		}
	}
	p.Mode = ModeAuto
	if p.Requested != ModeAuto {
		p.Notice = fmt.Sprintf("caisson: notice: running as root; --map %s ignored, host root is never mapped (using root's subordinate ids)", p.Requested)
	}
	p.UseHelpers = false
	p.DenySetgroups = false
	return nil
}

// subIDs reads owner's ranges from file, or from getsubids if the file has
// none.
func (p *Plan) subIDs(ctx context.Context, o PlanOptions, file string, owner Owner, groups bool) []Range {
	rs, ws, err := ParseFile(file, owner, o.Resolve)
	p.addWarnings(ws, err)
	if len(rs) > 0 || owner.Name == "" {
		return rs
	}
	nss, err := o.GetSubIDs(ctx, owner.Name, groups)
	if err != nil {
		p.Warnings = append(p.Warnings, strings.TrimPrefix(err.Error(), "idmap: "))
		return nil
	}
	if len(nss) > 0 {
		flag := ""
		if groups {
			flag = " -g"
		}
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: no range for %s; using %d range(s) from getsubids%s (NSS)", file, owner.Name, len(nss), flag))
	}
	return nss
}

func (p *Plan) addWarnings(ws []Warning, err error) {
	for _, w := range ws {
		if w.Foreign {
			p.OtherWarnings = append(p.OtherWarnings, w.String())
		} else {
			p.Warnings = append(p.Warnings, w.String())
		}
	}
	if err != nil {
		p.Warnings = append(p.Warnings, strings.TrimPrefix(err.Error(), "idmap: ")+"; treated as empty")
	}
}
