package gcptest

import (
	"encoding/json"
	"net/http"
)

// apiError is an error answer in Google's JSON shape:
//
//	{"error":{"code":403,"message":"...","errors":[{"message":"...","domain":"global","reason":"forbidden"}],"status":"PERMISSION_DENIED"}}
//
// with a google.rpc.BadRequest detail naming the field for invalid requests.
type apiError struct {
	Code    int
	Message string
	Reason  string // errors[0].reason: invalid, notFound, alreadyExists, forbidden, ...
	Status  string // google.rpc.Code name
	Field   string // for a BadRequest field violation
	Header  http.Header
}

func (e *apiError) Error() string { return e.Message }

func (e *apiError) field(f string) *apiError { e.Field = f; return e }

func errInvalid(msg string) *apiError {
	return &apiError{Code: 400, Message: msg, Reason: "invalid", Status: "INVALID_ARGUMENT"}
}

func errNotFound(msg string) *apiError {
	return &apiError{Code: 404, Message: msg, Reason: "notFound", Status: "NOT_FOUND"}
}

func errAlreadyExists(msg string) *apiError {
	return &apiError{Code: 409, Message: msg, Reason: "alreadyExists", Status: "ALREADY_EXISTS"}
}

func errForbidden(msg string) *apiError {
	return &apiError{Code: 403, Message: msg, Reason: "forbidden", Status: "PERMISSION_DENIED"}
}

func errUnauthenticated(msg, reason string) *apiError {
	return &apiError{Code: 401, Message: msg, Reason: reason, Status: "UNAUTHENTICATED",
		Header: http.Header{"Www-Authenticate": {`Bearer realm="https://accounts.google.com/"`}}}
}

func errInternal(msg string) *apiError {
	return &apiError{Code: 500, Message: msg, Reason: "backendError", Status: "INTERNAL"}
}

func errUnimplemented(msg string) *apiError {
	return &apiError{Code: 501, Message: msg, Reason: "notImplemented", Status: "UNIMPLEMENTED"}
}

// errStatus is an injected fault with the reason Google uses for the code.
func errStatus(code int) *apiError {
	switch code {
	case 429:
		return &apiError{Code: 429, Message: "Rate Limit Exceeded", Reason: "rateLimitExceeded", Status: "RESOURCE_EXHAUSTED"}
	case 500:
		return &apiError{Code: 500, Message: "Internal error. Please try again or contact Google Support.", Reason: "backendError", Status: "INTERNAL"}
	case 502:
		return &apiError{Code: 502, Message: "Bad Gateway", Reason: "backendError", Status: "UNAVAILABLE"}
	case 503:
		return &apiError{Code: 503, Message: "The service is currently unavailable.", Reason: "backendError", Status: "UNAVAILABLE"}
	case 403:
		return errForbidden("Forbidden")
	case 404:
		return errNotFound("Not Found")
	case 400:
		return errInvalid("Bad Request")
	}
	return &apiError{Code: code, Message: http.StatusText(code), Reason: "backendError", Status: "UNKNOWN"}
}

func (e *apiError) write(w http.ResponseWriter) {
	item := map[string]any{"message": e.Message, "domain": "global", "reason": e.Reason}
	body := map[string]any{
		"code":    e.Code,
		"message": e.Message,
		"errors":  []any{item},
		"status":  e.Status,
	}
	if e.Field != "" {
		body["details"] = []any{map[string]any{
			"@type": "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []any{map[string]any{
				"field":       e.Field,
				"description": e.Message,
			}},
		}}
	}
	for k, vs := range e.Header {
		w.Header()[k] = vs
	}
	writeJSON(w, e.Code, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// oauthError is an error of the OAuth token endpoints (RFC 6749 §5.2), the
// shape oauth2.googleapis.com/token and sts.googleapis.com/v1/token answer.
func writeOAuthError(w http.ResponseWriter, code int, kind, description string) {
	writeJSON(w, code, map[string]any{"error": kind, "error_description": description})
}
