package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/rayplane/rayplane/internal/api"
)

// checkBody walks the tokens of a JSON request body against the Go type it
// is about to be decoded into, before encoding/json sees it, because
// encoding/json is lenient where an API must not be and vague where a user
// needs a path:
//
//   - a key given twice ({"name":"a","name":"b"}, or "name" and "NAME",
//     which encoding/json matches alike) is refused where encoding/json
//     keeps the last silently;
//   - a wrong type is named with its full path and index
//     (worker_groups[1].max_nodes) and the JSON type received, where
//     encoding/json names worker_groups.max_nodes;
//   - a number in an integer field must be a whole number within the
//     field's range, said so with its path;
//   - strings, keys included, must be valid UTF-8 without NUL. encoding/json
//     replaces invalid bytes (and unpaired surrogate escapes like "\ud800")
//     with U+FFFD, so the check reads each string's raw bytes: a U+FFFD the
//     client sent is accepted, one encoding/json would have made up is not;
//   - times must be RFC 3339 with at most nine fractional digits (more
//     would be dropped) and between api.MinTimestamp and api.MaxTimestamp
//     (the range the store keeps exactly);
//   - nesting is bounded (maxBodyDepth), so a hostile body cannot make the
//     walk or the decoder go deep.
//
// Every problem is answered together, up to maxBodyErrors. A body that
// passes decodes with encoding/json without an error.
func checkBody(body []byte, t reflect.Type) error {
	w := &bodyWalker{dec: json.NewDecoder(bytes.NewReader(body)), body: body}
	w.dec.UseNumber()
	tok, raw, err := w.token()
	switch {
	case errors.Is(err, io.EOF):
		return api.Errorf(api.CodeInvalid, "request body is empty: send a JSON object")
	case err != nil:
		return walkError(err)
	}
	if err := w.value(tok, raw, t, "", 0); err != nil {
		return walkError(err)
	}
	if _, _, err := w.token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return walkError(err)
		}
		return api.Errorf(api.CodeInvalid, "request body must hold exactly one JSON object")
	}
	if len(w.fe) == 0 {
		return nil
	}
	e := w.fe.Err().(*api.Error)
	if w.unlisted > 0 {
		e.Message += fmt.Sprintf(" (and %d more not listed)", w.unlisted)
	}
	return e
}

const (
	// maxBodyDepth bounds how deep arrays and objects nest in a request
	// body; the request types nest at most 5 (a dry run's resource
	// request shapes).
	maxBodyDepth = 32
	// maxBodyErrors bounds the fields one error answer lists.
	maxBodyErrors = api.MaxFieldErrors
	// maxKeyEcho bounds how much of a key an error answer repeats.
	maxKeyEcho = 256
)

type bodyWalker struct {
	dec      *json.Decoder
	body     []byte
	fe       api.FieldErrors
	unlisted int // problems past maxBodyErrors
	quiet    int // > 0 inside a value already refused as a whole: its contents are not reported
}

// errTooDeep stops the walk where the body nests deeper than maxBodyDepth.
type errTooDeep struct{ path string }

func (e errTooDeep) Error() string { return "too deep at " + e.path }

// walkError answers an error that stopped the walk: too deep, or not JSON.
func walkError(err error) error {
	var deep errTooDeep
	if errors.As(err, &deep) {
		field := deep.path
		if field == "" {
			field = "(body)"
		}
		return &api.Error{Code: api.CodeInvalid, Message: fmt.Sprintf("request body nests arrays and objects deeper than %d levels", maxBodyDepth),
			Fields: []api.FieldError{{Field: field, Reason: fmt.Sprintf("nests deeper than %d levels", maxBodyDepth)}}}
	}
	return decodeError(err, 0)
}

// token reads the next token and answers the raw bytes it came from (with
// any separator and white space before it).
func (w *bodyWalker) token() (json.Token, []byte, error) {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	return tok, w.body[start:w.dec.InputOffset()], err
}

// inner reads a token that must be there: the end of input is an
// unexpected one.
func (w *bodyWalker) inner() (json.Token, []byte, error) {
	tok, raw, err := w.token()
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return tok, raw, err
}

func (w *bodyWalker) add(path, format string, args ...any) {
	switch {
	case w.quiet > 0:
	case len(w.fe) >= maxBodyErrors:
		w.unlisted++
	default:
		if path == "" {
			path = "(body)"
		}
		w.fe.Add(path, format, args...)
	}
}

var (
	timeType        = reflect.TypeFor[time.Time]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// value checks the value that starts with tok against t (nil: anything).
func (w *bodyWalker) value(tok json.Token, raw []byte, t reflect.Type, path string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && t != timeType && (t.Kind() == reflect.Interface || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil // decoded by rules of its own: only the generic checks apply
	}
	switch tok := tok.(type) {
	case json.Delim:
		if depth >= maxBodyDepth {
			return errTooDeep{path}
		}
		if tok == '[' {
			return w.array(t, path, depth+1)
		}
		return w.object(t, path, depth+1)
	case nil:
		// null leaves the field as it was, as encoding/json does.
	case string:
		w.text(path, "", tok, raw)
		switch {
		case t == nil || t.Kind() == reflect.String:
		case t == timeType:
			w.timestamp(path, tok, raw)
		default:
			w.wrongType(path, t, "string")
		}
	case json.Number:
		w.number(path, string(tok), t)
	case bool:
		if t != nil && t.Kind() != reflect.Bool {
			w.wrongType(path, t, "boolean")
		}
	}
	return nil
}

func (w *bodyWalker) wrongType(path string, t reflect.Type, got string) {
	want := "object"
	switch {
	case t == timeType:
		want = "string"
	case t.Kind() == reflect.String:
		want = "string"
	case t.Kind() == reflect.Bool:
		want = "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Float64:
		want = "number"
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		want = "array"
	}
	w.add(path, "must be a JSON %s, not %s", want, got)
}

func (w *bodyWalker) array(t reflect.Type, path string, depth int) error {
	if t != nil && t.Kind() != reflect.Slice && t.Kind() != reflect.Array {
		w.wrongType(path, t, "array")
		w.quiet++
		defer func() { w.quiet-- }()
		t = nil
	}
	var elem reflect.Type
	if t != nil {
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		tok, raw, err := w.inner()
		if err != nil {
			return err
		}
		if err := w.value(tok, raw, elem, path+"["+strconv.Itoa(i)+"]", depth); err != nil {
			return err
		}
	}
	_, _, err := w.inner() // ]
	return err
}

func (w *bodyWalker) object(t reflect.Type, path string, depth int) error {
	var fields []bodyField
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = structFields(t)
	case t.Kind() == reflect.Map:
	default:
		w.wrongType(path, t, "object")
		w.quiet++
		defer func() { w.quiet-- }()
		t = nil
	}
	seen := map[string]string{} // field name → the key that set it
	for w.dec.More() {
		tok, raw, err := w.inner()
		if err != nil {
			return err
		}
		key, _ := tok.(string) // the decoder answers only strings as keys
		name, field, elem, known := key, "", reflect.Type(nil), true
		switch {
		case t == nil:
			field = keyPath(path, key)
		case t.Kind() == reflect.Map:
			field, elem = path+"["+strconv.Quote(echo(key))+"]", t.Elem()
		default:
			f, ok := lookupField(fields, key)
			if ok {
				name, field, elem = f.name, joinPath(path, f.name), f.typ
			} else {
				field, known = keyPath(path, key), false
				w.add(field, "is not a field of this request")
			}
		}
		if known {
			w.text(field, "key ", key, raw)
		}
		if prev, dup := seen[name]; dup && known {
			if prev == key {
				w.add(field, "appears twice")
			} else {
				w.add(field, "appears twice (as %q and %q)", echo(prev), echo(key))
			}
		}
		seen[name] = key
		tok, raw, err = w.inner()
		if err != nil {
			return err
		}
		if !known {
			w.quiet++
		}
		err = w.value(tok, raw, elem, field, depth)
		if !known {
			w.quiet--
		}
		if err != nil {
			return err
		}
	}
	_, _, err := w.inner() // }
	return err
}

// text refuses NUL and bytes that are not UTF-8 in a string (what names
// it: "" for a value, "key " for an object's key). raw is the token's raw
// input.
func (w *bodyWalker) text(path, what, s string, raw []byte) {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		w.add(path, "%smust not contain NUL characters", what)
	case !rawStringValid(raw):
		w.add(path, "%smust be valid UTF-8", what)
	}
}

// rawStringValid reports whether the JSON string token in raw (separators
// and white space may come first) is valid UTF-8 as sent: no invalid
// bytes, no unpaired surrogate escape. The decoder has checked its syntax.
func rawStringValid(raw []byte) bool {
	i := bytes.IndexByte(raw, '"')
	if i < 0 {
		return true
	}
	s := raw[i+1:]
	for j := 0; j < len(s); {
		switch c := s[j]; {
		case c == '"':
			return true
		case c == '\\' && j+1 < len(s) && s[j+1] == 'u':
			r := hex4(s[j+2:])
			j += 6
			switch {
			case r >= 0xD800 && r < 0xDC00: // must be followed by a low surrogate
				if j+6 > len(s) || s[j] != '\\' || s[j+1] != 'u' {
					return false
				}
				if lo := hex4(s[j+2:]); lo < 0xDC00 || lo >= 0xE000 {
					return false
				}
				j += 6
			case r >= 0xDC00 && r < 0xE000:
				return false
			}
		case c == '\\':
			j += 2
		case c < utf8.RuneSelf:
			j++
		default:
			r, n := utf8.DecodeRune(s[j:])
			if r == utf8.RuneError && n == 1 {
				return false
			}
			j += n
		}
	}
	return true
}

// hex4 reads the four hex digits of a \u escape, -1 when they are not.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	n, err := strconv.ParseUint(string(b[:4]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(n)
}

func (w *bodyWalker) timestamp(path, s string, raw []byte) {
	var t time.Time
	// time.Time decodes the raw string, escapes and all: a time written
	// with escapes does not decode, so it is refused here already.
	if bytes.IndexByte(raw, '\\') >= 0 || t.UnmarshalText([]byte(s)) != nil {
		w.add(path, "must be an RFC 3339 time like 2030-01-02T15:04:05Z")
		return
	}
	if m := fracSeconds.FindStringSubmatch(s); m != nil && len(m[1]) > 9 {
		w.add(path, "must have at most 9 fractional digits of a second (nanoseconds)")
		return
	}
	if t.Before(api.MinTimestamp) || t.After(api.MaxTimestamp) {
		w.add(path, "must be between %s and %s", api.MinTimestamp.Format(time.RFC3339), api.MaxTimestamp.Format(time.RFC3339))
	}
}

var fracSeconds = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}[.,]([0-9]+)`)

func (w *bodyWalker) number(path, s string, t reflect.Type) {
	if t == nil {
		return
	}
	switch k := t.Kind(); {
	case k >= reflect.Int && k <= reflect.Uint64:
		w.integer(path, s, t)
	case k == reflect.Float32 || k == reflect.Float64:
		f, err := strconv.ParseFloat(s, t.Bits())
		mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
		switch {
		case err != nil:
			w.add(path, "is out of the range of a %d-bit floating-point number", t.Bits())
		case f == 0 && strings.ContainsAny(mantissa, "123456789"):
			// 1e-400 would be stored, and read back, as 0.
			w.add(path, "is too small for a %d-bit floating-point number: it would read back as 0", t.Bits())
		}
	default:
		w.wrongType(path, t, "number")
	}
}

// integer checks that the JSON number s is a whole number within the range
// of the integer type t, written as encoding/json reads one: digits, no
// fraction or exponent.
func (w *bodyWalker) integer(path, s string, t reflect.Type) {
	signed := t.Kind() <= reflect.Int64
	var err error
	if signed {
		_, err = strconv.ParseInt(s, 10, t.Bits())
	} else {
		_, err = strconv.ParseUint(s, 10, t.Bits())
	}
	if err == nil {
		return
	}
	neg, digits, exp := splitNumber(s)
	lo, hi := "0", strconv.FormatUint(1<<t.Bits()-1, 10)
	if signed {
		lo, hi = strconv.FormatInt(-1<<(t.Bits()-1), 10), strconv.FormatInt(1<<(t.Bits()-1)-1, 10)
	}
	switch {
	case digits != "" && exp < 0:
		w.add(path, "must be a whole number")
	case neg && exceeds(digits, exp, strings.TrimPrefix(lo, "-")):
		w.add(path, "must be at least %s", lo)
	case !neg && exceeds(digits, exp, hi):
		w.add(path, "must be at most %s", hi)
	default:
		w.add(path, "must be written as a whole number, without a fraction or exponent")
	}
}

// exceeds reports whether digits×10^exp (a whole number, digits without
// leading zeros) is more than limit (decimal digits).
func exceeds(digits string, exp int, limit string) bool {
	if digits == "" {
		return false
	}
	n := len(digits) + exp
	if n != len(limit) {
		return n > len(limit)
	}
	return digits+strings.Repeat("0", exp) > limit // exp <= len(limit) here
}

// splitNumber reads a JSON number as sign, significant digits (no leading
// or trailing zeros; "" for zero) and the power of ten they are scaled by.
// An exponent too large for an int is clamped: such a number is out of
// any range, or not whole, all the same.
func splitNumber(s string) (neg bool, digits string, exp int) {
	s, neg = strings.CutPrefix(s, "-")
	mant, e, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	if e != "" {
		n, err := strconv.ParseInt(e, 10, 32)
		if err != nil {
			n = 1 << 30
			if strings.HasPrefix(e, "-") {
				n = -n
			}
		}
		exp = int(n)
	}
	digits = strings.TrimLeft(intPart+frac, "0")
	exp -= len(frac)
	trimmed := strings.TrimRight(digits, "0")
	exp += len(digits) - len(trimmed)
	return neg, trimmed, exp
}

// bodyField is a JSON field of a struct: its name and Go type.
type bodyField struct {
	name string
	typ  reflect.Type
}

var fieldCache sync.Map // reflect.Type → []bodyField

// structFields lists the JSON fields of struct type t as encoding/json
// sees them: tag names, embedded structs' fields promoted (the outer name
// wins), "-" and unexported fields left out.
func structFields(t reflect.Type) []bodyField {
	if v, ok := fieldCache.Load(t); ok {
		return v.([]bodyField)
	}
	var out []bodyField
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				embedded = append(embedded, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, bodyField{name, f.Type})
	}
	for _, et := range embedded {
		for _, f := range structFields(et) {
			if !slices.ContainsFunc(out, func(g bodyField) bool { return g.name == f.name }) {
				out = append(out, f)
			}
		}
	}
	fieldCache.Store(t, out)
	return out
}

// lookupField finds the field key sets, as encoding/json does: the exact
// name first, else one equal under Unicode case folding.
func lookupField(fields []bodyField, key string) (bodyField, bool) {
	for _, f := range fields {
		if f.name == key {
			return f, true
		}
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return bodyField{}, false
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// keyPath is the path of a key that is no field: path.key when the key is
// plain, else path["key"] quoted (and cut short), so an error answer never
// repeats control characters or a long key.
func keyPath(path, key string) string {
	if plainKey.MatchString(key) {
		return joinPath(path, key)
	}
	return path + "[" + strconv.Quote(echo(key)) + "]"
}

// echo cuts a key short for an error answer.
func echo(key string) string {
	if len(key) > maxKeyEcho {
		return key[:maxKeyEcho] + "…"
	}
	return key
}
