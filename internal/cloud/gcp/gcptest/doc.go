// Package gcptest is a loopback test server that stands in for the Google
// APIs the GCP driver calls — Compute Engine, IAM Credentials, Cloud
// Resource Manager (projects.testIamPermissions), STS (token exchange) and
// the OAuth 2.0 token endpoint — and starts fake-gcs-server for storage
// (StartGCS). It is for tests only and must never be imported by
// production code.
//
// No Compute Engine emulator exists. The server's faithfulness comes from
// the official discovery documents shipped in the google.golang.org/api
// module go.mod requires (compute/v1, iamcredentials/v1,
// cloudresourcemanager/v3, sts/v1; found with `go list -m`, so a fresh clone
// needs only `go mod download`). Every request is routed and validated
// against them before any emulation:
//   - the method by HTTP verb and path template ({x} one segment, {+x}
//     several), path parameters matched against their declared patterns
//     (400 otherwise); a path no method matches is 404;
//   - query parameters: each declared by the method or one of the API's
//     standard parameters (alt, fields, prettyPrint, quotaUser, ...), given
//     once unless repeated, of the declared type (integer, boolean, enum)
//     and bounds; required ones present. "$alt" is also accepted
//     (json or json;enum-encoding=int): Google's front end takes "$"-names
//     as system parameters and the generated REST clients send it, though
//     no discovery document lists it;
//   - JSON bodies, recursively against the request schema, as proto3 JSON
//     parsing does: unknown field names are refused (not ignored), values
//     must have the field's type (strings, booleans, integers as numbers or
//     numeric strings, int64/uint64, enums by name from the declared list,
//     objects, arrays, maps), null is accepted. Path parameters may appear
//     in the body too (gRPC transcoding with body "*": resourcemanager's
//     client sends "resource");
//   - errors in Google's JSON shape: {"error":{"code","message",
//     "errors":[{"message","domain","reason"}],"status"}} with a
//     google.rpc.BadRequest detail naming the field, e.g. 400
//     INVALID_ARGUMENT `Invalid JSON payload received. Unknown name "x" at
//     'instance': Cannot find field.`
//
// A valid request of a method the server does not emulate answers 501
// UNIMPLEMENTED (never a silent success).
//
// Identity. ControlPlaneKey writes a service-account key file (real RSA
// key, token_uri = URL+"/token"); /token verifies the JWT-bearer grant's
// RS256 signature, iss, aud, scope and times. WorkloadIdentityProvider +
// SubjectToken: STS (form-encoded as the auth library sends, or JSON)
// verifies the subject JWT (RS256/ES256 signature, iss exactly the
// provider's issuer URI, aud, exp, iat, sub) for
// the audience //iam.googleapis.com/<provider> and mints a federated token
// for principal://iam.googleapis.com/<pool>/subject/<sub>.
// generateAccessToken mints a token for a service account only to a
// caller listed as its token creator (403 otherwise, also for accounts
// that do not exist, as IAM answers), lifetime ≤ 1 h. Compute and Resource
// Manager calls need a bearer token the server minted (401 otherwise),
// unexpired, with a scope of the method's discovery scopes (403
// insufficient scopes), whose principal holds the method's permission on
// the project (403 "Required 'compute.instances.create' permission for
// 'projects/p/zones/z/instances/i'"). Only service accounts made with
// ServiceAccount hold permissions: the control plane's own key and
// federated principals hold none, so any compute call made without
// impersonation is refused. Self-signed JWTs of a ControlPlaneKey key are
// accepted as bearer tokens too (with the cloud-platform scope).
//
// Compute Engine. Emulated: instances insert/get/list/aggregatedList/delete,
// zoneOperations get/wait, machineTypes.get, zones.get, images get and
// getFromFamily, networks.get, subnetworks.get. instances.insert checks, as
// Compute Engine does: the name's format; the zone exists (400); the
// machine type is "zones/<this zone>/machineTypes/T" (or a full URL) of a
// MachineType (400); exactly one boot disk from initializeParams with a
// source image that exists (404), family references resolved; at least one
// network interface whose network (default "default") and subnetwork (in
// the zone's region, of that network) exist (404); labels' format and
// count; metadata keys, duplicates and sizes; SPOT scheduling without
// automatic restart and with onHostMaintenance TERMINATE; a machine type with
// GPUs only with onHostMaintenance TERMINATE (400 "Instances with guest
// accelerators do not support live migration."); at most one
// service account, which exists; a name already used in the zone is 409
// alreadyExists. Besides compute.instances.create it requires the
// permissions the request implies: compute.disks.create (each disk),
// compute.images.useReadOnly (an image of the project: other projects'
// images are public), compute.subnetworks.use (a subnetwork given) or
// compute.networks.use (none given), compute.subnetworks.useExternalIp
// (access configs), compute.instances.setMetadata / setLabels / setTags
// (when given), compute.instances.setServiceAccount and
// iam.serviceAccounts.actAs (a service account), compute.disks.setLabels
// (disk labels). requestId must be a non-zero UUID; a repeated requestId
// (insert or delete) answers the first request's operation and changes
// nothing, whatever the body. An insert answers its operation RUNNING;
// the instance is made at once and RUNNING, the operation DONE for any
// later get/wait (HoldProvisioning keeps both PROVISIONING/RUNNING until
// released). FailCapacity / FailQuota / FailInternal (FailOperations for
// any code): the insert is accepted and its operation ends DONE with error
// ZONE_RESOURCE_POOL_EXHAUSTED (httpErrorStatusCode 503), QUOTA_EXCEEDED
// (403) or INTERNAL_ERROR (500); no instance, and its requestId answers
// that failed operation from then on. Options.Latency delays every answer.
// zoneOperations.wait returns when the operation is DONE, the client goes
// away or after two minutes. list/aggregatedList: the filter subset of
// filter.go (labels.K, status, name with = or !=, joined by spaces or AND,
// parenthesised or not; anything else 400), maxResults (≤ 500, 0 = 500) and
// opaque pageTokens bound to the filter; aggregatedList answers every zone
// as "zones/Z", empty ones with a NO_RESULTS_ON_PAGE warning. Delete of a
// missing instance is 404; deletion is immediate (the operation is DONE at
// once). Preempt: STOPPING→TERMINATED and deleted when
// instanceTerminationAction is DELETE.
//
// Not emulated (answer 501 or are refused with a message saying so):
// every other method of the four APIs; orderBy; serviceProjectNumber;
// sourceInstanceTemplate / sourceMachineImage; attaching existing disks;
// guestAccelerators (GPUs come with the machine type: MachineType's gpus
// are nvidia-l4 accelerators); shared VPC (networks of other projects);
// iamcredentials delegates; STS actor tokens and options; lifetimes over
// an hour; ID tokens. Not modelled at all: resource-level IAM (permissions
// are project-wide, and a service account's tokenCreators are its only
// policy), project numbers, regions as resources, quotas other than
// FailQuota, instance start/stop/reset, boot or the guest (the node runner
// in gcptest/nodes does that), disks as resources, firewall rules, the
// time an operation takes (no real delay is ever added), and the response
// field mask (fields=) which is accepted but ignored.
//
// Every request is listed by Calls (discovery method id, principal, status);
// Instances lists every instance ever inserted and WaitInstances waits,
// without polling, until they satisfy a condition. FailRequests injects
// HTTP errors (429 rateLimitExceeded, 5xx backendError, ...) into the next
// calls of a method; HoldInserts holds insert answers (the instance exists
// already); HoldProvisioning holds instances in PROVISIONING.
package gcptest
