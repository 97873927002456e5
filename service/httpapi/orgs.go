package httpapi

import (
	"net/http"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) whoami(c *call) error {
	writeJSON(c.w, http.StatusOK, api.WhoAmI{Token: c.p.token.APIToken, Organization: c.p.org})
	return nil
}

// createOrg makes an organization and its first admin token, whose secret
// is in this answer only.
func (s *Server) createOrg(c *call) error {
	var req api.CreateOrganizationRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := service.CheckOrganization(&req); err != nil {
		return err
	}
	now := s.now()
	org := api.Organization{ID: service.NewID(service.PrefixOrg, now), Name: req.Name, CreatedAt: now}
	tok := service.NewToken(org.ID, "admin", api.RoleAdmin, c.p.token.ID, nil, now)
	c.target("organization", org.ID)
	err := c.update(func(tx service.Tx) error {
		if err := tx.CreateOrg(c.ctx(), org); err != nil {
			return err
		}
		return tx.CreateToken(c.ctx(), tok)
	})
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, api.CreateOrganizationResponse{Organization: org, AdminToken: tok.APIToken})
	return nil
}

func (s *Server) listOrgs(c *call) error {
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.Organization], error) {
		return tx.ListOrgs(c.ctx(), opts)
	})
}

func (s *Server) getOrg(c *call) error {
	id, err := c.pathID("org_id", service.PrefixOrg)
	if err != nil {
		return err
	}
	return answerView(c, func(tx service.Tx) (api.Organization, error) { return tx.GetOrg(c.ctx(), id) })
}

func (s *Server) createToken(c *call) error {
	var req api.CreateTokenRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	now := s.now()
	if err := service.CheckToken(&req, now); err != nil {
		return err
	}
	tok := service.NewToken(c.orgID(), req.Name, req.Role, c.p.token.ID, req.ExpiresAt, now)
	c.target("token", tok.ID)
	if err := c.update(func(tx service.Tx) error { return tx.CreateToken(c.ctx(), tok) }); err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, tok.APIToken)
	return nil
}

func (s *Server) listTokens(c *call) error {
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.APIToken], error) {
		page, err := tx.ListTokens(c.ctx(), c.orgID(), opts)
		out := api.Page[api.APIToken]{Items: make([]api.APIToken, len(page.Items)), NextPageToken: page.NextPageToken}
		for i, t := range page.Items {
			out.Items[i] = t.APIToken
		}
		return out, err
	})
}

func (s *Server) getToken(c *call) error {
	id, err := c.pathID("token_id", service.PrefixToken)
	if err != nil {
		return err
	}
	return answerView(c, func(tx service.Tx) (api.APIToken, error) {
		tok, err := tx.GetToken(c.ctx(), c.orgID(), id)
		return tok.APIToken, err
	})
}

// revokeToken keeps the row (and so the audit trail's actor) but the token
// stops working at once.
func (s *Server) revokeToken(c *call) error {
	id, err := c.pathID("token_id", service.PrefixToken)
	if err != nil {
		return err
	}
	c.target("token", id)
	var tok service.Token
	err = c.update(func(tx service.Tx) error {
		if err := tx.RevokeToken(c.ctx(), c.orgID(), id, s.now()); err != nil {
			return err
		}
		tok, err = tx.GetToken(c.ctx(), c.orgID(), id)
		return err
	})
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusOK, tok.APIToken)
	return nil
}

func (s *Server) listAuditEvents(c *call) error {
	q := c.r.URL.Query()
	var f api.AuditFilter
	var fe api.FieldErrors
	for _, p := range []struct {
		name string
		dst  **time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				fe.Add(p.name, "must be an RFC 3339 time like 2026-01-02T15:04:05Z")
				continue
			}
			*p.dst = &t
		}
	}
	f.ActorID, f.TargetID = q.Get("actor_id"), q.Get("target_id")
	if err := fe.Err(); err != nil {
		return err
	}
	orgs := []string{c.orgID()}
	if c.p.org.System {
		orgs = append(orgs, "") // failures of callers no token identified
	}
	return answerList(c, func(tx service.Tx, opts api.ListOptions) (api.Page[api.AuditEvent], error) {
		return tx.ListAuditEvents(c.ctx(), orgs, f, opts)
	})
}
