package dump

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

func row(t Table, vals map[string]any) Row {
	r := make(Row, len(t.Columns))
	for i, c := range t.Columns {
		v, ok := vals[c.Name]
		if !ok {
			switch c.Kind {
			case Text:
				v = "x"
			case Int:
				v = int64(1)
			case Real:
				v = 0.5
			case Bool:
				v = false
			case Bytes:
				v = []byte{1}
			}
		}
		r[i] = v
	}
	return r
}

// TestRoundTrip: values at the edges of their kinds (the largest
// nanosecond time, bytes that are not UTF-8, NULLs, text with every kind
// of escape) read back exactly, the source travels, and the trailer
// matches.
func TestRoundTrip(t *testing.T) {
	orgs, _ := TableNamed("organizations")
	nodes, _ := TableNamed("nodes")
	in := []struct {
		t Table
		r Row
	}{
		{orgs, row(orgs, map[string]any{"id": "org_1", "name": "a \"quoted\"\n\u2028 name", "system": true, "created_at": int64(math.MaxInt64)})},
		{orgs, row(orgs, map[string]any{"id": "org_2", "created_at": int64(math.MinInt64)})},
		{nodes, row(nodes, map[string]any{"id": "node_1", "bootstrap_hash": []byte{0xff, 0, 0xfe}, "idle_since": nil, "vcpus": 0.1, "price": 1e-9})},
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, "sqlite schema 7")
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range in {
		if err := w.Write(x.t, x.r); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if r.Source != "sqlite schema 7" {
		t.Errorf("source %q", r.Source)
	}
	for i, x := range in {
		tab, got, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if tab.Name != x.t.Name || !reflect.DeepEqual(got, x.r) {
			t.Errorf("row %d: %s %#v, want %s %#v", i, tab.Name, got, x.t.Name, x.r)
		}
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last row: %v", err)
	}

	// Cut short anywhere before the trailer: refused, never a clean end.
	lines := strings.SplitAfter(buf.String(), "\n")
	for n := 1; n < len(lines)-1; n++ {
		r, err := NewReader(strings.NewReader(strings.Join(lines[:n], "")))
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, _, err = r.Next()
			if err != nil {
				break
			}
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("a dump cut to %d lines read to a clean end", n)
		}
	}
}

// TestWriterRefuses: a NULL where a column holds none, a wrong type, a
// table out of order.
func TestWriterRefuses(t *testing.T) {
	orgs, _ := TableNamed("organizations")
	nodes, _ := TableNamed("nodes")
	w, err := NewWriter(io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(orgs, row(orgs, map[string]any{"name": nil})); err == nil {
		t.Error("a NULL name was written")
	}
	if err := w.Write(orgs, row(orgs, map[string]any{"created_at": "yesterday"})); err == nil {
		t.Error("a string time was written")
	}
	if err := w.Write(nodes, row(nodes, nil)); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(orgs, row(orgs, nil)); err == nil {
		t.Error("organizations after nodes was written")
	}
}
