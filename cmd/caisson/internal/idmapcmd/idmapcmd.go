// Package idmapcmd implements `caisson idmap`: it prints the ID maps `caisson run` would write for the caller (or
// another user), with the subordinate ranges and the warnings about /etc/subuid and /etc/subgid they come from.
package idmapcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/parent"
	"github.com/caisson-sandbox/caisson/idmap"
	"github.com/spf13/pflag"
)

// usagef prints one caisson: line and returns 125, caisson's exit code for its own errors.
func usagef(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "caisson: "+format+"\n", a...)
	return 125
}

// Flags defines the flags of `caisson idmap` (read by Main, completion and the man pages).
func Flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("idmap", pflag.ContinueOnError)
	fs.String("user", "", "show the maps of this `USER` (name or uid) instead of the caller")
	fs.String("map", "auto", "mapping `MODE`: auto, single or keep-id")
	modes := make([]string, len(idmap.Modes))
	for i, m := range idmap.Modes {
		modes[i] = string(m)
	}
	flagmeta.Values(fs, "map", modes...)
	fs.Bool("json", false, "print JSON")
	return fs
}

// Main runs `caisson idmap [--user NAME|UID] [--map MODE] [--json]`: the ID maps `caisson run` would write, and the
// subordinate ranges and warnings they come from.
func Main(args []string) int {
	fs := Flags()
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return usagef("idmap: %v", err)
	}
	who, _ := fs.GetString("user")
	mode, _ := fs.GetString("map")
	asJSON, _ := fs.GetBool("json")
	if fs.NArg() > 0 {
		return usagef("idmap: unexpected argument %q", fs.Arg(0))
	}
	caller := parent.CurrentCaller()
	if who != "" {
		c, err := parent.LookupCaller(who)
		if err != nil {
			return usagef("idmap: --user: %v", err)
		}
		caller = c
	}
	plan, err := parent.NewPlan(context.Background(), mode, caller)
	if err != nil {
		return usagef("%v", err)
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(plan)
		return 0
	}
	printPlan(plan)
	return 0
}

func printPlan(p *idmap.Plan) {
	fmt.Printf("user:    %s (uid %d, gid %d)\n", p.User, p.UID, p.GID)
	fmt.Printf("mode:    %s", p.Mode)
	if p.Requested != p.Mode {
		fmt.Printf(" (asked for %s)", p.Requested)
	}
	fmt.Println()
	if p.Notice != "" {
		fmt.Println(p.Notice)
	}
	for _, w := range p.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
	for _, w := range p.OtherWarnings {
		fmt.Printf("warning: %s (another user's line: run does not show it)\n", w)
	}
	printRanges := func(name string, rs []idmap.Range) {
		fmt.Printf("%s:", name)
		if len(rs) == 0 {
			fmt.Print(" none")
		}
		for _, r := range rs {
			fmt.Printf(" %d-%d (%d)", r.Start, uint64(r.Start)+uint64(r.Count)-1, r.Count)
		}
		fmt.Println()
	}
	printRanges("subuid", p.SubUIDs)
	printRanges("subgid", p.SubGIDs)
	fmt.Printf("uid_map:\n%s", indent(idmap.Format(p.UIDMap)))
	fmt.Printf("gid_map:\n%s", indent(idmap.Format(p.GIDMap)))
	if p.UseHelpers {
		fmt.Printf("newuidmap argv: %s\n", quoteArgs(p.NewuidmapArgv))
		fmt.Printf("newgidmap argv: %s\n", quoteArgs(p.NewgidmapArgv))
	} else {
		fmt.Printf("maps written directly by caisson (setgroups %s)\n", map[bool]string{true: "deny", false: "allow"}[p.DenySetgroups])
	}
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func quoteArgs(a []string) string {
	out := make([]string, len(a))
	for i, s := range a {
		if s == "" || strings.ContainsAny(s, " \t\n\"'") {
			s = strconv.Quote(s)
		}
		out[i] = s
	}
	return strings.Join(out, " ")
}
