package idmap

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxExtents is the kernel's limit on lines in uid_map and gid_map
// (UID_GID_MAP_MAX_EXTENTS, since Linux 4.15). Older kernels accept 5.
const MaxExtents = 340

// Mapping is one line of /proc/PID/uid_map or gid_map. Ids
// [Inside, Inside+Count) in the namespace map to host ids
// [Outside, Outside+Count).
type Mapping struct {
	Inside  uint32 `json:"inside"`
	Outside uint32 `json:"outside"`
	Count   uint32 `json:"count"`
}

// String renders m as one uid_map line without the newline: "IN OUT COUNT".
func (m Mapping) String() string {
	return strconv.FormatUint(uint64(m.Inside), 10) + " " +
		strconv.FormatUint(uint64(m.Outside), 10) + " " +
		strconv.FormatUint(uint64(m.Count), 10)
}

// Merge returns ranges sorted by start, with duplicates removed and
// overlapping or adjacent ranges merged. Ranges with count 0 are dropped. Two
// ids are removed, splitting a range when needed: exclude (the caller's own
// uid or gid, which is already mapped by the self line) and 4294967295
// ((uid_t)-1, which the kernel never maps). The input is not modified. The
// result is nil when nothing is left.
func Merge(ranges []Range, exclude uint32) []Range {
	type span struct{ s, e uint64 } // [s, e)
	spans := make([]span, 0, len(ranges))
	for _, r := range ranges {
		if r.Count > 0 {
			spans = append(spans, span{uint64(r.Start), r.End()})
		}
	}
	slices.SortFunc(spans, func(a, b span) int {
		if a.s != b.s {
			if a.s < b.s {
				return -1
			}
			return 1
		}
		if a.e < b.e {
			return -1
		} else if a.e > b.e {
			return 1
		}
		return 0
	})
	var merged []span
	for _, sp := range spans {
		if n := len(merged); n > 0 && sp.s <= merged[n-1].e {
			merged[n-1].e = max(merged[n-1].e, sp.e)
			continue
		}
		merged = append(merged, sp)
	}
	var out []Range
	add := func(s, e uint64) {
		if e > s {
			out = append(out, Range{Start: uint32(s), Count: uint32(e - s)})
		}
	}
	x := uint64(exclude)
	for _, sp := range merged {
		e := min(sp.e, maxID) // drop 4294967295
		if x >= sp.s && x < e {
			add(sp.s, x)
			add(x+1, e)
		} else {
			add(sp.s, e)
		}
	}
	return out
}

// Mode selects how the sandbox's ids map to host ids.
type Mode string

// The mapping modes accepted by --map.
const (
	// ModeAuto maps inside 0 to the caller and inside 1.. to the caller's
	// subordinate ids. It falls back to ModeSingle when they are unusable.
	ModeAuto Mode = "auto"
	// ModeSingle maps only inside 0 to the caller. It needs no helper.
	ModeSingle Mode = "single"
	// ModeKeepID keeps the caller's id inside, like podman
	// --userns=keep-id, and fills the rest with subordinate ids.
	ModeKeepID Mode = "keep-id"
)

// Modes lists the valid modes in the order they are documented.
var Modes = []Mode{ModeAuto, ModeSingle, ModeKeepID}

// ParseMode checks a --map flag value.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if s == string(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("idmap: invalid --map value %q: want auto, single or keep-id", s)
}

// String returns the mode's flag spelling.
func (m Mode) String() string { return string(m) }

// Set implements pflag.Value and flag.Value.
func (m *Mode) Set(s string) error {
	v, err := ParseMode(s)
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// Type implements pflag.Value. It is the placeholder shown in --help.
func (m *Mode) Type() string { return "mode" }

// Build makes the map lines for one id type (uid or gid) of a caller whose
// host id is self. ranges should come from Merge(ranges, self).
//
//   - ModeAuto: "0 self 1", then each range at consecutive inside ids from 1.
//   - ModeSingle: "0 self 1" only. ranges are ignored.
//   - ModeKeepID: "self self 1". The ranges fill inside 0..self-1 and then
//     self+1 onwards, split around the hole as podman --userns=keep-id
//     does. There must be at least self subordinate ids, else an error.
//
// The result passes Validate: counts >= 1, no overlap inside or outside, every
// inside and outside range ends at or below 4294967295, at most MaxExtents
// lines. All arithmetic is done in 64 bits.
func Build(mode Mode, self uint32, ranges []Range) ([]Mapping, error) {
	if self == maxID {
		return nil, fmt.Errorf("idmap: id %d cannot be mapped", self)
	}
	var maps []Mapping
	switch mode {
	case ModeSingle:
		maps = []Mapping{{Inside: 0, Outside: self, Count: 1}}
	case ModeAuto:
		maps = []Mapping{{Inside: 0, Outside: self, Count: 1}}
		next := uint64(1)
		for _, r := range ranges {
			if r.Count == 0 {
				return nil, fmt.Errorf("idmap: range %s: count must be >= 1", r)
			}
			if next+uint64(r.Count) > maxID {
				return nil, fmt.Errorf("idmap: too many subordinate ids: %d + %d exceeds %d", next, r.Count, uint64(maxID))
			}
			maps = append(maps, Mapping{Inside: uint32(next), Outside: r.Start, Count: r.Count})
			next += uint64(r.Count)
		}
	case ModeKeepID:
		s := uint64(self)
		next := uint64(0)
		placed := false
		for _, r := range ranges {
			if r.Count == 0 {
				return nil, fmt.Errorf("idmap: range %s: count must be >= 1", r)
			}
			out, left := uint64(r.Start), uint64(r.Count)
			for left > 0 {
				if next == s && !placed {
					maps = append(maps, Mapping{Inside: self, Outside: self, Count: 1})
					next++
					placed = true
				}
				n := left
				if next < s && next+n > s {
					n = s - next
				}
				if next+n > maxID {
					return nil, fmt.Errorf("idmap: too many subordinate ids: %d + %d exceeds %d", next, n, uint64(maxID))
				}
				maps = append(maps, Mapping{Inside: uint32(next), Outside: uint32(out), Count: uint32(n)})
				next += n
				out += n
				left -= n
			}
		}
		if !placed {
			if next < s {
				return nil, fmt.Errorf("idmap: keep-id for id %d needs at least %d subordinate ids to map inside ids 0-%d, have %d: %w",
					self, s, s-1, next, ErrNoSubIDs)
			}
			maps = append(maps, Mapping{Inside: self, Outside: self, Count: 1})
		}
	default:
		return nil, fmt.Errorf("idmap: unknown mode %q: want auto, single or keep-id", mode)
	}
	if err := Validate(maps); err != nil {
		return nil, err
	}
	return maps, nil
}

// DefaultRootRange is what BuildRoot maps when root has no subordinate range:
// host ids 1879048192-1879113727 (0x70000000, count 65536). The start is
// chosen because:
//
//   - it is above systemd's container range 0x00080000-0x6FFFFFFF, which
//     systemd-nspawn --private-users=pick and systemd-homed allocate from;
//   - it is below 2^31, so tools that store ids in signed 32-bit ints still
//     work (systemd treats ids >= 2^31 as unusable);
//   - it does not touch systemd's "foreign" range 0x7FFE0000-0x7FFEFFFF,
//     nor 65534 (nobody) or the regular user ranges.
//
// Every root-run sandbox without an /etc/subuid line for root shares this
// range, so processes in two such sandboxes share ids. Give root its own
// range in /etc/subuid and /etc/subgid to control this.
var DefaultRootRange = Range{Start: 1879048192, Count: 65536}

// BuildRoot makes the map lines for caisson run as host root. Inside ids 0..
// map to the given ranges in order (root's own subordinate ranges, merged
// here). Host id 0 is never mapped, so root inside is not root outside. If
// no range is left after removing id 0, DefaultRootRange is used.
func BuildRoot(ranges []Range) ([]Mapping, error) {
	rs := Merge(ranges, 0)
	if len(rs) == 0 {
		rs = []Range{DefaultRootRange}
	}
	var maps []Mapping
	next := uint64(0)
	for _, r := range rs {
		if next+uint64(r.Count) > maxID {
			return nil, fmt.Errorf("idmap: too many subordinate ids: %d + %d exceeds %d", next, r.Count, uint64(maxID))
		}
		maps = append(maps, Mapping{Inside: uint32(next), Outside: r.Start, Count: r.Count})
		next += uint64(r.Count)
	}
	if err := Validate(maps); err != nil {
		return nil, err
	}
	return maps, nil
}

// ErrNoSubIDs is wrapped by errors that are caused by missing or too few
// subordinate ids.
var ErrNoSubIDs = errors.New("not enough subordinate ids")

// Validate checks maps against the kernel's rules for uid_map and gid_map
// (kernel/user_namespace.c map_write). It requires 1 to MaxExtents lines,
// each with count >= 1 and inside+count and outside+count <= 4294967295, and
// no two lines may overlap on the inside or on the outside. Breaking these
// rules makes the write fail with EINVAL, or makes newuidmap report
// "subuid overflow detected" (catalogue M8, M9).
func Validate(maps []Mapping) error {
	if len(maps) == 0 {
		return errors.New("idmap: invalid map: no lines")
	}
	if len(maps) > MaxExtents {
		return fmt.Errorf("idmap: invalid map: %d lines, the kernel allows at most %d", len(maps), MaxExtents)
	}
	for i, m := range maps {
		if m.Count == 0 {
			return fmt.Errorf("idmap: invalid map: line %d %q: count must be >= 1", i+1, m)
		}
		if uint64(m.Inside)+uint64(m.Count) > maxID || uint64(m.Outside)+uint64(m.Count) > maxID {
			return fmt.Errorf("idmap: invalid map: line %d %q: ids beyond %d", i+1, m, uint64(maxID-1))
		}
	}
	for _, side := range []string{"inside", "outside"} {
		idx := make([]int, len(maps))
		for i := range idx {
			idx[i] = i
		}
		get := func(i int) uint64 {
			if side == "inside" {
				return uint64(maps[i].Inside)
			}
			return uint64(maps[i].Outside)
		}
		slices.SortFunc(idx, func(a, b int) int {
			x, y := get(a), get(b)
			if x < y {
				return -1
			} else if x > y {
				return 1
			}
			return a - b
		})
		for k := 1; k < len(idx); k++ {
			a, b := idx[k-1], idx[k]
			if get(a)+uint64(maps[a].Count) > get(b) {
				i, j := min(a, b), max(a, b)
				return fmt.Errorf("idmap: invalid map: lines %d %q and %d %q overlap %s", i+1, maps[i], j+1, maps[j], side)
			}
		}
	}
	return nil
}

// Format renders maps as the text of a uid_map or gid_map file: one
// "IN OUT COUNT\n" line per mapping.
func Format(maps []Mapping) string {
	var b strings.Builder
	for _, m := range maps {
		b.WriteString(m.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// HelperArgs returns the argv for newuidmap or newgidmap:
// [toolPath, PID, IN, OUT, COUNT, ...].
func HelperArgs(toolPath string, pid int, maps []Mapping) []string {
	return helperArgv(toolPath, strconv.Itoa(pid), maps)
}

func helperArgv(toolPath, pid string, maps []Mapping) []string {
	argv := make([]string, 0, 2+3*len(maps))
	argv = append(argv, toolPath, pid)
	for _, m := range maps {
		argv = append(argv,
			strconv.FormatUint(uint64(m.Inside), 10),
			strconv.FormatUint(uint64(m.Outside), 10),
			strconv.FormatUint(uint64(m.Count), 10))
	}
	return argv
}
