package provider

import (
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/resource"
)

// The provider's resources and data sources. Each file adds its own in an
// init function; file order makes the lists deterministic.
var (
	resourceConstructors   []func() resource.Resource
	dataSourceConstructors []func() datasource.DataSource
)
