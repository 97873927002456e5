package console

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

type cloudsView struct{ Clouds []api.Cloud }

func (cloudsView) PageTitle() string { return "Clouds" }

func (c *Console) cloudsPage(w http.ResponseWriter, r *http.Request, v *visit) {
	all, err := client.All(r.Context(), func(ctx context.Context, o api.ListOptions) (api.Page[api.Cloud], error) {
		return v.api.ListClouds(ctx, client.NameFilter{}, o)
	})
	if err != nil {
		c.fail(w, r, v.s, err, "list clouds")
		return
	}
	c.render(w, r, http.StatusOK, "clouds", v.s, cloudsView{Clouds: all})
}

type computeConfigsView struct{ Configs []api.ComputeConfig }

func (computeConfigsView) PageTitle() string { return "Compute configs" }

func (c *Console) computeConfigsPage(w http.ResponseWriter, r *http.Request, v *visit) {
	all, err := client.All(r.Context(), func(ctx context.Context, o api.ListOptions) (api.Page[api.ComputeConfig], error) {
		return v.api.ListComputeConfigs(ctx, client.NameFilter{}, o)
	})
	if err != nil {
		c.fail(w, r, v.s, err, "list compute configs")
		return
	}
	c.render(w, r, http.StatusOK, "computeconfigs", v.s, computeConfigsView{Configs: all})
}

// versionRow is one field of a compute config across its versions; a cell
// that differs from the version before it is marked.
type versionRow struct {
	Field string
	Cells []versionCell
}

type versionCell struct {
	Value   string
	Changed bool
}

type computeConfigView struct {
	Config   api.ComputeConfig
	Versions []api.ComputeConfig // oldest first
	Rows     []versionRow
}

func (v computeConfigView) PageTitle() string { return "Compute config " + v.Config.Name }

func (c *Console) computeConfigPage(w http.ResponseWriter, r *http.Request, v *visit) {
	id := r.PathValue("id")
	cfg, err := v.api.GetComputeConfig(r.Context(), id)
	var versions []api.ComputeConfig
	if err == nil {
		versions, err = client.All(r.Context(), func(ctx context.Context, o api.ListOptions) (api.Page[api.ComputeConfig], error) {
			return v.api.ListComputeConfigVersions(ctx, id, o)
		})
	}
	if err != nil {
		c.fail(w, r, v.s, err, "read the compute config")
		return
	}
	slices.SortFunc(versions, func(a, b api.ComputeConfig) int { return a.Version - b.Version })
	c.render(w, r, http.StatusOK, "computeconfig", v.s, computeConfigView{Config: cfg, Versions: versions, Rows: versionRows(versions)})
}

// versionRows lays the versions side by side, one row per field, worker
// groups by name.
func versionRows(vs []api.ComputeConfig) []versionRow {
	type field struct {
		name string
		get  func(api.ComputeConfig) string
	}
	optInt := func(p *int) string {
		if p == nil {
			return "—"
		}
		return strconv.Itoa(*p)
	}
	secs := func(n int) string {
		if n == 0 {
			return "—"
		}
		return (time.Duration(n) * time.Second).String()
	}
	fields := []field{
		{"Created", func(c api.ComputeConfig) string { return stamp(c.VersionCreatedAt) }},
		{"Head node", func(c api.ComputeConfig) string { return c.HeadNode.InstanceType }},
		{"Max workers", func(c api.ComputeConfig) string { return optInt(c.MaxWorkers) }},
		{"Worker idle timeout", func(c api.ComputeConfig) string { return secs(c.WorkerIdleTimeoutSeconds) }},
		{"Idle termination", func(c api.ComputeConfig) string { return secs(c.IdleTerminationSeconds) }},
		{"Maximum uptime", func(c api.ComputeConfig) string { return secs(c.MaximumUptimeSeconds) }},
		{"Upscaling speed", func(c api.ComputeConfig) string {
			if c.UpscalingSpeed == 0 {
				return "—"
			}
			return strconv.FormatFloat(c.UpscalingSpeed, 'f', -1, 64)
		}},
		{"Max hourly cost", func(c api.ComputeConfig) string {
			if c.MaxHourlyCost == nil {
				return "—"
			}
			return "$" + strconv.FormatFloat(*c.MaxHourlyCost, 'f', 2, 64)
		}},
	}
	var groups []string
	for _, v := range vs {
		for _, g := range v.WorkerGroups {
			if !slices.Contains(groups, g.Name) {
				groups = append(groups, g.Name)
			}
		}
	}
	for _, name := range groups {
		fields = append(fields, field{"Worker group " + name, func(c api.ComputeConfig) string {
			for _, g := range c.WorkerGroups {
				if g.Name == name {
					market := g.Market
					if market == "" {
						market = api.MarketOnDemand
					}
					return g.InstanceType + ", " + strconv.Itoa(g.MinNodes) + "–" + strconv.Itoa(g.MaxNodes) + " nodes, " + strings.ReplaceAll(market, "_", "-")
				}
			}
			return "—"
		}})
	}
	rows := make([]versionRow, len(fields))
	for i, f := range fields {
		rows[i].Field = f.name
		for j, v := range vs {
			val := f.get(v)
			rows[i].Cells = append(rows[i].Cells, versionCell{Value: val, Changed: j > 0 && i > 0 && val != f.get(vs[j-1])})
		}
	}
	return rows
}

type tokensView struct {
	Tokens []api.APIToken
	Roles  []api.Role
}

func (tokensView) PageTitle() string { return "API tokens" }

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, v *visit) {
	all, err := client.All(r.Context(), v.api.ListTokens)
	if err != nil {
		c.fail(w, r, v.s, err, "list tokens")
		return
	}
	slices.SortStableFunc(all, func(a, b api.APIToken) int { return b.CreatedAt.Compare(a.CreatedAt) })
	c.render(w, r, http.StatusOK, "tokens", v.s, tokensView{Tokens: all, Roles: api.Roles})
}

// createToken creates a token and shows its secret once, on this answer
// only (no redirect, no-store).
func (c *Console) createToken(w http.ResponseWriter, r *http.Request, v *visit) {
	req := api.CreateTokenRequest{Name: strings.TrimSpace(r.PostFormValue("name")), Role: api.Role(r.PostFormValue("role"))}
	if days := strings.TrimSpace(r.PostFormValue("expires_days")); days != "" {
		n, err := strconv.Atoi(days)
		if err != nil || n < 1 || n > 3650 {
			c.fail(w, r, v.s, &api.Error{Code: api.CodeInvalid, Message: "expires in: a whole number of days from 1 to 3650, or empty for never"}, "create a token")
			return
		}
		at := c.cfg.Now().UTC().Add(time.Duration(n) * 24 * time.Hour).Truncate(time.Second)
		req.ExpiresAt = &at
	}
	tok, err := v.api.CreateToken(r.Context(), req)
	if err != nil {
		c.fail(w, r, v.s, err, "create a token")
		return
	}
	c.render(w, r, http.StatusOK, "secret", v.s, secretView{
		Heading: "Token " + tok.Name + " created",
		Secret:  tok.Secret,
		Lines:   []string{"Role: " + string(tok.Role), "Id: " + tok.ID, "Expires: " + stampPtr(tok.ExpiresAt)},
		Back:    Prefix + "tokens",
	})
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, v *visit) {
	if _, err := v.api.RevokeToken(r.Context(), r.PathValue("id")); err != nil {
		c.fail(w, r, v.s, err, "revoke the token")
		return
	}
	http.Redirect(w, r, Prefix+"tokens", http.StatusSeeOther)
}

type auditView struct {
	Events                                      []api.AuditEvent
	Actor, Target, Since, Until, Action, Result string
	More                                        bool
}

func (auditView) PageTitle() string { return "Audit log" }

// auditPageSize bounds one audit page; the filters narrow further.
const auditPageSize = 200

func (c *Console) auditPage(w http.ResponseWriter, r *http.Request, v *visit) {
	q := r.URL.Query()
	view := auditView{Actor: strings.TrimSpace(q.Get("actor")), Target: strings.TrimSpace(q.Get("target")),
		Since: q.Get("since"), Until: q.Get("until"), Action: strings.TrimSpace(q.Get("action")), Result: q.Get("result")}
	f := api.AuditFilter{ActorID: view.Actor, TargetID: view.Target}
	for _, t := range []struct {
		in   string
		out  **time.Time
		name string
	}{{view.Since, &f.Since, "since"}, {view.Until, &f.Until, "until"}} {
		if t.in == "" {
			continue
		}
		at, err := time.ParseInLocation("2006-01-02T15:04", t.in, time.UTC)
		if err != nil {
			c.fail(w, r, v.s, &api.Error{Code: api.CodeInvalid, Message: t.name + ": a time like 2026-01-31T13:45 (UTC)"}, "filter the audit log")
			return
		}
		*t.out = &at
	}
	page, err := v.api.ListAuditEvents(r.Context(), f, api.ListOptions{Limit: auditPageSize})
	if err != nil {
		c.fail(w, r, v.s, err, "read the audit log")
		return
	}
	view.More = page.NextPageToken != ""
	for _, e := range page.Items {
		if view.Action != "" && !strings.Contains(e.Action, view.Action) {
			continue
		}
		switch view.Result {
		case "success":
			if e.Result != api.AuditSuccess {
				continue
			}
		case "failure":
			if e.Result == api.AuditSuccess {
				continue
			}
		}
		view.Events = append(view.Events, e)
	}
	c.render(w, r, http.StatusOK, "audit", v.s, view)
}
