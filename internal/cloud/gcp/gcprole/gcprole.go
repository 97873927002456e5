// Package gcprole is the IAM custom role a GCP cloud's service account
// holds on its project, derived from Calls: every Google API call the
// driver makes with that account's impersonated tokens, with the
// permission each needs. The role and the driver cannot drift apart: the
// driver's verification tests PermissionsFor(the cloud) on the project, and the
// driver's tests check that every call they saw is listed here and every
// permission listed was needed by a call they saw.
//
// It renders text only: no Google SDK, no I/O.
package gcprole

import (
	"fmt"
	"slices"
	"strings"
)

// Call is one Google API method the driver calls with the impersonated
// service account, and one IAM permission it needs. A method needing
// several permissions has one Call per permission; one needing none
// (projects.testIamPermissions) has Permission "".
type Call struct {
	Method     string // the discovery id, "compute.instances.insert"
	Permission string // "compute.instances.create"
	Why        string // what the driver does with it
}

// Calls is every call the driver makes in the customer's project. The
// control plane's own identity calls only iamcredentials
// generateAccessToken on the service account (roles/iam.serviceAccountTokenCreator
// granted on that account) and, with workload identity federation, STS:
// neither is a permission of this role.
var Calls = []Call{
	{"compute.instances.insert", "compute.instances.create", "launch a node"},
	{"compute.instances.insert", "compute.disks.create", "create the node's boot disk with the instance"},
	{"compute.instances.insert", "compute.images.useReadOnly", "boot the node from the cloud's image"},
	{"compute.instances.insert", "compute.instances.setMetadata", "give the node its startup-script (the agent's bootstrap)"},
	{"compute.instances.insert", "compute.instances.setLabels", "label the node rayplane-managed-by=rayplane, its cloud, cluster, node and group"},
	{"compute.instances.insert", "compute.subnetworks.use", "attach the node to the cloud's subnetwork (no external IP)"},
	{"compute.instances.insert", "compute.networks.use", "attach the node to the cloud's network when it is a legacy network without subnetworks"},
	{"compute.instances.insert", "compute.instances.setServiceAccount", "give the node the cloud's node service account"},
	{"compute.instances.insert", "iam.serviceAccounts.actAs", "run the node as the cloud's node service account"},
	{"compute.instances.get", "compute.instances.get", "read a launched node's address and state, or the node holding its name"},
	{"compute.instances.aggregatedList", "compute.instances.list", "list the nodes by their rayplane labels in every zone"},
	{"compute.instances.delete", "compute.instances.delete", "delete a node, or the stopped instance of a node whose agent exited"},
	{"compute.zoneOperations.wait", "compute.zoneOperations.get", "wait for an insert or delete to finish"},
	{"compute.machineTypes.get", "compute.machineTypes.get", "describe the cloud's machine types (CPUs, memory, GPUs); verify them in each zone"},
	{"compute.zones.get", "compute.zones.get", "verify the cloud's zones exist"},
	{"compute.images.get", "compute.images.get", "verify the cloud's image exists"},
	{"compute.images.getFromFamily", "compute.images.getFromFamily", "verify the cloud's image family has an image"},
	{"compute.networks.get", "compute.networks.get", "verify the cloud's network exists"},
	{"compute.subnetworks.get", "compute.subnetworks.get", "verify the cloud's subnetwork exists in its region"},
	{"cloudresourcemanager.projects.testIamPermissions", "", "verify the service account holds every permission of this role (needs none)"},
}

// Permissions answers the permissions of Calls, each once, sorted: the
// custom role's includedPermissions (for every cloud, with or without a
// node service account).
func Permissions() []string { return PermissionsFor(true) }

// nodeServiceAccountOnly are the permissions only an insert with a service
// account needs: a cloud without node_service_account never uses them.
var nodeServiceAccountOnly = []string{"compute.instances.setServiceAccount", "iam.serviceAccounts.actAs"}

// PermissionsFor answers the permissions a cloud's launches and
// verification need, each once, sorted: Permissions() without those of a
// node service account when the cloud has none.
func PermissionsFor(nodeServiceAccount bool) []string {
	var out []string
	for _, c := range Calls {
		if c.Permission != "" && (nodeServiceAccount || !slices.Contains(nodeServiceAccountOnly, c.Permission)) {
			out = append(out, c.Permission)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// NodePermissions answers what the nodes' service account needs on the
// cloud's storage bucket: write the agents' log pieces.
func NodePermissions() []string {
	return []string{"storage.objects.create"}
}

// RoleYAML answers the custom role's definition for `gcloud iam roles
// create ROLE_ID --project=P --file=FILE`, with title (quoted as YAML
// needs) and Permissions().
func RoleYAML(title string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "title: %s\n", yamlString(title))
	b.WriteString("description: " + yamlString("rayplane control plane: launch, list and delete the cloud's nodes and verify its settings") + "\n")
	b.WriteString("stage: GA\n")
	b.WriteString("includedPermissions:\n")
	for _, p := range Permissions() {
		b.WriteString("- " + p + "\n")
	}
	return b.String()
}

// yamlString is s as a YAML double-quoted scalar: JSON's escaping is
// YAML's, for the characters JSON escapes.
func yamlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
