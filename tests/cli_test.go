package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
)

// The shell drivers: each prints the candidates its shell's completion offers at the end of the line given, with
// the script of `caisson completion SHELL` loaded ("caisson" is found on $PATH).
const (
	// bash: the completion function is called as readline would (words split at blanks and COMP_WORDBREAKS).
	driveBash = `source /usr/share/bash-completion/bash_completion
source <(caisson completion bash)
line=$1
COMP_LINE=$line COMP_POINT=${#line}
COMP_WORDS=() w=
for ((i = 0; i < ${#line}; i++)); do
	c=${line:i:1}
	if [[ $c == [[:blank:]] ]]; then
		[[ -n $w ]] && COMP_WORDS+=("$w"); w=
	elif [[ $COMP_WORDBREAKS == *"$c"* ]]; then
		[[ -n $w ]] && COMP_WORDS+=("$w"); COMP_WORDS+=("$c"); w=
	else
		w+=$c
	fi
done
COMP_WORDS+=("$w")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
complete -p caisson >/dev/null || exit 3
_caisson caisson "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
`
	// zsh: the line and a TAB are typed into an interactive zsh in a zpty, after compinit (its dump file in
	// $ZCOMPDUMP, made by the first run); compadd is wrapped to record what each call adds (calls that only compute
	// matches, with -O, -A or -D, pass through).
	driveZsh = `zmodload zsh/zpty || exit 2
out=${TMPDIR:-/tmp}/caisson-zsh-drive.$$
: >$out
integer n=0
run() {
	(( n++ ))
	zpty -w z "$1; print \${(U):-mark}-$n"
	zpty -r z reply "*MARK-$n*" || { print -u2 "drive: no answer to: $1"; exit 2; }
}
zpty z zsh -f -i || exit 2
run "PS1='> ' RPS1='' LISTMAX=100000; setopt no_beep no_auto_list no_auto_menu no_list_ambiguous"
run "autoload -Uz compinit && compinit -u -d ${ZCOMPDUMP:-/dev/null} && source <(caisson completion zsh)"
run "compadd() { if (( \${@[(I)-[OAD]]} )); then builtin compadd \"\$@\"; return; fi; local -a __h; builtin compadd -O __h \"\$@\"; (( \$#__h )) && print -rl -- \$__h >>$out; builtin compadd \"\$@\"; }"
zpty -w -n z "$1"$'\t'
run $'\C-e\C-u'"true"
zpty -d z
cat $out
rm -f $out
`
	// fish: its own programmatic completion, complete -C.
	driveFish = `caisson completion fish | source
complete -C "$argv[1]" | string replace -r '\t.*' ''
true
`
)

// completionCases are command lines and what their completion must offer. Candidates are compared by their last
// part (after the last '=' or '/', without a final '/'), as the shells differ there: bash offers "pasta" for
// "--net=p" (readline keeps "--net="), zsh and fish "--net=pasta"; "/usr" or "usr/" for "/us".
// completionCase is a command line typed into a shell and what its completion must offer.
type completionCase struct {
	line  string
	exact []string // exactly these (in any order); nil: see has
	has   []string
	not   []string
}

var completionCases = []completionCase{
	{line: "caisson ", has: []string{"run", "ps", "exec", "stop", "logs", "doctor", "inspect", "idmap", "diff", "rootfs", "completion", "version"},
		not: []string{"__complete", "man"}},
	{line: "caisson rootfs ", exact: []string{"unpack", "pull"}},
	{line: "caisson rootfs pull --map ", exact: []string{"auto", "single"}},
	{line: "caisson rootfs pull --pl", exact: []string{"--platform"}},
	{line: "caisson run --net ", exact: []string{"none", "host", "pasta", "slirp4netns"}},
	{line: "caisson run --net=p", exact: []string{"pasta"}},
	{line: "caisson run --security ", exact: []string{"default", "strict"}},
	{line: "caisson run --map ", exact: []string{"auto", "single", "keep-id"}},
	{line: "caisson run --share net,p", exact: []string{"net,pid"}},
	{line: "caisson run --cap-add net_", exact: []string{"net_bind_service", "net_broadcast", "net_admin", "net_raw"}},
	{line: "caisson run --rl", exact: []string{"--rlimit"}},
	{line: "caisson run --net host --n", exact: []string{"--name", "--no-cwd"}},
	{line: "caisson run --rootfs /us", has: []string{"usr"}},
	{line: "caisson run -d -- ech", has: []string{"echo"}},
	{line: "caisson run --join ", exact: []string{"compl-a", "compl-b"}},
	{line: "caisson exec ", exact: []string{"compl-a", "compl-b"}},
	{line: "caisson exec compl-a -- ech", has: []string{"echo"}},
	{line: "caisson stop compl-b", exact: []string{"compl-b"}},
	{line: "caisson logs -f ", exact: []string{"compl-a", "compl-b"}},
	{line: "caisson inspect --json compl-", exact: []string{"compl-a", "compl-b"}},
	{line: "caisson completion ", exact: []string{"bash", "zsh", "fish"}},
}

// completionTail is the part of a candidate the cases compare.
func completionTail(s string) string {
	s = strings.TrimSuffix(s, "/")
	if i := strings.LastIndexByte(s, '='); i >= 0 {
		s = s[i+1:]
	}
	return path.Base(s)
}

// checkCompletion runs each case through the shell's driver and checks what it offers. Two running sandboxes
// (compl-a, compl-b) give the names to complete.
func checkCompletion(t *testing.T, shell string, shellArgs []string, driver string) {
	lifeEnv(t)
	sh := testenv.RequireCommand(t, shell)
	for _, n := range []string{"compl-a", "compl-b"} {
		mustRun(t, "run", "-d", "--name", n, "--", "sleep", "300")
	}
	script := filepath.Join(t.TempDir(), "drive."+shell)
	if err := os.WriteFile(script, []byte(driver), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "PATH="+filepath.Dir(bin(t))+":/usr/local/bin:/usr/bin:/bin", "TERM=xterm",
		"ZCOMPDUMP="+filepath.Join(t.TempDir(), "zcompdump"))
	for _, tc := range completionCases {
		// The drivers type into a shell (zsh through a pseudo-terminal), and once in CI a zsh offered nothing for a
		// line it completes every other time: a case that fails is tried once more, and fails only if both fail.
		var problems []string
		for attempt := 1; attempt <= 2; attempt++ {
			argv := append(append(append([]string{sh}, shellArgs...), script), tc.line)
			problems = completionProblems(argv, env, t.TempDir(), shell, tc)
			if len(problems) == 0 {
				break
			}
			if attempt == 1 {
				t.Logf("%s %q: first attempt: %s; trying again", shell, tc.line, strings.Join(problems, "; "))
			}
		}
		for _, p := range problems {
			t.Error(p)
		}
	}
}

// completionProblems runs argv, a shell's driver typing tc.line, with env in dir, and returns what is wrong with
// what the shell offers.
func completionProblems(argv, env []string, dir, shell string, tc completionCase) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return []string{fmt.Sprintf("%s %q: %v (%s)", shell, tc.line, err, out)}
	}
	var got, problems []string
	for _, c := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if c = completionTail(strings.TrimSpace(c)); c != "" && c != "." && !slices.Contains(got, c) {
			got = append(got, c)
		}
	}
	if tc.exact != nil {
		want := slices.Clone(tc.exact)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			problems = append(problems, fmt.Sprintf("%s %q: offers %q, want %q", shell, tc.line, got, want))
		}
	}
	for _, h := range tc.has {
		if !slices.Contains(got, h) {
			problems = append(problems, fmt.Sprintf("%s %q: offers %q, lacks %q", shell, tc.line, got, h))
		}
	}
	for _, n := range tc.not {
		if slices.Contains(got, n) {
			problems = append(problems, fmt.Sprintf("%s %q: offers %q", shell, tc.line, n))
		}
	}
	return problems
}

// `caisson completion bash`, run by bash with bash-completion, completes subcommands, flags, flag values and
// running sandboxes' names.
func TestCompletionBash(t *testing.T) {
	if _, err := os.Stat("/usr/share/bash-completion/bash_completion"); err != nil {
		testenv.SkipOrFail(t, "bash-completion is not installed (apt-get install bash-completion): %v", err)
	}
	checkCompletion(t, "bash", []string{"--norc", "--noprofile"}, driveBash)
}

// `caisson completion zsh`, loaded after compinit in an interactive zsh, completes the same on a TAB.
func TestCompletionZsh(t *testing.T) {
	checkCompletion(t, "zsh", []string{"-f"}, driveZsh)
}

// `caisson completion fish` completes the same through fish's complete -C.
func TestCompletionFish(t *testing.T) {
	checkCompletion(t, "fish", []string{"--no-config"}, driveFish)
}

// A bad shell name is one line and exit 125.
func TestCompletionBadShell(t *testing.T) {
	bin(t)
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}, {"completion", "bash", "zsh"}} {
		r := caisson(t, args...)
		if r.code != 125 || !strings.HasPrefix(r.stderr, "caisson: completion: ") || strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("caisson %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// overstrike matches what makes man's bold and underlined characters on a terminal: a character and a backspace.
var overstrike = regexp.MustCompile(`.\x08`)

// `caisson man DIR` writes one page per command, which man and groff read without a warning, and which show
// every flag; caisson-run(1) lists them by topic.
func TestManPages(t *testing.T) {
	bin(t)
	man := testenv.RequireCommand(t, "man")
	testenv.RequireCommand(t, "groff")
	dir := t.TempDir()
	mustRun(t, "man", dir)
	var want []string
	for _, line := range strings.Split(mustRun(t, "help"), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "caisson" {
			page := "caisson-" + f[1]
			if f[1] == "rootfs" {
				page += "-" + f[2]
			}
			want = append(want, page+".1")
		}
	}
	want = append(want, "caisson.1")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("pages %q, want %q", got, want)
	}
	render := func(page string, extra ...string) (string, string) {
		cmd := exec.Command(man, append(append([]string{"-E", "UTF-8", "-l", "-Tutf8"}, extra...), filepath.Join(dir, page))...)
		cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8", "MANWIDTH=100", "MANROFFSEQ=", "MAN_KEEP_FORMATTING=")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("man %s: %v: %s", page, err, stderr.String())
		}
		return overstrike.ReplaceAllString(string(out), ""), stderr.String()
	}
	for _, page := range got {
		if _, warn := render(page, "--warnings=all", "-Z"); warn != "" {
			t.Errorf("%s: groff warns: %s", page, warn)
		}
		text, _ := render(page)
		name := strings.TrimSuffix(page, ".1")
		for _, sec := range []string{"NAME", "SYNOPSIS", "DESCRIPTION", "SEE ALSO"} {
			if !strings.Contains(text, "\n"+sec+"\n") {
				t.Errorf("%s: no %s section", page, sec)
			}
		}
		if !regexp.MustCompile(`\n +` + regexp.QuoteMeta(name) + ` +- +\S`).MatchString(text) {
			t.Errorf("%s: NAME does not read %q", page, name+" - ...")
		}
	}
	run, _ := render("caisson-run.1")
	// Every flag --help lists is in the page.
	for _, line := range strings.Split(mustRun(t, "run", "--help"), "\n") {
		if i := strings.Index(line, "--"); i >= 0 && i < 8 {
			flag := strings.FieldsFunc(line[i:], func(r rune) bool { return r == ' ' || r == '[' })[0]
			if !strings.Contains(run, flag) {
				t.Errorf("caisson-run.1 lacks %s", flag)
			}
		}
	}
	at := -1
	for _, topic := range []string{"Command and environment", "ID maps and namespaces", "File system", "Network", "Security", "Limits", "Life"} {
		i := strings.Index(run, "\n   "+topic)
		if i <= at {
			t.Errorf("caisson-run.1: topic %q missing or out of order", topic)
		}
		at = i
	}
}

// run --help lists the flags by topic, in order, each flag once.
func TestRunHelpByTopic(t *testing.T) {
	bin(t)
	h := mustRun(t, "run", "--help")
	at := -1
	for _, topic := range []string{"Command and environment:", "ID maps and namespaces:", "File system:", "Network:", "Security:", "Limits:", "Life (names, detaching, joining):"} {
		i := strings.Index(h, "\n"+topic+"\n")
		if i <= at {
			t.Errorf("run --help: topic %q missing or out of order:\n%s", topic, h)
		}
		at = i
	}
	for _, flag := range []string{"--net ", "--map ", "--security ", "--memory ", "--rootfs ", "--join "} {
		if n := strings.Count(h, "      "+flag); n != 1 {
			t.Errorf("run --help lists %s %d times", flag, n)
		}
	}
}
