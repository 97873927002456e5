package fleet

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/rayplane/rayplane/internal/cloud/sim"
)

// maxBody bounds a request body of the fleet's API.
const maxBody = 1 << 20

// Handler serves the fleet's API (see package sim's wire.go) to callers
// that present token.
func (f *Fleet) Handler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /v1/instances", func(w http.ResponseWriter, r *http.Request) {
		var req sim.LaunchRequest
		if !decode(w, r, &req) {
			return
		}
		inst, err := f.Launch(req)
		if err != nil {
			var le *LaunchError
			if !errors.As(err, &le) {
				le = &LaunchError{Kind: sim.ErrTransient, Msg: "launch failed"}
			}
			status := map[string]int{sim.ErrInvalid: http.StatusBadRequest, sim.ErrCapacity: http.StatusConflict}[le.Kind]
			if status == 0 {
				status = http.StatusServiceUnavailable
			}
			writeError(w, status, le.Kind, le.Msg)
			return
		}
		writeJSON(w, http.StatusOK, inst)
	})
	mux.HandleFunc("GET /v1/instances", func(w http.ResponseWriter, r *http.Request) {
		want := map[string]string{}
		for _, t := range r.URL.Query()["tag"] {
			k, v, ok := strings.Cut(t, "=")
			if !ok || k == "" {
				writeError(w, http.StatusBadRequest, sim.ErrInvalid, "tag: must be key=value")
				return
			}
			want[k] = v
		}
		writeJSON(w, http.StatusOK, sim.InstanceList{Items: f.List(want)})
	})
	mux.HandleFunc("DELETE /v1/instances/{id}", func(w http.ResponseWriter, r *http.Request) {
		f.Terminate(r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /v1/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f.Stats()) })
	mux.HandleFunc("GET /v1/faults", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f.Faults()) })
	mux.HandleFunc("PUT /v1/faults", func(w http.ResponseWriter, r *http.Request) {
		var x sim.Faults
		if !decode(w, r, &x) {
			return
		}
		res, err := f.SetFaults(x)
		if err != nil {
			writeError(w, http.StatusBadRequest, sim.ErrInvalid, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
	mux.HandleFunc("GET /v1/workload", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, f.Workload()) })
	mux.HandleFunc("PUT /v1/workload", func(w http.ResponseWriter, r *http.Request) {
		var x sim.Workload
		if !decode(w, r, &x) {
			return
		}
		if err := f.SetWorkload(x); err != nil {
			writeError(w, http.StatusBadRequest, sim.ErrInvalid, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, f.Workload())
	})
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, http.StatusUnauthorized, sim.ErrUnauthorized, "a valid Bearer token is required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// decode reads a JSON body of at most maxBody bytes, refusing unknown
// fields; it answers the error itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, sim.ErrInvalid, "body: "+err.Error())
		return false
	}
	return true
}

func writeError(w http.ResponseWriter, status int, kind, msg string) {
	writeJSON(w, status, sim.ErrorBody{Kind: kind, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a client gone away is its own problem
}
