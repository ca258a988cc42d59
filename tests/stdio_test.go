package tests

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// stdio is what a caisson run is given as its descriptors 0, 1 and 2; a nil file is a pipe whose content is
// returned (an empty stdin for 0).
type stdio struct {
	in, out, err *os.File
}

// runStdio runs caisson with files as its standard descriptors, bounded in time, and returns its exit code and what
// it wrote to the standard descriptors that were not given.
func runStdio(t testing.TB, files stdio, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runWith(t, files, bin(t), args...)
}

// runWith runs prog with files as its standard descriptors (an *os.File is passed as the descriptor itself, not
// through a copying pipe), bounded in time.
func runWith(t testing.TB, files stdio, prog string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if files.in != nil {
		cmd.Stdin = files.in
	}
	if files.out != nil {
		cmd.Stdout = files.out
	}
	if files.err != nil {
		cmd.Stderr = files.err
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %s: timed out (a relay that never ends?); stderr: %s", prog, strings.Join(args, " "), errb.String())
	}
	if ee, ok := err.(*exec.ExitError); ok {
		ws := ee.Sys().(syscall.WaitStatus)
		code = ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
	} else if err != nil {
		t.Fatalf("%s %s: %v", prog, strings.Join(args, " "), err)
	}
	return code, out.String(), errb.String()
}

// writeFile creates path with content and returns it.
func writeFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// openFile opens path with flags (as a shell's redirection would) and closes it at the end of the test.
func openFile(t testing.TB, path string, flags int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The shell's redirections, as open(2) flags.
const (
	redirIn     = os.O_RDONLY                             // < file
	redirOut    = os.O_WRONLY | os.O_CREATE | os.O_TRUNC  // > file
	redirAppend = os.O_WRONLY | os.O_CREATE | os.O_APPEND // >> file
	redirRW     = os.O_RDWR | os.O_CREATE                 // <> file
)

// bigSize is the size of the file sent through the relay in the large cases.
const bigSize = 64 << 20

// stdioCase is one of the cases: a file handed over as one of the command's standard descriptors, a
// command that reopens it through /proc/self/fd, and what the file holds afterwards.
type stdioCase struct {
	name    string
	before  string // the file's content before the run
	flags   int    // how the caller opened it
	fd      int    // which descriptor it is
	script  string // the command, run by sh
	stdout  string // what the command prints (when the file is not its stdout)
	strict  string // the file's content afterwards in the strict posture
	def     string // and in the default posture (the reopen writes to the host file)
	defCode int
}

var stdioCases = []stdioCase{
	// stdin: the command reads the data, and its write through /proc/self/fd/0 must not reach the file.
	{name: "stdin", before: "original\n", flags: redirIn, fd: 0,
		script: "cat; echo pwned > /proc/self/fd/0", stdout: "original\n",
		strict: "original\n", def: "pwned\n"},
	// > file: writing through a reopened /proc/self/fd/1 truncates the file in the default posture; in the strict
	// posture the reopen is the pipe, so the line joins the output stream.
	{name: "stdout-truncate", before: "old content\n", flags: redirOut, fd: 1,
		script: "echo out; echo pwned > /proc/self/fd/1; echo end",
		strict: "out\npwned\nend\n", def: "pwneend\n"},
	// >> file: the earlier content survives, the command's output is appended.
	{name: "stdout-append", before: "keep\n", flags: redirAppend, fd: 1,
		script: "echo new; : > /proc/self/fd/1; echo after",
		strict: "keep\nnew\nafter\n", def: "after\n"},
	// 2>> file: the same for stderr.
	{name: "stderr-append", before: "keep\n", flags: redirAppend, fd: 2,
		script: "echo err >&2; : > /proc/self/fd/2; echo err2 >&2",
		strict: "keep\nerr\nerr2\n", def: "err2\n"},
	// <> file on stdin: the command reads it (and writes through the reopened descriptor do not reach it).
	{name: "stdin-readwrite", before: "rw data\n", flags: redirRW, fd: 0,
		script: "cat; echo pwned > /proc/self/fd/0", stdout: "rw data\n",
		strict: "rw data\n", def: "pwned\n"},
}

// TestStdioStrictRelay is the case: a host file handed over as stdin, stdout (> and >>) or stderr stays
// writable through /proc/self/fd in the default posture (the magic link reopens the host's inode on the host's
// writable mount), and does not in the strict posture, where caisson relays the file through a pipe: the file
// keeps its content, the command still reads the data and writes its output.
func TestStdioStrictRelay(t *testing.T) {
	requireSandbox(t)
	for _, posture := range []string{"strict", "default"} {
		for _, c := range stdioCases {
			t.Run(posture+"/"+c.name, func(t *testing.T) {
				path := writeFile(t, filepath.Join(t.TempDir(), "victim"), c.before)
				f := openFile(t, path, c.flags)
				var files stdio
				switch c.fd {
				case 0:
					files.in = f
				case 1:
					files.out = f
				case 2:
					files.err = f
				}
				code, stdout, stderr := runStdio(t, files, "run", "--security", posture, "--no-cwd", "--", "sh", "-c", c.script)
				want := c.strict
				if posture == "default" {
					want = c.def
				}
				if got := readFile(t, path); got != want {
					t.Errorf("file after the run = %q, want %q (exit %d, stderr %q)", got, want, code, stderr)
				}
				if code != 0 {
					t.Errorf("exit %d, want 0; stderr %q", code, stderr)
				}
				if c.fd != 1 && stdout != c.stdout {
					t.Errorf("stdout %q, want %q", stdout, c.stdout)
				}
			})
		}
	}
}

// A directory handed over as stdin: in the default posture the command can create files in it through
// /proc/self/fd/0 (and reach everything beneath it); in the strict posture its stdin is an empty pipe.
func TestStdioStrictDirectory(t *testing.T) {
	requireSandbox(t)
	for _, posture := range []string{"strict", "default"} {
		t.Run(posture, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "handed")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			f := openFile(t, dir, os.O_RDONLY)
			script := "touch /proc/self/fd/0/pwned 2>/dev/null; echo made=$?; cat 2>/dev/null; echo read=$?; readlink /proc/self/fd/0"
			code, stdout, stderr := runStdio(t, stdio{in: f}, "run", "--security", posture, "--no-cwd", "--", "sh", "-c", script)
			if code != 0 {
				t.Fatalf("exit %d; stderr %q", code, stderr)
			}
			_, err := os.Stat(filepath.Join(dir, "pwned"))
			created := err == nil
			switch posture {
			case "strict":
				// A pipe with nothing in it: reading gives end of file at once, nothing can be created.
				if created || !strings.Contains(stdout, "made=1") || !strings.Contains(stdout, "read=0") || !strings.Contains(stdout, "pipe:[") {
					t.Errorf("strict: created %v, output %q; want no file, made=1, read=0 and a pipe on fd 0", created, stdout)
				}
			case "default":
				// The documented behaviour of the default posture: the descriptor is the host's directory.
				if !created || !strings.Contains(stdout, "made=0") || !strings.Contains(stdout, dir) {
					t.Errorf("default: created %v, output %q; want the file made in %s", created, stdout, dir)
				}
			}
		})
	}
}

// bigFile writes size random bytes to a new file and returns its path and content.
func bigFile(t testing.TB, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// 64 MiB through the relay, in and out: byte-exact. A plain `cat` copies its stdin (a file) to its stdout (another
// file), and a second run appends to that output file (>>).
func TestStdioStrictLarge(t *testing.T) {
	requireSandbox(t)
	src, data := bigFile(t, bigSize)
	dst := filepath.Join(t.TempDir(), "copy")
	for i, flags := range []int{redirOut, redirAppend} {
		code, _, stderr := runStdio(t, stdio{in: openFile(t, src, redirIn), out: openFile(t, dst, flags)},
			"run", "--security", "strict", "--no-cwd", "--", "cat")
		if code != 0 {
			t.Fatalf("cat: exit %d; stderr %q", code, stderr)
		}
		got, err := os.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.Repeat(data, i+1); !bytes.Equal(got, want) {
			t.Fatalf("run %d: %d bytes in the output file, want %d, identical to the input: %v", i+1, len(got), len(want), len(got) == len(want))
		}
	}
	// The same data read by the command and summed inside: the relay into its stdin alone.
	code, stdout, stderr := runStdio(t, stdio{in: openFile(t, src, redirIn)},
		"run", "--security", "strict", "--no-cwd", "--", "sh", "-c", "wc -c; readlink /proc/self/fd/0")
	if code != 0 || !strings.HasPrefix(stdout, "67108864\npipe:[") {
		t.Fatalf("wc -c of stdin: exit %d, output %q (stderr %q), want 67108864 and a pipe", code, stdout, stderr)
	}
}

// A command that exits without reading its stdin (a large file) does not make caisson hang, and its status is kept;
// one that stops after 10 bytes (head -c 10) gets them.
func TestStdioStrictEarlyExit(t *testing.T) {
	requireSandbox(t)
	src, data := bigFile(t, bigSize)
	for _, posture := range []string{"strict", "default"} {
		t.Run(posture, func(t *testing.T) {
			start := time.Now()
			code, _, stderr := runStdio(t, stdio{in: openFile(t, src, redirIn)},
				"run", "--security", posture, "--no-cwd", "--", "sh", "-c", "exit 7")
			if code != 7 {
				t.Fatalf("exit %d, want 7; stderr %q", code, stderr)
			}
			t.Logf("a command that exits without reading 64 MiB of stdin: caisson returned in %v", time.Since(start))
			code, stdout, stderr := runStdio(t, stdio{in: openFile(t, src, redirIn)},
				"run", "--security", posture, "--no-cwd", "--", "head", "-c", "10")
			if code != 0 || stdout != string(data[:10]) {
				t.Fatalf("head -c 10: exit %d, %d bytes out (want the first 10); stderr %q", code, len(stdout), stderr)
			}
			// A command that closes its stdin early and goes on running: caisson stops feeding it, without a
			// signal to the command (SIGPIPE, which caisson forwards, would end it with 141).
			code, stdout, stderr = runStdio(t, stdio{in: openFile(t, src, redirIn)},
				"run", "--security", posture, "--no-cwd", "--", "sh", "-c", "head -c 3 >/dev/null; exec 0<&-; sleep 0.5; echo alive")
			if code != 0 || stdout != "alive\n" {
				t.Fatalf("closing stdin and going on: exit %d, output %q; stderr %q", code, stdout, stderr)
			}
		})
	}
}

// The shell's view of the descriptors after the run: the output caisson relayed went through the caller's own
// file description (so the next writer continues after it, and >> appends), and the input's offset is just past
// what the command read (so the next reader of the same descriptor continues from there, as when the command
// reads the file itself). Output to one description through stdout and stderr keeps its order (> f 2>&1).
func TestStdioStrictOffsets(t *testing.T) {
	requireSandbox(t)
	src, data := bigFile(t, 1<<20)
	for _, posture := range []string{"strict", "default"} {
		t.Run(posture, func(t *testing.T) {
			dir := t.TempDir()
			run := `"$0" run --security ` + posture + ` --no-cwd -- `
			cases := []struct {
				name, script, before, want string
				in                         bool
			}{
				{name: "> then echo", script: "{ " + run + "echo a; echo b; } > out", want: "a\nb\n"},
				{name: ">> twice", script: run + "echo a >> out; " + run + "echo b >> out", before: "x\n", want: "x\na\nb\n"},
				{name: "2>&1 order", script: run + `sh -c 'for i in 1 2 3 4 5 6; do echo o$i; echo e$i >&2; done' > out 2>&1`,
					want: "o1\ne1\no2\ne2\no3\ne3\no4\ne4\no5\ne5\no6\ne6\n"},
				{name: "head -c 10 then cat", script: "{ " + run + "head -c 10; cat; } < " + src + " > out", in: true},
			}
			for _, c := range cases {
				if c.before != "" {
					writeFile(t, filepath.Join(dir, "out"), c.before)
				}
				code, _, stderr := runWith(t, stdio{}, "sh", "-c", "cd "+dir+" && "+c.script, bin(t))
				got := readFile(t, filepath.Join(dir, "out"))
				os.Remove(filepath.Join(dir, "out"))
				want := c.want
				if c.in {
					want = string(data)
				}
				if code != 0 || got != want {
					t.Errorf("%s: exit %d, %d bytes (want %d), equal: %v; stderr %q", c.name, code, len(got), len(want), got == want, stderr)
				}
			}
		})
	}
}

// `caisson exec` into a strict sandbox relays the caller's files as `run` does; into a default one it passes
// them (the documented behaviour: the reopened stdin is written).
func TestStdioStrictExec(t *testing.T) {
	lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "strictbox", "--security", "strict", "--no-cwd", "--", "sleep", "60")
	mustRun(t, "run", "-d", "--name", "defaultbox", "--no-cwd", "--", "sleep", "60")
	for _, c := range []struct{ box, want string }{{"strictbox", "original\n"}, {"defaultbox", "pwned\n"}} {
		path := writeFile(t, filepath.Join(t.TempDir(), "victim"), "original\n")
		code, stdout, stderr := runStdio(t, stdio{in: openFile(t, path, redirIn)},
			"exec", c.box, "--", "sh", "-c", "cat; echo pwned > /proc/self/fd/0")
		if code != 0 || stdout != "original\n" {
			t.Errorf("%s: exit %d, output %q (stderr %q), want the file's content", c.box, code, stdout, stderr)
		}
		if got := readFile(t, path); got != c.want {
			t.Errorf("%s: the file holds %q after exec, want %q", c.box, got, c.want)
		}
	}
	// Output appended to a file, its earlier content kept, and the exit status passed through.
	path := writeFile(t, filepath.Join(t.TempDir(), "log"), "keep\n")
	code, _, stderr := runStdio(t, stdio{out: openFile(t, path, redirAppend)},
		"exec", "strictbox", "--", "sh", "-c", "echo new; : > /proc/self/fd/1; readlink /proc/$$/fd/1 | cut -d: -f1; exit 5")
	if got := readFile(t, path); code != 5 || got != "keep\nnew\npipe\n" {
		t.Errorf("exec >> file: exit %d, file %q (stderr %q), want 5 and \"keep\\nnew\\npipe\\n\"", code, got, stderr)
	}
	mustRun(t, "stop", "--time", "0", "strictbox")
	mustRun(t, "stop", "--time", "0", "defaultbox")
}

// A detached strict sandbox writes its log through a relay too: the command holds pipes, not the log file.
func TestStdioStrictDetached(t *testing.T) {
	lifeEnv(t)
	mustRun(t, "run", "-d", "--name", "logged", "--security", "strict", "--no-cwd", "--", "sh", "-c",
		"echo hello; echo err >&2; readlink /proc/$$/fd/1 | cut -d: -f1; echo done; sleep 60")
	var logs string
	for i := 0; i < 200 && !strings.Contains(logs, "done"); i++ {
		logs = mustRun(t, "logs", "logged")
		time.Sleep(25 * time.Millisecond)
	}
	if logs != "hello\nerr\npipe\ndone\n" {
		t.Errorf("logs %q, want hello, err, pipe (fd 1 is a pipe) and done", logs)
	}
	mustRun(t, "stop", "--time", "0", "logged")
}
