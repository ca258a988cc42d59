package idmap

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse, Merge and Build and checks their
// invariants. The seed corpus is every input of TestParse.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 60s ./idmap
func FuzzParse(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.input), "alice", uint32(1000))
	}
	f.Add([]byte("1000:0:4294967295\n"), "", uint32(1000))
	f.Add([]byte("alice:4294967295:1\nalice:0:1\n"), "alice", uint32(4294967295))
	f.Fuzz(func(t *testing.T, data []byte, name string, id uint32) {
		owner := Owner{Name: name, ID: id}
		resolve := func(n string) (uint32, bool) { return uint32(len(n)), len(n)%2 == 0 }
		ranges, warns := Parse(bytes.NewReader(data), "f", owner, resolve)
		lines := bytes.Count(data, []byte{'\n'}) + 1
		for _, r := range ranges {
			if r.Count == 0 || r.End() > 1<<32 {
				t.Fatalf("bad range %v", r)
			}
		}
		for _, w := range warns {
			if w.Line < 0 || w.Line > lines || w.File != "f" || strings.Contains(w.Msg, "\n") {
				t.Fatalf("bad warning %+v (%d lines)", w, lines)
			}
		}

		merged := Merge(ranges, id)
		var total, inTotal uint64
		for i, r := range merged {
			if r.Count == 0 {
				t.Fatalf("merged count 0: %v", merged)
			}
			if i > 0 && uint64(r.Start) <= merged[i-1].End() {
				t.Fatalf("merged not sorted/disjoint/non-adjacent: %v", merged)
			}
			if uint64(id) >= uint64(r.Start) && uint64(id) < r.End() {
				t.Fatalf("merged %v contains excluded id %d", merged, id)
			}
			if r.End() > maxID {
				t.Fatalf("merged %v contains id 4294967295", merged)
			}
			total += uint64(r.Count)
		}
		// Every merged id came from an input range.
		for _, m := range merged {
			for _, x := range []uint64{uint64(m.Start), m.End() - 1} {
				found := false
				for _, r := range ranges {
					if x >= uint64(r.Start) && x < r.End() {
						found = true
						break
					}
				}
				if !found {
					t.Fatalf("merged id %d not in input %v", x, ranges)
				}
			}
		}
		for _, r := range ranges {
			inTotal += uint64(r.Count)
		}
		if total > inTotal {
			t.Fatalf("merge grew the id count: %d > %d", total, inTotal)
		}

		for _, mode := range Modes {
			maps, err := Build(mode, id, merged)
			if err != nil {
				continue
			}
			if err := Validate(maps); err != nil {
				t.Fatalf("Build(%s) produced an invalid map: %v", mode, err)
			}
			checkAllowed(t, maps, id, merged)
		}
	})
}
