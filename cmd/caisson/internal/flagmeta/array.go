package flagmeta

import (
	"bytes"
	"encoding/csv"
	"strings"

	"github.com/spf13/pflag"
)

// StringArrayVarP defines a repeatable string flag with no default, as pflag's StringArrayVarP does: its type is
// "stringArray", its first use replaces the empty default and each later one appends, and its text is pflag's
// ("[]" when empty, else the values as one CSV record in brackets). pflag computes that text for the default of each
// such flag when it is defined, through an encoding/csv writer with a 4 KB buffer of its own: at every start of
// caisson, for each of run's eleven, a page of garbage and its fault (issue 14). This type writes CSV only when
// there are values.
//
// Its DefValue is "", not pflag's "[]": pflag leaves "(default [])" out of the help only for its own types, and
// reads an empty default as no default for any type.
func StringArrayVarP(fs *pflag.FlagSet, p *[]string, name, shorthand, usage string) {
	*p = nil
	fs.VarP(&stringArray{p: p}, name, shorthand, usage)
	fs.Lookup(name).DefValue = ""
}

// stringArray is the pflag.Value of StringArrayVarP.
type stringArray struct {
	p       *[]string
	changed bool
}

// Set appends v, replacing the default at the first use.
func (s *stringArray) Set(v string) error {
	if !s.changed {
		*s.p, s.changed = []string{v}, true
		return nil
	}
	*s.p = append(*s.p, v)
	return nil
}

// Type is pflag's name for the type: help, profiles and OnceFlags look for it.
func (s *stringArray) Type() string { return "stringArray" }

// String is the values as pflag writes them.
func (s *stringArray) String() string {
	if len(*s.p) == 0 {
		return "[]"
	}
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write(*s.p) // a bytes.Buffer does not fail
	w.Flush()
	return "[" + strings.TrimSuffix(b.String(), "\n") + "]"
}
