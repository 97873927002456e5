package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"
	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"

	"github.com/rayplane/rayplane/internal/api"
)

// A node's runtime log goes to the cloud's storage location with the
// node's own credentials: on AWS the instance profile the cloud names,
// found by the SDK's default chain (IMDSv2 on EC2); on GCP the node's
// service account, found as Application Default Credentials (the metadata
// server on Compute Engine). The control plane never sees the content, nor
// holds credentials that could read it.
//
// The log is shipped in pieces, each an object named by the byte offset it
// starts at: <prefix>/<cluster>/<node>/runtime/<offset, 16 digits>.log.
// Listing the node's runtime/ folder in key order and concatenating gives
// the log. A piece is written once its bytes exist, so nothing is uploaded
// twice while the agent runs; an agent that restarts writes its pieces
// again under the same names, with the same content.

// LogSink stores the pieces of a runtime log.
type LogSink interface {
	// Put stores body under key (relative to the sink's prefix).
	Put(ctx context.Context, key string, body []byte) error
}

// maxLogPiece bounds one object: a runtime that writes fast is shipped in
// several pieces per interval rather than one large upload.
const maxLogPiece = 8 << 20

// Defaults of the log shipper.
const (
	defaultLogShipInterval = 30 * time.Second
	logShipTimeout         = 30 * time.Second // one round of uploads
	finalShipWithin        = 10 * time.Second // the last round when the agent ends
)

// shipper copies log files to a sink, piece by piece, as they grow: each
// target is one file (the runtime log) or a directory tree whose every
// regular file is shipped (the head's job logs, <id>/<name>.log to
// <prefix>/<id>/<name>/<offset>.log). Symbolic links are not followed: a
// runtime cannot make the agent ship a file from outside the tree.
type shipper struct {
	targets []shipTarget
	sink    LogSink
	log     *slog.Logger

	mu      sync.Mutex       // one round at a time
	offsets map[string]int64 // bytes of each file already stored, by key prefix
	failed  string           // the last failure, logged once
}

// shipTarget is a file or a directory tree and the key prefix it goes to.
type shipTarget struct {
	path   string
	prefix string // <cluster>/<node>/runtime, <cluster>/jobs
	dir    bool
}

// ship uploads what the logs gained since the last round. A failure of
// one file does not keep the others from being shipped.
func (s *shipper) ship(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.offsets == nil {
		s.offsets = map[string]int64{}
	}
	var errs []error
	for _, t := range s.targets {
		if !t.dir {
			errs = append(errs, s.shipFile(ctx, func() (*os.File, error) { return os.Open(t.path) }, t.prefix))
			continue
		}
		root, err := os.OpenRoot(t.path)
		if errors.Is(err, os.ErrNotExist) {
			continue // nothing written yet
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("open log directory: %w", err))
			continue
		}
		err = fs.WalkDir(root.FS(), ".", func(rel string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil // gone meanwhile, or not a file: the next round sees again
			}
			prefix := t.prefix + "/" + strings.TrimSuffix(rel, ".log")
			errs = append(errs, s.shipFile(ctx, func() (*os.File, error) { return root.Open(rel) }, prefix))
			return ctx.Err()
		})
		root.Close()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// shipFile uploads what one file gained since the last round, as pieces
// named <prefix>/<offset>.log.
func (s *shipper) shipFile(ctx context.Context, open func() (*os.File, error), prefix string) error {
	f, err := open()
	if errors.Is(err, os.ErrNotExist) {
		return nil // not written yet
	}
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat log: %w", err)
	}
	offset := s.offsets[prefix]
	if st.Size() < offset {
		offset = 0 // the file was replaced: start again from its beginning
	}
	buf := make([]byte, min(maxLogPiece, max(st.Size()-offset, 0)))
	for offset < st.Size() {
		n, err := f.ReadAt(buf[:min(int64(maxLogPiece), st.Size()-offset)], offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read log: %w", err)
		}
		if n == 0 {
			break
		}
		key := fmt.Sprintf("%s/%016d.log", prefix, offset)
		if err := s.sink.Put(ctx, key, buf[:n]); err != nil {
			s.offsets[prefix] = offset
			return fmt.Errorf("store log piece %s: %w", key, err)
		}
		offset += int64(n)
	}
	s.offsets[prefix] = offset
	return nil
}

// run ships every interval until ctx ends, then once more within
// finalShipWithin, so a stopped runtime's last words are kept.
func (s *shipper) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalShipWithin)
			s.report(s.ship(fctx))
			cancel()
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, logShipTimeout)
			s.report(s.ship(rctx))
			cancel()
		}
	}
}

// report logs a failure once until it changes or the shipping works again.
func (s *shipper) report(err error) {
	if err == nil {
		if s.failed != "" {
			s.log.Info("log shipping works again")
			s.failed = ""
		}
		return
	}
	if msg := err.Error(); msg != s.failed {
		s.log.Warn("cannot ship logs to the storage location; retrying", "error", err)
		s.failed = msg
	}
}

// openSink opens the sink of an s3:// or gs:// storage location.
func openSink(ctx context.Context, location, region string) (LogSink, error) {
	if _, _, ok := bucketLocation(location, api.SchemeGCS); ok {
		return newGCSSink(ctx, location)
	}
	return newS3Sink(ctx, location, region)
}

// bucketLocation splits a valid scheme://bucket[/prefix] storage location
// into its bucket and prefix (no leading or trailing slash).
func bucketLocation(loc, scheme string) (bucket, prefix string, ok bool) {
	if scheme == api.SchemeS3 {
		return api.S3Location(loc)
	}
	if loc == "" || api.CloudStorageProblem(loc, scheme) != "" {
		return "", "", false
	}
	bucket, prefix, _ = strings.Cut(strings.TrimPrefix(loc, scheme+"://"), "/")
	return bucket, strings.Trim(prefix, "/"), true
}

// gcsSink puts objects under a prefix of a Cloud Storage bucket.
type gcsSink struct {
	client         *storage.Client
	bucket, prefix string
}

// newGCSSink builds a sink for a gs:// location with Application Default
// Credentials: the node's service account through the metadata server on
// Compute Engine. RAYPLANE_GCS_ENDPOINT names another JSON API endpoint (a
// private endpoint; an emulator's front in tests), still with credentials.
// (STORAGE_EMULATOR_HOST, which the client library honours by itself,
// sends none.)
func newGCSSink(ctx context.Context, location string) (LogSink, error) {
	bucket, prefix, ok := bucketLocation(location, api.SchemeGCS)
	if !ok {
		return nil, fmt.Errorf("storage location %q is not a gs:// bucket URL", location)
	}
	opts := []option.ClientOption{option.WithScopes(storage.ScopeReadWrite)}
	if ep := os.Getenv("RAYPLANE_GCS_ENDPOINT"); ep != "" {
		opts = append(opts, option.WithEndpoint(ep))
	}
	client, err := storage.NewClient(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud storage client for the storage location: %w", err)
	}
	return &gcsSink{client: client, bucket: bucket, prefix: prefix}, nil
}

func (s *gcsSink) Put(ctx context.Context, key string, body []byte) error {
	if s.prefix != "" {
		key = s.prefix + "/" + key
	}
	// Only if the piece is not there yet: the nodes' service account may
	// create objects, not replace them (storage.objects.create only; an
	// overwrite would need storage.objects.delete, which could erase logs).
	// A piece already stored (an agent that restarted ships its log again)
	// has the same name and content: done.
	w := s.client.Bucket(s.bucket).Object(key).If(storage.Conditions{DoesNotExist: true}).NewWriter(ctx)
	w.ContentType = "text/plain; charset=utf-8"
	// One request per piece: pieces are at most maxLogPiece, below the
	// default chunk size, so the upload is not resumable and a failed
	// round retries the whole piece.
	_, err := w.Write(body)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusPreconditionFailed {
		return nil
	}
	return err
}

// s3Sink puts objects under a prefix of an S3 bucket.
type s3Sink struct {
	client         *s3.Client
	bucket, prefix string
}

// newS3Sink builds a sink for an s3:// location in region with the SDK's
// default credential chain: the instance profile on EC2. A custom endpoint
// (AWS_ENDPOINT_URL) is addressed path-style, as S3-compatible stores are.
func newS3Sink(ctx context.Context, location, region string) (LogSink, error) {
	bucket, prefix, ok := api.S3Location(location)
	if !ok {
		return nil, fmt.Errorf("storage location %q is not an s3:// bucket URL", location)
	}
	opts := []func(*config.LoadOptions) error{}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws configuration for the storage location: %w", err)
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.BaseEndpoint != nil
	})
	return &s3Sink{client: client, bucket: bucket, prefix: prefix}, nil
}

func (s *s3Sink) Put(ctx context.Context, key string, body []byte) error {
	if s.prefix != "" {
		key = s.prefix + "/" + key
	}
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      awssdk.String(s.bucket),
		Key:         awssdk.String(key),
		Body:        bytes.NewReader(body),
		ContentType: awssdk.String("text/plain; charset=utf-8"),
	})
	return err
}
