// promqlcheck parses PromQL expressions with Prometheus's own parser, one per stdin line.
//
// For each line it prints the metric names the expression selects (space-separated),
// or "ERROR <message>"; it exits 1 if any line failed to parse. The metrics tests use
// it to check the Grafana dashboard and the prometheus-adapter rules.
package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	promql := parser.NewParser(parser.Options{})
	failed := false
	for scanner.Scan() {
		expr, err := promql.ParseExpr(scanner.Text())
		if err != nil {
			fmt.Printf("ERROR %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
			failed = true
			continue
		}
		seen := map[string]bool{}
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			if selector, ok := node.(*parser.VectorSelector); ok {
				seen[selector.Name] = true
			}
			return nil
		})
		names := make([]string, 0, len(seen))
		for name := range seen {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Println(strings.Join(names, " "))
	}
	if failed {
		os.Exit(1)
	}
}
