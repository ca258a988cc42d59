// Command benchreport is the measuring and reporting half of `make bench` (tests/bench.sh). Every figure it
// prints is set against the best peer measured in the same run, so that numbers from a noisy machine are read as
// ratios, never as lone absolute values.
//
// Usage:
//
//	benchreport table [-cpu] [-tsv FILE] RESULTS.json... hyperfine results: median, p90, ratio to the best peer
//	benchreport rows -unit U [-higher] [-tsv FILE]      "label<TAB>value" lines on stdin: ratio to the best peer
//	benchreport conc -label L -n 1,5,50 -rounds R -- CMD...   N concurrent starts: p50, p99 per N (TSV)
//	benchreport mem -label L -n 1,10 [-skip COMM,...] -- CMD... memory (PSS) of the processes of N sandboxes
//	benchreport throughput -bytes N -base CMD RESULTS.json   hyperfine results of moving N bytes: MiB/s, ratio to CMD
//	benchreport serve -addr HOST:PORT -d DURATION       accept loop writing one byte per connection
//	benchreport connrate -addr 127.0.0.1:PORT -d DURATION -c CONNS   TCP connections per second
//	benchreport pair -n N -a "CMD A" -b "CMD B"...      A and B run alternately: medians and the paired difference
//	benchreport tail -n N -label L -- CMD...            what CMD leaves behind, and how long it lives after CMD's exit
//	benchreport cpu -n N [-procs] [-user U] [-tsv FILE] [-ref CMD] CMD...   median CPU per run, split by process
//	benchreport cputargets FILE.tsv BWRAP BWRAP-START EMPTY-GO [CMD TARGET HELPER]...   CPU ratios to bwrap, the floor
//
// A row is caisson's when its label contains "caisson"; every other row is a peer (or the host baseline), and the
// best of those is the ratio's reference.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/caisson-sandbox/caisson/tests/testenv"
	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fatalf("usage: benchreport table|targets|floor|rows|throughput|conc|mem|serve|connrate|pair|tail|cpu|cputargets ...")
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "table":
		err = tableMain(args)
	case "targets":
		err = targetsMain(args)
	case "floor":
		err = floorMain(args)
	case "rows":
		err = rowsMain(args)
	case "throughput":
		err = throughputMain(args)
	case "conc":
		err = concMain(args)
	case "mem":
		err = memMain(args)
	case "rss":
		err = rssMain(args)
	case "serve":
		err = serveMain(args)
	case "connrate":
		err = connrateMain(args)
	case "pair":
		err = pairMain(args)
	case "tail":
		err = tailMain(args)
	case "cpu":
		err = cpuMain(args)
	case "cputargets":
		err = cpuTargetsMain(args)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		fatalf("%s: %v", cmd, err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "benchreport: "+format+"\n", a...)
	os.Exit(1)
}

// quantile returns the q-quantile (0..1) of v by linear interpolation.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// isCaisson reports whether a row is caisson's own.
func isCaisson(label string) bool { return strings.Contains(label, "caisson") }

// row is one line of a report table.
type row struct {
	label string
	value float64 // the compared figure (median for times)
	extra []string
}

// bestPeer returns the index of the best non-caisson row (lowest value, or highest with higher), or -1.
func bestPeer(rows []row, higher bool) int {
	best := -1
	for i, r := range rows {
		if isCaisson(r.label) || math.IsNaN(r.value) || r.value <= 0 {
			continue
		}
		if best < 0 || (higher && r.value > rows[best].value) || (!higher && r.value < rows[best].value) {
			best = i
		}
	}
	return best
}

// printRows prints a markdown table with each row's ratio to the best peer. For lower-is-better figures the
// ratio is value/best (2.0 means twice the time); for higher-is-better it is value/best too (0.5 means half the
// throughput), so the direction is named in the header.
func printRows(w io.Writer, head []string, unit string, rows []row, higher bool) {
	printRowsRef(w, head, unit, rows, higher, bestPeer(rows, higher))
}

// printRowsRef is printRows with the reference row given (b, -1 for none).
func printRowsRef(w io.Writer, head []string, unit string, rows []row, higher bool, b int) {
	ref := "best peer"
	if b >= 0 {
		ref = "`" + short(rows[b].label) + "`"
	}
	dir := "lower is better"
	if higher {
		dir = "higher is better"
	}
	fmt.Fprintf(w, "| %s | %s (%s) |", head[0], unit, dir)
	for _, h := range head[1:] {
		fmt.Fprintf(w, " %s |", h)
	}
	fmt.Fprintf(w, " ratio to %s |\n|---|---:|", ref)
	for range head[1:] {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprint(w, "---:|\n")
	for _, r := range rows {
		ratio := "n/a"
		if b >= 0 && !math.IsNaN(r.value) {
			ratio = fmt.Sprintf("%.2f", r.value/rows[b].value)
		}
		cells := append([]string{"`" + short(r.label) + "`", fmtNum(r.value)}, r.extra...)
		fmt.Fprintf(w, "| %s | %s |\n", strings.Join(cells, " | "), ratio)
	}
	fmt.Fprintln(w)
}

func fmtNum(v float64) string {
	switch {
	case math.IsNaN(v):
		return "failed"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func short(s string) string {
	if len(s) > 100 {
		return s[:97] + "..."
	}
	return s
}

// tableMain reports hyperfine JSON results: median and p90 in ms, ratio of the median to the best peer's.
func tableMain(args []string) error {
	fs := flag.NewFlagSet("table", flag.ContinueOnError)
	tsv := fs.String("tsv", "", "also write label<TAB>median<TAB>p90 (ms) to this file, for the charts")
	cpu := fs.Bool("cpu", false, "add the mean CPU (user+system, ms) of each command and its children per run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rows []row
	for _, file := range fs.Args() {
		results, err := readHyperfine(file)
		if err != nil {
			return err
		}
		for _, r := range results {
			extra := []string{fmtNum(quantile(r.Times, 0.9) * 1000), strconv.Itoa(len(r.Times))}
			if *cpu {
				extra = append(extra, fmtNum((r.User+r.System)*1000))
			}
			rows = append(rows, row{label: r.Command, value: quantile(r.Times, 0.5) * 1000, extra: extra})
		}
	}
	if len(rows) == 0 {
		return errors.New("no results")
	}
	head := []string{"command", "p90 ms", "runs"}
	if *cpu {
		head = append(head, "CPU ms")
	}
	printRows(os.Stdout, head, "median ms", rows, false)
	if *tsv != "" {
		return writeTSV(*tsv, rows)
	}
	return nil
}

func writeTSV(path string, rows []row) error {
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "%s\t%g", chartLabel(r.label), r.value)
		for _, e := range r.extra {
			fmt.Fprintf(&b, "\t%s", e)
		}
		b.WriteString("\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// chartLabel shortens a command line for a chart axis: the program's base name and its first flags.
func chartLabel(s string) string {
	f := strings.Fields(s)
	if len(f) > 0 {
		f[0] = filepath.Base(f[0])
	}
	out := strings.Join(f, " ")
	if len(out) > 48 {
		out = out[:45] + "..."
	}
	return out
}

// rowsMain reads "label<TAB>value" lines and prints them with ratios to the best peer.
func rowsMain(args []string) error {
	fs := flag.NewFlagSet("rows", flag.ContinueOnError)
	unit := fs.String("unit", "value", "unit of the values")
	higher := fs.Bool("higher", false, "higher values are better")
	head := fs.String("head", "path", "name of the label column")
	tsv := fs.String("tsv", "", "also write the rows to this file, for the charts")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var rows []row
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		label, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			f = math.NaN()
		}
		rows = append(rows, row{label: label, value: f})
	}
	if len(rows) == 0 {
		return errors.New("no rows on stdin")
	}
	printRows(os.Stdout, []string{*head}, *unit, rows, *higher)
	if *tsv != "" {
		return writeTSV(*tsv, rows)
	}
	return nil
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n > 200 {
			return nil, fmt.Errorf("bad count %q (1..200)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// concMain starts N copies of a command at once, rounds times for each N, and prints per N the p50 and p99 of
// the copies' wall times in ms, and how many failed: "label<TAB>N<TAB>p50<TAB>p99<TAB>failures".
func concMain(args []string) error {
	fs := flag.NewFlagSet("conc", flag.ContinueOnError)
	label := fs.String("label", "", "row label")
	ns := fs.String("n", "1,5,10,20,50", "concurrency levels")
	rounds := fs.Int("rounds", 3, "rounds per level")
	if err := fs.Parse(args); err != nil {
		return err
	}
	counts, err := parseCounts(*ns)
	if err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command")
	}
	for _, n := range counts {
		var mu sync.Mutex
		var times []float64
		failures := 0
		for r := 0; r < *rounds; r++ {
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					c := exec.CommandContext(ctx, argv[0], argv[1:]...)
					<-start
					t0 := time.Now()
					err := c.Run()
					d := time.Since(t0)
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						failures++
						return
					}
					times = append(times, float64(d.Microseconds())/1000)
				}()
			}
			close(start)
			wg.Wait()
		}
		fmt.Printf("%s\t%d\t%.2f\t%.2f\t%d\n", *label, n, quantile(times, 0.5), quantile(times, 0.99), failures)
	}
	return nil
}

// pss returns a process's proportional set size in KiB (smaps_rollup), 0 when unreadable.
func pss(pid int) int { return procKiB(pid, "smaps_rollup", "Pss:") }

// procKiB returns the value in KiB of the line starting with key in /proc/PID/file, 0 when unreadable.
func procKiB(pid int, file, key string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// vmRSS returns the resident set of a process in KiB (VmRSS), or 0.
func vmRSS(pid int) int { return procKiB(pid, "status", "VmRSS:") }

// toolProcs returns root and its descendants except the process named payload and its own, and whether the
// payload runs.
func toolProcs(root int, payload string) (pids []int, found bool) {
	var walk func(pid int)
	walk = func(pid int) {
		if comm(pid) == payload {
			found = true
			return
		}
		pids = append(pids, pid)
		for _, k := range testenv.Children(pid) {
			walk(k)
		}
	}
	walk(root)
	return pids, found
}

// rssMain starts one long-running sandbox command, waits (at most 30 s) until a process named -payload runs among
// its descendants, and prints a Markdown table of the resident memory (VmRSS) of each of the tool's own processes:
// the supervising parent first, then its descendants except the payload.
func rssMain(args []string) error {
	fs := flag.NewFlagSet("rss", flag.ContinueOnError)
	payload := fs.String("payload", "sleep", "command name of the payload, not counted")
	settle := fs.Duration("settle", 2*time.Second, "how long the sandbox runs before it is measured (the steady state)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command")
	}
	c := exec.Command(argv[0], argv[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return err
	}
	defer func() {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		_ = c.Wait()
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, found := toolProcs(c.Process.Pid, *payload); found {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the payload did not start within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(*settle) // past start-up: the steady state
	fmt.Println("| process | VmRSS KiB |")
	fmt.Println("|---|---:|")
	var walk func(pid int, depth int)
	walk = func(pid int, depth int) {
		name := comm(pid)
		if name == *payload {
			return
		}
		fmt.Printf("| %s`%s` | %d |\n", strings.Repeat("↳ ", depth), name, vmRSS(pid))
		for _, k := range testenv.Children(pid) {
			walk(k, depth+1)
		}
	}
	walk(c.Process.Pid, 0)
	fmt.Println()
	return nil
}

// memMain starts N copies of a long-running sandbox command, waits until each has a process named -payload
// among its descendants and then -settle more (the steady state: caisson unmaps its start-up's code after 1 s), sums the PSS of the copies' own processes (every descendant except the payload and
// names in -skip) and prints "label<TAB>N<TAB>KiB per sandbox<TAB>processes per sandbox".
func memMain(args []string) error {
	fs := flag.NewFlagSet("mem", flag.ContinueOnError)
	label := fs.String("label", "", "row label")
	ns := fs.String("n", "1,10,30", "numbers of sandboxes")
	payload := fs.String("payload", "sleep", "command name of the payload, not counted")
	settle := fs.Duration("settle", 2*time.Second, "how long all sandboxes run before they are measured (the steady state)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	counts, err := parseCounts(*ns)
	if err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		return errors.New("no command")
	}
	for _, n := range counts {
		var cmds []*exec.Cmd
		for i := 0; i < n; i++ {
			c := exec.Command(argv[0], argv[1:]...)
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := c.Start(); err != nil {
				return err
			}
			cmds = append(cmds, c)
		}
		// Wait (bounded) until every copy runs its payload, then for the steady state.
		deadline := time.Now().Add(30 * time.Second)
		settled := false
		var total, procs int
		for {
			total, procs = 0, 0
			ready := 0
			for _, c := range cmds {
				pids, found := toolProcs(c.Process.Pid, *payload)
				for _, pid := range pids {
					total += pss(pid)
				}
				procs += len(pids)
				if found {
					ready++
				}
			}
			if ready == n && !settled && *settle > 0 {
				time.Sleep(*settle) // then measured once more: the steady state
				settled = true
				continue
			}
			if ready == n || time.Now().After(deadline) {
				if ready < n {
					fmt.Fprintf(os.Stderr, "benchreport: mem: %s: only %d of %d sandboxes started\n", *label, ready, n)
				}
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, c := range cmds {
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
		}
		for _, c := range cmds {
			done := make(chan struct{})
			go func() { _ = c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-done
			}
		}
		fmt.Printf("%s\t%d\t%.0f\t%.1f\n", *label, n, float64(total)/float64(n), float64(procs)/float64(n))
	}
	return nil
}

// serveMain accepts connections for a bounded time and writes one byte to each before closing it.
func serveMain(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	d := fs.Duration("d", 30*time.Second, "serve this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	time.AfterFunc(*d, func() { l.Close() })
	for {
		c, err := l.Accept()
		if err != nil {
			return nil
		}
		go func() {
			_, _ = c.Write([]byte{'x'})
			c.Close()
		}()
	}
}

// connrateMain opens, reads one byte from and closes TCP connections to a loopback address from c goroutines for
// duration d, after waiting (bounded) for the server to answer, and prints connections per second.
func connrateMain(args []string) error {
	fs := flag.NewFlagSet("connrate", flag.ContinueOnError)
	addr := fs.String("addr", "", "127.0.0.1:PORT")
	d := fs.Duration("d", 3*time.Second, "measure this long (at most 30 s)")
	conns := fs.Int("c", 4, "concurrent clients (at most 64)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil || host != "127.0.0.1" {
		return fmt.Errorf("-addr %q: only 127.0.0.1 is allowed", *addr)
	}
	if *d > 30*time.Second || *conns < 1 || *conns > 64 {
		return errors.New("-d at most 30s, -c 1..64")
	}
	one := func() error {
		c, err := net.DialTimeout("tcp", *addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		b := make([]byte, 1)
		_, err = io.ReadFull(c, b)
		return err
	}
	ready := time.Now().Add(10 * time.Second)
	for one() != nil {
		if time.Now().After(ready) {
			return errors.New("server not answering after 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var ok, failed atomic.Int64
	stop := time.Now().Add(*d)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				if one() == nil {
					ok.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0).Seconds()
	if failed.Load() > ok.Load()/100 {
		fmt.Fprintf(os.Stderr, "benchreport: connrate: %d of %d connections failed\n", failed.Load(), ok.Load()+failed.Load())
	}
	fmt.Printf("%.0f\n", float64(ok.Load())/el)
	return nil
}

// throughputMain reports hyperfine results of commands that each move the same number of bytes: the median time,
// the throughput it gives, and the ratio of that throughput to the base command's (1.00: as fast; 0.50: half).
// Unlike the other tables, every row may be caisson's: the reference is named, not the best peer.
func throughputMain(args []string) error {
	fs := flag.NewFlagSet("throughput", flag.ContinueOnError)
	n := fs.Float64("bytes", 0, "bytes each command moves")
	base := fs.String("base", "", "the command the others are compared with")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 || fs.NArg() != 1 {
		return errors.New("usage: throughput -bytes N -base CMD RESULTS.json")
	}
	median, err := hyperfineMedians(fs.Arg(0))
	if err != nil {
		return err
	}
	results, err := readHyperfine(fs.Arg(0))
	if err != nil {
		return err
	}
	ref, ok := median[*base]
	if !ok || ref <= 0 {
		return fmt.Errorf("the base command %q is not in %s", *base, fs.Arg(0))
	}
	mib := *n / (1 << 20)
	cell := func(cmd string) string { return "`" + strings.ReplaceAll(cmd, "|", "\\|") + "`" } // a | would end the cell
	fmt.Printf("| command | median ms | MiB/s | runs | throughput ratio to %s |\n|---|---:|---:|---:|---:|\n", cell(*base))
	for _, r := range results {
		m := median[r.Command]
		fmt.Printf("| %s | %s | %s | %d | %.2f |\n", cell(r.Command), fmtNum(m), fmtNum(mib/(m/1000)), len(r.Times), ref/m)
	}
	fmt.Println()
	return nil
}

// targetsMain prints, for pairs of commands of one hyperfine JSON file, the ratio of their medians next to the
// target ratio: arguments are the file, then triples of caisson's command, the peer's command and the target
// (the ratio must not exceed it). A pair missing from the file is reported as not measured.
func targetsMain(args []string) error {
	if len(args) < 4 || (len(args)-1)%3 != 0 {
		return errors.New("usage: targets FILE.json CAISSON-CMD PEER-CMD TARGET...")
	}
	median, err := hyperfineMedians(args[0])
	if err != nil {
		return err
	}
	fmt.Println("| caisson | peer | medians ms | ratio | target | met |")
	fmt.Println("|---|---|---:|---:|---:|---|")
	for i := 1; i+2 < len(args); i += 3 {
		mine, peer, target := args[i], args[i+1], args[i+2]
		t, err := strconv.ParseFloat(target, 64)
		if err != nil {
			return fmt.Errorf("target %q: %v", target, err)
		}
		m, ok1 := median[mine]
		p, ok2 := median[peer]
		if !ok1 || !ok2 || p <= 0 {
			fmt.Printf("| `%s` | `%s` | | n/a | ≤ %s | not measured |\n", short(mine), short(peer), target)
			continue
		}
		met := "no"
		if m/p <= t {
			met = "yes"
		}
		fmt.Printf("| `%s` | `%s` | %s / %s | %.2f | ≤ %s | %s |\n", short(mine), short(peer), fmtNum(m), fmtNum(p), m/p, target, met)
	}
	fmt.Println()
	return nil
}

// floorMain prints a lower bound on caisson's start-up set by its mandated design, from one hyperfine run. A sandbox
// does at least the kernel work bwrap does (the same namespaces, a read-only view of /, /proc, /dev, the command),
// but where bwrap starts one small C program, caisson starts a Go program twice in series: the parent, then init,
// re-executed in the new namespaces (a multithreaded Go runtime cannot create them for itself). So caisson cannot
// beat bwrap's median − bwrap's own start (`bwrap --version`) + 2 × a Go program's start, even if everything else
// it does cost nothing. The bound is given for caisson's binary (`caisson version`) and for an empty Go program.
func floorMain(args []string) error {
	if len(args) != 5 {
		return errors.New("usage: floor FILE.json PEER-CMD PEER-START-CMD CAISSON-START-CMD EMPTY-GO-CMD")
	}
	median, err := hyperfineMedians(args[0])
	if err != nil {
		return err
	}
	peer, peerStart := median[args[1]], median[args[2]]
	if peer <= 0 || peerStart <= 0 {
		return errors.New("a command of the floor is missing from the run")
	}
	for _, gocmd := range args[3:] {
		gostart := median[gocmd]
		if gostart <= 0 {
			return fmt.Errorf("%q is missing from the run", gocmd)
		}
		floor := peer - peerStart + 2*gostart
		fmt.Printf("- floor with `%s`: %s − %s + 2 × %s = %s ms, **%.2f×** bwrap's median\n",
			short(gocmd), fmtNum(peer), fmtNum(peerStart), fmtNum(gostart), fmtNum(floor), floor/peer)
	}
	fmt.Println()
	return nil
}

// hyperfineMedians reads a hyperfine --export-json file and returns each command's median in ms.
func hyperfineMedians(file string) (map[string]float64, error) {
	results, err := readHyperfine(file)
	if err != nil {
		return nil, err
	}
	median := map[string]float64{}
	for _, r := range results {
		median[r.Command] = quantile(r.Times, 0.5) * 1000
	}
	return median, nil
}

// hyperfineResult is one command's measurements in a hyperfine JSON export.
type hyperfineResult struct {
	Command string    `json:"command"`
	Times   []float64 `json:"times"`
	User    float64   `json:"user"`   // mean user CPU seconds per run (the command and its children)
	System  float64   `json:"system"` // mean system CPU seconds per run
}

// readHyperfine reads a hyperfine --export-json file.
func readHyperfine(file string) ([]hyperfineResult, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Results []hyperfineResult `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return doc.Results, nil
}

// pairMain measures what one change costs a command: each -a command and the -b command after it (pairs are given
// in order: -a A1 -b B1 -a A2 -b B2) run alternately (A B, B A, A B, ...), n times each after 3 warm-ups, so that
// the machine's drift and what one run leaves to the next weigh on both alike. For every pair it prints one Markdown row: the median wall time of A and of B, and the
// median of the n paired differences A − B with the interval between its 25th and 75th percentiles.
func pairMain(args []string) error {
	fs := flag.NewFlagSet("pair", flag.ContinueOnError)
	n := fs.Int("n", 60, "runs of each command")
	var as, bs []string
	fs.Func("a", "command A (repeatable, split on spaces)", func(v string) error { as = append(as, v); return nil })
	fs.Func("b", "command B, compared with the A before it", func(v string) error { bs = append(bs, v); return nil })
	if err := fs.Parse(args); err != nil {
		return err
	}
	if len(as) == 0 || len(as) != len(bs) || *n < 1 {
		return errors.New("usage: pair -n N -a CMD-A -b CMD-B [-a ... -b ...]")
	}
	run := func(cmd string) (float64, error) {
		argv := strings.Fields(cmd)
		c := exec.Command(argv[0], argv[1:]...)
		start := time.Now()
		if err := c.Run(); err != nil {
			return 0, fmt.Errorf("%s: %v", cmd, err)
		}
		return float64(time.Since(start).Microseconds()) / 1000, nil
	}
	fmt.Println("| A | B | median A ms | median B ms | median of A − B ms | 25th–75th percentile of A − B ms |")
	fmt.Println("|---|---|---:|---:|---:|---:|")
	for i := range as {
		var ta, tb, d []float64
		for k := -3; k < *n; k++ {
			// A then B, then B then A: whatever a run leaves to the next (the kernel's clean-up of its namespaces)
			// weighs on both alike.
			first, second := as[i], bs[i]
			if k%2 != 0 {
				first, second = second, first
			}
			x, err := run(first)
			if err != nil {
				return err
			}
			y, err := run(second)
			if err != nil {
				return err
			}
			a, b := x, y
			if k%2 != 0 {
				a, b = y, x
			}
			if k >= 0 {
				ta, tb, d = append(ta, a), append(tb, b), append(d, a-b)
			}
		}
		fmt.Printf("| `%s` | `%s` | %s | %s | %.2f | %.2f … %.2f |\n", short(as[i]), short(bs[i]), fmtNum(quantile(ta, 0.5)),
			fmtNum(quantile(tb, 0.5)), quantile(d, 0.5), quantile(d, 0.25), quantile(d, 0.75))
	}
	fmt.Println()
	return nil
}

// tailMain measures what a command leaves behind when it exits. As a child subreaper, so that the command's orphans
// become its children, it runs the command n times (after 3 warm-ups) and after each exit waits until every process
// the command left has exited, then reaps them. It prints one Markdown row: the label, in how many runs something
// was left, and the median and 90th percentile of the time from the command's exit to the exit of the last process
// it left (0 when nothing was left): what the command would have had to wait to leave nothing.
func tailMain(args []string) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	n := fs.Int("n", 40, "runs")
	label := fs.String("label", "", "row label")
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 || *n < 1 {
		return errors.New("usage: tail -n N -label L -- CMD...")
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	var tails []float64
	leftRuns := 0
	for k := -3; k < *n; k++ {
		if err := exec.Command(argv[0], argv[1:]...).Run(); err != nil {
			return fmt.Errorf("%s: %v", strings.Join(argv, " "), err)
		}
		exited := time.Now()
		left := testenv.Children(os.Getpid())
		for _, pid := range left {
			if err := awaitDeath(pid, 10*time.Second); err != nil {
				return err
			}
		}
		tail := float64(time.Since(exited).Microseconds()) / 1000
		for _, pid := range left {
			var ws syscall.WaitStatus
			_, _ = syscall.Wait4(pid, &ws, 0, nil)
		}
		if k < 0 {
			continue
		}
		if len(left) == 0 {
			tail = 0
		} else {
			leftRuns++
		}
		tails = append(tails, tail)
	}
	fmt.Printf("| `%s` | %d of %d | %.2f | %.2f |\n", *label, leftRuns, *n, quantile(tails, 0.5), quantile(tails, 0.9))
	return nil
}

// awaitDeath waits (at most limit) until the child pid has exited, without reaping it: a pidfd polls readable then.
func awaitDeath(pid int, limit time.Duration) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil // gone already
	}
	defer unix.Close(fd)
	deadline := time.Now().Add(limit)
	for {
		n, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, max(0, int(time.Until(deadline).Milliseconds())))
		switch {
		case err == unix.EINTR:
			continue
		case err != nil:
			return fmt.Errorf("poll pidfd of %d: %v", pid, err)
		case n == 0:
			return fmt.Errorf("pid %d still runs %v after the command's exit", pid, limit)
		}
		return nil
	}
}
