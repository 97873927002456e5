package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
	"github.com/rayplane/rayplane/internal/tlsca"
)

func TestTransportErrors(t *testing.T) {
	h := newHarness(t)
	token := h.admin.Secret

	otherFiles, err := tlsca.Ensure(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := os.ReadFile(otherFiles.CACert)
	if err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	ln.Close()

	plain := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plain.Close)

	// A server that never answers while the test runs (not even when the
	// request's context ends: an answer written then could reach a client
	// racing its own deadline, and the test would read an empty 200).
	stop := make(chan struct{})
	slowURL := h.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stop }))
	t.Cleanup(func() { close(stop) }) // before the server's Close, which waits for its handlers

	// A client that reaches the server under a name its certificate lacks.
	serverAddr := strings.TrimPrefix(h.url, "https://")
	tlsCfg, err := tlsca.ClientConfig(h.caPEM)
	if err != nil {
		t.Fatal(err)
	}
	wrongName := &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsCfg,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, serverAddr)
		},
	}}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	for _, tc := range []struct {
		name string
		cfg  client.Config
		ctx  context.Context
		is   error
		text []string
	}{
		{"wrong CA", client.Config{Endpoint: h.url, CACertPEM: otherCA},
			nil, client.ErrCertificate, []string{"certificate not trusted: pass the control plane's CA (ca.pem)", h.url}},
		{"system roots", client.Config{Endpoint: h.url},
			nil, client.ErrCertificate, []string{"certificate not trusted: pass the control plane's CA (ca.pem)"}},
		{"host not in the certificate", client.Config{Endpoint: "https://rayplane.invalid:8443", HTTPClient: wrongName},
			nil, client.ErrCertificate, []string{`not valid for host "rayplane.invalid"`, "localhost, 127.0.0.1"}},
		{"closed port", client.Config{Endpoint: "https://" + closedAddr, CACertPEM: h.caPEM},
			nil, client.ErrUnreachable, []string{"cannot reach https://" + closedAddr, "connection refused"}},
		{"unknown host", client.Config{Endpoint: "https://rayplane.invalid:8443", CACertPEM: h.caPEM},
			nil, client.ErrUnreachable, []string{"cannot reach https://rayplane.invalid:8443"}},
		{"no answer in time", client.Config{Endpoint: slowURL, CACertPEM: h.caPEM, Timeout: 200 * time.Millisecond},
			nil, client.ErrUnreachable, []string{"cannot reach " + slowURL, "no answer within 200ms"}},
		{"plain http server", client.Config{Endpoint: strings.Replace(plain.URL, "http://", "https://", 1), CACertPEM: h.caPEM},
			nil, http.ErrSchemeMismatch, []string{"answered plain HTTP, not HTTPS"}},
		{"caller canceled", client.Config{Endpoint: h.url, CACertPEM: h.caPEM},
			canceled, context.Canceled, []string{"GET /v1/whoami", "context canceled"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Token = token
			c, err := client.New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			_, err = c.Whoami(ctx)
			if err == nil {
				t.Fatal("no error")
			}
			t.Log(err) // what a Terraform user would read
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			for _, want := range tc.text {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if api.IsCode(err, api.CodeUnauthorized) || tc.is != client.ErrUnreachable && errors.Is(err, client.ErrUnreachable) {
				t.Errorf("error %q is classified wrongly", err)
			}
			noSecret(t, err, token)
		})
	}
}

// TestAnswersNotFromTheAPI covers what a proxy or a wrong endpoint may
// answer: no JSON error body, redirects, a 200 that is not JSON.
func TestAnswersNotFromTheAPI(t *testing.T) {
	h := newHarness(t)
	token := h.admin.Secret
	url := h.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/whoami": // a proxy that echoes the request, token included
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(http.StatusBadGateway)
			fmt.Fprintf(w, "<html>\n<h1>502 Bad Gateway</h1>\n<pre>Authorization: %s</pre>%s</html>", r.Header.Get("Authorization"), strings.Repeat("x", 1000))
		case "/v1/clouds":
			http.NotFound(w, r)
		case "/v1/orgs":
			http.Redirect(w, r, "http://"+r.Host+"/v1/orgs", http.StatusMovedPermanently)
		case "/v1/tokens":
			io.WriteString(w, "<html>not json</html>")
		case "/v1/clusters": // JSON, but not an error body
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"message": "nope"}`)
		}
	}))
	c, err := client.New(client.Config{Endpoint: url, Token: token, CACertPEM: h.caPEM})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	_, err = c.Whoami(ctx)
	e := wantCode(t, err, api.CodeUnavailable, token)
	for _, want := range []string{"GET /v1/whoami: HTTP 502 Bad Gateway", "<h1>502 Bad Gateway</h1>", "[redacted token]"} {
		if !strings.Contains(e.Message, want) {
			t.Errorf("message %q does not hold %q", e.Message, want)
		}
	}
	if len(e.Message) > 400 || strings.Contains(e.Message, "\n") {
		t.Errorf("message is not a short line: %q", e.Message)
	}

	_, err = c.ListClouds(ctx, client.NameFilter{}, api.ListOptions{})
	wantCode(t, err, api.CodeNotFound, token)

	_, err = c.ListOrgs(ctx, api.ListOptions{})
	if e := wantCode(t, err, api.CodeInternal, token); !strings.Contains(e.Message, "not followed") {
		t.Errorf("redirect error %q does not say it was not followed", e.Message)
	}

	_, err = c.ListTokens(ctx, api.ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "not the expected JSON") {
		t.Errorf("200 with HTML answered %v", err)
	}

	_, err = c.ListClusters(ctx, client.ClusterFilter{}, api.ListOptions{})
	if e := wantCode(t, err, api.CodeConflict, token); !strings.Contains(e.Message, `{"message": "nope"}`) {
		t.Errorf("message %q does not quote the body", e.Message)
	}
}

func TestRequests(t *testing.T) {
	h := newHarness(t)
	var (
		mu  sync.Mutex
		got []*http.Request
	)
	url := h.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	c, err := client.New(client.Config{Endpoint: url + "/", Token: h.admin.Secret + "\n", CACertPEM: h.caPEM, UserAgent: "test/1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	since := time.Date(2026, 1, 2, 15, 4, 5, 0, time.FixedZone("X", 3600))
	must(c.CreateCluster(ctx, api.ClusterRequest{Name: "c"}, "key-1"))(t)
	must(c.ListClusters(ctx, client.ClusterFilter{Name: "n", CloudID: "cld_1", ComputeConfigID: "cc_1"}, api.ListOptions{Limit: 5, PageToken: "c1.x"}))(t)
	must(c.ListAuditEvents(ctx, api.AuditFilter{Since: &since, ActorID: "tok_1", TargetID: "cls_1"}, api.ListOptions{}))(t)
	must(c.ListComputeConfigs(ctx, client.NameFilter{}, api.ListOptions{}))(t)

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 {
		t.Fatalf("%d requests, want 4", len(got))
	}
	for _, r := range got {
		if a := r.Header.Get("Authorization"); a != "Bearer "+h.admin.Secret {
			t.Errorf("%s %s: Authorization is not the trimmed bearer token", r.Method, r.URL)
		}
		if r.Header.Get("Accept") != "application/json" || r.Header.Get("User-Agent") != "test/1" {
			t.Errorf("%s %s: headers %v", r.Method, r.URL, r.Header)
		}
	}
	create := got[0]
	if create.Method != http.MethodPost || create.URL.Path != "/v1/clusters" || create.Header.Get("Content-Type") != "application/json" ||
		create.Header.Get("Idempotency-Key") != "key-1" {
		t.Errorf("create: %s %s %v", create.Method, create.URL, create.Header)
	}
	if ct := got[1].Header.Get("Content-Type"); ct != "" {
		t.Errorf("a GET sends Content-Type %q", ct)
	}
	for i, want := range []string{
		"/v1/clusters?cloud_id=cld_1&compute_config_id=cc_1&limit=5&name=n&page_token=c1.x",
		"/v1/audit-events?actor_id=tok_1&since=2026-01-02T14%3A04%3A05Z&target_id=cls_1",
		"/v1/compute-configs",
	} {
		if u := got[i+1].URL.String(); u != want {
			t.Errorf("request %d is %s, want %s", i+1, u, want)
		}
	}
}

func TestNew(t *testing.T) {
	const token = "rpt_abcdefghjkmn_0123456789012345678901234567890123456789012"
	for _, tc := range []struct {
		name string
		cfg  client.Config
		want string // in the error; "" means no error
	}{
		{"minimal", client.Config{Endpoint: "https://cp.example.com:8443"}, ""},
		{"trailing slash and path prefix", client.Config{Endpoint: "https://cp.example.com/rayplane/"}, ""},
		{"token with a newline", client.Config{Endpoint: "https://cp.example.com", Token: token + "\n"}, ""},
		{"no endpoint", client.Config{}, "endpoint: is required"},
		{"http", client.Config{Endpoint: "http://cp.example.com:8443"}, "must be an https:// URL"},
		{"no scheme", client.Config{Endpoint: "cp.example.com:8443"}, "endpoint"},
		{"no host", client.Config{Endpoint: "https:///v1"}, "must name a host"},
		{"user info", client.Config{Endpoint: "https://me:hunter2@cp.example.com"}, "endpoint: must not contain user info"},
		{"user info over http", client.Config{Endpoint: "http://me:hunter2@cp.example.com"}, "endpoint: must not contain user info"},
		{"user info in a broken URL", client.Config{Endpoint: "https://me:hunter2@cp.example.com:port"}, "endpoint: must be an https:// URL"},
		{"v1 path", client.Config{Endpoint: "https://cp.example.com/v1/"}, "leave out the /v1 path"},
		{"query", client.Config{Endpoint: "https://cp.example.com?x=1"}, "query"},
		{"token with a space", client.Config{Endpoint: "https://cp.example.com", Token: token[:20] + " " + token[20:]}, "token: must not contain spaces"},
		{"bad CA", client.Config{Endpoint: "https://cp.example.com", CACertPEM: []byte("not pem")}, "ca_cert_pem"},
		{"CA and HTTPClient", client.Config{Endpoint: "https://cp.example.com", CACertPEM: []byte("x"), HTTPClient: http.DefaultClient}, "ca_cert_pem"},
		{"negative timeout", client.Config{Endpoint: "https://cp.example.com", Timeout: -time.Second}, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.New(tc.cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatal(err)
			case tc.want != "" && err == nil:
				t.Fatalf("no error, want %q", tc.want)
			case err != nil:
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not say %q", err, tc.want)
				}
				noSecret(t, err, token[:20], "hunter2")
				return
			}
			if c.Endpoint() != strings.TrimRight(tc.cfg.Endpoint, "/") {
				t.Errorf("endpoint %q", c.Endpoint())
			}
			printed := fmt.Sprintf("%v %+v %#v %s %v %+v %#v", tc.cfg, tc.cfg, tc.cfg, c, c, c, c)
			if strings.Contains(printed, token) {
				t.Errorf("printing a config or client shows the token: %s", printed)
			}
		})
	}
}

func TestAll(t *testing.T) {
	ctx := context.Background()
	t.Run("endless pages stop", func(t *testing.T) {
		calls := 0
		_, err := client.All(ctx, func(_ context.Context, o api.ListOptions) (api.Page[int], error) {
			calls++
			return api.Page[int]{Items: []int{calls}, NextPageToken: fmt.Sprint("t", calls)}, nil
		})
		if err == nil || !strings.Contains(err.Error(), "stopped after") || calls != client.MaxPages {
			t.Errorf("after %d calls: %v", calls, err)
		}
	})
	t.Run("repeated token stops", func(t *testing.T) {
		calls := 0
		_, err := client.All(ctx, func(context.Context, api.ListOptions) (api.Page[int], error) {
			calls++
			return api.Page[int]{NextPageToken: "same"}, nil
		})
		if err == nil || calls != 2 {
			t.Errorf("after %d calls: %v", calls, err)
		}
	})
	t.Run("errors pass through", func(t *testing.T) {
		want := api.Errorf(api.CodeUnavailable, "down")
		_, err := client.All(ctx, func(context.Context, api.ListOptions) (api.Page[int], error) {
			return api.Page[int]{}, want
		})
		if !errors.Is(err, want) {
			t.Errorf("error %v, want %v", err, want)
		}
	})
	t.Run("walks pages with the largest limit", func(t *testing.T) {
		pages := map[string]api.Page[int]{"": {Items: []int{1, 2}, NextPageToken: "a"}, "a": {Items: []int{3}, NextPageToken: "b"}, "b": {Items: []int{}}}
		got, err := client.All(ctx, func(_ context.Context, o api.ListOptions) (api.Page[int], error) {
			if o.Limit != api.MaxPageSize {
				t.Errorf("limit %d", o.Limit)
			}
			return pages[o.PageToken], nil
		})
		if err != nil || fmt.Sprint(got) != "[1 2 3]" {
			t.Errorf("All = %v, %v", got, err)
		}
	})
}
