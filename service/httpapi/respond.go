package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strconv"
	"strings"

	"github.com/gorilla/mux"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the status is out; a broken connection has nobody to tell
}

// writeError answers err as the JSON error body. Anything that is not an
// *api.Error is an internal error whose details stay in the server log.
func writeError(w http.ResponseWriter, err error) {
	var e *api.Error
	if !errors.As(err, &e) {
		e = &api.Error{Code: api.CodeInternal, Message: "internal error; the server log has details"}
	}
	writeJSON(w, httpStatus(e.Code), api.ErrorBody{Error: e})
}

// decode reads one JSON object into v: the body must be application/json,
// at most MaxBodyBytes, with no unknown fields and nothing after the
// object. checkBody reads it first, against v's type: duplicate keys,
// types and ranges by full path, strings, times and depth.
func (c *call) decode(v any) error {
	ct := c.r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return api.Errorf(api.CodeUnsupportedMedia, "Content-Type must be application/json, got %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, c.s.cfg.MaxBodyBytes))
	if err != nil {
		return decodeError(err, c.s.cfg.MaxBodyBytes)
	}
	if err := checkBody(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	// What checkBody passes decodes; this still answers any error
	// encoding/json finds, should the two ever disagree.
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err, c.s.cfg.MaxBodyBytes)
	}
	return nil
}

func decodeError(err error, limit int64) error {
	var (
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &tooBig):
		return api.Errorf(api.CodeTooLarge, "request body is larger than %d bytes", min(limit, tooBig.Limit))
	case errors.As(err, &syntax):
		return api.Errorf(api.CodeInvalid, "request body is not valid JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		field := jsonPath(typ.Field)
		if field == "" {
			field = "(body)"
		}
		return &api.Error{Code: api.CodeInvalid, Message: "wrong JSON type for " + field,
			Fields: []api.FieldError{{Field: field, Reason: fmt.Sprintf("must be a JSON %s, not %s", jsonKind(typ.Type.Kind().String()), typ.Value)}}}
	case errors.Is(err, io.EOF):
		return api.Errorf(api.CodeInvalid, "request body is empty: send a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return api.Errorf(api.CodeInvalid, "request body ends in the middle of a JSON value")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return &api.Error{Code: api.CodeInvalid, Message: "unknown field " + f,
			Fields: []api.FieldError{{Field: f, Reason: "is not a field of this request"}}}
	}
	return api.Errorf(api.CodeInvalid, "request body: %s", msg)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "int32", "uint", "uint64", "float64", "float32":
		return "number"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "map", "struct", "ptr":
		return "object"
	}
	return goKind
}

// pathID returns the path variable name, checked to be an id of kind prefix.
func (c *call) pathID(name, prefix string) (string, error) {
	id := mux.Vars(c.r)[name]
	if !service.ValidID(prefix, id) {
		return "", &api.Error{Code: api.CodeInvalid, Message: fmt.Sprintf("malformed %s %q", name, id),
			Fields: []api.FieldError{{Field: name, Reason: fmt.Sprintf("must be an id like %s_…", prefix)}}}
	}
	return id, nil
}

// listOptions reads limit and page_token.
func (c *call) listOptions() (api.ListOptions, error) {
	q := c.r.URL.Query()
	var opts api.ListOptions
	var fe api.FieldErrors
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > api.MaxPageSize {
			fe.Add("limit", "must be a whole number from 1 to %d", api.MaxPageSize)
		}
		opts.Limit = n
	}
	opts.PageToken = q.Get("page_token")
	return opts, fe.Err()
}

// jsonPath drops the Go names of embedded structs that encoding/json puts
// in a type error's field path (ComputeConfigSpec.worker_groups → worker_groups).
func jsonPath(p string) string {
	parts := strings.Split(p, ".")
	out := parts[:0]
	for _, s := range parts {
		if s != "" && s[0] >= 'A' && s[0] <= 'Z' {
			continue
		}
		out = append(out, s)
	}
	return strings.Join(out, ".")
}

// answer writes v with status 200, or passes err on.
func answer[T any](c *call, v T, err error) error {
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, v)
	return nil
}

// answerList reads limit and page_token and answers the page list gives.
func answerList[T any](c *call, list func(opts api.ListOptions) (api.Page[T], error)) error {
	opts, err := c.listOptions()
	if err != nil {
		return err
	}
	page, err := list(opts)
	return answer(c, page, err)
}

// HTTPStatus is the single mapping from error code to HTTP status; the web
// console answers its pages with it too.
func HTTPStatus(c api.Code) int { return httpStatus(c) }

func httpStatus(c api.Code) int {
	switch c {
	case api.CodeInvalid:
		return http.StatusBadRequest
	case api.CodeUnauthorized:
		return http.StatusUnauthorized
	case api.CodeForbidden:
		return http.StatusForbidden
	case api.CodeNotFound:
		return http.StatusNotFound
	case api.CodeConflict:
		return http.StatusConflict
	case api.CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case api.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case api.CodeUnsupportedMedia:
		return http.StatusUnsupportedMediaType
	case api.CodeUnavailable:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
