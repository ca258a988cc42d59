package slirp

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Measurements, not tests: run with
//
//	/tmp/slirp.test -test.run '^$' -test.bench . -test.benchtime 1x   (throughput)
//	/tmp/slirp.test -test.run '^$' -test.bench StartClose              (start-up)

// BenchmarkStartClose measures Start (helper ready) plus Close.
func BenchmarkStartClose(b *testing.B) {
	for _, mode := range helperModes {
		b.Run(string(mode), func(b *testing.B) {
			requireMode(b, mode)
			fi := startInit(b, "A", false)
			b.ResetTimer()
			for range b.N {
				n, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid})
				if err != nil {
					b.Fatal(err)
				}
				if err := n.Close(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkStart measures Start alone (Close excluded).
func BenchmarkStart(b *testing.B) {
	for _, mode := range helperModes {
		b.Run(string(mode), func(b *testing.B) {
			requireMode(b, mode)
			fi := startInit(b, "A", false)
			b.ResetTimer()
			for range b.N {
				n, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				n.Close()
				b.StartTimer()
			}
		})
	}
}

// iperf3 runs a client for 4 s and returns the received Gbit/s.
func iperf3(b *testing.B, prefix []string, host string, port int) float64 {
	b.Helper()
	args := append(append([]string(nil), prefix...), "iperf3", "-c", host, "-p", strconv.Itoa(port), "-t", "4", "-J")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal(out, &res); jerr != nil || res.Error != "" || err != nil {
		b.Fatalf("%v: %v %v %s", args, err, jerr, res.Error)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9
}

// iperf3Server starts a one-shot server (prefix is e.g. an nsenter command).
func iperf3Server(b *testing.B, prefix []string, bind string, port int) {
	b.Helper()
	args := append(append([]string(nil), prefix...), "iperf3", "-s", "-1", "-B", bind, "-p", strconv.Itoa(port))
	cmd := exec.Command(args[0], args[1:]...)
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(300 * time.Millisecond)
}

// BenchmarkThroughput compares iperf3 over the host's loopback with a
// published port (host 127.0.0.1 → forwarder → sandbox) and with sandbox
// egress through the helper to the host's loopback (gateway path, MTU
// 65520 and 1500). Use -test.benchtime 1x; each case runs iperf3 for 4 s.
func BenchmarkThroughput(b *testing.B) {
	if _, err := exec.LookPath("iperf3"); err != nil {
		skipOrFail(b, "iperf3 not installed")
	}
	requireRootless(b)
	var base float64
	b.Run("host-loopback", func(b *testing.B) {
		p := int(freePort(b, "tcp"))
		iperf3Server(b, nil, "127.0.0.1", p)
		base = iperf3(b, nil, "127.0.0.1", p)
		b.ReportMetric(base, "Gbit/s")
	})
	for _, mode := range []Mode{ModeNone, ModePasta, ModeSlirp4netns} {
		b.Run("published-"+string(mode), func(b *testing.B) {
			if mode != ModeNone {
				requireMode(b, mode)
			}
			fi := startInit(b, "A", true)
			hp := freePort(b, "tcp")
			n, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid, ChildConn: fi.conn,
				Publish: []PortSpec{{"127.0.0.1", hp, 5201, "tcp"}}})
			fi.conn = nil
			if err != nil {
				b.Fatal(err)
			}
			defer n.Close()
			iperf3Server(b, nsenterArgs(fi.pid), "127.0.0.1", 5201)
			g := iperf3(b, nil, "127.0.0.1", int(hp))
			b.ReportMetric(g, "Gbit/s")
			b.ReportMetric(g/base, "x-loopback")
		})
	}
	for _, mode := range helperModes {
		for _, mtu := range []int{65520, 16384, 1500} {
			b.Run(fmt.Sprintf("egress-%s-mtu%d", mode, mtu), func(b *testing.B) {
				requireMode(b, mode)
				fi := startInit(b, "A", false)
				n, err := Start(context.Background(), Options{Mode: mode, PID: fi.pid, MTU: mtu, AllowHostLoopback: true})
				if err != nil {
					b.Fatal(err)
				}
				defer n.Close()
				p := int(freePort(b, "tcp"))
				iperf3Server(b, nil, "127.0.0.1", p)
				g := iperf3(b, nsenterArgs(fi.pid), n.Guest().HostLoopback, p)
				b.ReportMetric(g, "Gbit/s")
				b.ReportMetric(g/base, "x-loopback")
			})
		}
	}
}

func nsenterArgs(pid int) []string {
	return []string{"nsenter", "--preserve-credentials", "-U", "-n", "-t", strconv.Itoa(pid)}
}
