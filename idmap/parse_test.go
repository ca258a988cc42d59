package idmap

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var alice = Owner{Name: "alice", ID: 1000}

// users is the fake passwd database used as Parse's resolve function.
var users = map[string]uint32{"alice": 1000, "alias": 1000, "bob": 1001, "2000": 1000}

func resolveUsers(name string) (uint32, bool) {
	id, ok := users[name]
	return id, ok
}

// parseCase is one row of TestParse. The B-numbers refer to the security
// catalogue §3.2, and note records the behaviour chosen.
type parseCase struct {
	name  string
	row   string
	note  string
	input string
	owner Owner
	want  []Range
	warns []string // substrings, one per expected warning, in order
	lines []int    // expected Warning.Line values (optional)
}

var parseCases = []parseCase{
	{name: "name match", row: "B1", note: "exact name, valid", input: "alice:100000:65536\n",
		want: []Range{{100000, 65536}}},
	{name: "uid match", row: "B2", note: "decimal uid field matches owner.ID", input: "1000:100000:65536\n",
		want: []Range{{100000, 65536}}},
	{name: "other uid", row: "B2", note: "another uid does not match", input: "1001:100000:65536\n"},
	{name: "uid with leading zeros", row: "B2", note: "all-digit field compared numerically", input: "01000:100000:65536\n",
		want: []Range{{100000, 65536}}},
	{name: "alias with same uid", row: "B3", note: "resolve(field)==owner.ID accepted, as shadow's pass 2",
		input: "alias:100000:65536\nbob:200000:65536\n", want: []Range{{100000, 65536}}},
	{name: "two ranges in file order", row: "B4", note: "all ranges returned in file order",
		input: "alice:300000:65536\nalice:100000:65536\n", want: []Range{{300000, 65536}, {100000, 65536}}},
	{name: "adjacent ranges", row: "B6", note: "returned as is; Merge joins them",
		input: "alice:1000000:1000000000\nalice:1001000000:1000000000\n",
		want:  []Range{{1000000, 1000000000}, {1001000000, 1000000000}}},
	{name: "overlapping ranges", row: "B7", note: "returned as is; Merge joins them",
		input: "alice:100000:65536\nalice:150000:65536\n", want: []Range{{100000, 65536}, {150000, 65536}}},
	{name: "duplicate lines", row: "B7", note: "returned as is; Merge de-duplicates (vagga#75)",
		input: "alice:100000:65536\nalice:100000:65536\n", want: []Range{{100000, 65536}, {100000, 65536}}},
	{name: "overlaps another user", row: "B9", note: "kept, with a warning that ids are shared",
		input: "bob:150000:65536\nalice:100000:65536\n", want: []Range{{100000, 65536}},
		warns: []string{`overlaps "bob"'s range 150000+65536 at line 1`}, lines: []int{2}},
	{name: "count zero", row: "B10", note: "own count-0 line skipped with a warning; others' silently",
		input: "alice:100000:0\nbob:100000:0\nalice:200000:1\n", want: []Range{{200000, 1}},
		warns: []string{"count is 0"}, lines: []int{1}},
	{name: "missing fields", row: "B11", note: "each invalid line warned and skipped; valid lines kept",
		input: "alice:100000\nalice::65536\n:100000:65536\nalice:100000:\nalice:300000:10\n",
		want:  []Range{{300000, 10}},
		warns: []string{"got 2", "empty start", "empty owner", "empty count"}, lines: []int{1, 2, 3, 4}},
	{name: "extra field", row: "B12", note: "invalid, never truncated to 3 fields",
		input: "alice:100000:65536:extra\n", warns: []string{"want 3 ':'-separated fields OWNER:START:COUNT, got 4"}},
	{name: "trailing garbage", row: "B13", note: "invalid like strtoul end-pointer check",
		input: "alice:100000a:65536\nalice:100000:10000a\n",
		warns: []string{`invalid start "100000a": trailing characters`, `invalid count "10000a": trailing characters`}},
	{name: "negative", row: "B14", note: "rejected (RLK's Atoi would accept)",
		input: "alice:-1:65536\nalice:100000:-1\nalice: -5:1\n",
		warns: []string{`invalid start "-1": negative`, `invalid count "-1": negative`, `invalid start " -5": negative`}},
	{name: "hex and octal", row: "B15", note: "base 0 like shadow: 0x hex, leading 0 octal",
		input: "alice:0x186a0:65536\nalice:0303240:0X10000\nalice:0:1\n",
		want:  []Range{{100000, 65536}, {100000, 65536}, {0, 1}}},
	{name: "bad hex and octal", row: "B15", note: "0x without digits and 8/9 in octal are invalid",
		input: "alice:0x:1\nalice:09:1\nalice:0xg:1\n",
		warns: []string{`invalid start "0x"`, `invalid start "09": trailing`, `invalid start "0xg"`}},
	{name: "leading space in number", row: "B16", note: "accepted (strtoul skips leading blanks, one '+')",
		input: "alice: 100000:\t65536\nalice:+5:1\n", want: []Range{{100000, 65536}, {5, 1}}},
	{name: "trailing space and CR", row: "B16", note: "trailing blank or \\r is garbage, as in shadow",
		input: "alice:100000:65536 \nalice:100000:65536\r\n",
		warns: []string{`invalid count "65536 "`, `invalid count "65536\r"`}},
	{name: "leading space in name", row: "B18", note: "owner \" alice\" is not alice; a hint warning",
		input: " alice:100000:65536\n", warns: []string{`owner " alice" is not "alice"`}},
	{name: "comments and blanks", row: "B19", note: "no comment syntax; blank and invalid '#' lines skipped silently",
		input: "# comment\n\n   \n#\nalice:100000:65536\n", want: []Range{{100000, 65536}}},
	{name: "commented-out entry", row: "B19", note: "#alice is another owner, never alice; hint warning",
		input: "#alice:100000:65536\n", warns: []string{`owner "#alice" is not "alice"`}},
	{name: "start too large", row: "B20", note: "start > 2^32-1 invalid",
		input: "alice:4294967296:1\nalice:99999999999999999999999:1\n",
		warns: []string{"start 4294967296 out of range", "out of range"}},
	{name: "start at max", row: "B20", note: "start 2^32-1 count 1 is valid for shadow (Merge/Build drop id 2^32-1)",
		input: "alice:4294967295:1\n", want: []Range{{4294967295, 1}}},
	{name: "start plus count too large", row: "B21", note: "start+count > 2^32 invalid",
		input: "alice:4294967295:2\nalice:0:4294967296\nalice:4294901760:65536\n",
		want:  []Range{{4294901760, 65536}},
		warns: []string{"count 2 too large for start 4294967295", "count 4294967296 too large"}},
	{name: "line of 1023 bytes", row: "B22", note: "lines < 1024 bytes are parsed",
		input: "alice:100000:" + strings.Repeat(" ", 1023-len("alice:100000:65536")) + "65536\n",
		want:  []Range{{100000, 65536}}},
	{name: "line of 1024 bytes", row: "B22", note: "lines >= 1024 bytes are invalid",
		input: "alice:100000:" + strings.Repeat(" ", 1024-len("alice:100000:65536")) + "65536\nalice:1:1\n",
		want:  []Range{{1, 1}}, warns: []string{"line too long"}, lines: []int{1}},
	{name: "very long line", row: "B22", note: "not buffered past the limit; next line still read",
		input: strings.Repeat("a", 100000) + ":1:1\nalice:7:1\n", want: []Range{{7, 1}}, warns: []string{"line too long"}},
	{name: "empty file", row: "B24", note: "no ranges, no warnings"},
	{name: "all-digit user name", row: "B28", note: "name compare first: user \"2000\" owns \"2000\" lines and its uid's lines",
		owner: Owner{Name: "2000", ID: 1000}, input: "2000:100000:65536\n1000:200000:65536\n",
		want: []Range{{100000, 65536}, {200000, 65536}}},
	{name: "numeric field is a uid", row: "B28", note: "numeric field never resolved as a name",
		input: "2000:100000:65536\n"},
	{name: "unterminated last line", row: "B30", note: "last line without newline is parsed",
		input: "alice:100000:65536\nalice:300000:65536", want: []Range{{100000, 65536}, {300000, 65536}}},
	{name: "truncated last line", row: "B30", note: "partial line from a concurrent write is just invalid",
		input: "alice:100000:65536\nalice:300000:", want: []Range{{100000, 65536}}, warns: []string{"empty count"}},
	{name: "NUL byte", row: "", note: "invalid (shadow would cut the line there)",
		input: "alice:100000:65536\x00junk\n", warns: []string{"NUL"}},
}

func TestParse(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.row+" "+tc.name, func(t *testing.T) {
			owner := tc.owner
			if owner == (Owner{}) {
				owner = alice
			}
			got, warns := Parse(strings.NewReader(tc.input), "subuid", owner, resolveUsers)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("ranges = %v, want %v", got, tc.want)
			}
			if len(warns) != len(tc.warns) {
				t.Fatalf("got %d warnings %q, want %d %q", len(warns), warns, len(tc.warns), tc.warns)
			}
			for i, w := range warns {
				if !strings.Contains(w.Msg, tc.warns[i]) {
					t.Errorf("warning %d = %q, want it to contain %q", i, w, tc.warns[i])
				}
				if w.File != "subuid" {
					t.Errorf("warning %d file = %q", i, w.File)
				}
				if i < len(tc.lines) && w.Line != tc.lines[i] {
					t.Errorf("warning %d line = %d, want %d", i, w.Line, tc.lines[i])
				}
			}
		})
	}
}

func TestParseResolveCalledOncePerName(t *testing.T) {
	calls := map[string]int{}
	resolve := func(n string) (uint32, bool) { calls[n]++; return resolveUsers(n) }
	in := "bob:1:1\nbob:2:1\nalice:3:1\n1000:4:1\nalias:5:1\nalias:6:1\n"
	got, _ := Parse(strings.NewReader(in), "f", alice, resolve)
	want := []Range{{3, 1}, {4, 1}, {5, 1}, {6, 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ranges = %v, want %v", got, want)
	}
	if !reflect.DeepEqual(calls, map[string]int{"bob": 1, "alias": 1}) {
		t.Errorf("resolve calls = %v, want bob and alias once each", calls)
	}
	// nil resolve: only name and uid match.
	got, _ = Parse(strings.NewReader(in), "f", alice, nil)
	if want := []Range{{3, 1}, {4, 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("nil resolve: ranges = %v, want %v", got, want)
	}
}

func TestWarningString(t *testing.T) {
	if s := (Warning{File: "/etc/subuid", Line: 3, Msg: "bad"}).String(); s != "/etc/subuid:3: bad" {
		t.Errorf("got %q", s)
	}
	if s := (Warning{File: "/etc/subuid", Msg: "bad"}).String(); s != "/etc/subuid: bad" {
		t.Errorf("got %q", s)
	}
}

// B23: a 100k-line file parses in well under a second. Lines are keyed by
// name, the slow case for shadow, and every name goes through resolve once.
func TestParseLargeFile(t *testing.T) {
	var b strings.Builder
	for i := range 100000 {
		fmt.Fprintf(&b, "user%d:%d:65536\n", i, 100000+uint64(i)*65536%4000000000)
	}
	b.WriteString("alice:10:5\n")
	resolve := func(n string) (uint32, bool) { return 5000, true }
	start := time.Now()
	got, warns := Parse(strings.NewReader(b.String()), "subuid", alice, resolve)
	d := time.Since(start)
	if !reflect.DeepEqual(got, []Range{{10, 5}}) || len(warns) != 0 {
		t.Fatalf("got %v %v", got, warns)
	}
	if d > 2*time.Second { // generous for -race on a slow machine; typically ~50ms
		t.Errorf("parsing 100k lines took %v", d)
	}
	t.Logf("100k lines in %v", d)
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	// B24: missing file => no ranges, no error.
	rs, ws, err := ParseFile(filepath.Join(dir, "missing"), alice, nil)
	if rs != nil || ws != nil || err != nil {
		t.Errorf("missing file: %v %v %v", rs, ws, err)
	}
	p := filepath.Join(dir, "subuid")
	if err := os.WriteFile(p, []byte("alice:100000:65536\nbad\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, ws, err = ParseFile(p, alice, nil)
	if err != nil || !reflect.DeepEqual(rs, []Range{{100000, 65536}}) || len(ws) != 1 || ws[0].String() != p+`:2: want 3 ':'-separated fields OWNER:START:COUNT, got 1: "bad"; ignored` {
		t.Errorf("got %v %v %v", rs, ws, err)
	}
	// A directory cannot be read: an error with the idmap prefix.
	if _, _, err := ParseFile(dir, alice, nil); err == nil {
		// Reading a directory fails at read time: that is a warning.
		_, ws, _ := ParseFile(dir, alice, nil)
		if len(ws) != 1 || ws[0].Line != 0 {
			t.Errorf("directory: warnings %v", ws)
		}
	} else if !strings.HasPrefix(err.Error(), "idmap: ") {
		t.Errorf("error %q lacks prefix", err)
	}
}

func TestParseUlong(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want uint64
		err  error
	}{
		{"decimal", "100000", 100000, nil},
		{"zero", "0", 0, nil},
		{"hex", "0x186A0", 100000, nil},
		{"octal", "0303240", 100000, nil},
		{"leading blanks", " \t\v\f\r\n7", 7, nil},
		{"plus", "+7", 7, nil},
		{"max+1", "4294967296", 4294967296, nil},
		{"too big", "4294967297", 0, errRange},
		{"huge", strings.Repeat("9", 300), 0, errRange},
		{"empty", "", 0, errNoDigits},
		{"blank", "  ", 0, errNoDigits},
		{"minus", "-1", 0, errNegative},
		{"minus zero", "-0", 0, errNegative},
		{"plus minus", "+-1", 0, errNegative},
		{"double plus", "++1", 0, errNoDigits},
		{"trailing", "1 ", 0, errGarbage},
		{"0x only", "0x", 0, errGarbage},
		{"octal 8", "08", 0, errGarbage},
		{"letters", "abc", 0, errNoDigits},
		{"space after sign", "+ 1", 0, errNoDigits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseUlong(tc.in)
			if got != tc.want || err != tc.err {
				t.Errorf("parseUlong(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name    string
		in      []Range
		exclude uint32
		want    []Range
	}{
		{"empty", nil, 1000, nil},
		{"B1 single", []Range{{100000, 65536}}, 1000, []Range{{100000, 65536}}},
		{"B6 adjacent merged", []Range{{1001000000, 1000000000}, {1000000, 1000000000}}, 1000,
			[]Range{{1000000, 2000000000}}},
		{"B7 overlapping merged", []Range{{150000, 65536}, {100000, 65536}}, 1000, []Range{{100000, 115536}}},
		{"duplicates", []Range{{100000, 65536}, {100000, 65536}}, 1000, []Range{{100000, 65536}}},
		{"nested", []Range{{100000, 65536}, {100010, 5}}, 1000, []Range{{100000, 65536}}},
		{"sorted", []Range{{300000, 10}, {100000, 10}}, 1000, []Range{{100000, 10}, {300000, 10}}},
		{"count zero dropped", []Range{{5, 0}, {10, 1}}, 1000, []Range{{10, 1}}},
		{"exclude splits", []Range{{900, 200}}, 1000, []Range{{900, 100}, {1001, 99}}},
		{"exclude at start", []Range{{1000, 10}}, 1000, []Range{{1001, 9}}},
		{"exclude at end", []Range{{991, 10}}, 1000, []Range{{991, 9}}},
		{"exclude only id", []Range{{1000, 1}}, 1000, nil},
		{"max id dropped", []Range{{4294967290, 6}}, 0, []Range{{4294967290, 5}}},
		{"whole space", []Range{{0, 4294967295}, {4294967295, 1}}, 0, []Range{{1, 4294967294}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]Range(nil), tc.in...)
			got := Merge(tc.in, tc.exclude)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Merge(%v, %d) = %v, want %v", tc.in, tc.exclude, got, tc.want)
			}
			if !reflect.DeepEqual(in, tc.in) {
				t.Errorf("input modified")
			}
		})
	}
}

// An invalid line is Foreign (another user's business, not shown by "caisson run") only when its owner field is a
// well-formed name or uid that is not the owner's; an owner field that cannot be attributed is everyone's.
func TestParseForeign(t *testing.T) {
	cases := []struct {
		name, input string
		owner       Owner
		warn        string // substring of the one warning
		foreign     bool
	}{
		{"another user's CRLF line", "bob:600000:65536\r\n", alice, `invalid count "65536\r"`, true},
		{"another user's garbage count", "carol:700000:65536x\n", alice, `invalid count "65536x"`, true},
		{"another uid's garbage start", "1001:x:1\n", alice, `invalid start "x"`, true},
		{"another user's extra field", "bob:1:2:3\n", alice, "got 4", true},
		{"another user's missing field", "bob:100000\n", alice, "got 2", true},
		{"another user's empty count", "bob:100000:\n", alice, "empty count", true},
		{"another user's long line", "bob:1:" + strings.Repeat(" ", 2000) + "1\n", alice, "line too long", true},
		{"another user's NUL byte", "bob:1:1\x00\n", alice, "NUL", true},
		{"an NSS name", "carol@example.com:1:x\n", alice, `invalid count "x"`, true},
		{"a uid without a name", "bob:1:x\n", Owner{ID: 1000}, `invalid count "x"`, true},
		{"own CRLF line", "alice:100000:65536\r\n", alice, `invalid count "65536\r"`, false},
		{"own uid", "1000:100000:65536x\n", alice, `invalid count "65536x"`, false},
		{"own uid, leading zeros", "01000:1:x\n", alice, `invalid count "x"`, false},
		{"alias of the owner's uid", "alias:1:x\n", alice, `invalid count "x"`, false},
		{"empty owner", ":100000:65536\n", alice, "empty owner", false},
		{"owner with a blank", "bob smith:1:2x\n", alice, `invalid count "2x"`, false},
		{"owner with a tab", "bob\tx:1:2x\n", alice, `invalid count "2x"`, false},
		{"owner with a control character", "b\x01ob:1:x\n", alice, `invalid count "x"`, false},
		{"owner not UTF-8", "\xff\xfe:1:x\n", alice, `invalid count "x"`, false},
		{"owner starting with '-'", "-bob:1:x\n", alice, `invalid count "x"`, false},
		{"no owner field", "garbage\n", alice, "got 1", false},
		{"long line without ':'", strings.Repeat("b", 2000) + "\n", alice, "line too long", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, warns := Parse(strings.NewReader(tc.input), "subuid", tc.owner, resolveUsers)
			if len(warns) != 1 || !strings.Contains(warns[0].Msg, tc.warn) {
				t.Fatalf("warnings %q, want one containing %q", warns, tc.warn)
			}
			if warns[0].Foreign != tc.foreign {
				t.Errorf("%q: Foreign = %v, want %v", warns[0], warns[0].Foreign, tc.foreign)
			}
		})
	}
	// The owner's own findings about valid lines are never Foreign.
	_, warns := Parse(strings.NewReader("bob:150000:65536\nalice:100000:65536\nalice:1:0\n#alice:5:1\n"), "subuid", alice, resolveUsers)
	if len(warns) != 3 {
		t.Fatalf("warnings %q, want 3 (overlap, count 0, #alice)", warns)
	}
	for _, w := range warns {
		if w.Foreign {
			t.Errorf("%q is Foreign", w)
		}
	}
}
