package awstest

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// fatalTB records Fatalf and stops the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fatalTB) Skip(...any)          { f.msg = "skipped"; runtime.Goexit() }
func (f *fatalTB) Skipf(string, ...any) { f.msg = "skipped"; runtime.Goexit() }
func (f *fatalTB) SkipNow()             { f.msg = "skipped"; runtime.Goexit() }

// Without moto_server on PATH the harness fails the test with how to
// install it: an AWS test must never pass by not running.
func TestStartWithoutMotoFails(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(tb)
	}()
	<-done
	if !strings.Contains(tb.msg, "moto_server not found") || !strings.Contains(tb.msg, "pip install 'moto[server]==5.2.1'") {
		t.Fatalf("Start without moto_server: %q, want a failure naming how to install it", tb.msg)
	}
}
