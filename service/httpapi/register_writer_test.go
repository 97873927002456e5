package httpapi

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

// TestGuessedBootstrapTokenTakesNoWriter: a bootstrap token that matches
// nothing is refused from a read, so a flood of guesses cannot queue on
// the store's one writer. The guess is answered while another transaction
// holds the writer (were it to wait for the writer, it would wait for
// ever: the writer is released only after the answer).
func TestGuessedBootstrapTokenTakesNoWriter(t *testing.T) {
	e := newDataPlaneEnv(t)
	r := e.launchAndRegister("held")
	_, boots := e.launchCluster("spare")
	var real string
	for _, b := range boots {
		real = b.BootstrapToken
	}
	holding, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- e.st.Update(context.Background(), func(tx service.Tx) error {
			close(holding)
			<-release
			return nil
		})
	}()
	<-holding
	defer func() {
		close(release)
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	for _, guess := range []string{
		"rpb_" + strings.Repeat("z", 12) + "_" + strings.Repeat("A", 43),    // no such token
		real[:strings.LastIndexByte(real, '_')+1] + strings.Repeat("A", 43), // a real token's prefix, a wrong secret
	} {
		// A deadline, so that waiting for the writer fails the test
		// rather than hang it.
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		_, _, err := e.agents.Register(ctx, guess, api.AgentRegisterRequest{NodeID: r.head})
		cancel()
		if !api.IsCode(err, api.CodeUnauthorized) {
			t.Errorf("a guessed bootstrap token: %v, want unauthorized", err)
		}
	}
}
