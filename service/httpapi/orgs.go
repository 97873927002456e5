package httpapi

import (
	"net/http"
	"time"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/service"
)

func (s *Server) whoami(c *call) error {
	writeJSON(c.w, http.StatusOK, api.WhoAmI{Token: c.p.Token.APIToken, Organization: c.p.Org})
	return nil
}

func (s *Server) createOrg(c *call) error {
	c.target("organization", "") // the id exists only once it is created; a failure names the kind
	var req api.CreateOrganizationRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	out, err := s.cp.CreateOrg(c.ctx(), c.caller(), req)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, out)
	return nil
}

func (s *Server) listOrgs(c *call) error {
	return answerList(c, func(opts api.ListOptions) (api.Page[api.Organization], error) {
		return s.cp.ListOrgs(c.ctx(), opts)
	})
}

func (s *Server) getOrg(c *call) error {
	id, err := c.pathID("org_id", service.PrefixOrg)
	if err != nil {
		return err
	}
	org, err := s.cp.GetOrg(c.ctx(), id)
	return answer(c, org, err)
}

func (s *Server) createToken(c *call) error {
	c.target("token", "") // the id exists only once it is created; a failure names the kind
	var req api.CreateTokenRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	tok, err := s.cp.CreateToken(c.ctx(), c.caller(), req)
	if err != nil {
		return err
	}
	writeJSON(c.w, http.StatusCreated, tok)
	return nil
}

func (s *Server) listTokens(c *call) error {
	return answerList(c, func(opts api.ListOptions) (api.Page[api.APIToken], error) {
		return s.cp.ListTokens(c.ctx(), c.caller(), opts)
	})
}

func (s *Server) getToken(c *call) error {
	id, err := c.pathID("token_id", service.PrefixToken)
	if err != nil {
		return err
	}
	tok, err := s.cp.GetToken(c.ctx(), c.caller(), id)
	return answer(c, tok, err)
}

func (s *Server) revokeToken(c *call) error {
	id, err := c.pathID("token_id", service.PrefixToken)
	if err != nil {
		return err
	}
	c.target("token", id)
	tok, err := s.cp.RevokeToken(c.ctx(), c.caller(), id)
	return answer(c, tok, err)
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
			switch {
			case err != nil:
				fe.Add(p.name, "must be an RFC 3339 time like 2026-01-02T15:04:05Z")
			case t.Before(api.MinTimestamp) || t.After(api.MaxTimestamp):
				// Times are stored as int64 nanoseconds: past these a filter
				// would overflow and silently match the wrong events.
				fe.Add(p.name, "must lie between %s and %s", api.MinTimestamp.Format(time.RFC3339), api.MaxTimestamp.Format(time.RFC3339))
			default:
				*p.dst = &t
			}
		}
	}
	f.ActorID, f.TargetID = q.Get("actor_id"), q.Get("target_id")
	if err := fe.Err(); err != nil {
		return err
	}
	return answerList(c, func(opts api.ListOptions) (api.Page[api.AuditEvent], error) {
		return s.cp.ListAuditEvents(c.ctx(), c.caller(), f, opts)
	})
}
