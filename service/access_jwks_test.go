package service

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/accesstoken"
)

// fakeKeys is an AccessKeys whose key set is what jwks answers.
type fakeKeys struct {
	jwks func() (string, error)
}

func (k fakeKeys) SignKey(accesstoken.Claims) (string, string, error) {
	return "", "", errors.New("no")
}
func (k fakeKeys) PublicJWKS() (string, error) { return k.jwks() }

// TestJWKSUnreadableRingIsLogged: when the ring cannot be read heads keep
// the last key set, and the operator hears of it at error level, once a
// minute, not once a heartbeat.
func TestJWKSUnreadableRingIsLogged(t *testing.T) {
	var logs bytes.Buffer
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	readErr := error(nil)
	a := &Access{Keys: fakeKeys{jwks: func() (string, error) { return `{"keys":["k1"]}`, readErr }},
		Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if got := a.jwks(); got != `{"keys":["k1"]}` {
		t.Fatalf("jwks %q", got)
	}
	readErr = errors.New("open access-keys.json: permission denied")
	errorLines := func() int { return strings.Count(logs.String(), "level=ERROR") }
	for range 5 {
		if got := a.jwks(); got != `{"keys":["k1"]}` {
			t.Fatalf("jwks while unreadable %q", got)
		}
		now = now.Add(5 * time.Second)
	}
	if n := errorLines(); n != 1 || !strings.Contains(logs.String(), "permission denied") {
		t.Fatalf("%d error lines: %s", n, logs.String())
	}
	now = now.Add(JWKSErrorLogEvery)
	a.jwks()
	if n := errorLines(); n != 2 {
		t.Fatalf("%d error lines after a minute: %s", n, logs.String())
	}
}
