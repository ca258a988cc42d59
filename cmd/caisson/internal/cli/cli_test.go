package cli

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/config"
	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/spf13/pflag"
)

func fakeSandboxes() []Candidate {
	return []Candidate{{"web", "nginx"}, {"db", "postgres"}}
}

func values(r Result) []string {
	var out []string
	for _, c := range r.Words {
		out = append(out, c.Value)
	}
	return out
}

func TestComplete(t *testing.T) {
	cases := []struct {
		line string // the words after caisson; a final space starts a new word
		kind flagmeta.Kind
		want []string // exactly these candidates, in order; nil: none
		has  []string // at least these
		not  []string // none of these
	}{
		{line: "", has: []string{"run", "ps", "exec", "stop", "logs", "doctor", "inspect", "idmap", "diff", "rootfs", "completion", "version"},
			not: []string{"__complete", "man", "unpack"}},
		{line: "r", want: []string{"run", "rootfs", "rm-tree"}},
		{line: "rootfs ", want: []string{"unpack", "pull"}},
		{line: "run --net ", want: []string{"none", "host", "pasta", "slirp4netns"}},
		{line: "run --net p", want: []string{"pasta"}},
		{line: "run --net=sl", want: []string{"--net=slirp4netns"}},
		{line: "run --security ", want: []string{"default", "strict"}},
		{line: "run --map ", want: []string{"auto", "single", "keep-id"}},
		{line: "run --share net,p", want: []string{"net,pid"}},
		{line: "run --share net,pid,", want: []string{"net,pid,ipc", "net,pid,uts", "net,pid,cgroup", "net,pid,time"}},
		{line: "run --cap-add net_a", want: []string{"net_admin"}},
		{line: "run --rlimit n", want: []string{"nofile=", "nproc="}},
		{line: "run --landlock=", want: []string{"--landlock=on", "--landlock=best-effort", "--landlock=off"}},
		{line: "run --seccomp ", want: []string{"default", "strict", "unconfined"}},
		{line: "run --seccomp ./p", kind: flagmeta.Files},
		{line: "run --rootfs ", kind: flagmeta.Dirs},
		{line: "run --bind ", kind: flagmeta.Files},
		{line: "run --profile ", kind: flagmeta.Files},
		{line: "run --hostname "},
		{line: "run --join ", want: []string{"web", "db"}},
		{line: "run --join-net w", want: []string{"web"}},
		{line: "run --ne", want: []string{"--net"}},
		{line: "run --net pasta --ne", want: nil},          // given once already
		{line: "run -e A=1 --en", want: []string{"--env"}}, // repeatable
		{line: "run --d", has: []string{"--detach", "--deny-net"}},
		{line: "run -e ", want: nil},
		{line: "run -te ", want: nil},                       // -e takes the next word
		{line: "run -d --name x ", kind: flagmeta.Commands}, // the command
		{line: "run -- ", kind: flagmeta.Commands},
		{line: "run -- --n", kind: flagmeta.Commands},
		{line: "run sh ", kind: flagmeta.Files},
		{line: "run sh --n", kind: flagmeta.Files}, // the command's own arguments
		{line: "exec ", want: []string{"web", "db"}},
		{line: "exec -t d", want: []string{"db"}},
		{line: "exec -w / web ", kind: flagmeta.Commands},
		{line: "exec web -- ", kind: flagmeta.Commands},
		{line: "exec web sh ", kind: flagmeta.Files},
		{line: "stop ", want: []string{"web", "db"}},
		{line: "stop --time 3 w", want: []string{"web"}},
		{line: "stop web "},
		{line: "logs -", want: []string{"--follow", "--help"}},
		{line: "inspect ", want: []string{"web", "db"}},
		{line: "diff ", kind: flagmeta.Dirs},
		{line: "rootfs unpack ", kind: flagmeta.Files},
		{line: "rootfs unpack a.tar ", kind: flagmeta.Dirs},
		{line: "rootfs unpack --map ", want: []string{"auto", "single"}},
		{line: "idmap --map ", want: []string{"auto", "single", "keep-id"}},
		{line: "completion ", want: []string{"bash", "zsh", "fish"}},
		{line: "version "},
		{line: "frobnicate "},
	}
	for _, tc := range cases {
		words := strings.Split(tc.line, " ")
		r := Complete(words, fakeSandboxes)
		got := values(r)
		if r.Kind != tc.kind {
			t.Errorf("%q: kind %q, want %q", tc.line, r.Kind, tc.kind)
		}
		if tc.has == nil && !slices.Equal(got, tc.want) {
			t.Errorf("%q: %q, want %q", tc.line, got, tc.want)
		}
		for _, h := range tc.has {
			if !slices.Contains(got, h) {
				t.Errorf("%q: %q lacks %q", tc.line, got, h)
			}
		}
		for _, n := range tc.not {
			if slices.Contains(got, n) {
				t.Errorf("%q: %q offers %q", tc.line, got, n)
			}
		}
	}
}

// Completion and help read the definitions the command parses: every flag of run is offered, and every flag of
// run has a topic.
func TestRunFlagsComplete(t *testing.T) {
	got := values(Complete([]string{"run", "--"}, fakeSandboxes))
	fs := config.NewRunFlagSet(new(config.RunFlags))
	fs.VisitAll(func(f *pflag.Flag) {
		if !slices.Contains(got, "--"+f.Name) {
			t.Errorf("--%s not offered", f.Name)
		}
		if flagmeta.Topic(f) == "" {
			t.Errorf("--%s has no topic", f.Name)
		}
	})
}

// run --help lists every flag once, under its topic, in the topics' order.
func TestRunHelp(t *testing.T) {
	h := RunHelp()
	want := []string{config.TopicCommand, config.TopicIDMaps, config.TopicFS, config.TopicNet, config.TopicSec, config.TopicLimits, config.TopicLife}
	at := -1
	for _, topic := range want {
		i := strings.Index(h, "\n"+topic+":\n")
		if i < at {
			t.Errorf("topic %q missing or out of order", topic)
		}
		at = i
	}
	sections := map[string]string{}
	for _, sec := range strings.Split(h, "\n\n")[1:] {
		title, body, _ := strings.Cut(sec, ":\n")
		sections[title] = body
	}
	fs := config.NewRunFlagSet(new(config.RunFlags))
	fs.VisitAll(func(f *pflag.Flag) {
		if n := strings.Count(h, "--"+f.Name+" ") + strings.Count(h, "--"+f.Name+"["); n < 1 {
			t.Errorf("--%s missing from run --help", f.Name)
		}
		body := sections[flagmeta.Topic(f)]
		if !strings.Contains(body, "--"+f.Name+" ") && !strings.Contains(body, "--"+f.Name+"[") {
			t.Errorf("--%s not under %q", f.Name, flagmeta.Topic(f))
		}
	})
	for _, flag := range []string{"net", "map", "security", "memory", "detach", "rootfs"} {
		if n := len(regexp.MustCompile(`(?m)^ +(-., )?--`+flag+`[ \[]`).FindAllString(h, -1)); n != 1 {
			t.Errorf("--%s listed %d times", flag, n)
		}
	}
}

// Each visible command has a man page with the man(7) structure, and its every flag.
func TestManPages(t *testing.T) {
	pages := ManPages("v1.2.3")
	for _, c := range Commands {
		name := pageName(c) + ".1"
		page, ok := pages[name]
		if c.Hidden {
			if ok {
				t.Errorf("hidden command %s has a page", c.Name)
			}
			continue
		}
		if !ok {
			t.Errorf("no page %s", name)
			continue
		}
		if !strings.HasPrefix(page, `.TH `+strings.ToUpper(roff(pageName(c)))+` 1 "" "caisson v1.2.3"`) {
			t.Errorf("%s: header %q", name, strings.SplitN(page, "\n", 2)[0])
		}
		for _, sec := range []string{".SH NAME\n", ".SH SYNOPSIS\n", ".SH DESCRIPTION\n", ".SH SEE ALSO\n"} {
			if strings.Count(page, sec) != 1 {
				t.Errorf("%s: %q %d times", name, sec, strings.Count(page, sec))
			}
		}
		if c.Flags != nil {
			c.Flags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(page, `\fB\-\-`+roff(f.Name)+`\fR`) {
					t.Errorf("%s: --%s missing", name, f.Name)
				}
			})
		}
		for _, line := range strings.Split(page, "\n") {
			if strings.HasPrefix(line, "'") || strings.HasPrefix(line, ".") && !strings.HasPrefix(line, ".\\") &&
				!slices.Contains([]string{"TH", "SH", "SS", "TP", "TQ", "B", "BR", "I", "PP", "RB", "RS", "RE", "nf", "fi", "br"}, strings.Fields(line[1:] + " x")[0]) {
				t.Errorf("%s: unexpected request line %q", name, line)
			}
		}
	}
	run := pages["caisson-run.1"]
	for _, topic := range flagmeta.Topics(config.NewRunFlagSet(new(config.RunFlags))) {
		if !strings.Contains(run, `.SS "`+roff(topic)+`"`) {
			t.Errorf("caisson-run.1: no section %q", topic)
		}
	}
	if !strings.Contains(pages["caisson.1"], ".BR caisson-run (1)") {
		t.Errorf("caisson.1 does not refer to caisson-run(1)")
	}
}

func TestRoff(t *testing.T) {
	for in, want := range map[string]string{`a-b`: `a\-b`, `\:`: `\e:`, `.x`: `\&.x`, `'x`: `\&'x`} {
		if got := roff(in); got != want {
			t.Errorf("roff(%q) = %q, want %q", in, got, want)
		}
	}
}
