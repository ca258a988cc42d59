package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/caisson-sandbox/caisson/cmd/caisson/internal/flagmeta"
	"github.com/spf13/pflag"
)

// ManPages returns caisson's man pages by file name: caisson.1 and one caisson-NAME.1 per command ("rootfs unpack"
// gives caisson-rootfs-unpack.1), written in the man(7) macros from the command descriptions and flag definitions.
func ManPages(version string) map[string]string {
	pages := map[string]string{"caisson.1": mainPage(version)}
	for _, c := range Commands {
		if !c.Hidden {
			pages[pageName(c)+".1"] = commandPage(c, version)
		}
	}
	return pages
}

func pageName(c Command) string { return "caisson-" + strings.ReplaceAll(c.Name, " ", "-") }

// manMain writes the man pages into DIR (created if missing).
func manMain(args []string, version string) int {
	if len(args) != 1 {
		return fail("man: want one directory (usage: caisson man DIR)")
	}
	if err := os.MkdirAll(args[0], 0o755); err != nil {
		return fail("man: %v", err)
	}
	for name, text := range ManPages(version) {
		if err := os.WriteFile(filepath.Join(args[0], name), []byte(text), 0o644); err != nil {
			return fail("man: %v", err)
		}
	}
	return 0
}

// roff escapes text for a man page line: backslashes, hyphens (so that options copy as ASCII), and a leading '.'
// or '\” (which would start a request).
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}

// header is the page's .TH line and NAME section.
func header(b *strings.Builder, name, summary, version string) {
	fmt.Fprintf(b, ".TH %s 1 \"\" \"caisson %s\" \"caisson manual\"\n", strings.ToUpper(roff(name)), roff(version))
	fmt.Fprintf(b, ".SH NAME\n%s \\- %s\n", roff(name), roff(summary))
}

// paragraphs writes text: paragraphs separated by blank lines; lines indented by two spaces are kept as they are.
func paragraphs(b *strings.Builder, text string) {
	for i, p := range strings.Split(text, "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		if strings.HasPrefix(p, "  ") {
			b.WriteString(".nf\n.RS\n")
			for _, l := range strings.Split(p, "\n") {
				b.WriteString(roff(strings.TrimPrefix(l, "  ")) + "\n")
			}
			b.WriteString(".RE\n.fi\n")
			continue
		}
		b.WriteString(roff(strings.ReplaceAll(p, "\n", " ")) + "\n")
	}
}

// exitStatus is the EXIT STATUS section of command name ("" for caisson.1, which describes them all).
func exitStatus(name string) string {
	var b strings.Builder
	b.WriteString(".SH EXIT STATUS\n.TP\n.B 0\nsuccess\n")
	if name == "doctor" {
		b.WriteString(".TP\n.B 1\nrun will not work on this host (a check failed)\n")
	}
	b.WriteString(".TP\n.B 125\n" + roff("caisson's own error (a bad flag or input, a setup step that failed): one line on "+
		"standard error starting with \"caisson:\"") + "\n")
	if name == "" || name == "run" || name == "exec" {
		b.WriteString(".TP\n.B 126\nthe command cannot be executed\n.TP\n.B 127\nthe command is not found\n.PP\n" +
			roff("Otherwise run and exec exit with the command's status, or 128+N when it was killed by signal N.") + "\n")
	}
	return b.String()
}

func mainPage(version string) string {
	var b strings.Builder
	header(&b, "caisson", "a rootless Linux sandbox", version)
	b.WriteString(".SH SYNOPSIS\n")
	for _, c := range Commands {
		if !c.Hidden {
			fmt.Fprintf(&b, ".B caisson %s\n%s\n.br\n", roff(c.Name), roff(c.Synopsis))
		}
	}
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, "caisson runs a command in a sandbox without privileges and without a daemon: root inside, your "+
		"own uid outside, in new user, mount, PID, IPC, UTS, network, cgroup and time namespaces, with ID maps "+
		"written by the setuid newuidmap and newgidmap, its own init as PID 1, user-mode networking through pasta "+
		"or slirp4netns, overlays, seccomp, Landlock and cgroup limits.")
	b.WriteString(".SH COMMANDS\n")
	for _, c := range Commands {
		if !c.Hidden {
			fmt.Fprintf(&b, ".TP\n.BR %s (1)\n%s\n", pageName(c), roff(c.Summary))
		}
	}
	b.WriteString(exitStatus(""))
	b.WriteString(".SH FILES\n.TP\n.I $XDG_RUNTIME_DIR/caisson\n" +
		roff("the state of your running sandboxes, one directory each (/tmp/caisson-UID when XDG_RUNTIME_DIR is unset)") + "\n" +
		".TP\n.I /etc/subuid\n.TQ\n.I /etc/subgid\n" + roff("your subordinate ID ranges") + "\n")
	b.WriteString(".SH SEE ALSO\n")
	b.WriteString(seeAlso(""))
	return b.String()
}

func commandPage(c Command, version string) string {
	var b strings.Builder
	name := pageName(c)
	header(&b, name, c.Summary, version)
	fmt.Fprintf(&b, ".SH SYNOPSIS\n.B caisson %s\n%s\n", roff(c.Name), roff(c.Synopsis))
	b.WriteString(".SH DESCRIPTION\n")
	paragraphs(&b, c.Description)
	if c.Flags != nil {
		fs := c.Flags()
		b.WriteString(".SH OPTIONS\n")
		topics := flagmeta.Topics(fs)
		for _, t := range topics {
			if len(topics) > 1 || t != "" {
				fmt.Fprintf(&b, ".SS \"%s\"\n", roff(t))
			}
			for _, f := range flagmeta.Ordered(fs) {
				if flagmeta.Topic(f) == t && !f.Hidden {
					option(&b, f)
				}
			}
		}
		b.WriteString(".TP\n.B \\-\\-help\nprint the flags and exit\n")
	}
	b.WriteString(exitStatus(c.Name))
	b.WriteString(".SH SEE ALSO\n")
	b.WriteString(seeAlso(name))
	return b.String()
}

// option writes one flag as a tagged paragraph: "-t, --tty", "--net VALUE", with its usage and default.
func option(b *strings.Builder, f *pflag.Flag) {
	b.WriteString(".TP\n")
	tag := ""
	if f.Shorthand != "" {
		tag = `\fB\-` + f.Shorthand + `\fR, `
	}
	tag += `\fB\-\-` + roff(f.Name) + `\fR`
	if p := flagmeta.Placeholder(f); p != "" {
		if flagmeta.TakesValue(f) {
			tag += ` \fI` + p + `\fR`
		} else {
			tag += `[=\fI` + p + `\fR]`
		}
	}
	b.WriteString(tag + "\n")
	usage := f.Usage
	if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "[]" {
		usage += " (default: " + f.DefValue + ")"
	}
	if vs := flagmeta.ValuesOf(f); len(vs) > 0 && !strings.HasSuffix(vs[0], "=") {
		usage += "; values: " + strings.Join(vs, ", ")
	}
	b.WriteString(roff(usage) + "\n")
}

// seeAlso lists the other pages, and newuidmap(1) and subuid(5).
func seeAlso(self string) string {
	var refs []string
	if self != "" {
		refs = append(refs, "caisson")
	}
	for _, c := range Commands {
		if n := pageName(c); !c.Hidden && n != self {
			refs = append(refs, n)
		}
	}
	slices.Sort(refs[min(1, len(refs)):])
	var b strings.Builder
	for _, r := range refs {
		fmt.Fprintf(&b, ".BR %s (1),\n", roff(r))
	}
	b.WriteString(".BR newuidmap (1),\n.BR subuid (5)\n")
	return b.String()
}
