package client

import (
	"context"
	"fmt"

	"github.com/rayplane/rayplane/internal/api"
)

// MaxPages bounds All: with pages of api.MaxPageSize that is five million
// objects, far beyond any organization, so reaching it means the server
// keeps answering a next page.
const MaxPages = 10000

// All calls list until the last page and answers every item. list gets
// Limit api.MaxPageSize and each page's token; it may override Limit.
// Method values fit: client.All(ctx, c.ListOrgs). For a filtered list, wrap
// it: func(ctx context.Context, o api.ListOptions) (api.Page[api.Cluster], error) {
// return c.ListClusters(ctx, f, o) }.
func All[T any](ctx context.Context, list func(context.Context, api.ListOptions) (api.Page[T], error)) ([]T, error) {
	items := []T{}
	seen := map[string]bool{}
	opts := api.ListOptions{Limit: api.MaxPageSize}
	for range MaxPages {
		page, err := list(ctx, opts)
		if err != nil {
			return nil, err
		}
		items = append(items, page.Items...)
		if page.NextPageToken == "" {
			return items, nil
		}
		if seen[page.NextPageToken] {
			return nil, fmt.Errorf("list: the server answered page token %q twice; stopped to avoid an endless loop", page.NextPageToken)
		}
		seen[page.NextPageToken] = true
		opts.PageToken = page.NextPageToken
	}
	return nil, fmt.Errorf("list: stopped after %d pages; the server keeps answering a next page", MaxPages)
}
