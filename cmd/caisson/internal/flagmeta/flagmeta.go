// Package flagmeta adds to caisson's pflag definitions what help, shell completion and man pages need beyond a
// flag's name and usage: the topic it belongs to (`caisson run --help` lists its flags by topic) and how its value
// completes (fixed words, a comma-separated list of them, files, directories or sandbox names). The facts are
// pflag annotations set next to the definitions, so the parser, the help, the completion and the man pages read
// one source.
package flagmeta

import (
	"strings"

	"github.com/spf13/pflag"
)

// Annotation keys.
const (
	keyTopic  = "caisson_topic"
	keyValues = "caisson_values"
	keyKind   = "caisson_complete"
	keyList   = "caisson_list"
)

// Kind is how the value of a flag or an argument completes beyond fixed words.
type Kind string

// The kinds.
const (
	None      Kind = ""          // no completion
	Files     Kind = "files"     // a file or directory of the caller's
	Dirs      Kind = "dirs"      // a directory of the caller's
	Sandboxes Kind = "sandboxes" // the name of a running sandbox
	Commands  Kind = "commands"  // a command on $PATH
)

// Group runs register, which defines flags on fs, and files the flags it defined under topic.
func Group(fs *pflag.FlagSet, topic string, register func()) {
	before := count(fs)
	register()
	i := 0
	VisitOrdered(fs, func(f *pflag.Flag) {
		if i >= before { // defined by register: the flags come in the order of their definition
			_ = fs.SetAnnotation(f.Name, keyTopic, []string{topic})
		}
		i++
	})
}

// count returns the number of flags defined on fs.
func count(fs *pflag.FlagSet) int {
	n := 0
	VisitOrdered(fs, func(*pflag.Flag) { n++ })
	return n
}

// VisitOrdered calls fn for each flag of fs in the order they were defined. Unlike fs.VisitAll it does not sort
// them first (a sorted copy of every flag at each call: every run of caisson defines ~80 flags in 7 groups).
func VisitOrdered(fs *pflag.FlagSet, fn func(*pflag.Flag)) {
	sorted := fs.SortFlags
	fs.SortFlags = false
	fs.VisitAll(fn)
	fs.SortFlags = sorted
}

// Values sets the words the value of flag name completes to.
func Values(fs *pflag.FlagSet, name string, words ...string) {
	set(fs, name, keyValues, words)
}

// List marks flag name's value as a comma-separated list of its Values (each element completes on its own).
func List(fs *pflag.FlagSet, name string) {
	set(fs, name, keyList, []string{"true"})
}

// Complete sets how the value of flag name completes beyond its Values.
func Complete(fs *pflag.FlagSet, name string, k Kind) {
	set(fs, name, keyKind, []string{string(k)})
}

func set(fs *pflag.FlagSet, name, key string, v []string) {
	if err := fs.SetAnnotation(name, key, v); err != nil {
		panic("flagmeta: " + err.Error()) // a flag name misspelt next to its definition
	}
}

// Topic returns the topic of f ("" when it has none).
func Topic(f *pflag.Flag) string { return first(f, keyTopic) }

// ValuesOf returns the words f's value completes to.
func ValuesOf(f *pflag.Flag) []string { return f.Annotations[keyValues] }

// IsList reports whether f's value is a comma-separated list.
func IsList(f *pflag.Flag) bool { return first(f, keyList) == "true" }

// KindOf returns how f's value completes beyond its words.
func KindOf(f *pflag.Flag) Kind { return Kind(first(f, keyKind)) }

func first(f *pflag.Flag, key string) string {
	if v := f.Annotations[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// TakesValue reports whether f takes its value from the next argument when given without '=' (a switch, or a flag
// with an optional value such as --landlock, does not).
func TakesValue(f *pflag.Flag) bool { return f.NoOptDefVal == "" }

// Repeatable reports whether f may be given more than once.
func Repeatable(f *pflag.Flag) bool {
	t := f.Value.Type()
	return t == "stringArray" || t == "stringSlice"
}

// Topics returns the topics of fs's flags in the order their first flag was defined.
func Topics(fs *pflag.FlagSet) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range Ordered(fs) {
		if t := Topic(f); !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// Ordered returns fs's flags in the order they were defined.
func Ordered(fs *pflag.FlagSet) []*pflag.Flag {
	var out []*pflag.Flag
	VisitOrdered(fs, func(f *pflag.Flag) { out = append(out, f) })
	return out
}

// Placeholder returns the name that stands for f's value in usage texts: the one pflag derives (a `quoted` word of
// the usage, or the type), with pflag's type names made readable.
func Placeholder(f *pflag.Flag) string {
	name, _ := pflag.UnquoteUsage(f)
	switch name {
	case "", "bool":
		return ""
	case "string", "stringArray", "stringSlice":
		return "VALUE"
	case "int", "int64", "uint", "uint64", "float", "float64", "float32":
		return "N"
	}
	return strings.ToUpper(name)
}

// GroupedUsages is pflag's FlagUsages of fs (one column for all), with the flags listed under their topics in the
// order the topics were defined; flags without a topic come under "Other".
func GroupedUsages(fs *pflag.FlagSet) string {
	lines := map[string][]string{} // topic -> usage lines
	var cur string
	for _, line := range strings.SplitAfter(fs.FlagUsages(), "\n") {
		if line == "" {
			continue
		}
		if name, ok := flagOfLine(line); ok {
			cur = ""
			if f := fs.Lookup(name); f != nil {
				cur = Topic(f)
			}
		}
		lines[cur] = append(lines[cur], line) // a continuation line stays with its flag
	}
	var b strings.Builder
	for i, t := range Topics(fs) {
		if i > 0 {
			b.WriteString("\n")
		}
		title := t
		if title == "" {
			title = "Other"
		}
		b.WriteString(title + ":\n")
		b.WriteString(strings.Join(lines[t], ""))
	}
	return b.String()
}

// flagOfLine returns the flag a line of FlagUsages starts ("  -t, --tty ...", "      --net string ...").
func flagOfLine(line string) (string, bool) {
	s := strings.TrimLeft(line, " ")
	if indent := len(line) - len(s); indent == 0 || indent > 6 || !strings.HasPrefix(s, "-") {
		return "", false // a continuation line of a usage is indented to the usage column
	}
	if len(s) > 4 && s[0] == '-' && s[1] != '-' && s[2] == ',' { // "-t, --tty"
		s = strings.TrimLeft(s[3:], " ")
	}
	s, ok := strings.CutPrefix(s, "--")
	if !ok {
		return "", false
	}
	end := strings.IndexAny(s, " =[\n")
	if end < 0 {
		end = len(s)
	}
	return s[:end], true
}
