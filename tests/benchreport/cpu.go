package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cpuRun is one run of a command: the CPU of its whole tree (rusage of the child, which includes every descendant
// it waited for), its wall time, and with -procs the kernel's account of each process of the tree.
type cpuRun struct {
	cpu, wall float64 // ms
	procs     []procCPU
}

// cpuMain measures the CPU one run of each command costs. The CPU is the rusage of the command's child (user +
// system of it and of every descendant it waited for: how issue 14 measured), and with -procs also the sum of
// the kernel's account of every process of the tree, orphans included (bubblewrap's pid 1, which bwrap does not
// wait for, is missing from its rusage). The commands (one argument each, split on spaces) run in
// turn, round after round (after 3 warm-up rounds), so that the machine's drift weighs on all alike. It prints a
// Markdown table of the median CPU per run (user + system of the command and all its descendants) and wall time,
// with the CPU's ratio to the best peer, and writes "label<TAB>median CPU ms<TAB>median wall ms" lines to -tsv.
// With -procs (root: the kernel's taskstats), it also splits each command's CPU by process: the median per
// run of each process name's CPU (the scheduler's exact run time of all its threads), threads, page faults
// (minor) and context switches. -user runs the commands as that user (from root), with HOME, USER and PATH set.
func cpuMain(args []string) error {
	fs := flag.NewFlagSet("cpu", flag.ContinueOnError)
	n := fs.Int("n", 40, "runs of each command")
	procs := fs.Bool("procs", false, "split the CPU by process (taskstats; needs root)")
	as := fs.String("user", "", "run the commands as this user")
	tsv := fs.String("tsv", "", "also write label<TAB>CPU ms<TAB>wall ms<TAB>whole tree ms to this file")
	ref := fs.String("ref", "", "the command the ratios refer to (default: the best peer)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cmds := fs.Args()
	if len(cmds) == 0 || *n < 1 {
		return errors.New("usage: cpu -n N [-procs] [-user NAME] [-tsv FILE] [-ref CMD] CMD...")
	}
	var cred *syscall.Credential
	var env []string
	if *as != "" {
		var err error
		if cred, env, err = credentialOf(*as); err != nil {
			return err
		}
	}
	var l *exitListener
	if *procs {
		var err error
		if l, err = listenExits(); err != nil {
			return fmt.Errorf("%w: %v", errNoTaskstats, err)
		}
		defer l.close()
		// Orphans come back here (and are counted), not to the machine's init.
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %v", err)
		}
	}
	runs := make([][]cpuRun, len(cmds))
	for k := -3; k < *n; k++ {
		for i, cmd := range cmds {
			r, err := cpuOnce(cmd, cred, env, l)
			if err != nil {
				return err
			}
			if k >= 0 {
				runs[i] = append(runs[i], r)
			}
		}
	}
	var rows []row
	var out strings.Builder
	for i, cmd := range cmds {
		var cpu, wall, tree []float64
		for _, r := range runs[i] {
			cpu, wall = append(cpu, r.cpu), append(wall, r.wall)
			if l != nil {
				sum := 0.0
				for _, p := range r.procs {
					sum += float64(p.cpuNS) / 1e6
				}
				tree = append(tree, sum)
			}
		}
		extra := []string{fmtNum(quantile(cpu, 0.9)), fmtNum(quantile(wall, 0.5))}
		if l != nil {
			extra = append(extra, fmtNum(quantile(tree, 0.5)))
		}
		rows = append(rows, row{label: cmd, value: quantile(cpu, 0.5), extra: extra})
		fmt.Fprintf(&out, "%s\t%g\t%g\t%g\n", cmd, quantile(cpu, 0.5), quantile(wall, 0.5), quantile(tree, 0.5))
	}
	head := []string{"command", "p90 CPU ms", "median wall ms"}
	if l != nil {
		head = append(head, "whole tree ms (taskstats)")
	}
	refRow := bestPeer(rows, false)
	for i, r := range rows {
		if r.label == *ref {
			refRow = i
		}
	}
	printRowsRef(os.Stdout, head, "median CPU ms per run", rows, false, refRow)
	if *tsv != "" {
		if err := os.WriteFile(*tsv, []byte(out.String()), 0o644); err != nil {
			return err
		}
	}
	if l != nil {
		if l.lost > 0 {
			fmt.Printf("(taskstats dropped records %d times: the split below may miss a few processes)\n\n", l.lost)
		}
		for i, cmd := range cmds {
			printProcSplit(cmd, runs[i])
		}
	}
	return nil
}

// credentialOf returns the ids and groups of the user name, and a minimal environment for it.
func credentialOf(name string) (*syscall.Credential, []string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	env := []string{"HOME=" + u.HomeDir, "USER=" + u.Username, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, env, nil
}

// cpuOnce runs cmd once. With a listener it waits until the kernel has reported the exit of every process of the
// tree that ended (their records come asynchronously) and keeps those.
func cpuOnce(cmd string, cred *syscall.Credential, env []string, l *exitListener) (cpuRun, error) {
	argv := strings.Fields(cmd)
	c := exec.Command(argv[0], argv[1:]...)
	if cred != nil {
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		c.Env = env
	}
	if l != nil {
		l.take() // what other processes of the machine left meanwhile
	}
	start := time.Now()
	err := c.Run()
	wall := time.Since(start)
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || !strings.HasSuffix(argv[0], "newuidmap") {
			return cpuRun{}, fmt.Errorf("%s: %v", cmd, err)
		}
	}
	ru := c.ProcessState.SysUsage().(*syscall.Rusage)
	r := cpuRun{wall: ms(wall), cpu: ms(time.Duration(syscall.TimevalToNsec(ru.Utime) + syscall.TimevalToNsec(ru.Stime)))}
	if l == nil {
		return r, nil
	}
	// Orphans adopted meanwhile are this process's children now: reap them (they are part of the tree).
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
	// The root's own record is the last of the tree to come; give the kernel a moment to deliver it.
	root := c.Process.Pid
	var recs []taskExit
	for deadline := time.Now().Add(2 * time.Second); ; {
		recs = append(recs, l.take()...)
		seen := false
		for _, rec := range recs {
			if rec.pid == root {
				seen = true
			}
		}
		if seen || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * time.Millisecond) // stragglers of other CPUs
	recs = append(recs, l.take()...)
	r.procs = descendants(recs, root, os.Getpid())
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// printProcSplit prints the median per run of each process name's CPU, threads, minor faults and context switches.
func printProcSplit(cmd string, runs []cpuRun) {
	type agg struct {
		cpu, thr, flt, csw []float64
	}
	by := map[string]*agg{}
	var names []string
	var perRun []map[string]*procCPU
	for _, r := range runs {
		per := map[string]*procCPU{}
		for _, p := range r.procs {
			q := per[p.comm]
			if q == nil {
				q = &procCPU{comm: p.comm}
				per[p.comm] = q
			}
			q.cpuNS += p.cpuNS
			q.thread += p.thread
			q.minflt += p.minflt
			q.csw += p.csw
			if by[p.comm] == nil {
				by[p.comm] = &agg{}
				names = append(names, p.comm)
			}
		}
		perRun = append(perRun, per)
	}
	for _, per := range perRun {
		for _, name := range names {
			a, q := by[name], per[name]
			if q == nil {
				q = &procCPU{} // not in this run: it counts as nothing
			}
			a.cpu = append(a.cpu, float64(q.cpuNS)/1e6)
			a.thr = append(a.thr, float64(q.thread))
			a.flt = append(a.flt, float64(q.minflt))
			a.csw = append(a.csw, float64(q.csw))
		}
	}
	sort.Slice(names, func(i, j int) bool { return quantile(by[names[i]].cpu, 0.5) > quantile(by[names[j]].cpu, 0.5) })
	fmt.Printf("`%s`, by process (median per run; taskstats):\n\n", short(cmd))
	fmt.Println("| process | CPU ms | threads | minor faults | context switches |")
	fmt.Println("|---|---:|---:|---:|---:|")
	sum := 0.0
	for _, name := range names {
		a := by[name]
		m := quantile(a.cpu, 0.5)
		sum += m
		fmt.Printf("| `%s` | %s | %.0f | %.0f | %.0f |\n", name, fmtNum(m), quantile(a.thr, 0.5), quantile(a.flt, 0.5), quantile(a.csw, 0.5))
	}
	fmt.Printf("| sum of the medians | %s | | | |\n\n", fmtNum(sum))
}

// cpuTargetsMain prints the issue's CPU targets from a cpu -tsv file: for each triple of caisson's command, its
// target in ms and the command's extra parts (the ID-map helpers: "newuidmap" counted twice), the median CPU, its
// ratio to bubblewrap's and to the floor. The floor is the CPU of the kernel work bwrap does (bwrap's median minus
// its own start, `bwrap --version`), plus two Go starts (the parent and init are Go programs: an empty one's CPU),
// plus the helpers' CPU (newuidmap and newgidmap, two runs of newuidmap's).
func cpuTargetsMain(args []string) error {
	if len(args) < 7 || (len(args)-4)%3 != 0 {
		return errors.New("usage: cputargets FILE.tsv BWRAP-CMD BWRAP-START-CMD EMPTY-GO-CMD [CAISSON-CMD TARGET-MS HELPER-CMD|-]...")
	}
	med := map[string]float64{}
	f, err := os.Open(args[0])
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.Split(sc.Text(), "\t")
		if len(p) >= 2 {
			v, _ := strconv.ParseFloat(p[1], 64)
			med[p[0]] = v
		}
	}
	bw, bwStart, gostart := med[args[1]], med[args[2]], med[args[3]]
	if bw <= 0 || bwStart <= 0 || gostart <= 0 {
		return errors.New("bwrap, bwrap --version or the empty Go program is missing from the run")
	}
	// The issue's targets are absolute figures from a machine where bwrap's run cost 1.8 ms (rusage): on another
	// machine, or the same one under other load, their ratio to bwrap's CPU is what carries over.
	const issueBwrap = 1.8
	fmt.Println("| caisson | CPU ms | target | met | × bwrap's CPU | target × bwrap (1.8 ms in the issue) | met | floor ms | × the floor |")
	fmt.Println("|---|---:|---:|---|---:|---:|---|---:|---:|")
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	for i := 4; i+2 < len(args); i += 3 {
		cmd, helper := args[i], args[i+2]
		target, err := strconv.ParseFloat(args[i+1], 64)
		if err != nil {
			return fmt.Errorf("target %q: %v", args[i+1], err)
		}
		floor := bw - bwStart + 2*gostart
		if helper != "-" {
			floor += 2 * med[helper]
		}
		m, ok := med[cmd]
		if !ok {
			fmt.Printf("| `%s` | not measured | ≤ %s ms | | | | | | |\n", short(cmd), args[i+1])
			continue
		}
		fmt.Printf("| `%s` | %s | ≤ %s ms | %s | %.2f | ≤ %.2f | %s | %s | %.2f |\n", short(cmd), fmtNum(m), args[i+1],
			yes(m <= target), m/bw, target/issueBwrap, yes(m/bw <= target/issueBwrap), fmtNum(floor), m/floor)
	}
	fmt.Println()
	return nil
}
