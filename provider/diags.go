package provider

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/client"
)

// errorDiagnostic is the one mapping from a control-plane error to a
// Terraform diagnostic: it says which kind of failure it is and what to do.
func errorDiagnostic(summary string, err error) diag.Diagnostic {
	switch {
	case errors.Is(err, client.ErrUnreachable):
		return diag.NewErrorDiagnostic(summary, err.Error()+"\n\nCheck that rayplaned is running and that endpoint (or "+EnvEndpoint+") points at it.")
	case errors.Is(err, client.ErrCertificate):
		return diag.NewErrorDiagnostic(summary, err.Error()+"\n\nSet ca_cert_file (or "+EnvCACert+") to the ca.pem that rayplaned printed at start.")
	}
	var e *api.Error
	if !errors.As(err, &e) {
		return diag.NewErrorDiagnostic(summary, err.Error())
	}
	switch e.Code {
	case api.CodeUnauthorized:
		return diag.NewErrorDiagnostic(summary, "The control plane refused the API token: "+e.Message+
			".\n\nCheck token (or "+EnvToken+"); a revoked or expired token needs replacing.")
	case api.CodeForbidden:
		return diag.NewErrorDiagnostic(summary, "The API token lacks a permission: "+e.Message+
			".\n\nUse a token with the role the message names.")
	}
	return diag.NewErrorDiagnostic(summary, e.Error())
}

// fieldPattern splits an API field path like worker_groups[1].max_nodes.
var fieldPattern = regexp.MustCompile(`^([a-z_]+)(?:\[(\d+)\])?$`)

// apiErrorDiagnostics turns a control-plane error into diagnostics; an
// invalid request becomes one attribute error per bad field, placed with
// rename (API field name → attribute name; empty keeps the name).
func apiErrorDiagnostics(summary string, err error, rename map[string]string) diag.Diagnostics {
	var diags diag.Diagnostics
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeInvalid || len(e.Fields) == 0 {
		diags.Append(errorDiagnostic(summary, err))
		return diags
	}
	for _, f := range e.Fields {
		if p, ok := attributePath(f.Field, rename); ok {
			diags.AddAttributeError(p, summary, fmt.Sprintf("%s %s", f.Field, f.Reason))
		} else {
			diags.AddError(summary, fmt.Sprintf("%s: %s", f.Field, f.Reason))
		}
	}
	return diags
}

func attributePath(field string, rename map[string]string) (path.Path, bool) {
	var p path.Path
	for i, part := range strings.Split(field, ".") {
		m := fieldPattern.FindStringSubmatch(part)
		if m == nil {
			return path.Empty(), false
		}
		name := m[1]
		if r, ok := rename[name]; ok {
			name = r
		}
		if i == 0 {
			p = path.Root(name)
		} else {
			p = p.AtName(name)
		}
		if m[2] != "" {
			n, _ := strconv.Atoi(m[2])
			p = p.AtListIndex(n)
		}
	}
	return p, true
}

// clientFrom takes the API client Configure built.
func clientFrom(data any, diags *diag.Diagnostics) *client.Client {
	if pd := providerDataFrom(data, diags); pd != nil {
		return pd.client
	}
	return nil
}

func providerDataFrom(data any, diags *diag.Diagnostics) *providerData {
	if data == nil {
		return nil // the provider is not configured yet (validation, or unknown settings)
	}
	pd, ok := data.(*providerData)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("expected *providerData, got %T; this is a bug in the provider", data))
	}
	return pd
}

// resourcePlanned takes the plan-wide record of planned changes.
func resourcePlanned(req resource.ConfigureRequest, resp *resource.ConfigureResponse) *plannedChanges {
	if pd := providerDataFrom(req.ProviderData, &resp.Diagnostics); pd != nil {
		return pd.planned
	}
	return nil
}

func resourceClient(req resource.ConfigureRequest, resp *resource.ConfigureResponse) *client.Client {
	return clientFrom(req.ProviderData, &resp.Diagnostics)
}

func dataSourceClient(req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) *client.Client {
	return clientFrom(req.ProviderData, &resp.Diagnostics)
}

// notConfigured is the error of a call that needs the control plane while
// the provider's own settings are not known yet (they come from a resource
// that is still to be applied).
func notConfigured(diags *diag.Diagnostics) {
	diags.AddError("The rayplane provider is not configured yet",
		"Its endpoint or token is known only after apply. Apply the resources they come from first (for example with -target), then apply again.")
}
