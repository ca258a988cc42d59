package flagmeta

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func testSet() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	Group(fs, "Second", func() {
		fs.String("zeta", "", "a `DIR` to use")
		fs.BoolP("alpha", "a", false, "a switch\nwith a second line --not-a-flag")
	})
	Group(fs, "First", func() {
		fs.StringArray("beta", nil, "repeatable")
		Values(fs, "beta", "x", "y")
		List(fs, "beta")
		Complete(fs, "beta", Files)
	})
	fs.Float64("loose", 1, "no topic")
	return fs
}

func TestAnnotations(t *testing.T) {
	fs := testSet()
	beta := fs.Lookup("beta")
	if Topic(beta) != "First" || !slices.Equal(ValuesOf(beta), []string{"x", "y"}) || !IsList(beta) || KindOf(beta) != Files || !Repeatable(beta) {
		t.Errorf("beta: %v", beta.Annotations)
	}
	if Topic(fs.Lookup("zeta")) != "Second" || Topic(fs.Lookup("loose")) != "" || IsList(fs.Lookup("zeta")) {
		t.Errorf("zeta/loose: %v %v", fs.Lookup("zeta").Annotations, fs.Lookup("loose").Annotations)
	}
	if TakesValue(fs.Lookup("alpha")) || !TakesValue(fs.Lookup("zeta")) {
		t.Errorf("TakesValue")
	}
	if got := Topics(fs); !slices.Equal(got, []string{"Second", "First", ""}) {
		t.Errorf("Topics = %q", got)
	}
	var names []string
	for _, f := range Ordered(fs) {
		names = append(names, f.Name)
	}
	if !slices.Equal(names, []string{"zeta", "alpha", "beta", "loose"}) || !fs.SortFlags {
		t.Errorf("Ordered = %q (SortFlags %v)", names, fs.SortFlags)
	}
	for name, want := range map[string]string{"zeta": "DIR", "alpha": "", "beta": "VALUE", "loose": "N"} {
		if got := Placeholder(fs.Lookup(name)); got != want {
			t.Errorf("Placeholder(%s) = %q, want %q", name, got, want)
		}
	}
	defer func() {
		if recover() == nil {
			t.Errorf("Values on an undefined flag did not panic")
		}
	}()
	Values(fs, "nope", "x")
}

func TestGroupedUsages(t *testing.T) {
	got := GroupedUsages(testSet())
	secs := strings.Split(got, "\n\n")
	if len(secs) != 3 || !strings.HasPrefix(secs[0], "Second:\n") || !strings.HasPrefix(secs[1], "First:\n") || !strings.HasPrefix(secs[2], "Other:\n") {
		t.Fatalf("sections:\n%s", got)
	}
	if !strings.Contains(secs[0], "--zeta DIR") || !strings.Contains(secs[0], "--alpha") || !strings.Contains(secs[0], "with a second line --not-a-flag") ||
		!strings.Contains(secs[1], "--beta") || !strings.Contains(secs[2], "--loose") {
		t.Errorf("grouping:\n%s", got)
	}
	// One column for all the groups.
	col := -1
	for _, l := range strings.Split(got, "\n") {
		if i := strings.Index(l, "  a "); i > 0 && strings.Contains(l, "--") {
			if col >= 0 && i != col {
				t.Errorf("usage column %d, then %d:\n%s", col, i, got)
			}
			col = i
		}
	}
}
