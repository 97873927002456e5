// Package dump is the engine-neutral form of a control plane's whole
// database: every table, every column with its kind, and a file format of
// JSON lines that `rayplaned admin export` writes and `admin import` reads
// to move a deployment from one store engine to another (SQLite to
// PostgreSQL). The store engines read and write rows in this form
// (Export/Import); this package knows no SQL and no engine.
//
// Values are canonical Go values, whatever the engine stores: Text is
// string, Int is int64 (times are Unix nanoseconds, as every engine stores
// them), Real is float64, Bool is bool, Bytes is []byte, and NULL is nil.
// Secrets travel as they are stored, sealed: the key file goes with the data
// directory, never into the dump.
package dump

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// Kind is what a column holds.
type Kind int

const (
	Text Kind = iota
	Int
	Real
	Bool
	Bytes
)

// Column is one column of a table.
type Column struct {
	Name     string
	Kind     Kind
	Nullable bool
}

// Table is one table, its columns in the order rows list them.
type Table struct {
	Name string
	// Key is the columns that identify a row (for comparing dumps).
	Key     []string
	Columns []Column
}

// Row is one row, its values in the order of its table's Columns.
type Row []any

func col(name string, k Kind) Column      { return Column{Name: name, Kind: k} }
func nullable(name string, k Kind) Column { return Column{Name: name, Kind: k, Nullable: true} }

// Tables is every table of the schema, parents before children, so rows
// imported in this order satisfy every foreign key. Each engine's tests
// check that this list holds every table and column of its schema.
var Tables = []Table{
	{Name: "organizations", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("name", Text), col("system", Bool), col("created_at", Int)}},
	{Name: "api_tokens", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("org_id", Text), col("name", Text), col("role", Text), col("prefix", Text), col("hash", Bytes),
		col("created_at", Int), col("created_by", Text), nullable("expires_at", Int), nullable("revoked_at", Int), nullable("last_used_at", Int)}},
	{Name: "clouds", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("org_id", Text), col("name", Text), col("provider", Text), col("region", Text), col("credentials", Text),
		col("secret", Text), col("storage_location", Text), col("quotas", Text), col("heartbeat", Text), col("status", Text),
		col("status_reason", Text), col("created_at", Int), col("updated_at", Int), nullable("verified_at", Int)}},
	{Name: "compute_configs", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("org_id", Text), col("name", Text), col("latest_version", Int), col("created_at", Int), col("updated_at", Int)}},
	{Name: "compute_config_versions", Key: []string{"config_id", "version"}, Columns: []Column{
		col("config_id", Text), col("version", Int), col("spec", Text), col("created_at", Int)}},
	{Name: "clusters", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("org_id", Text), col("name", Text), col("cloud_id", Text), col("compute_config_id", Text),
		col("compute_config_version", Int), col("runtime", Text), col("desired_state", Text), col("status", Text), col("status_reason", Text),
		col("status_changed_at", Int), col("head_address", Text), col("created_at", Int), col("updated_at", Int),
		col("delete_requested", Bool), col("resource_requests", Text), col("generation", Int), col("observed_generation", Int),
		col("conditions", Text)}},
	{Name: "nodes", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("cluster_id", Text), col("grp", Text), col("head", Bool), col("instance_type", Text), col("market", Text),
		col("instance_id", Text), col("address", Text), col("status", Text), col("status_reason", Text), col("status_changed_at", Int),
		nullable("last_heartbeat_at", Int), nullable("idle_since", Int), col("resources", Text), col("usage", Text),
		col("created_at", Int), col("updated_at", Int),
		nullable("bootstrap_prefix", Text), nullable("bootstrap_hash", Bytes), nullable("bootstrap_expires_at", Int), nullable("bootstrap_used_at", Int),
		nullable("credential_prefix", Text), nullable("credential_hash", Bytes), nullable("drain_deadline", Int), col("drained", Bool),
		col("runtime_state", Text), col("runtime_message", Text), col("vcpus", Real), col("price", Real),
		col("runtime_crashes", Int), col("runtime_hash", Text),
		nullable("credential_expires_at", Int), nullable("prev_credential_prefix", Text), nullable("prev_credential_hash", Bytes),
		nullable("prev_credential_expires_at", Int), col("access_url", Text), col("access_public_key_sha256", Text),
		nullable("demand", Text)}},
	{Name: "cluster_events", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("cluster_id", Text), col("time", Int), col("kind", Text), col("message", Text)}},
	{Name: "idempotency_keys", Key: []string{"org_id", "key"}, Columns: []Column{
		col("org_id", Text), col("key", Text), col("request_hash", Text), col("object_id", Text), col("created_at", Int)}},
	{Name: "audit_events", Key: []string{"id"}, Columns: []Column{
		col("id", Text), col("org_id", Text), col("actor_id", Text), col("action", Text), col("target_type", Text), col("target_id", Text),
		col("result", Text), col("reason", Text), col("remote_addr", Text), col("time", Int)}},
}

// TableNamed answers the table called name.
func TableNamed(name string) (Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// ColumnNames answers t's column names in order.
func (t Table) ColumnNames() []string {
	names := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		names[i] = c.Name
	}
	return names
}

// Normalize turns what a database driver answered for column c into the
// canonical value: integers of any width to int64, 0/1 to bool for Bool
// columns, integers to float64 for Real ones, text as string, blobs as
// []byte. Anything else (a NULL in a NOT NULL column, a string where a
// number belongs) is an error naming the column.
func Normalize(c Column, v any) (any, error) {
	if v == nil {
		if !c.Nullable {
			return nil, fmt.Errorf("column %s: NULL in a column that holds none", c.Name)
		}
		return nil, nil
	}
	switch c.Kind {
	case Text:
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case Int:
		switch x := v.(type) {
		case int64:
			return x, nil
		case int32:
			return int64(x), nil
		case int16:
			return int64(x), nil
		case int:
			return int64(x), nil
		}
	case Real:
		switch x := v.(type) {
		case float64:
			return x, nil
		case float32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		}
	case Bool:
		switch x := v.(type) {
		case bool:
			return x, nil
		case int64:
			if x == 0 || x == 1 {
				return x == 1, nil
			}
		}
	case Bytes:
		if x, ok := v.([]byte); ok {
			return bytes.Clone(x), nil
		}
	}
	return nil, fmt.Errorf("column %s: unexpected value of type %T", c.Name, v)
}

// The file: a header line, then one line per row, tables in the order of
// Tables, then a trailer with the number of rows of each table, so a file
// cut short is refused rather than imported in part.

const format = "rayplane-dump"

// Version is the version of the file format this binary writes and reads.
const Version = 1

type header struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Source says which engine and schema version wrote the file.
	Source string `json:"source"`
}

type line struct {
	Table string            `json:"table,omitempty"`
	Row   []json.RawMessage `json:"row,omitempty"`
	// End is the trailer: rows written per table.
	End map[string]int `json:"end,omitempty"`
}

// Writer writes a dump.
type Writer struct {
	w      *bufio.Writer
	counts map[string]int
	last   int // index in Tables of the last table written
}

// NewWriter writes the header of a dump from source to w.
func NewWriter(w io.Writer, source string) (*Writer, error) {
	d := &Writer{w: bufio.NewWriterSize(w, 1<<16), counts: map[string]int{}}
	for _, t := range Tables {
		d.counts[t.Name] = 0
	}
	return d, d.put(header{Format: format, Version: Version, Source: source})
}

func (d *Writer) put(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = d.w.Write(b)
	return err
}

// Write writes one row of t; tables must come in the order of Tables.
func (d *Writer) Write(t Table, r Row) error {
	i := tableIndex(t.Name)
	if i < 0 {
		return fmt.Errorf("dump: unknown table %s", t.Name)
	}
	if i < d.last {
		return fmt.Errorf("dump: table %s after %s", t.Name, Tables[d.last].Name)
	}
	d.last = i
	if len(r) != len(t.Columns) {
		return fmt.Errorf("dump: %s row of %d values, want %d", t.Name, len(r), len(t.Columns))
	}
	vals := make([]json.RawMessage, len(r))
	for j, v := range r {
		b, err := encodeValue(t.Columns[j], v)
		if err != nil {
			return fmt.Errorf("dump: %s: %w", t.Name, err)
		}
		vals[j] = b
	}
	d.counts[t.Name]++
	return d.put(line{Table: t.Name, Row: vals})
}

// Close writes the trailer and flushes.
func (d *Writer) Close() error {
	if err := d.put(line{End: d.counts}); err != nil {
		return err
	}
	return d.w.Flush()
}

func tableIndex(name string) int {
	for i, t := range Tables {
		if t.Name == name {
			return i
		}
	}
	return -1
}

func encodeValue(c Column, v any) (json.RawMessage, error) {
	v, err := Normalize(c, v)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return json.RawMessage("null"), nil
	}
	if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return nil, fmt.Errorf("column %s: %v has no JSON form", c.Name, f)
	}
	return json.Marshal(v) // []byte becomes base64, int64 stays exact
}

func decodeValue(c Column, raw json.RawMessage) (any, error) {
	if string(raw) == "null" {
		return Normalize(c, nil)
	}
	var err error
	var v any
	switch c.Kind {
	case Text:
		var s string
		err = json.Unmarshal(raw, &s)
		v = s
	case Int:
		var n int64
		err = json.Unmarshal(raw, &n)
		v = n
	case Real:
		var f float64
		err = json.Unmarshal(raw, &f)
		v = f
	case Bool:
		var b bool
		err = json.Unmarshal(raw, &b)
		v = b
	case Bytes:
		var s string
		if err = json.Unmarshal(raw, &s); err == nil {
			v, err = base64.StdEncoding.DecodeString(s)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return v, nil
}

// Reader reads a dump.
type Reader struct {
	dec    *json.Decoder
	Source string
	counts map[string]int
	last   int
	done   bool
}

// NewReader reads and checks the header of a dump.
func NewReader(r io.Reader) (*Reader, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var h header
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("dump: header: %w", err)
	}
	if h.Format != format {
		return nil, errors.New("dump: not a rayplane dump")
	}
	if h.Version != Version {
		return nil, fmt.Errorf("dump: format version %d, this binary reads %d", h.Version, Version)
	}
	return &Reader{dec: dec, Source: h.Source, counts: map[string]int{}}, nil
}

// Next answers the next row, or io.EOF after the trailer, once the row
// counts it holds match the rows read.
func (d *Reader) Next() (Table, Row, error) {
	if d.done {
		return Table{}, nil, io.EOF
	}
	var l line
	if err := d.dec.Decode(&l); err != nil {
		if errors.Is(err, io.EOF) {
			return Table{}, nil, errors.New("dump: the file ends before its trailer: it was cut short")
		}
		return Table{}, nil, fmt.Errorf("dump: %w", err)
	}
	if l.End != nil {
		for _, t := range Tables {
			if l.End[t.Name] != d.counts[t.Name] {
				return Table{}, nil, fmt.Errorf("dump: table %s: the trailer counts %d rows, the file holds %d", t.Name, l.End[t.Name], d.counts[t.Name])
			}
		}
		for name := range l.End {
			if tableIndex(name) < 0 {
				return Table{}, nil, fmt.Errorf("dump: table %s is not one this binary knows", name)
			}
		}
		d.done = true
		if d.dec.More() {
			return Table{}, nil, errors.New("dump: data after the trailer")
		}
		return Table{}, nil, io.EOF
	}
	i := tableIndex(l.Table)
	if i < 0 {
		return Table{}, nil, fmt.Errorf("dump: table %q is not one this binary knows", l.Table)
	}
	if i < d.last {
		return Table{}, nil, fmt.Errorf("dump: table %s after %s", l.Table, Tables[d.last].Name)
	}
	d.last = i
	t := Tables[i]
	if len(l.Row) > len(t.Columns) || (len(l.Row) < len(t.Columns) && !nullableFrom(t, len(l.Row))) {
		return Table{}, nil, fmt.Errorf("dump: %s row of %d values, want %d", t.Name, len(l.Row), len(t.Columns))
	}
	// A row shorter than the table was written by a binary from before
	// its last columns were added (columns are only ever appended, and
	// nullable): they import as NULL.
	r := make(Row, len(t.Columns))
	for j, raw := range l.Row {
		v, err := decodeValue(t.Columns[j], raw)
		if err != nil {
			return Table{}, nil, fmt.Errorf("dump: %s row %d: %w", t.Name, d.counts[t.Name]+1, err)
		}
		r[j] = v
	}
	d.counts[t.Name]++
	return t, r, nil
}

// nullableFrom reports whether every column of t from i on is nullable.
func nullableFrom(t Table, i int) bool {
	for _, c := range t.Columns[i:] {
		if !c.Nullable {
			return false
		}
	}
	return true
}

// Exporter is a store that reads its tables in this form: every row of
// each of tables (all of Tables when nil), in key order, from one
// consistent snapshot.
type Exporter interface {
	Export(ctx context.Context, tables []Table, fn func(Table, Row) error) error
}

// Importer is a store that fills its empty database from rows in the
// order of Tables, in one transaction: all of them or none. It answers how
// many rows each table got.
type Importer interface {
	Import(ctx context.Context, next func() (Table, Row, error)) (map[string]int, error)
}
