// Package idmap computes and applies the user-namespace id maps of a caisson
// sandbox.
//
// It has three layers:
//
//   - Pure functions: [Parse] reads /etc/subuid and /etc/subgid with the
//     semantics of shadow's subordinate_parse and find_range (the code
//     newuidmap and newgidmap use to decide what is allowed). [Merge] cleans
//     the ranges, [Build] and [BuildRoot] turn them into map lines, [Validate]
//     applies the kernel's rules, and [Format] and [HelperArgs] render them.
//   - Host probes: [FindHelper] locates newuidmap and newgidmap in fixed
//     directories, never $PATH. [GetSubIDs] asks getsubids for ranges that
//     come from NSS.
//   - Writers: [RunHelpers] runs newuidmap and newgidmap on a child.
//     [WriteDirect] writes /proc/PID/{setgroups,uid_map,gid_map} itself, and
//     checks that each file it opens really is on procfs.
//
// [NewPlan] ties these together. It returns the [Plan] that "caisson run"
// applies and "caisson idmap --json" prints.
//
// Errors returned across the package boundary start with "idmap: ". The
// parser never fails on bad lines. It skips them and returns a [Warning] that
// names file:line.
package idmap

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strconv"
	"unicode"
	"unicode/utf8"
)

const (
	// maxID is the largest value of a 32-bit id_t (4294967295). The id itself
	// is (uid_t)-1, which the kernel never maps, so every mapped range must end
	// at or below it (exclusive end <= maxID).
	maxID = 1<<32 - 1

	// maxLineLen is shadow's limit: a line whose length (without the newline)
	// is >= 1024 bytes is invalid (subordinate_parse, rangebuf[1024]).
	maxLineLen = 1024
)

// Range is a block of host subordinate ids [Start, Start+Count), as found on
// one line of /etc/subuid or /etc/subgid.
type Range struct {
	Start uint32 `json:"start"`
	Count uint32 `json:"count"`
}

// End returns the exclusive end Start+Count, computed in 64 bits so that it
// cannot overflow.
func (r Range) End() uint64 { return uint64(r.Start) + uint64(r.Count) }

// String renders r as "START+COUNT".
func (r Range) String() string { return fmt.Sprintf("%d+%d", r.Start, r.Count) }

// Owner names the user whose ranges Parse collects. Name may be empty when the
// uid has no passwd entry, in which case only a decimal ID field matches.
type Owner struct {
	Name string `json:"name"`
	ID   uint32 `json:"id"`
}

// Warning is a non-fatal problem found while reading a subordinate-id file.
// Line is 1-based. It is 0 when the warning concerns the whole file.
type Warning struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Msg  string `json:"msg"`
	// Foreign is true when the line is another user's: its owner field is a
	// well-formed user name or uid that is not the owner's (see Parse). Such
	// a line is none of the owner's business ("caisson run" does not show
	// it; "caisson idmap" and "caisson doctor" do).
	Foreign bool `json:"foreign,omitempty"`
}

// String renders w as "FILE:LINE: MSG", or as "FILE: MSG" when Line is 0.
func (w Warning) String() string {
	if w.Line == 0 {
		return w.File + ": " + w.Msg
	}
	return w.File + ":" + strconv.Itoa(w.Line) + ": " + w.Msg
}

// otherRange is a valid range that belongs to another owner. Parse keeps these
// so that it can warn when the owner's ids are shared (catalogue B9).
type otherRange struct {
	r     Range
	line  int
	owner string
}

// Parse reads a subuid or subgid file and returns the ranges that belong to
// owner, in file order. It never fails. Every problem becomes a Warning that
// names file:line. It follows shadow (lib/subordinateio.c):
//
//   - A line has exactly three ':'-separated, non-empty fields:
//     OWNER:START:COUNT. Extra fields make the line invalid. Parse does not
//     fall back to the first three fields.
//   - START and COUNT are parsed like strtoul with base 0. "0x" means hex, a
//     leading "0" means octal, leading whitespace and one '+' are skipped.
//     Trailing characters, including spaces and '\r', make the line invalid,
//     as do negative numbers and numbers with no digits. START must be
//     <= 4294967295 and START+COUNT <= 4294967296.
//   - A line of 1024 bytes or more (without its newline) is invalid, as is a
//     line that contains a NUL byte. shadow would stop reading at the NUL, so
//     on that point Parse is stricter.
//   - There is no comment syntax. Blank or whitespace-only lines, and
//     invalid lines that start with '#', are skipped without a warning. A
//     valid line "#alice:1:2" belongs to an owner literally named "#alice".
//     When that owner name is owner.Name with '#' or spaces added, Parse
//     warns that the line does not apply.
//   - Other invalid lines are skipped with a warning, whoever owns them.
//     The warning is Foreign when the line's owner field (the text before
//     its first ':') is well-formed (see wellFormedOwner) and is not the
//     owner's by the rules below (nor owner.Name with '#' or blanks added).
//     A line without ':', or whose owner field is empty or holds blanks or
//     control characters, cannot be told apart: its warning is not
//     Foreign, so every user sees it.
//   - A line is the owner's when the field equals owner.Name exactly, or the
//     field is all decimal digits and equal to owner.ID, or resolve(field) returns
//     owner.ID. The last case is another user name with the same uid, as in
//     shadow's find_range pass 2. resolve may be nil. It is called at most
//     once per distinct name, and never for numeric fields or for
//     owner.Name.
//   - The owner's lines with COUNT 0 are skipped with a warning. newuidmap
//     rejects count 0.
//   - If one of the owner's ranges overlaps another owner's range, Parse
//     warns: those ids are shared between users.
//
// A read error stops parsing and becomes a warning with Line 0. A last line
// without a newline is parsed normally, so a file being rewritten at the same
// moment is tolerated. Memory use is bounded: long lines are not buffered past
// the limit.
func Parse(r io.Reader, file string, owner Owner, resolve func(name string) (uint32, bool)) ([]Range, []Warning) {
	var (
		ranges   []Range
		lines    []int // line number of each element of ranges
		warns    []Warning
		others   []otherRange
		resolved = map[string]bool{}
	)
	warn := func(line int, format string, args ...any) {
		warns = append(warns, Warning{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
	}
	isOwner := func(name string) bool {
		if name == owner.Name {
			return true
		}
		if id, ok := decimalID(name); ok {
			return id == uint64(owner.ID)
		}
		if resolve == nil {
			return false
		}
		m, seen := resolved[name]
		if !seen {
			id, ok := resolve(name)
			m = ok && id == owner.ID
			resolved[name] = m
		}
		return m
	}

	br := bufio.NewReaderSize(r, 1024) // the files are small; readLine reads a longer line in pieces
	buf := make([]byte, 0, maxLineLen+1)
	for lineNo := 1; ; lineNo++ {
		line, long, ok, err := readLine(br, buf[:0])
		if !ok {
			if err != nil && err != io.EOF {
				warn(0, "read error after line %d: %v", lineNo-1, err)
			}
			break
		}
		// badLine warns about an invalid line, as Foreign when its owner field names another user.
		badLine := func(format string, args ...any) {
			warn(lineNo, format, args...)
			if name, ok := ownerField(line); ok && wellFormedOwner(name) && !isOwner(name) && !looksLike(name, owner.Name) {
				warns[len(warns)-1].Foreign = true
			}
		}
		switch {
		case long:
			badLine("line too long (limit %d bytes); ignored", maxLineLen-1)
		case len(bytes.TrimSpace(line)) == 0:
			// Blank: invalid for shadow too; skipped silently.
		case bytes.IndexByte(line, 0) >= 0:
			badLine("line contains a NUL byte; ignored")
		default:
			name, rg, msg := parseLine(line)
			if msg != "" {
				if line[0] != '#' { // comment-like invalid lines are skipped silently
					badLine("%s: %q; ignored", msg, clip(line))
				}
				break
			}
			if !isOwner(name) {
				if looksLike(name, owner.Name) {
					warn(lineNo, "owner %q is not %q (no comment syntax, no trimming); line does not apply", name, owner.Name)
				}
				if rg.Count > 0 {
					others = append(others, otherRange{r: rg, line: lineNo, owner: name})
				}
				break
			}
			if rg.Count == 0 {
				warn(lineNo, "count is 0; range ignored")
				break
			}
			ranges = append(ranges, rg)
			lines = append(lines, lineNo)
		}
		if err != nil {
			if err != io.EOF {
				warn(0, "read error after line %d: %v", lineNo, err)
			}
			break
		}
	}

	// Catalogue B9: ids shared with another owner.
	for i, rg := range ranges {
		n, first := 0, -1
		for j, o := range others {
			if uint64(o.r.Start) < rg.End() && o.r.End() > uint64(rg.Start) {
				if first < 0 {
					first = j
				}
				n++
			}
		}
		if n > 0 {
			o := others[first]
			more := ""
			if n > 1 {
				more = fmt.Sprintf(" (and %d more)", n-1)
			}
			warn(lines[i], "range %s overlaps %q's range %s at line %d%s; those ids are shared between users",
				rg, o.owner, o.r, o.line, more)
		}
	}
	return ranges, warns
}

// ParseFile opens path and calls Parse. A missing file is not an error: it
// yields no ranges and no warnings. Any other open error is returned.
func ParseFile(path string, owner Owner, resolve func(string) (uint32, bool)) ([]Range, []Warning, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("idmap: %w", err)
	}
	defer f.Close()
	rs, ws := Parse(f, path, owner, resolve)
	return rs, ws, nil
}

// readLine reads one line into buf, without its '\n'. It keeps at most
// maxLineLen+1 bytes (the start of a longer line) and reports long=true if
// the line is longer. ok is false
// when there was nothing left to read. err is the error that ended this line,
// if any (io.EOF for an unterminated last line).
func readLine(br *bufio.Reader, buf []byte) (line []byte, long, ok bool, err error) {
	n := 0
	for {
		frag, e := br.ReadSlice('\n')
		n += len(frag)
		if !long {
			if room := maxLineLen + 1 - len(buf); len(frag) > room {
				buf = append(buf, frag[:room]...) // the start, where the owner field is
				long = true
			} else {
				buf = append(buf, frag...)
			}
		}
		if e == bufio.ErrBufferFull {
			continue
		}
		if n == 0 {
			return nil, false, false, e
		}
		line = bytes.TrimSuffix(buf, []byte{'\n'})
		if len(line) >= maxLineLen {
			long = true
		}
		return line, long, true, e
	}
}

// parseLine splits one line. It returns a non-empty msg when the line is
// invalid.
func parseLine(line []byte) (owner string, r Range, msg string) {
	if n := bytes.Count(line, []byte{':'}); n != 2 {
		return "", r, fmt.Sprintf("want 3 ':'-separated fields OWNER:START:COUNT, got %d", n+1)
	}
	f := bytes.SplitN(line, []byte{':'}, 3)
	for i, what := range []string{"owner", "start", "count"} {
		if len(f[i]) == 0 {
			return "", r, "empty " + what + " field"
		}
	}
	start, err := parseUlong(string(f[1]))
	if err != nil {
		return "", r, fmt.Sprintf("invalid start %q: %v", f[1], err)
	}
	if start > maxID {
		return "", r, fmt.Sprintf("start %d out of range (max %d)", start, uint64(maxID))
	}
	count, err := parseUlong(string(f[2]))
	if err != nil {
		return "", r, fmt.Sprintf("invalid count %q: %v", f[2], err)
	}
	if count > maxID || start+count > maxID+1 {
		return "", r, fmt.Sprintf("count %d too large for start %d (start+count must be <= %d)", count, start, uint64(maxID)+1)
	}
	return string(f[0]), Range{Start: uint32(start), Count: uint32(count)}, ""
}

var (
	errNegative = errors.New("negative")
	errNoDigits = errors.New("no digits")
	errGarbage  = errors.New("trailing characters")
	errRange    = errors.New("out of range")
)

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// parseUlong parses s like C strtoul(s, &end, 0) followed by a check that
// *end is '\0', as shadow's a2ul does. Negative values are rejected. The
// result is at most maxID+1. Anything larger returns errRange.
func parseUlong(s string) (uint64, error) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	if i < len(s) && s[i] == '+' {
		i++
	}
	if i < len(s) && s[i] == '-' {
		return 0, errNegative
	}
	d := s[i:]
	base := uint64(10)
	switch {
	case len(d) >= 2 && d[0] == '0' && (d[1] == 'x' || d[1] == 'X'):
		if len(d) == 2 || digitVal(d[2]) >= 16 {
			// strtoul parses the "0" and stops at the 'x'.
			return 0, errGarbage
		}
		base, d = 16, d[2:]
	case len(d) >= 1 && d[0] == '0':
		base = 8
	}
	if len(d) == 0 || digitVal(d[0]) >= base {
		return 0, errNoDigits
	}
	var v uint64
	overflow := false
	for j := 0; j < len(d); j++ {
		dv := digitVal(d[j])
		if dv >= base {
			return 0, errGarbage
		}
		if !overflow {
			v = v*base + dv
			if v > maxID+1 {
				overflow = true
			}
		}
	}
	if overflow {
		return 0, errRange
	}
	return v, nil
}

func digitVal(c byte) uint64 {
	switch {
	case c >= '0' && c <= '9':
		return uint64(c - '0')
	case c >= 'a' && c <= 'f':
		return uint64(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 99
}

// decimalID reports whether s is a decimal uid: ASCII digits only. shadow's
// get_uid may also skip leading blanks or a '+'; such fields are not matched
// here, so that Parse never claims a range newuidmap might refuse. A value too
// large for 64 bits is returned as math.MaxUint64, which matches no uid.
func decimalID(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	for j := 0; j < len(s); j++ {
		if s[j] < '0' || s[j] > '9' {
			return 0, false
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return math.MaxUint64, true // all digits but too large: numeric, matches nobody
	}
	return v, true
}

// ownerField returns the owner field of a line: the text before its first
// ':'. A line without ':' has none.
func ownerField(line []byte) (string, bool) {
	i := bytes.IndexByte(line, ':')
	if i < 0 {
		return "", false
	}
	return string(line[:i]), true
}

// wellFormedOwner reports whether an owner field can name a user, so that a
// line it starts can be attributed: a uid, or a name as shadow's useradd
// accepts even with --badname (which also covers NSS names such as
// "alice@example.com"): not empty, valid UTF-8, no blank, control character
// or ',', not starting with '-'.
func wellFormedOwner(name string) bool {
	if name == "" || name[0] == '-' || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r <= ' ' || r == 0x7f || r == ',' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// looksLike reports whether field is name with '#' or blanks added, as in a
// line someone meant to comment out or indent.
func looksLike(field, name string) bool {
	if name == "" || field == name {
		return false
	}
	t := bytes.Trim([]byte(field), "# \t")
	return string(t) == name
}

// clip shortens a line for quoting in a warning.
func clip(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
