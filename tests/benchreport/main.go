// Command benchreport prints hyperfine JSON results as a table of medians with each command's ratio to a
// reference command from the same run, so that figures from a noisy machine are read as ratios.
//
// Usage: benchreport [-ref SUBSTRING] RESULTS.json...
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
)

type result struct {
	Command string    `json:"command"`
	Times   []float64 `json:"times"`
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	ref := flag.String("ref", "", "ratio reference: the first command containing this text (default: the first command)")
	flag.Parse()
	for _, file := range flag.Args() {
		b, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		var doc struct{ Results []result }
		if err := json.Unmarshal(b, &doc); err != nil {
			fmt.Fprintf(os.Stderr, "benchreport: %s: %v\n", file, err)
			os.Exit(1)
		}
		if len(doc.Results) == 0 {
			continue
		}
		base := doc.Results[0]
		for _, r := range doc.Results {
			if *ref != "" && strings.Contains(r.Command, *ref) {
				base = r
				break
			}
		}
		bm := median(base.Times)
		fmt.Printf("| command | median | ratio to `%s` |\n|---|---:|---:|\n", short(base.Command))
		for _, r := range doc.Results {
			m := median(r.Times)
			fmt.Printf("| `%s` | %.2f ms | %.2f |\n", short(r.Command), m*1000, m/bm)
		}
		fmt.Println()
	}
}

func short(s string) string {
	if len(s) > 90 {
		return s[:87] + "..."
	}
	return s
}
