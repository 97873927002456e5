package dump

import (
	"bytes"
	"encoding/json"
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

// TestOlderDumpsImport: a dump written before a table's last nullable
// columns were added (its rows are shorter) reads with them NULL; a row
// missing a column that is not nullable is refused.
func TestOlderDumpsImport(t *testing.T) {
	nodes, _ := TableNamed("nodes")
	clusters, _ := TableNamed("clusters")
	if last := nodes.Columns[len(nodes.Columns)-1]; last.Name != "demand" || !last.Nullable {
		t.Fatalf("nodes' last column is %+v: this test drops demand, added last", last)
	}
	write := func(tab Table, drop int) string {
		var b bytes.Buffer
		w, err := NewWriter(&b, "test")
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Write(tab, row(tab, nil)); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		// What an older binary wrote: the row without its last drop values.
		var out []string
		for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
			var m map[string]json.RawMessage
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatal(err)
			}
			if raw, ok := m["row"]; ok {
				var vals []json.RawMessage
				if err := json.Unmarshal(raw, &vals); err != nil {
					t.Fatal(err)
				}
				m["row"], _ = json.Marshal(vals[:len(vals)-drop])
				nl, _ := json.Marshal(m)
				line = string(nl)
			}
			out = append(out, line)
		}
		return strings.Join(out, "\n") + "\n"
	}
	d, err := NewReader(strings.NewReader(write(nodes, 1)))
	if err != nil {
		t.Fatal(err)
	}
	_, r, err := d.Next()
	if err != nil || len(r) != len(nodes.Columns) || r[len(r)-1] != nil {
		t.Fatalf("a nodes row without demand: %v, %d values, demand %v", err, len(r), r[len(r)-1])
	}
	d, err = NewReader(strings.NewReader(write(clusters, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Next(); err == nil || !strings.Contains(err.Error(), "clusters row of") {
		t.Fatalf("a clusters row missing its last (not nullable) column: %v", err)
	}
}
