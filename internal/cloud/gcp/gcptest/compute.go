package gcptest

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// computeBase is the prefix of Compute Engine's self links.
const computeBase = "https://www.googleapis.com/compute/v1/"

type image struct {
	project, name, family string
	id                    uint64
	created               string
}

type network struct {
	name    string
	id      uint64
	created string
}

type subnetwork struct {
	region, name, network string
	cidr                  string
	id                    uint64
	created               string
}

type machineType struct {
	name                 string
	cpus, memoryMB, gpus int
	id                   uint64
	acceleratorType      string
}

type instance struct {
	proto     *computepb.Instance
	zone      string
	requestID string
	deleted   bool
}

type operation struct {
	proto *computepb.Operation
	zone  string
	inst  *instance     // the instance an insert makes, for HoldProvisioning's release
	done  chan struct{} // closed when the operation is DONE
}

// Fault selects inserts: empty fields match everything.
type Fault struct {
	Zone        string
	MachineType string // a name, e.g. n2-standard-8
	Spot        *bool  // nil = both markets
}

type faultEntry struct {
	Fault
	active bool
	code   string // the operation's error code
	status int32  // its httpErrorStatusCode
	msg    string
}

// Instance is what the server knows of an instance.
type Instance struct {
	Name        string
	Zone        string
	Status      string // PROVISIONING, RUNNING, STOPPING, TERMINATED, ... ("" once deleted)
	Deleted     bool
	MachineType string            // name
	Labels      map[string]string // as inserted
	Metadata    map[string]string // metadata items
	Spot        bool              // scheduling.provisioningModel SPOT
	Scheduling  *computepb.Scheduling
	// ServiceAccount is serviceAccounts[0].email ("" = none) and Scopes its scopes.
	ServiceAccount string
	Scopes         []string
	SourceImage    string // the boot disk's initializeParams.sourceImage as given
	Network        string // full URL
	Subnetwork     string // full URL, "" = none
	NetworkIP      string
	RequestID      string // the insert's requestId
	Proto          *computepb.Instance
}

// Image makes an image exist: "projects/P/global/images/NAME", or
// "projects/P/global/images/family/FAMILY" for a family (its image is
// FAMILY-v1). Images of projects other than Options.Project are public
// (every caller may read and use them, as debian-cloud's); those of the
// project need compute.images.get / getFromFamily / useReadOnly.
func (s *Server) Image(path string) {
	rest, ok := strings.CutPrefix(path, "projects/")
	project, name, ok2 := strings.Cut(rest, "/global/images/")
	if !ok || !ok2 || project == "" || name == "" {
		panic("gcptest: Image: want projects/P/global/images/NAME or .../family/FAMILY, got " + path)
	}
	img := &image{project: project, name: name}
	if fam, ok := strings.CutPrefix(name, "family/"); ok {
		img.family, img.name = fam, fam+"-v1"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	img.id, img.created = s.newID(), s.timestamp()
	s.images[project+"/"+img.name] = img
}

// Network makes a VPC network of the project exist.
func (s *Server) Network(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.networks[name] = &network{name: name, id: s.newID(), created: s.timestamp()}
}

// Subnetwork makes a subnetwork of the "default" network exist in region
// (the network is made too when missing).
func (s *Server) Subnetwork(region, name string) { s.SubnetworkIn("default", region, name) }

// SubnetworkIn makes a subnetwork of the network exist in region (the
// network is made too when missing).
func (s *Server) SubnetworkIn(networkName, region, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.networks[networkName] == nil {
		s.networks[networkName] = &network{name: networkName, id: s.newID(), created: s.timestamp()}
	}
	s.subnetworks[region+"/"+name] = &subnetwork{region: region, name: name, network: networkName,
		cidr: fmt.Sprintf("10.%d.0.0/20", 128+len(s.subnetworks)), id: s.newID(), created: s.timestamp()}
}

// MachineType makes a machine type exist in every zone. GPUs are
// nvidia-l4 accelerators.
func (s *Server) MachineType(name string, cpus int, memoryMB int, gpus int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.machineTypes[name] = &machineType{name: name, cpus: cpus, memoryMB: memoryMB, gpus: gpus, id: s.newID(), acceleratorType: "nvidia-l4"}
}

// FailCapacity makes matching inserts fail as Compute Engine does when a
// zone has no capacity: the insert is accepted (200, operation RUNNING) and
// its operation ends DONE with error ZONE_RESOURCE_POOL_EXHAUSTED
// (httpErrorStatusCode 503); no instance is made.
func (s *Server) FailCapacity(f Fault) (undo func()) {
	return s.FailOperations(f, "ZONE_RESOURCE_POOL_EXHAUSTED", 503,
		"The zone '%s' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.")
}

// FailQuota is FailCapacity with QUOTA_EXCEEDED (httpErrorStatusCode 403).
func (s *Server) FailQuota(f Fault) (undo func()) {
	return s.FailOperations(f, "QUOTA_EXCEEDED", 403, "Quota 'CPUS' exceeded.  Limit: 24.0 in the region of %s.")
}

// FailInternal is FailCapacity with INTERNAL_ERROR (httpErrorStatusCode
// 500): an operation that failed for a transient reason of Google's.
func (s *Server) FailInternal(f Fault) (undo func()) {
	return s.FailOperations(f, "INTERNAL_ERROR", 500, "Internal error. Please try again or contact Google Support. (Code: '%s')")
}

// FailOperations makes matching inserts' operations end DONE with the
// error code and httpErrorStatusCode status (message: format with the
// zone's path); no instance is made. As on Compute Engine, the insert's
// requestId answers that failed operation from then on. The first active
// fault of those added matches.
func (s *Server) FailOperations(f Fault, code string, status int, format string) (undo func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &faultEntry{Fault: f, active: true, code: code, status: int32(status), msg: format}
	s.opFaults = append(s.opFaults, e)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		e.active = false
	}
}

func matchFault(list []*faultEntry, zone, mt string, spot bool) *faultEntry {
	for _, f := range list {
		if f.active && (f.Zone == "" || f.Zone == zone) && (f.MachineType == "" || f.MachineType == mt) && (f.Spot == nil || *f.Spot == spot) {
			return f
		}
	}
	return nil
}

// HoldInserts holds the answers of instances.insert: the instance is made
// (and listed) at once, the HTTP answer waits until release (or the
// client gives up). For tests of a control plane that dies mid-insert.
func (s *Server) HoldInserts() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := make(chan struct{})
	s.holdInserts = ch
	var once bool
	release = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if once {
			return
		}
		once = true
		close(ch)
		if s.holdInserts == ch {
			s.holdInserts = nil
		}
	}
	s.releases = append(s.releases, release)
	return release
}

// HoldProvisioning keeps new instances PROVISIONING and their insert
// operations RUNNING until release, which completes them (RUNNING, DONE).
// Without it an insert completes at once: the instance is RUNNING and the
// operation DONE by the time the insert answers (its answer still says
// RUNNING, as Compute Engine's does).
func (s *Server) HoldProvisioning() (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holdProv = true
	var once bool
	release = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if once {
			return
		}
		once = true
		s.holdProv = false
		for _, op := range s.held {
			s.completeLocked(op)
		}
		s.held = nil
	}
	s.releases = append(s.releases, release)
	return release
}

// Preempt preempts a spot instance as Compute Engine does: it goes
// STOPPING then TERMINATED, and with instanceTerminationAction DELETE it is
// deleted; a compute.instances.preempted operation is recorded.
func (s *Server) Preempt(instanceName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.liveByName(instanceName)
	if inst == nil {
		panic("gcptest: Preempt: no instance " + instanceName)
	}
	inst.proto.Status = proto.String("TERMINATED")
	inst.proto.LastStopTimestamp = proto.String(s.timestamp())
	op := s.newOperation(inst.zone, "compute.instances.preempted", inst, "system")
	s.completeLocked(op)
	if inst.proto.GetScheduling().GetInstanceTerminationAction() == "DELETE" {
		s.deleteLocked(inst)
	}
	s.notifyLocked()
}

// SetStatus sets a live instance's status (one of Instance.status's values in
// the discovery document).
func (s *Server) SetStatus(name, status string) {
	enum := s.cat.byID["compute.instances.get"].api.Schemas["Instance"].Properties["status"].Enum
	if !contains(enum, status) {
		panic(fmt.Sprintf("gcptest: SetStatus: %q is not an instance status %v", status, enum))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.liveByName(name)
	if inst == nil {
		panic("gcptest: SetStatus: no instance " + name)
	}
	inst.proto.Status = proto.String(status)
	s.notifyLocked()
}

func (s *Server) liveByName(name string) *instance {
	for _, z := range s.opts.Zones {
		if inst := s.live[z+"/"+name]; inst != nil {
			return inst
		}
	}
	return nil
}

// notifyLocked wakes WaitInstances (s.mu held).
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitInstances waits until cond holds for Instances() (checked now and at
// every change of an instance), or ctx ends.
func (s *Server) WaitInstances(ctx context.Context, cond func([]Instance) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.Instances()) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("gcptest: instances never reached the condition: %w", ctx.Err())
		}
	}
}

// Instances lists every instance ever inserted, in insert order, deleted
// ones included (Deleted, Status "").
func (s *Server) Instances() []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Instance, 0, len(s.history))
	for _, inst := range s.history {
		p := inst.proto
		v := Instance{
			Name:        p.GetName(),
			Zone:        inst.zone,
			Status:      p.GetStatus(),
			Deleted:     inst.deleted,
			MachineType: lastSegment(p.GetMachineType()),
			Labels:      map[string]string{},
			Metadata:    map[string]string{},
			Spot:        p.GetScheduling().GetProvisioningModel() == "SPOT",
			Scheduling:  proto.Clone(p.GetScheduling()).(*computepb.Scheduling),
			RequestID:   inst.requestID,
			Proto:       proto.Clone(p).(*computepb.Instance),
		}
		if inst.deleted {
			v.Status = ""
		}
		for k, x := range p.GetLabels() {
			v.Labels[k] = x
		}
		for _, it := range p.GetMetadata().GetItems() {
			v.Metadata[it.GetKey()] = it.GetValue()
		}
		if sas := p.GetServiceAccounts(); len(sas) > 0 {
			v.ServiceAccount, v.Scopes = sas[0].GetEmail(), append([]string(nil), sas[0].GetScopes()...)
		}
		for _, d := range p.GetDisks() {
			if d.GetBoot() {
				v.SourceImage = d.GetInitializeParams().GetSourceImage()
			}
		}
		if nics := p.GetNetworkInterfaces(); len(nics) > 0 {
			v.Network, v.Subnetwork, v.NetworkIP = nics[0].GetNetwork(), nics[0].GetSubnetwork(), nics[0].GetNetworkIP()
		}
		out = append(out, v)
	}
	return out
}

func lastSegment(s string) string { return s[strings.LastIndex(s, "/")+1:] }

func (s *Server) zoneURL(zone string) string {
	return computeBase + "projects/" + s.opts.Project + "/zones/" + zone
}

// checkZone answers 404 for a zone that does not exist (s.mu held).
func (s *Server) checkZone(project, zone string) *apiError {
	if _, ok := s.zones[zone]; !ok || project != s.opts.Project {
		return errNotFound(fmt.Sprintf("The resource 'projects/%s/zones/%s' was not found", project, zone))
	}
	return nil
}

var (
	nameRE       = regexp.MustCompile(`^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$`)
	labelKeyRE   = regexp.MustCompile(`^[\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}$`)
	labelValueRE = regexp.MustCompile(`^[\p{Ll}\p{Lo}\p{N}_-]{0,63}$`)
	metaKeyRE    = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,128}$`)
	uuidRE       = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

func checkRequestID(id string) *apiError {
	if id == "" {
		return nil
	}
	if !uuidRE.MatchString(id) || id == "00000000-0000-0000-0000-000000000000" {
		return errInvalid(fmt.Sprintf("Invalid value for field 'requestId': '%s'. The request ID must be a valid UUID with the exception that zero UUID is not supported (00000000-0000-0000-0000-000000000000).", id))
	}
	return nil
}

// resolve parses a reference to a resource as Compute Engine accepts them
// (a full URL, "projects/P/...", or a partial path relative to the
// project) against the expected kind ("global/images", "zones/Z/machineTypes",
// ...). It answers project and name.
func (s *Server) resolve(ref, kind string) (project, name string, ok bool) {
	ref = strings.TrimPrefix(ref, computeBase)
	ref = strings.TrimPrefix(ref, "https://compute.googleapis.com/compute/v1/")
	project = s.opts.Project
	if rest, found := strings.CutPrefix(ref, "projects/"); found {
		p, r, found := strings.Cut(rest, "/")
		if !found {
			return "", "", false
		}
		project, ref = p, r
	}
	name, found := strings.CutPrefix(ref, kind+"/")
	if !found || name == "" {
		return "", "", false
	}
	return project, name, true
}

// instanceInsert answers compute.instances.insert. See doc.go for what it
// checks.
func (s *Server) instanceInsert(req *request) (any, *apiError) {
	project, zone := req.path["project"], req.path["zone"]
	reqID := req.query.Get("requestId")
	if err := checkRequestID(reqID); err != nil {
		return nil, err
	}
	if req.query.Get("sourceInstanceTemplate") != "" || req.query.Get("sourceMachineImage") != "" {
		return nil, errUnimplemented("gcptest does not emulate sourceInstanceTemplate / sourceMachineImage")
	}
	inst := &computepb.Instance{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(req.body, inst); err != nil {
		return nil, errInvalid("Invalid JSON payload received. " + err.Error())
	}
	s.mu.Lock()
	resource := fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, inst.GetName())
	if err := s.authorize(req, project, "compute.instances.create", resource); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	if _, ok := s.zones[zone]; !ok {
		s.mu.Unlock()
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'zone': '%s'. Unknown zone.", zone))
	}
	if reqID != "" {
		if op := s.requestIDs[reqID]; op != nil {
			snap := proto.Clone(op.proto).(*computepb.Operation)
			s.mu.Unlock()
			return snap, nil
		}
	}
	perms, err := s.checkInstance(inst, project, zone)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	for _, p := range perms {
		if err := s.authorize(req, project, p[0], p[1]); err != nil {
			s.mu.Unlock()
			return nil, err
		}
	}
	if s.live[zone+"/"+inst.GetName()] != nil {
		s.mu.Unlock()
		return nil, errAlreadyExists(fmt.Sprintf("The resource '%s' already exists", resource))
	}
	mt := lastSegment(inst.GetMachineType())
	spot := inst.GetScheduling().GetProvisioningModel() == "SPOT"
	var answer *computepb.Operation
	switch fault := matchFault(s.opFaults, zone, mt, spot); {
	case fault != nil:
		op := s.newOperation(zone, "insert", nil, req.tok.principal)
		op.proto.TargetLink = proto.String(s.zoneURL(zone) + "/instances/" + inst.GetName())
		answer = proto.Clone(op.proto).(*computepb.Operation)
		op.proto.HttpErrorStatusCode = proto.Int32(fault.status)
		op.proto.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(int(fault.status))))
		op.proto.Error = &computepb.Error{Errors: []*computepb.Errors{{
			Code:    proto.String(fault.code),
			Message: proto.String(strings.ReplaceAll(fault.msg, "%s", "projects/"+project+"/zones/"+zone)),
		}}}
		s.completeLocked(op)
		if reqID != "" {
			s.requestIDs[reqID] = op
		}
	default:
		s.fillInstance(inst, project, zone)
		rec := &instance{proto: inst, zone: zone, requestID: reqID}
		s.live[zone+"/"+inst.GetName()] = rec
		s.history = append(s.history, rec)
		s.notifyLocked()
		op := s.newOperation(zone, "insert", rec, req.tok.principal)
		answer = proto.Clone(op.proto).(*computepb.Operation)
		if s.holdProv {
			s.held = append(s.held, op)
		} else {
			s.completeLocked(op)
		}
		if reqID != "" {
			s.requestIDs[reqID] = op
		}
	}
	hold := s.holdInserts
	s.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-req.r.Context().Done():
		}
	}
	return answer, nil
}

// checkInstance checks an instance resource as Compute Engine does on
// insert (s.mu held) and answers the further permissions the insert needs,
// as [permission, resource] pairs.
func (s *Server) checkInstance(inst *computepb.Instance, project, zone string) ([][2]string, *apiError) {
	region := s.zones[zone]
	var perms [][2]string
	if !nameRE.MatchString(inst.GetName()) {
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", inst.GetName())).field("resource.name")
	}
	mtProject, mtRest, ok := s.resolve(inst.GetMachineType(), "zones")
	mtZone, mtName, ok2 := strings.Cut(mtRest, "/machineTypes/")
	if inst.GetMachineType() == "" || !ok || !ok2 || mtProject != project || mtZone != zone {
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.machineType': '%s'. Machine type must be given as zones/%s/machineTypes/TYPE.", inst.GetMachineType(), zone)).field("resource.machineType")
	}
	if s.machineTypes[mtName] == nil {
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.machineType': '%s'. Machine type with name '%s' does not exist in zone '%s'.", inst.GetMachineType(), mtName, zone)).field("resource.machineType")
	}
	inst.MachineType = proto.String(s.zoneURL(zone) + "/machineTypes/" + mtName)
	boots := 0
	for i, d := range inst.GetDisks() {
		if d.GetBoot() {
			boots++
		}
		if d.GetSource() != "" {
			return nil, errUnimplemented("gcptest does not emulate attaching existing disks (disks[].source)")
		}
		ip := d.GetInitializeParams()
		if ip == nil {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.disks[%d]': ''. Source or initializeParams must be given.", i))
		}
		diskName := ip.GetDiskName()
		if diskName == "" {
			diskName = inst.GetName()
			if i > 0 {
				diskName = fmt.Sprintf("%s-%d", inst.GetName(), i)
			}
		}
		perms = append(perms, [2]string{"compute.disks.create", fmt.Sprintf("projects/%s/zones/%s/disks/%s", project, zone, diskName)})
		if src := ip.GetSourceImage(); src != "" {
			img, err := s.findImage(src)
			if err != nil {
				return nil, err
			}
			if img.project == s.opts.Project {
				perms = append(perms, [2]string{"compute.images.useReadOnly", fmt.Sprintf("projects/%s/global/images/%s", img.project, img.name)})
			}
		} else if d.GetBoot() {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.disks[%d].initializeParams.sourceImage': ''. A boot disk needs a source image.", i))
		}
		if len(ip.GetLabels()) > 0 {
			perms = append(perms, [2]string{"compute.disks.setLabels", fmt.Sprintf("projects/%s/zones/%s/disks/%s", project, zone, diskName)})
		}
	}
	if boots != 1 {
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.disks': ''. Exactly one boot disk must be given, got %d.", boots)).field("resource.disks")
	}
	if len(inst.GetNetworkInterfaces()) == 0 {
		return nil, errInvalid("Invalid value for field 'resource.networkInterfaces': ''. At least one network interface is required.").field("resource.networkInterfaces")
	}
	for i, nic := range inst.GetNetworkInterfaces() {
		netName := "default"
		if nic.GetNetwork() != "" {
			p, n, ok := s.resolve(nic.GetNetwork(), "global/networks")
			if !ok || strings.Contains(n, "/") {
				return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.networkInterfaces[%d].network': '%s'. The URL is malformed.", i, nic.GetNetwork()))
			}
			if p != project {
				return nil, errUnimplemented("gcptest does not emulate shared VPC (a network of another project)")
			}
			netName = n
		}
		var sub *subnetwork
		if nic.GetSubnetwork() != "" {
			p, rest, ok := s.resolve(nic.GetSubnetwork(), "regions")
			r, n, ok2 := strings.Cut(rest, "/subnetworks/")
			if !ok || !ok2 {
				return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.networkInterfaces[%d].subnetwork': '%s'. The URL is malformed.", i, nic.GetSubnetwork()))
			}
			if p != project {
				return nil, errUnimplemented("gcptest does not emulate shared VPC (a subnetwork of another project)")
			}
			if r != region {
				return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.networkInterfaces[%d].subnetwork': '%s'. Subnetwork must be in region %s.", i, nic.GetSubnetwork(), region))
			}
			sub = s.subnetworks[r+"/"+n]
			if sub == nil {
				return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/regions/%s/subnetworks/%s' was not found", p, r, n))
			}
			if nic.GetNetwork() == "" {
				netName = sub.network
			} else if sub.network != netName {
				return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.networkInterfaces[%d].subnetwork': '%s'. Subnetwork does not belong to network %s.", i, nic.GetSubnetwork(), netName))
			}
		}
		if s.networks[netName] == nil {
			return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/networks/%s' was not found", project, netName))
		}
		nic.Network = proto.String(computeBase + "projects/" + project + "/global/networks/" + netName)
		if sub != nil {
			nic.Subnetwork = proto.String(computeBase + "projects/" + project + "/regions/" + region + "/subnetworks/" + sub.name)
			perms = append(perms, [2]string{"compute.subnetworks.use", fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, region, sub.name)})
		} else {
			// An auto-mode network's subnetwork of the region; the
			// permission Compute Engine asks is on the network then.
			perms = append(perms, [2]string{"compute.networks.use", fmt.Sprintf("projects/%s/global/networks/%s", project, netName)})
		}
		if len(nic.GetAccessConfigs()) > 0 {
			perms = append(perms, [2]string{"compute.subnetworks.useExternalIp", fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, region, lastSegment(nic.GetSubnetwork()))})
		}
	}
	if len(inst.GetLabels()) > 64 {
		return nil, errInvalid("Invalid value for field 'resource.labels': ''. Too many labels (at most 64).").field("resource.labels")
	}
	for k, v := range inst.GetLabels() {
		if !labelKeyRE.MatchString(k) || !labelValueRE.MatchString(v) {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.labels': ''. Label key '%s' or value '%s' violates format constraints. Keys: lowercase letter first, then lowercase letters, digits, '_' or '-', at most 63; values: the same characters, at most 63.", k, v)).field("resource.labels")
		}
	}
	if len(inst.GetLabels()) > 0 {
		perms = append(perms, [2]string{"compute.instances.setLabels", "projects/" + project + "/zones/" + zone + "/instances/" + inst.GetName()})
	}
	total := 0
	seen := map[string]bool{}
	for i, it := range inst.GetMetadata().GetItems() {
		if !metaKeyRE.MatchString(it.GetKey()) {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.metadata.items[%d].key': '%s'. Must be a match of regex '[a-zA-Z0-9-_]{1,128}'", i, it.GetKey()))
		}
		if seen[it.GetKey()] {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.metadata.items[%d].key': '%s'. Duplicate keys are not allowed.", i, it.GetKey()))
		}
		seen[it.GetKey()] = true
		if len(it.GetValue()) > 256<<10 {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.metadata.items[%d].value': ''. Value exceeds 256 KiB.", i))
		}
		total += len(it.GetKey()) + len(it.GetValue())
	}
	if total > 512<<10 {
		return nil, errInvalid("Invalid value for field 'resource.metadata': ''. Metadata exceeds 512 KiB in total.")
	}
	if len(inst.GetMetadata().GetItems()) > 0 {
		perms = append(perms, [2]string{"compute.instances.setMetadata", "projects/" + project + "/zones/" + zone + "/instances/" + inst.GetName()})
	}
	if len(inst.GetTags().GetItems()) > 0 {
		perms = append(perms, [2]string{"compute.instances.setTags", "projects/" + project + "/zones/" + zone + "/instances/" + inst.GetName()})
	}
	if sc := inst.GetScheduling(); sc != nil {
		if sc.GetProvisioningModel() == "SPOT" {
			if sc.GetAutomaticRestart() {
				return nil, errInvalid("Invalid value for field 'resource.scheduling.automaticRestart': 'true'. Spot VMs cannot be restarted automatically.")
			}
			if sc.OnHostMaintenance != nil && sc.GetOnHostMaintenance() != "TERMINATE" {
				return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.scheduling.onHostMaintenance': '%s'. Spot VMs must use TERMINATE.", sc.GetOnHostMaintenance()))
			}
		} else if sc.InstanceTerminationAction != nil {
			return nil, errInvalid("Invalid value for field 'resource.scheduling.instanceTerminationAction': ''. Only Spot VMs (or ones with a run duration) have a termination action.")
		}
		if sc.GetPreemptible() && sc.GetProvisioningModel() == "STANDARD" {
			return nil, errInvalid("Invalid value for field 'resource.scheduling.preemptible': 'true'. A STANDARD VM cannot be preemptible.")
		}
	}
	if sas := inst.GetServiceAccounts(); len(sas) > 1 {
		return nil, errInvalid("Invalid value for field 'resource.serviceAccounts': ''. At most one service account may be given.")
	} else if len(sas) == 1 {
		email := sas[0].GetEmail()
		if s.accounts[email] == nil {
			return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.serviceAccounts[0].email': '%s'. The user does not have access to service account '%s'.  User: '...'.  Ask a project owner to grant you the iam.serviceAccountUser role on the service account.", email, email))
		}
		perms = append(perms,
			[2]string{"compute.instances.setServiceAccount", "projects/" + project + "/zones/" + zone + "/instances/" + inst.GetName()},
			[2]string{"iam.serviceAccounts.actAs", "projects/" + project + "/serviceAccounts/" + email})
	}
	if len(inst.GetGuestAccelerators()) > 0 {
		return nil, errUnimplemented("gcptest does not emulate guestAccelerators (GPUs come with the machine type)")
	}
	if s.machineTypes[mtName].gpus > 0 && inst.GetScheduling().GetOnHostMaintenance() != "TERMINATE" {
		// Compute Engine's answer for a VM with GPUs (of its machine type
		// or guestAccelerators) left on the default live migration.
		return nil, &apiError{Code: 400, Reason: "badRequest", Status: "INVALID_ARGUMENT",
			Message: "Instances with guest accelerators do not support live migration."}
	}
	return perms, nil
}

// findImage resolves an image reference, a family to its image (s.mu held).
func (s *Server) findImage(ref string) (*image, *apiError) {
	project, name, ok := s.resolve(ref, "global/images")
	if !ok {
		return nil, errInvalid(fmt.Sprintf("Invalid value for field 'resource.disks[0].initializeParams.sourceImage': '%s'. The URL is malformed.", ref))
	}
	if fam, ok := strings.CutPrefix(name, "family/"); ok {
		if img := s.familyImage(project, fam); img != nil {
			return img, nil
		}
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/images/family/%s' was not found", project, fam))
	}
	if img := s.images[project+"/"+name]; img != nil {
		return img, nil
	}
	return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/images/%s' was not found", project, name))
}

func (s *Server) familyImage(project, family string) *image {
	var best *image
	for _, img := range s.images {
		if img.project == project && img.family == family && (best == nil || img.name > best.name) {
			best = img
		}
	}
	return best
}

// fillInstance sets the output fields Compute Engine sets (s.mu held).
func (s *Server) fillInstance(inst *computepb.Instance, project, zone string) {
	id := s.newID()
	inst.Id = proto.Uint64(id)
	inst.Kind = proto.String("compute#instance")
	inst.CreationTimestamp = proto.String(s.timestamp())
	inst.Zone = proto.String(s.zoneURL(zone))
	inst.SelfLink = proto.String(s.zoneURL(zone) + "/instances/" + inst.GetName())
	inst.Status = proto.String("PROVISIONING")
	inst.CpuPlatform = proto.String("Unknown CPU Platform")
	inst.LabelFingerprint = proto.String(fingerprint(inst.GetLabels()))
	if inst.Metadata == nil {
		inst.Metadata = &computepb.Metadata{}
	}
	inst.Metadata.Kind = proto.String("compute#metadata")
	inst.Metadata.Fingerprint = proto.String(fingerprint(inst.GetMetadata().GetItems()))
	inst.Fingerprint = proto.String(fingerprint(id))
	if inst.Scheduling == nil {
		inst.Scheduling = &computepb.Scheduling{}
	}
	sc := inst.Scheduling
	if sc.ProvisioningModel == nil {
		sc.ProvisioningModel = proto.String("STANDARD")
	}
	if sc.AutomaticRestart == nil {
		sc.AutomaticRestart = proto.Bool(sc.GetProvisioningModel() != "SPOT")
	}
	if sc.OnHostMaintenance == nil {
		if sc.GetProvisioningModel() == "SPOT" {
			sc.OnHostMaintenance = proto.String("TERMINATE")
		} else {
			sc.OnHostMaintenance = proto.String("MIGRATE")
		}
	}
	if sc.Preemptible == nil {
		sc.Preemptible = proto.Bool(false)
	}
	for i, d := range inst.GetDisks() {
		name := d.GetInitializeParams().GetDiskName()
		if name == "" {
			name = inst.GetName()
			if i > 0 {
				name = fmt.Sprintf("%s-%d", inst.GetName(), i)
			}
		}
		d.Kind = proto.String("compute#attachedDisk")
		d.Index = proto.Int32(int32(i))
		d.Source = proto.String(s.zoneURL(zone) + "/disks/" + name)
		if d.Type == nil {
			d.Type = proto.String("PERSISTENT")
		}
		if d.Mode == nil {
			d.Mode = proto.String("READ_WRITE")
		}
		if d.DeviceName == nil {
			d.DeviceName = proto.String(name)
		}
		if d.Interface == nil {
			d.Interface = proto.String("SCSI")
		}
	}
	for i, nic := range inst.GetNetworkInterfaces() {
		nic.Kind = proto.String("compute#networkInterface")
		nic.Name = proto.String(fmt.Sprintf("nic%d", i))
		if nic.Subnetwork == nil {
			nic.Subnetwork = proto.String(computeBase + "projects/" + project + "/regions/" + s.zones[zone] + "/subnetworks/" + lastSegment(nic.GetNetwork()))
		}
		s.nextIP++
		nic.NetworkIP = proto.String(fmt.Sprintf("10.128.%d.%d", s.nextIP/250, s.nextIP%250+2))
		nic.StackType = proto.String("IPV4_ONLY")
		nic.Fingerprint = proto.String(fingerprint(nic.GetNetworkIP()))
		for _, ac := range nic.GetAccessConfigs() {
			ac.NatIP = proto.String(fmt.Sprintf("203.0.113.%d", s.nextIP%250+2))
		}
	}
	inst.StartRestricted = proto.Bool(false)
	if inst.DeletionProtection == nil {
		inst.DeletionProtection = proto.Bool(false)
	}
}

func fingerprint(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:8])
}

// newOperation records a zone operation RUNNING (s.mu held).
func (s *Server) newOperation(zone, kind string, inst *instance, user string) *operation {
	id := s.newID()
	name := fmt.Sprintf("operation-%d-%s", s.now().UnixMilli(), randomHex(8))
	op := &operation{zone: zone, inst: inst, done: make(chan struct{}), proto: &computepb.Operation{
		Kind:          proto.String("compute#operation"),
		Id:            proto.Uint64(id),
		Name:          proto.String(name),
		Zone:          proto.String(s.zoneURL(zone)),
		OperationType: proto.String(kind),
		Status:        computepb.Operation_RUNNING.Enum(),
		User:          proto.String(user),
		Progress:      proto.Int32(0),
		InsertTime:    proto.String(s.timestamp()),
		StartTime:     proto.String(s.timestamp()),
		SelfLink:      proto.String(s.zoneURL(zone) + "/operations/" + name),
	}}
	if inst != nil {
		op.proto.TargetLink = inst.proto.SelfLink
		op.proto.TargetId = inst.proto.Id
	}
	s.ops[zone+"/"+name] = op
	return op
}

// completeLocked ends an operation DONE; an insert's instance is RUNNING
// then (s.mu held).
func (s *Server) completeLocked(op *operation) {
	if op.proto.GetStatus() == computepb.Operation_DONE {
		return
	}
	op.proto.Status = computepb.Operation_DONE.Enum()
	op.proto.Progress = proto.Int32(100)
	op.proto.EndTime = proto.String(s.timestamp())
	if op.inst != nil && op.proto.GetOperationType() == "insert" && !op.inst.deleted && op.inst.proto.GetStatus() == "PROVISIONING" {
		op.inst.proto.Status = proto.String("RUNNING")
		op.inst.proto.LastStartTimestamp = proto.String(s.timestamp())
		s.notifyLocked()
	}
	close(op.done)
}

func (s *Server) deleteLocked(inst *instance) {
	inst.deleted = true
	delete(s.live, inst.zone+"/"+inst.proto.GetName())
	s.notifyLocked()
}

func (s *Server) instanceGet(req *request) (any, *apiError) {
	project, zone, name := req.path["project"], req.path["zone"], req.path["instance"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.instances.get", fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name)); err != nil {
		return nil, err
	}
	if err := s.checkZone(project, zone); err != nil {
		return nil, err
	}
	inst := s.live[zone+"/"+name]
	if inst == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' was not found", project, zone, name))
	}
	return proto.Clone(inst.proto), nil
}

func (s *Server) instanceDelete(req *request) (any, *apiError) {
	project, zone, name := req.path["project"], req.path["zone"], req.path["instance"]
	reqID := req.query.Get("requestId")
	if err := checkRequestID(reqID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.instances.delete", fmt.Sprintf("projects/%s/zones/%s/instances/%s", project, zone, name)); err != nil {
		return nil, err
	}
	if err := s.checkZone(project, zone); err != nil {
		return nil, err
	}
	if reqID != "" {
		if op := s.requestIDs[reqID]; op != nil {
			return proto.Clone(op.proto), nil
		}
	}
	inst := s.live[zone+"/"+name]
	if inst == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/zones/%s/instances/%s' was not found", project, zone, name))
	}
	if inst.proto.GetDeletionProtection() {
		return nil, &apiError{Code: 400, Reason: "resourceInUseByAnotherResource", Status: "FAILED_PRECONDITION",
			Message: fmt.Sprintf("Invalid resource usage: 'Resource cannot be deleted if it's protected against deletion.'.")}
	}
	op := s.newOperation(zone, "delete", inst, req.tok.principal)
	answer := proto.Clone(op.proto)
	inst.proto.Status = proto.String("STOPPING")
	s.deleteLocked(inst)
	s.completeLocked(op)
	if reqID != "" {
		s.requestIDs[reqID] = op
	}
	// A held insert of this instance completes with it.
	for i, h := range s.held {
		if h.inst == inst {
			s.completeLocked(h)
			s.held = append(s.held[:i], s.held[i+1:]...)
			break
		}
	}
	return answer, nil
}

func (s *Server) operationGet(req *request) (any, *apiError) {
	op, err := s.findOperation(req)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(op.proto), nil
}

// operationWaitBound is how long zoneOperations.wait waits at most before
// answering a RUNNING operation (Compute Engine: about two minutes).
const operationWaitBound = 2 * time.Minute

func (s *Server) operationWait(req *request) (any, *apiError) {
	op, err := s.findOperation(req)
	if err != nil {
		return nil, err
	}
	timer := time.NewTimer(operationWaitBound)
	defer timer.Stop()
	select {
	case <-op.done:
	case <-req.r.Context().Done():
	case <-timer.C:
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return proto.Clone(op.proto), nil
}

func (s *Server) findOperation(req *request) (*operation, *apiError) {
	project, zone, name := req.path["project"], req.path["zone"], req.path["operation"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.zoneOperations.get", fmt.Sprintf("projects/%s/zones/%s/operations/%s", project, zone, name)); err != nil {
		return nil, err
	}
	op := s.ops[zone+"/"+name]
	if op == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/zones/%s/operations/%s' was not found", project, zone, name))
	}
	return op, nil
}

// listPage is the position of a list in its pageToken, with the filter's
// hash so that a token is refused with another filter.
type listPage struct {
	Offset int    `json:"o"`
	Filter string `json:"f"`
}

func (s *Server) page(req *request, filter string, total int) (start, end int, next string, err *apiError) {
	max := 500
	if v := req.query.Get("maxResults"); v != "" {
		n, _ := strconv.Atoi(v)
		if n > 500 {
			return 0, 0, "", errInvalid(fmt.Sprintf("Invalid value for field 'maxResults': '%s'. Must be less than or equal to 500", v)).field("maxResults")
		}
		if n > 0 {
			max = n
		}
	}
	sum := sha256.Sum256([]byte(filter))
	fh := hex.EncodeToString(sum[:6])
	if tok := req.query.Get("pageToken"); tok != "" {
		var p listPage
		b, derr := base64.RawURLEncoding.DecodeString(tok)
		if derr != nil || json.Unmarshal(b, &p) != nil || p.Filter != fh || p.Offset < 0 {
			return 0, 0, "", errInvalid(fmt.Sprintf("Invalid value for field 'pageToken': '%s'. Supplied page token is not valid for this request.", tok)).field("pageToken")
		}
		start = p.Offset
	}
	start = min(start, total)
	end = min(start+max, total)
	if end < total {
		b, _ := json.Marshal(listPage{Offset: end, Filter: fh})
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return start, end, next, nil
}

func (s *Server) listInstances(req *request, zones []string) ([]*instance, *apiError) {
	f, err := parseFilter(req.query.Get("filter"))
	if err != nil {
		return nil, err
	}
	if req.query.Get("orderBy") != "" {
		return nil, errUnimplemented("gcptest does not emulate orderBy (lists are in zone, then name order)")
	}
	var out []*instance
	for _, z := range zones {
		var names []string
		for key, inst := range s.live {
			if inst.zone == z {
				names = append(names, key)
			}
		}
		sort.Strings(names)
		for _, key := range names {
			if inst := s.live[key]; f.match(inst.proto) {
				out = append(out, inst)
			}
		}
	}
	return out, nil
}

func (s *Server) instanceList(req *request) (any, *apiError) {
	project, zone := req.path["project"], req.path["zone"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.instances.list", fmt.Sprintf("projects/%s/zones/%s", project, zone)); err != nil {
		return nil, err
	}
	if err := s.checkZone(project, zone); err != nil {
		return nil, err
	}
	all, err := s.listInstances(req, []string{zone})
	if err != nil {
		return nil, err
	}
	start, end, next, err := s.page(req, req.query.Get("filter"), len(all))
	if err != nil {
		return nil, err
	}
	resp := &computepb.InstanceList{
		Kind:     proto.String("compute#instanceList"),
		Id:       proto.String("projects/" + project + "/zones/" + zone + "/instances"),
		SelfLink: proto.String(s.zoneURL(zone) + "/instances"),
	}
	for _, inst := range all[start:end] {
		resp.Items = append(resp.Items, proto.Clone(inst.proto).(*computepb.Instance))
	}
	if next != "" {
		resp.NextPageToken = proto.String(next)
	}
	return resp, nil
}

// instanceAggregatedList answers one entry per zone, as Compute Engine
// does: the zone's instances of the page, or a NO_RESULTS_ON_PAGE warning.
func (s *Server) instanceAggregatedList(req *request) (any, *apiError) {
	project := req.path["project"]
	if req.query.Get("serviceProjectNumber") != "" {
		return nil, errUnimplemented("gcptest does not emulate serviceProjectNumber")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.instances.list", "projects/"+project); err != nil {
		return nil, err
	}
	zones := append([]string(nil), s.opts.Zones...)
	sort.Strings(zones)
	all, err := s.listInstances(req, zones)
	if err != nil {
		return nil, err
	}
	start, end, next, err := s.page(req, req.query.Get("filter"), len(all))
	if err != nil {
		return nil, err
	}
	resp := &computepb.InstanceAggregatedList{
		Kind:     proto.String("compute#instanceAggregatedList"),
		Id:       proto.String("projects/" + project + "/aggregated/instances"),
		SelfLink: proto.String(computeBase + "projects/" + project + "/aggregated/instances"),
		Items:    map[string]*computepb.InstancesScopedList{},
	}
	for _, z := range zones {
		resp.Items["zones/"+z] = &computepb.InstancesScopedList{}
	}
	for _, inst := range all[start:end] {
		l := resp.Items["zones/"+inst.zone]
		l.Instances = append(l.Instances, proto.Clone(inst.proto).(*computepb.Instance))
	}
	for key, l := range resp.Items {
		if len(l.Instances) == 0 {
			l.Warning = &computepb.Warning{
				Code:    proto.String("NO_RESULTS_ON_PAGE"),
				Message: proto.String(fmt.Sprintf("There are no results for scope '%s' on this page.", key)),
				Data:    []*computepb.Data{{Key: proto.String("scope"), Value: proto.String(key)}},
			}
		}
	}
	if next != "" {
		resp.NextPageToken = proto.String(next)
	}
	return resp, nil
}

func (s *Server) machineTypeGet(req *request) (any, *apiError) {
	project, zone, name := req.path["project"], req.path["zone"], req.path["machineType"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.machineTypes.get", fmt.Sprintf("projects/%s/zones/%s/machineTypes/%s", project, zone, name)); err != nil {
		return nil, err
	}
	mt := s.machineTypes[name]
	if _, ok := s.zones[zone]; !ok || mt == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/zones/%s/machineTypes/%s' was not found", project, zone, name))
	}
	resp := &computepb.MachineType{
		Kind:                         proto.String("compute#machineType"),
		Id:                           proto.Uint64(mt.id),
		CreationTimestamp:            proto.String("1969-12-31T16:00:00.000-08:00"),
		Name:                         proto.String(mt.name),
		Description:                  proto.String(fmt.Sprintf("%d vCPUs, %d GB RAM", mt.cpus, mt.memoryMB/1024)),
		GuestCpus:                    proto.Int32(int32(mt.cpus)),
		MemoryMb:                     proto.Int32(int32(mt.memoryMB)),
		MaximumPersistentDisks:       proto.Int32(128),
		MaximumPersistentDisksSizeGb: proto.Int64(263168),
		Zone:                         proto.String(zone),
		SelfLink:                     proto.String(s.zoneURL(zone) + "/machineTypes/" + mt.name),
		IsSharedCpu:                  proto.Bool(false),
		Architecture:                 proto.String("X86_64"),
	}
	if mt.gpus > 0 {
		resp.Accelerators = []*computepb.Accelerators{{
			GuestAcceleratorType:  proto.String(mt.acceleratorType),
			GuestAcceleratorCount: proto.Int32(int32(mt.gpus)),
		}}
	}
	return resp, nil
}

func (s *Server) zoneGet(req *request) (any, *apiError) {
	project, zone := req.path["project"], req.path["zone"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.zones.get", fmt.Sprintf("projects/%s/zones/%s", project, zone)); err != nil {
		return nil, err
	}
	if err := s.checkZone(project, zone); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte(zone))
	return &computepb.Zone{
		Kind:              proto.String("compute#zone"),
		Id:                proto.Uint64(2000 + uint64(sum[0])),
		CreationTimestamp: proto.String("1969-12-31T16:00:00.000-08:00"),
		Name:              proto.String(zone),
		Description:       proto.String(zone),
		Status:            proto.String("UP"),
		Region:            proto.String(computeBase + "projects/" + project + "/regions/" + s.zones[zone]),
		SelfLink:          proto.String(s.zoneURL(zone)),
		SupportsPzs:       proto.Bool(false),
	}, nil
}

func (s *Server) imageProto(img *image) *computepb.Image {
	p := &computepb.Image{
		Kind:              proto.String("compute#image"),
		Id:                proto.Uint64(img.id),
		CreationTimestamp: proto.String(img.created),
		Name:              proto.String(img.name),
		Status:            proto.String("READY"),
		DiskSizeGb:        proto.Int64(10),
		Architecture:      proto.String("X86_64"),
		SourceType:        proto.String("RAW"),
		SelfLink:          proto.String(computeBase + "projects/" + img.project + "/global/images/" + img.name),
	}
	if img.family != "" {
		p.Family = proto.String(img.family)
	}
	return p
}

func (s *Server) imageGet(req *request) (any, *apiError) {
	project, name := req.path["project"], req.path["image"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if project == s.opts.Project {
		if err := s.authorize(req, project, "compute.images.get", fmt.Sprintf("projects/%s/global/images/%s", project, name)); err != nil {
			return nil, err
		}
	}
	img := s.images[project+"/"+name]
	if img == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/images/%s' was not found", project, name))
	}
	return s.imageProto(img), nil
}

func (s *Server) imageGetFromFamily(req *request) (any, *apiError) {
	project, family := req.path["project"], req.path["family"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if project == s.opts.Project {
		if err := s.authorize(req, project, "compute.images.getFromFamily", fmt.Sprintf("projects/%s/global/images/family/%s", project, family)); err != nil {
			return nil, err
		}
	}
	img := s.familyImage(project, family)
	if img == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/images/family/%s' was not found", project, family))
	}
	return s.imageProto(img), nil
}

func (s *Server) networkGet(req *request) (any, *apiError) {
	project, name := req.path["project"], req.path["network"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.networks.get", fmt.Sprintf("projects/%s/global/networks/%s", project, name)); err != nil {
		return nil, err
	}
	n := s.networks[name]
	if n == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/global/networks/%s' was not found", project, name))
	}
	resp := &computepb.Network{
		Kind:                  proto.String("compute#network"),
		Id:                    proto.Uint64(n.id),
		CreationTimestamp:     proto.String(n.created),
		Name:                  proto.String(n.name),
		SelfLink:              proto.String(computeBase + "projects/" + project + "/global/networks/" + n.name),
		AutoCreateSubnetworks: proto.Bool(true),
		RoutingConfig:         &computepb.NetworkRoutingConfig{RoutingMode: proto.String("REGIONAL")},
	}
	var subs []string
	for _, sub := range s.subnetworks {
		if sub.network == n.name {
			subs = append(subs, computeBase+"projects/"+project+"/regions/"+sub.region+"/subnetworks/"+sub.name)
		}
	}
	sort.Strings(subs)
	resp.Subnetworks = subs
	return resp, nil
}

func (s *Server) subnetworkGet(req *request) (any, *apiError) {
	project, region, name := req.path["project"], req.path["region"], req.path["subnetwork"]
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.authorize(req, project, "compute.subnetworks.get", fmt.Sprintf("projects/%s/regions/%s/subnetworks/%s", project, region, name)); err != nil {
		return nil, err
	}
	sub := s.subnetworks[region+"/"+name]
	if sub == nil {
		return nil, errNotFound(fmt.Sprintf("The resource 'projects/%s/regions/%s/subnetworks/%s' was not found", project, region, name))
	}
	return &computepb.Subnetwork{
		Kind:              proto.String("compute#subnetwork"),
		Id:                proto.Uint64(sub.id),
		CreationTimestamp: proto.String(sub.created),
		Name:              proto.String(sub.name),
		Network:           proto.String(computeBase + "projects/" + project + "/global/networks/" + sub.network),
		IpCidrRange:       proto.String(sub.cidr),
		GatewayAddress:    proto.String(strings.TrimSuffix(sub.cidr, "0/20") + "1"),
		Region:            proto.String(computeBase + "projects/" + project + "/regions/" + region),
		SelfLink:          proto.String(computeBase + "projects/" + project + "/regions/" + region + "/subnetworks/" + sub.name),
		StackType:         proto.String("IPV4_ONLY"),
		Purpose:           proto.String("PRIVATE"),
	}, nil
}
