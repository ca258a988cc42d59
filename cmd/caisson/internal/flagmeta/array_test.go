package flagmeta

import (
	"testing"

	"github.com/spf13/pflag"
)

// TestStringArrayLikePflag runs the same command lines through StringArrayVarP and pflag's StringArrayVarP: the same
// values, type, text and help (the default's text is "", which pflag's help reads as none, as it does "[]" for its
// own type).
func TestStringArrayLikePflag(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"--x", "a"},
		{"--x", "a", "-y", "b,c", "--x=d \"e\""},
		{"-y", ""},
		{"--x", "a\nb", "--x", "with space"},
	} {
		var ours, theirs []string
		a := pflag.NewFlagSet("a", pflag.ContinueOnError)
		StringArrayVarP(a, &ours, "x", "y", "usage")
		b := pflag.NewFlagSet("b", pflag.ContinueOnError)
		b.StringArrayVarP(&theirs, "x", "y", nil, "usage")
		if err := a.Parse(args); err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if err := b.Parse(args); err != nil {
			t.Fatalf("%q: pflag: %v", args, err)
		}
		fa, fb := a.Lookup("x"), b.Lookup("x")
		if len(ours) != len(theirs) {
			t.Fatalf("%q: values %q, pflag %q", args, ours, theirs)
		}
		for i := range ours {
			if ours[i] != theirs[i] {
				t.Fatalf("%q: values %q, pflag %q", args, ours, theirs)
			}
		}
		if fa.DefValue != "" || fa.Value.Type() != fb.Value.Type() || fa.Value.String() != fb.Value.String() ||
			fa.Changed != fb.Changed {
			t.Errorf("%q: default %q type %q text %q changed %v; pflag: %q %q %q %v", args, fa.DefValue,
				fa.Value.Type(), fa.Value.String(), fa.Changed, fb.DefValue, fb.Value.Type(), fb.Value.String(), fb.Changed)
		}
		if a.FlagUsages() != b.FlagUsages() {
			t.Errorf("%q: usage %q, pflag %q", args, a.FlagUsages(), b.FlagUsages())
		}
	}
}
