package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
)

// clustersUsage prints what a cluster holds, uses and has cost, one row
// per resource, then its nodes by status and its cost.
func clustersUsage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	x := newCLI("clusters usage", "ID", time.Minute, stdout, stderr)
	pos, err := x.parse(args, 1)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, x.timeout)
	defer cancel()
	u, err := x.c.GetClusterUsage(ctx, pos[0])
	if err != nil {
		return err
	}
	if x.json {
		return x.show(u, nil)
	}
	var rows [][]string
	for _, k := range slices.Sorted(maps.Keys(mergeKeys(u.Capacity, u.Used))) {
		rows = append(rows, []string{k, amount(k, u.Used[k]), amount(k, u.Capacity[k])})
	}
	if err := x.show(u, []string{"RESOURCE", "USED", "CAPACITY"}, rows...); err != nil {
		return err
	}
	var nodes []string
	for _, s := range slices.Sorted(maps.Keys(u.Nodes)) {
		nodes = append(nodes, fmt.Sprintf("%s %d", s, u.Nodes[s]))
	}
	if len(nodes) == 0 {
		nodes = []string{"none"}
	}
	_, err = fmt.Fprintf(stdout, "\nnodes: %s\ncost: %s USD/h now, %s USD accrued since the cluster was created (as of %s)\n",
		strings.Join(nodes, ", "), strconv.FormatFloat(u.CostPerHour, 'f', -1, 64), strconv.FormatFloat(u.AccruedCost, 'f', 4, 64),
		u.UpdatedAt.Local().Format(time.RFC3339))
	return err
}

func mergeKeys(a, b api.Resources) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

// amount shows memory in GiB and anything else as counted.
func amount(kind string, v float64) string {
	if kind == "memory" {
		return strconv.FormatFloat(v/(1<<30), 'f', 2, 64) + " GiB"
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}
