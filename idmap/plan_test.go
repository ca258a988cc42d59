package idmap

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func goodHelper(name string) Helper {
	return Helper{Name: name, Path: "/usr/bin/" + name, Setuid: true}
}

func TestNewPlan(t *testing.T) {
	dir := t.TempDir()
	file := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	aliceUID := file("subuid-alice", "bob:200000:65536\nalice:100000:65536\n")
	aliceGID := file("subgid-alice", "alice:100000:65536\n")
	emptyF := file("empty", "")
	missing := filepath.Join(dir, "missing")
	sixUID := file("subuid-six", "alice:100:1\nalice:200:1\nalice:300:1\nalice:400:1\nalice:500:1\nalice:600:1\n")
	rootUID := file("subuid-root", "root:500000:65536\nalice:100000:65536\n")
	warnUID := file("subuid-warn", "alice:100000:65536\nalice:x:1\n")
	noGetsub := func(context.Context, string, bool) ([]Range, error) { return nil, nil }
	notSetuid := func(name string) Helper {
		h := Helper{Name: name, Path: "/usr/bin/" + name}
		h.Err = errors.New("idmap: /usr/bin/" + name + " is neither setuid root nor has file capability cap_setuid (mode 0755, owner uid 0)")
		return h
	}
	notFound := func(name string) Helper {
		return Helper{Name: name, Err: errors.New("idmap: " + name + " not found in /usr/bin, /usr/sbin, /bin, /sbin")}
	}
	base := PlanOptions{UID: 1000, GID: 1000, User: "alice", Group: "alice",
		SubUIDFile: aliceUID, SubGIDFile: aliceGID, FindHelper: goodHelper, GetSubIDs: noGetsub}
	with := func(f func(*PlanOptions)) PlanOptions { o := base; f(&o); return o }

	helperMaps := []Mapping{{0, 1000, 1}, {1, 100000, 65536}}
	single := []Mapping{{0, 1000, 1}}
	tests := []struct {
		name     string
		opts     PlanOptions
		mode     Mode
		uidMap   []Mapping
		helpers  bool
		notice   string // substring; "" means no notice
		err      string // substring; "" means success
		warnings []string
	}{
		{name: "auto with ranges", opts: base, mode: ModeAuto, uidMap: helperMaps, helpers: true},
		{name: "empty mode means auto", opts: with(func(o *PlanOptions) { o.Mode = "" }), mode: ModeAuto, uidMap: helperMaps, helpers: true},
		{name: "single", opts: with(func(o *PlanOptions) { o.Mode = ModeSingle }), mode: ModeSingle, uidMap: single},
		{name: "keep-id", opts: with(func(o *PlanOptions) { o.Mode = ModeKeepID }), mode: ModeKeepID,
			uidMap: []Mapping{{0, 100000, 1000}, {1000, 1000, 1}, {1001, 101000, 64536}}, helpers: true},
		{name: "bad mode", opts: with(func(o *PlanOptions) { o.Mode = "x" }), err: `invalid --map value "x"`},

		{name: "B24 no subuid file", opts: with(func(o *PlanOptions) { o.SubUIDFile = missing }), mode: ModeSingle, uidMap: single,
			notice: "caisson: notice: no " + missing + " range for alice; mapping only uid 1000 and gid 1000 (--map single)"},
		{name: "B24 empty subuid file", opts: with(func(o *PlanOptions) { o.SubUIDFile = emptyF }), mode: ModeSingle, uidMap: single,
			notice: "no " + emptyF + " range for alice"},
		{name: "B25 subuid but no subgid", opts: with(func(o *PlanOptions) { o.SubGIDFile = missing }), mode: ModeSingle, uidMap: single,
			notice: "no " + missing + " range for alice"},
		{name: "B25 subgid but no subuid", opts: with(func(o *PlanOptions) { o.SubUIDFile = missing; o.SubGIDFile = aliceGID }),
			mode: ModeSingle, uidMap: single, notice: "no " + missing + " range for alice"},
		{name: "B25 keep-id no subgid", opts: with(func(o *PlanOptions) { o.Mode = ModeKeepID; o.SubGIDFile = missing }),
			err: "idmap: --map keep-id: no " + missing + " range for alice (add one, e.g. usermod --add-subgids 100000-165535 alice)"},
		{name: "keep-id no subuid", opts: with(func(o *PlanOptions) { o.Mode = ModeKeepID; o.SubUIDFile = missing }),
			err: "usermod --add-subuids 100000-165535 alice"},
		{name: "B26 ranges from getsubids", opts: with(func(o *PlanOptions) {
			o.SubUIDFile, o.SubGIDFile = missing, missing
			o.GetSubIDs = func(_ context.Context, name string, groups bool) ([]Range, error) {
				if name != "alice" {
					return nil, errors.New("wrong name " + name)
				}
				if groups {
					return []Range{{300000, 10}}, nil
				}
				return []Range{{200000, 10}}, nil
			}
		}), mode: ModeAuto, uidMap: []Mapping{{0, 1000, 1}, {1, 200000, 10}}, helpers: true,
			warnings: []string{missing + ": no range for alice; using 1 range(s) from getsubids (NSS)", "getsubids -g (NSS)"}},
		{name: "B26 getsubids fails", opts: with(func(o *PlanOptions) {
			o.SubUIDFile = missing
			o.GetSubIDs = func(context.Context, string, bool) ([]Range, error) { return nil, errors.New("idmap: getsubids: boom") }
		}), mode: ModeSingle, uidMap: single, notice: "no " + missing + " range", warnings: []string{"getsubids: boom"}},
		{name: "B27 no user name", opts: with(func(o *PlanOptions) { o.User = "" }), mode: ModeSingle, uidMap: single,
			notice: "uid 1000 has no user name (passwd entry), which newuidmap requires"},
		{name: "M1 helper missing", opts: with(func(o *PlanOptions) { o.FindHelper = notFound }), mode: ModeSingle, uidMap: single,
			notice: "caisson: notice: newuidmap not found in /usr/bin, /usr/sbin, /bin, /sbin; mapping only uid 1000"},
		{name: "M2 helper not setuid", opts: with(func(o *PlanOptions) {
			o.FindHelper = func(n string) Helper {
				if n == "newgidmap" {
					return notSetuid(n)
				}
				return goodHelper(n)
			}
		}), mode: ModeSingle, uidMap: single, notice: "/usr/bin/newgidmap is neither setuid root"},
		{name: "M2 keep-id helper not setuid", opts: with(func(o *PlanOptions) { o.Mode = ModeKeepID; o.FindHelper = notSetuid }),
			err: "idmap: --map keep-id: /usr/bin/newuidmap is neither setuid root nor has file capability cap_setuid (mode 0755, owner uid 0) (make it setuid root (chmod u+s /usr/bin/newuidmap)"},
		{name: "M3 no_new_privs", opts: with(func(o *PlanOptions) { o.NoNewPrivs = true }), mode: ModeSingle, uidMap: single,
			notice: "no_new_privs is set"},
		{name: "M3 keep-id no_new_privs", opts: with(func(o *PlanOptions) { o.NoNewPrivs = true; o.Mode = ModeKeepID }),
			err: "no_new_privs is set"},
		{name: "keep-id too few ids", opts: with(func(o *PlanOptions) { o.Mode = ModeKeepID; o.UID = 200000 }),
			err: "needs at least 200000 subordinate ids"},
		{name: "bad lines become warnings", opts: with(func(o *PlanOptions) { o.SubUIDFile = warnUID }), mode: ModeAuto,
			uidMap: helperMaps, helpers: true, warnings: []string{warnUID + `:2: invalid start "x"`}},
		{name: "root default range", opts: with(func(o *PlanOptions) { o.UID, o.GID, o.User = 0, 0, "root" }), mode: ModeAuto,
			uidMap:   []Mapping{{0, DefaultRootRange.Start, DefaultRootRange.Count}},
			warnings: []string{aliceUID + ": no range for root; using host ids 1879048192+65536", aliceGID + ": no range for root"}},
		{name: "root own range", opts: with(func(o *PlanOptions) { o.UID, o.GID, o.User, o.SubUIDFile = 0, 0, "root", rootUID }),
			mode: ModeAuto, uidMap: []Mapping{{0, 500000, 65536}}, warnings: []string{aliceGID + ": no range for root"}},
		{name: "root keep-id ignored", opts: with(func(o *PlanOptions) { o.UID, o.GID, o.User, o.Mode = 0, 0, "root", ModeKeepID }),
			mode: ModeAuto, uidMap: []Mapping{{0, DefaultRootRange.Start, DefaultRootRange.Count}}, notice: "running as root; --map keep-id ignored",
			warnings: []string{"no range for root", "no range for root"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlan(context.Background(), tc.opts)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if p != nil {
					t.Errorf("plan returned with error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.Mode != tc.mode || !reflect.DeepEqual(p.UIDMap, tc.uidMap) || p.UseHelpers != tc.helpers {
				t.Errorf("mode %q uid map %v helpers %v; want %q %v %v", p.Mode, p.UIDMap, p.UseHelpers, tc.mode, tc.uidMap, tc.helpers)
			}
			if tc.notice == "" && p.Notice != "" || !strings.Contains(p.Notice, tc.notice) || strings.Contains(p.Notice, "\n") {
				t.Errorf("notice = %q, want %q", p.Notice, tc.notice)
			}
			if len(p.Warnings) != len(tc.warnings) {
				t.Fatalf("warnings = %q, want %q", p.Warnings, tc.warnings)
			}
			for i, w := range tc.warnings {
				if !strings.Contains(p.Warnings[i], w) {
					t.Errorf("warning %d = %q, want %q", i, p.Warnings[i], w)
				}
			}
			switch {
			case p.UID == 0:
				if p.DenySetgroups || p.UseHelpers {
					t.Errorf("root: deny=%v helpers=%v", p.DenySetgroups, p.UseHelpers)
				}
			case p.Mode == ModeSingle:
				if !p.DenySetgroups || p.NewuidmapArgv != nil || !reflect.DeepEqual(p.GIDMap, []Mapping{{0, tc.opts.GID, 1}}) {
					t.Errorf("single: %+v", p)
				}
			default:
				if p.DenySetgroups || p.NewuidmapArgv[0] != "/usr/bin/newuidmap" || p.NewuidmapArgv[1] != "PID" ||
					p.NewgidmapArgv[0] != "/usr/bin/newgidmap" {
					t.Errorf("helpers: %+v", p)
				}
				if len(p.SubUIDs) == 0 || len(p.SubGIDs) == 0 {
					t.Errorf("sub ids not recorded: %+v", p)
				}
			}
			if _, err := json.Marshal(p); err != nil {
				t.Errorf("json: %v", err)
			}
		})
	}

	// keep-id failures are typed and carry hints.
	_, err := NewPlan(context.Background(), with(func(o *PlanOptions) { o.Mode = ModeKeepID; o.SubUIDFile = missing }))
	var pe *PlanError
	if !errors.As(err, &pe) || pe.Mode != ModeKeepID || !errors.Is(err, ErrNoSubIDs) || HintFor(err) == "" {
		t.Errorf("keep-id error %#v", err)
	}

	// B29: more lines than an old kernel accepts.
	old := kernelExtents
	kernelExtents = func() int { return 5 }
	defer func() { kernelExtents = old }()
	p, err := NewPlan(context.Background(), with(func(o *PlanOptions) { o.SubUIDFile = sixUID }))
	if err != nil || p.Mode != ModeSingle || !strings.Contains(p.Notice, "this kernel accepts only 5") {
		t.Errorf("B29: %v %+v", err, p)
	}
	_, err = NewPlan(context.Background(), with(func(o *PlanOptions) { o.SubUIDFile = sixUID; o.Mode = ModeKeepID; o.UID = 3 }))
	if err == nil || !strings.Contains(err.Error(), "this kernel accepts only 5") {
		t.Errorf("B29 keep-id: %v", err)
	}
}

func TestNewPlanUnreadableFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("skipping: root can read a mode-000 file")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "subuid")
	if err := os.WriteFile(p, []byte("alice:100000:65536\n"), 0); err != nil {
		t.Fatal(err)
	}
	plan, err := NewPlan(context.Background(), PlanOptions{UID: 1000, GID: 1000, User: "alice", SubUIDFile: p, SubGIDFile: p,
		FindHelper: goodHelper, GetSubIDs: func(context.Context, string, bool) ([]Range, error) { return nil, nil }})
	if err != nil || plan.Mode != ModeSingle || len(plan.Warnings) != 2 || !strings.Contains(plan.Warnings[0], "permission denied; treated as empty") {
		t.Errorf("B24 unreadable: %v %+v", err, plan)
	}
}

// "caisson run" shows the warnings about the caller's lines and about lines that cannot be attributed, and keeps
// those about other users' lines apart (OtherWarnings, for "caisson idmap" and "caisson doctor").
func TestNewPlanOtherUsersLines(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "subuid")
	content := "bob:600000:65536\r\nalice:100000:65536\ncarol:700000:65536x\n:800000:65536\nalice:900000:1x\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, uid := range []uint32{1000, 0} { // a user, and host root (whose plan reads the files another way)
		user := map[uint32]string{1000: "alice", 0: "root"}[uid]
		plan, err := NewPlan(context.Background(), PlanOptions{UID: uid, GID: uid, User: user, SubUIDFile: p, SubGIDFile: p,
			FindHelper: goodHelper, GetSubIDs: func(context.Context, string, bool) ([]Range, error) { return nil, nil },
			Resolve: resolveUsers})
		if err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, w := range plan.Warnings {
			if strings.HasSuffix(w, "; ignored") {
				mine = append(mine, w)
			}
		}
		// Each file (subuid, subgid) is read once: each line's warning comes twice.
		wantMine := []string{p + ":4: empty owner field", p + ":4: empty owner field"}
		wantOther := []string{p + ":1: invalid count", p + ":3: invalid count", p + ":1: invalid count", p + ":3: invalid count"}
		if uid == 1000 {
			wantMine = []string{p + ":4: empty owner field", p + ":5: invalid count", p + ":4: empty owner field", p + ":5: invalid count"}
		} else {
			wantOther = []string{p + ":1: invalid count", p + ":3: invalid count", p + ":5: invalid count",
				p + ":1: invalid count", p + ":3: invalid count", p + ":5: invalid count"}
		}
		check := func(what string, got, want []string) {
			if len(got) != len(want) {
				t.Errorf("uid %d: %s = %q, want %d starting %q", uid, what, got, len(want), want)
				return
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) {
					t.Errorf("uid %d: %s[%d] = %q, want it to start with %q", uid, what, i, got[i], want[i])
				}
			}
		}
		check("Warnings", mine, wantMine)
		check("OtherWarnings", plan.OtherWarnings, wantOther)
	}
}
