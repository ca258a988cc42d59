package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/state"
	"github.com/spf13/pflag"
)

// Candidate is one word a completion offers, with what it means.
type Candidate struct {
	Value, Desc string
}

// Result is what a completion offers: Words, and when Kind is Files, Dirs or Commands, the shell's own completion
// of that kind too.
type Result struct {
	Kind  flagmeta.Kind
	Words []Candidate
}

// Complete returns the completion of the last of args, the words after "caisson" (the last one is the word being
// completed, "" for a new one), read against the flag definitions of the command the words name. sandboxes lists
// the running sandboxes (called only when one is wanted).
func Complete(args []string, sandboxes func() []Candidate) Result {
	if len(args) == 0 {
		args = []string{""}
	}
	cur, prev := args[len(args)-1], args[:len(args)-1]
	if len(prev) == 0 {
		return commandNames(cur, "")
	}
	cmd, n := Lookup(prev)
	if cmd == nil {
		if len(prev) == 1 {
			return commandNames(cur, prev[0]) // the second word of "rootfs unpack"
		}
		return Result{}
	}
	newFS := cmd.Flags
	if newFS == nil {
		newFS = func() *pflag.FlagSet { return pflag.NewFlagSet(cmd.Name, pflag.ContinueOnError) }
	}
	fs := newFS()
	inter := interspersed(newFS)

	var positional []string
	dashdash := false
	seen := map[string]bool{}
	var pending *pflag.Flag // a flag whose value is the next word
	for _, w := range prev[n:] {
		switch {
		case pending != nil:
			pending = nil
		case w == "--" && !dashdash:
			dashdash = true
		case dashdash || !inter && len(positional) > 0:
			positional = append(positional, w)
		case strings.HasPrefix(w, "--"):
			name, _, eq := strings.Cut(w[2:], "=")
			if f := fs.Lookup(name); f != nil {
				seen[f.Name] = true
				if !eq && flagmeta.TakesValue(f) {
					pending = f
				}
			}
		case len(w) > 1 && w[0] == '-':
			for i := 1; i < len(w); i++ { // -te K=V: switches, then one flag that takes the rest or the next word
				f := fs.ShorthandLookup(w[i : i+1])
				if f == nil {
					break
				}
				seen[f.Name] = true
				if flagmeta.TakesValue(f) {
					if i == len(w)-1 {
						pending = f
					}
					break
				}
			}
		default:
			positional = append(positional, w)
		}
	}
	if pending != nil {
		return flagValue(pending, cur, "", sandboxes)
	}
	if !dashdash && (inter || len(positional) == 0) && strings.HasPrefix(cur, "-") {
		if name, val, ok := strings.Cut(strings.TrimPrefix(cur, "--"), "="); ok && strings.HasPrefix(cur, "--") {
			if f := fs.Lookup(name); f != nil {
				return flagValue(f, val, "--"+name+"=", sandboxes)
			}
			return Result{}
		}
		return flagNames(fs, cur, seen)
	}
	k := len(positional)
	if k >= len(cmd.Args) {
		if !cmd.Rest || len(cmd.Args) == 0 {
			return Result{}
		}
		k = len(cmd.Args) - 1
	}
	a := cmd.Args[k]
	if a.Kind == flagmeta.Sandboxes {
		return Result{Words: filter(sandboxes(), cur, "")}
	}
	var words []Candidate
	for _, w := range a.Words {
		words = append(words, Candidate{Value: w})
	}
	return Result{Kind: a.Kind, Words: filter(words, cur, "")}
}

// interspersed reports whether the flag sets newFS makes take flags after the first argument: pflag has no getter,
// so a fresh set is asked to parse "ARG --help" (ErrHelp only when the flag is read).
func interspersed(newFS func() *pflag.FlagSet) bool {
	fs := newFS()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return errors.Is(fs.Parse([]string{"arg", "--help"}), pflag.ErrHelp)
}

// commandNames completes a command name: its first word, or with group its second.
func commandNames(cur, group string) Result {
	var out []Candidate
	seen := map[string]bool{}
	for _, c := range Commands {
		words := strings.Fields(c.Name)
		if c.Hidden {
			continue
		}
		w, desc := words[0], c.Summary
		if group != "" {
			if len(words) < 2 || words[0] != group {
				continue
			}
			w = words[1]
		} else if len(words) > 1 {
			desc = c.Name + ": " + c.Summary
		}
		if !seen[w] {
			seen[w] = true
			out = append(out, Candidate{Value: w, Desc: desc})
		}
	}
	if group == "" {
		out = append(out, Candidate{"help", "list the commands"}, Candidate{"--help", "list the commands"},
			Candidate{"--version", "print the version"})
	}
	return Result{Words: filter(out, cur, "")}
}

// flagNames completes a flag name: every long flag of fs (and --help) but the ones given already that take one
// value only.
func flagNames(fs *pflag.FlagSet, cur string, seen map[string]bool) Result {
	var out []Candidate
	for _, f := range flagmeta.Ordered(fs) {
		if f.Hidden || seen[f.Name] && !flagmeta.Repeatable(f) {
			continue
		}
		out = append(out, Candidate{Value: "--" + f.Name, Desc: f.Usage})
	}
	out = append(out, Candidate{Value: "--help", Desc: "print the flags"})
	return Result{Words: filter(out, cur, "")}
}

// flagValue completes the value val of flag f; prefix ("--name=") goes before each candidate.
func flagValue(f *pflag.Flag, val, prefix string, sandboxes func() []Candidate) Result {
	kind := flagmeta.KindOf(f)
	var words []Candidate
	if kind == flagmeta.Sandboxes {
		words = sandboxes()
	}
	for _, w := range flagmeta.ValuesOf(f) {
		words = append(words, Candidate{Value: w})
	}
	head := ""
	if flagmeta.IsList(f) { // complete the last element of a comma-separated list, without the ones given
		if i := strings.LastIndexByte(val, ','); i >= 0 {
			head, val = val[:i+1], val[i+1:]
			given := map[string]bool{}
			for _, g := range strings.Split(head, ",") {
				given[g] = true
			}
			kept := words[:0]
			for _, w := range words {
				if !given[w.Value] {
					kept = append(kept, w)
				}
			}
			words = kept
		}
	}
	out := filter(words, val, prefix+head)
	if len(out) > 0 || prefix != "" || kind == flagmeta.Sandboxes {
		return Result{Words: out}
	}
	return Result{Kind: kind} // files, directories, or nothing to offer
}

// filter keeps the candidates that start with cur, with prefix put before each.
func filter(cs []Candidate, cur, prefix string) []Candidate {
	var out []Candidate
	for _, c := range cs {
		if strings.HasPrefix(c.Value, cur) {
			out = append(out, Candidate{Value: prefix + c.Value, Desc: c.Desc})
		}
	}
	return out
}

// runningSandboxes lists the running sandboxes as candidates.
func runningSandboxes() []Candidate {
	recs, err := state.List()
	if err != nil {
		return nil
	}
	out := make([]Candidate, 0, len(recs))
	for _, r := range recs {
		out = append(out, Candidate{Value: r.Name, Desc: strings.Join(r.Command, " ")})
	}
	return out
}

// completeMain answers `caisson __complete WORD...` for the completion scripts: a first line naming the shell's own
// completion to add (words: none; files, dirs or commands), then one "VALUE<TAB>DESCRIPTION" line per candidate.
func completeMain(args []string, w io.Writer) int {
	r := Complete(args, runningSandboxes)
	kind := string(r.Kind)
	if kind == "" {
		kind = "words"
	}
	fmt.Fprintln(w, kind)
	for _, c := range r.Words {
		desc := strings.Join(strings.Fields(c.Desc), " ") // one line
		fmt.Fprintf(w, "%s\t%s\n", c.Value, desc)
	}
	return 0
}
