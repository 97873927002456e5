package storetest

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/rayplane/rayplane/service/dump"
)

// Dumped is a store's export held in memory, rows in the order written.
type Dumped []DumpedRow

// DumpedRow is one row of an export with its table.
type DumpedRow struct {
	Table dump.Table
	Row   dump.Row
}

// ExportAll exports every table of src into memory, handing each row to
// edit first when edit is not nil.
func ExportAll(t testing.TB, src dump.Exporter, edit func(dump.Table, dump.Row)) Dumped {
	t.Helper()
	var d Dumped
	if err := src.Export(context.Background(), nil, func(tab dump.Table, r dump.Row) error {
		if edit != nil {
			edit(tab, r)
		}
		d = append(d, DumpedRow{tab, r})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// Feed answers an import's rows: the first n of d, then io.EOF when that
// is all of them, or an error when it leaves some out (a dump cut short).
func (d Dumped) Feed(n int) func() (dump.Table, dump.Row, error) {
	i := 0
	return func() (dump.Table, dump.Row, error) {
		if i == n {
			if n < len(d) {
				return dump.Table{}, nil, errors.New("cut short")
			}
			return dump.Table{}, nil, io.EOF
		}
		i++
		return d[i-1].Table, d[i-1].Row, nil
	}
}
