package awstest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
)

// Call is one request that reached the front.
type Call struct {
	Service   string // from the SigV4 credential scope: "ec2", "sts", "iam", "s3"; "" when unsigned
	Action    string // the query protocol's Action ("RunInstances"); otherwise method and path ("HEAD /bucket")
	AccessKey string // the access key id that signed it
	// Role is the role ARN whose AssumeRole through this front answered
	// AccessKey; "" for any other key (the control plane's AccessKey, a
	// node's).
	Role string
	// Status is the HTTP status the front answered, 0 while the call has
	// not been answered yet (a held RunInstances).
	Status int
	// Code is the AWS error code when the front itself refused the call
	// (AccessDenied, UnknownParameter, InsufficientInstanceCapacity, …);
	// "" when moto answered it.
	Code string
}

// front is the enforcing reverse proxy before moto. It buffers requests
// and answers whole: the harness's traffic is small.
type front struct {
	raw    string
	model  *ec2Model
	client *http.Client
	iam    *iamReader

	mu       sync.Mutex
	calls    []Call
	roles    map[string]string // access key id -> role ARN, from answered AssumeRoles
	faults   map[int]Fault
	nextID   int
	hold     *holdGate // nil when RunInstances is not held
	holdWake chan struct{}
	held     int // RunInstances answers being held now
	tokens   clientTokens
	stopped  chan struct{}
	stopOnce sync.Once
}

func newFront(raw string, model *ec2Model) *front {
	client := &http.Client{
		Transport: &http.Transport{
			// The client's Accept-Encoding goes to moto as sent and the
			// answer comes back as moto sent it.
			DisableCompression:  true,
			MaxIdleConnsPerHost: 16,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &front{
		raw:      raw,
		model:    model,
		client:   client,
		iam:      newIAMReader(raw),
		roles:    map[string]string{},
		faults:   map[int]Fault{},
		tokens:   clientTokens{runs: map[string]tokenRun{}},
		holdWake: make(chan struct{}),
		stopped:  make(chan struct{}),
	}
}

// stop releases every held answer; the server closes after it.
func (f *front) stop() {
	f.stopOnce.Do(func() { close(f.stopped) })
}

// request is what the front learnt about an incoming request.
type request struct {
	r         *http.Request
	body      []byte
	service   string
	accessKey string
	session   string // X-Amz-Security-Token
	params    url.Values
	action    string
	call      int // index in f.calls
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := &request{r: r, body: body}
	req.service, req.accessKey = credentialScope(r)
	req.session = r.Header.Get("X-Amz-Security-Token")
	if req.session == "" {
		req.session = r.URL.Query().Get("X-Amz-Security-Token")
	}
	switch req.service {
	case "s3":
		req.action = r.Method + " " + r.URL.Path
	case "": // unsigned: moto's own API, or a client the test should look at
		req.action = r.Method + " " + r.URL.Path
	default: // query protocols: ec2, sts, iam
		req.params = r.URL.Query()
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			form, err := url.ParseQuery(string(body))
			if err != nil {
				http.Error(w, "parse form: "+err.Error(), http.StatusBadRequest)
				return
			}
			for k, v := range form {
				req.params[k] = append(req.params[k], v...)
			}
		}
		req.action = req.params.Get("Action")
	}
	req.call = f.record(req)
	rw := &statusWriter{ResponseWriter: w}
	f.dispatch(rw, req)
	f.mu.Lock()
	f.calls[req.call].Status = rw.status
	f.calls[req.call].Code = rw.code
	f.mu.Unlock()
}

func (f *front) dispatch(w *statusWriter, req *request) {
	switch req.service {
	case "ec2":
		if !f.validateEC2(w, req) {
			return
		}
		if req.action == "RunInstances" {
			f.runInstances(w, req)
			return
		}
	case "sts":
		if req.action == "AssumeRole" {
			f.assumeRole(w, req)
			return
		}
	case "iam":
		if req.action == "SimulatePrincipalPolicy" {
			f.simulatePrincipalPolicy(w, req)
			return
		}
	}
	f.proxy(w, req)
}

func (f *front) record(req *request) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, Call{
		Service:   req.service,
		Action:    req.action,
		AccessKey: req.accessKey,
		Role:      f.roles[req.accessKey],
	})
	return len(f.calls) - 1
}

// Calls answers every request the front has seen so far, in arrival order.
func (m *Moto) Calls() []Call {
	m.front.mu.Lock()
	defer m.front.mu.Unlock()
	return append([]Call(nil), m.front.calls...)
}

// credentialScope reads the service and the access key id from a SigV4
// Authorization header (or a presigned URL's X-Amz-Credential):
// Credential=AKID/20240101/us-east-1/ec2/aws4_request.
func credentialScope(r *http.Request) (service, accessKey string) {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if auth := r.Header.Get("Authorization"); auth != "" {
		_, rest, ok := strings.Cut(auth, "Credential=")
		if !ok {
			return "", ""
		}
		cred, _, _ = strings.Cut(rest, ",")
	}
	parts := strings.Split(strings.TrimSpace(cred), "/")
	if len(parts) != 5 {
		return "", ""
	}
	return parts[3], parts[0]
}

// answer is moto's response, buffered.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// forward sends the request to moto as it came (same method, path, query,
// headers and body; the Host header kept, so anything moto derives from
// it names the front) and buffers the answer.
func (f *front) forward(req *request) (*answer, error) {
	r := req.r
	out, err := http.NewRequestWithContext(r.Context(), r.Method, f.raw+r.URL.RequestURI(), bytes.NewReader(req.body))
	if err != nil {
		return nil, err
	}
	for k, v := range r.Header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		out.Header[k] = v
	}
	out.Host = r.Host
	resp, err := f.client.Do(out)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &answer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

func (f *front) proxy(w *statusWriter, req *request) {
	a, err := f.forward(req)
	if err != nil {
		f.internalError(w, req, fmt.Errorf("forward to moto: %w", err))
		return
	}
	a.write(w)
}

func (a *answer) write(w http.ResponseWriter) {
	for k, v := range a.header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		w.Header()[k] = v
	}
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

// statusWriter remembers the status and the front's own error code for
// Calls.
type statusWriter struct {
	http.ResponseWriter
	status int
	code   string
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func requestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func xmlText(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// ec2Error answers in EC2's error shape, which the SDK's ec2query
// deserializer reads Code and Message from.
func ec2Error(w *statusWriter, status int, code, msg string) {
	w.code = code
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		xmlText(code), xmlText(msg), requestID())
}

// queryError answers in the awsquery error shape of STS and IAM
// (ErrorResponse/Error/{Type,Code,Message}).
func queryError(w *statusWriter, service string, status int, code, msg string) {
	w.code = code
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>`,
		namespaces[service], typ, xmlText(code), xmlText(msg), requestID())
}

var namespaces = map[string]string{
	"sts": "https://sts.amazonaws.com/doc/2011-06-15/",
	"iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}

// internalError answers a failure of the harness itself (moto unreachable,
// a reply it cannot read) as the service's InternalFailure, naming the
// harness so nobody mistakes it for the driver's fault.
func (f *front) internalError(w *statusWriter, req *request, err error) {
	msg := "awstest front: " + err.Error()
	switch req.service {
	case "ec2":
		ec2Error(w, http.StatusInternalServerError, "InternalError", msg)
	case "sts", "iam":
		queryError(w, req.service, http.StatusInternalServerError, "InternalFailure", msg)
	default:
		w.code = "InternalError"
		http.Error(w, msg, http.StatusBadGateway)
	}
}
