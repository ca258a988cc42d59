package idmap

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	many := func(n int) []Range { // n non-adjacent ranges of 10 ids
		var rs []Range
		for i := range n {
			rs = append(rs, Range{Start: uint32(100000 + 100*i), Count: 10})
		}
		return rs
	}
	tests := []struct {
		name   string
		mode   Mode
		self   uint32
		ranges []Range
		want   []Mapping
		err    string // substring; "" means success
	}{
		{name: "B1 auto", mode: ModeAuto, self: 1000, ranges: []Range{{100000, 65536}},
			want: []Mapping{{0, 1000, 1}, {1, 100000, 65536}}},
		{name: "B4 auto consecutive inside ids", mode: ModeAuto, self: 1000,
			ranges: []Range{{100000, 65536}, {300000, 65536}},
			want:   []Mapping{{0, 1000, 1}, {1, 100000, 65536}, {65537, 300000, 65536}}},
		{name: "B6 merged adjacent mapped once", mode: ModeAuto, self: 1000,
			ranges: Merge([]Range{{1000000, 1000000000}, {1001000000, 1000000000}}, 1000),
			want:   []Mapping{{0, 1000, 1}, {1, 1000000, 2000000000}}},
		{name: "auto without ranges is self only", mode: ModeAuto, self: 1000, want: []Mapping{{0, 1000, 1}}},
		{name: "single", mode: ModeSingle, self: 1000, ranges: []Range{{100000, 65536}},
			want: []Mapping{{0, 1000, 1}}},
		{name: "keep-id podman layout", mode: ModeKeepID, self: 1000, ranges: []Range{{100000, 65536}},
			want: []Mapping{{0, 100000, 1000}, {1000, 1000, 1}, {1001, 101000, 64536}}},
		{name: "keep-id split across ranges", mode: ModeKeepID, self: 1000,
			ranges: []Range{{100000, 600}, {200000, 600}},
			want:   []Mapping{{0, 100000, 600}, {600, 200000, 400}, {1000, 1000, 1}, {1001, 200400, 200}}},
		{name: "keep-id exactly enough", mode: ModeKeepID, self: 1000, ranges: []Range{{100000, 1000}},
			want: []Mapping{{0, 100000, 1000}, {1000, 1000, 1}}},
		{name: "keep-id range boundary at self", mode: ModeKeepID, self: 10, ranges: []Range{{100, 10}, {200, 5}},
			want: []Mapping{{0, 100, 10}, {10, 10, 1}, {11, 200, 5}}},
		{name: "keep-id uid 0", mode: ModeKeepID, self: 0, ranges: []Range{{100000, 10}},
			want: []Mapping{{0, 0, 1}, {1, 100000, 10}}},
		{name: "keep-id not enough", mode: ModeKeepID, self: 1000, ranges: []Range{{100000, 999}},
			err: "keep-id for id 1000 needs at least 1000 subordinate ids to map inside ids 0-999, have 999"},
		{name: "keep-id high uid", mode: ModeKeepID, self: 4000000000, ranges: []Range{{100000, 65536}},
			err: "needs at least 4000000000"},
		{name: "B21 inside total overflow", mode: ModeAuto, self: 1000,
			ranges: []Range{{0, 4294967295}},
			err:    "too many subordinate ids"},
		{name: "B21 inside total at limit", mode: ModeAuto, self: 0,
			ranges: []Range{{1, 4294967294}},
			want:   []Mapping{{0, 0, 1}, {1, 1, 4294967294}}},
		{name: "M8 own id inside a range", mode: ModeAuto, self: 1000, ranges: []Range{{900, 200}},
			err: "overlap outside"},
		{name: "M8 overlapping ranges", mode: ModeAuto, self: 1000, ranges: []Range{{100000, 65536}, {150000, 65536}},
			err: "overlap outside"},
		{name: "M8 duplicate ranges", mode: ModeKeepID, self: 5, ranges: []Range{{100000, 10}, {100000, 10}},
			err: "overlap outside"},
		{name: "M9 outside overflow", mode: ModeAuto, self: 1000, ranges: []Range{{4294967295, 1}},
			err: "ids beyond 4294967294"},
		{name: "M9 outside overflow long range", mode: ModeAuto, self: 1000, ranges: []Range{{4294967000, 500}},
			err: "ids beyond"},
		{name: "M9 count zero", mode: ModeAuto, self: 1000, ranges: []Range{{100000, 0}},
			err: "count must be >= 1"},
		{name: "M9 self is -1", mode: ModeSingle, self: 4294967295, err: "cannot be mapped"},
		{name: "B29 340 extents ok", mode: ModeAuto, self: 1000, ranges: many(339)},
		{name: "B29 341 extents", mode: ModeAuto, self: 1000, ranges: many(340), err: "341 lines, the kernel allows at most 340"},
		{name: "unknown mode", mode: "bogus", self: 1000, err: `unknown mode "bogus"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Build(tc.mode, tc.self, tc.ranges)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "idmap: ") {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if err := Validate(got); err != nil {
				t.Errorf("result fails Validate: %v", err)
			}
			checkAllowed(t, got, tc.self, tc.ranges)
		})
	}
	if _, err := Build(ModeKeepID, 1000, nil); !errors.Is(err, ErrNoSubIDs) {
		t.Errorf("keep-id without ranges: %v, want ErrNoSubIDs", err)
	}
}

// checkAllowed is catalogue M4 as a property: newuidmap allows a line only if
// it is the caller's own id with count 1, or lies within the caller's
// subordinate ranges. Build must never produce anything else.
func checkAllowed(t *testing.T, maps []Mapping, self uint32, ranges []Range) {
	t.Helper()
	for _, m := range maps {
		if m.Count == 1 && m.Outside == self {
			continue
		}
		ok := false
		for _, r := range ranges {
			if uint64(m.Outside) >= uint64(r.Start) && uint64(m.Outside)+uint64(m.Count) <= r.End() {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("M4: line %q is neither self nor within %v; newuidmap would say \"not allowed\"", m, ranges)
		}
	}
}

func TestBuildRoot(t *testing.T) {
	tests := []struct {
		name   string
		ranges []Range
		want   []Mapping
	}{
		{"default range", nil, []Mapping{{0, DefaultRootRange.Start, DefaultRootRange.Count}}},
		{"root range", []Range{{100000, 65536}}, []Mapping{{0, 100000, 65536}}},
		{"two ranges merged and ordered", []Range{{300000, 10}, {100000, 10}, {100010, 5}},
			[]Mapping{{0, 100000, 15}, {15, 300000, 10}}},
		{"host 0 never mapped", []Range{{0, 100}}, []Mapping{{0, 1, 99}}},
		{"only host 0 => default", []Range{{0, 1}}, []Mapping{{0, DefaultRootRange.Start, DefaultRootRange.Count}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := BuildRoot(tc.ranges)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for _, m := range got {
				if m.Outside == 0 {
					t.Errorf("host uid 0 mapped: %v", got)
				}
			}
		})
	}
	// The default range stays below 2^31 and clear of the nspawn range.
	if r := DefaultRootRange; r.Start < 0x70000000 || r.End() > 1<<31 {
		t.Errorf("DefaultRootRange %v outside 0x70000000..2^31", r)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		maps []Mapping
		err  string
	}{
		{"ok", []Mapping{{0, 1000, 1}, {1, 100000, 65536}}, ""},
		{"adjacent ok", []Mapping{{0, 10, 5}, {5, 15, 5}}, ""},
		{"empty", nil, "no lines"},
		{"count zero", []Mapping{{0, 1000, 0}}, "count must be >= 1"},
		{"inside overlap", []Mapping{{0, 1000, 1}, {0, 100000, 10}}, "overlap inside"},
		{"inside overlap unsorted", []Mapping{{10, 500, 10}, {0, 1000, 11}}, "overlap inside"},
		{"outside overlap", []Mapping{{0, 1000, 1}, {1, 1000, 10}}, "overlap outside"},
		{"inside end beyond", []Mapping{{4294967295, 0x10, 1}}, "ids beyond"},
		{"64-bit sum", []Mapping{{4294967294, 0, 4294967295}}, "ids beyond"},
		{"max ok", []Mapping{{0, 0, 4294967295}}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.maps)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestFormatAndHelperArgs(t *testing.T) {
	maps := []Mapping{{0, 1000, 1}, {1, 100000, 65536}}
	if got := Format(maps); got != "0 1000 1\n1 100000 65536\n" {
		t.Errorf("Format = %q", got)
	}
	want := []string{"/usr/bin/newuidmap", "1234", "0", "1000", "1", "1", "100000", "65536"}
	if got := HelperArgs("/usr/bin/newuidmap", 1234, maps); !reflect.DeepEqual(got, want) {
		t.Errorf("HelperArgs = %q", got)
	}
	if got := HelperArgs("/x", 1, []Mapping{{4294967294, 4294967294, 1}}); got[2] != "4294967294" {
		t.Errorf("large ids: %q", got)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range []string{"auto", "single", "keep-id"} {
		got, err := ParseMode(m)
		if err != nil || string(got) != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	for _, bad := range []string{"", "Auto", "keepid", "keep-id ", "none"} {
		_, err := ParseMode(bad)
		want := `idmap: invalid --map value "` + bad + `": want auto, single or keep-id`
		if err == nil || err.Error() != want {
			t.Errorf("ParseMode(%q) err = %v, want %q", bad, err, want)
		}
	}
	var m Mode
	if err := m.Set("keep-id"); err != nil || m != ModeKeepID || m.String() != "keep-id" || m.Type() != "mode" {
		t.Errorf("Set: %v %q", err, m)
	}
	if err := m.Set("x"); err == nil || m != ModeKeepID {
		t.Errorf("Set(x): %v %q", err, m)
	}
}

func TestExtentsForRelease(t *testing.T) {
	for rel, want := range map[string]int{
		"6.8.0-45-generic": 340, "4.15.0": 340, "4.14.300-foo": 5, "3.10.0-1160.el7.x86_64": 5,
		"5.4": 340, "junk": 340, "4.9-rc1": 5,
	} {
		if got := extentsForRelease(rel); got != want {
			t.Errorf("extentsForRelease(%q) = %d, want %d", rel, got, want)
		}
	}
}
