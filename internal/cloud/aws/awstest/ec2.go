package awstest

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
)

// ec2Model is, for each EC2 operation of botocore's model, the names its
// top-level input members take on the wire.
type ec2Model struct {
	source string
	params map[string]map[string]bool // action -> query parameter name (before the first dot)
}

var (
	ec2ModelOnce sync.Once
	ec2ModelVal  *ec2Model
	ec2ModelErr  error
)

// loadEC2Model reads botocore's EC2 model once per process. botocore comes
// with moto, and the python3 on PATH is the one moto_server runs with on
// the machines this project uses.
func loadEC2Model() (*ec2Model, error) {
	ec2ModelOnce.Do(func() { ec2ModelVal, ec2ModelErr = readEC2Model() })
	return ec2ModelVal, ec2ModelErr
}

func readEC2Model() (*ec2Model, error) {
	out, err := exec.Command("python3", "-c", "import botocore,os;print(os.path.dirname(botocore.__file__))").Output()
	if err != nil {
		detail := ""
		if ee, ok := err.(*exec.ExitError); ok {
			detail = strings.TrimSpace(string(ee.Stderr))
		}
		return nil, fmt.Errorf("botocore's EC2 model not found: python3 cannot import botocore (it comes with moto: pip install 'moto[server]==5.2.1'): %v %s", err, detail)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "data", "ec2", "2016-11-15", "service-2.json.gz")
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("botocore's EC2 model not found: %w", err)
	}
	defer file.Close()
	zr, err := gzip.NewReader(file)
	if err != nil {
		return nil, fmt.Errorf("read EC2 model %s: %w", path, err)
	}
	var doc struct {
		Operations map[string]struct {
			Input *struct {
				Shape string `json:"shape"`
			} `json:"input"`
		} `json:"operations"`
		Shapes map[string]struct {
			Members map[string]struct {
				LocationName string `json:"locationName"`
				QueryName    string `json:"queryName"`
			} `json:"members"`
		} `json:"shapes"`
	}
	if err := json.NewDecoder(zr).Decode(&doc); err != nil {
		return nil, fmt.Errorf("read EC2 model %s: %w", path, err)
	}
	if len(doc.Operations) == 0 {
		return nil, fmt.Errorf("read EC2 model %s: no operations", path)
	}
	m := &ec2Model{source: path, params: make(map[string]map[string]bool, len(doc.Operations))}
	for op, o := range doc.Operations {
		names := map[string]bool{}
		if o.Input != nil {
			for member, mm := range doc.Shapes[o.Input.Shape].Members {
				names[ec2QueryName(member, mm.LocationName, mm.QueryName)] = true
			}
		}
		m.params[op] = names
	}
	return m, nil
}

// ec2QueryName is the name the EC2 protocol gives a member on the wire:
// its queryName, else its locationName with the first letter upper case,
// else the member's name (botocore's and the Go SDK's serializers agree).
func ec2QueryName(member, locationName, queryName string) string {
	switch {
	case queryName != "":
		return queryName
	case locationName != "":
		return strings.ToUpper(locationName[:1]) + locationName[1:]
	default:
		return member
	}
}

// validateEC2 refuses, as EC2 does, an action that is not in the model
// (InvalidAction) and a top-level parameter that is not a member of the
// action's input (UnknownParameter). It answers whether the request may go
// on.
func (f *front) validateEC2(w *statusWriter, req *request) bool {
	names, ok := f.model.params[req.action]
	if !ok {
		ec2Error(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", req.action))
		return false
	}
	var unknown []string
	for key := range req.params {
		top, _, _ := strings.Cut(key, ".")
		if top == "Action" || top == "Version" || strings.HasPrefix(top, "X-Amz-") || names[top] {
			continue
		}
		unknown = append(unknown, key)
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		ec2Error(w, http.StatusBadRequest, "UnknownParameter", fmt.Sprintf("The parameter %s is not recognized", unknown[0]))
		return false
	}
	return true
}

// Fault makes RunInstances requests that match it fail in the front,
// without reaching moto. Empty fields match anything.
type Fault struct {
	Subnet       string // SubnetId (also NetworkInterface.N.SubnetId)
	InstanceType string
	Spot         bool // only requests with InstanceMarketOptions.MarketType=spot
	OnDemand     bool // only requests without it
	// Code is the EC2 error code answered; "" is InsufficientInstanceCapacity.
	// The HTTP status is EC2's for the code: 500 for the capacity codes
	// (InsufficientInstanceCapacity, InsufficientCapacity,
	// InsufficientHostCapacity) and InternalError, 503 for
	// RequestLimitExceeded and Unavailable, 400 for the rest.
	Code string
}

func (flt Fault) matches(subnets []string, instanceType string, spot bool) bool {
	if flt.Subnet != "" && !contains(subnets, flt.Subnet) {
		return false
	}
	if flt.InstanceType != "" && flt.InstanceType != instanceType {
		return false
	}
	if flt.Spot && !spot || flt.OnDemand && spot {
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// FailCapacity makes every RunInstances that matches f answer f.Code
// (InsufficientInstanceCapacity by default) until undo is called. The
// answer is EC2's: HTTP 500 for the capacity codes, which the SDK's
// standard retryer retries (3 attempts in all), so each launch attempt
// shows up to three RunInstances in Calls.
func (m *Moto) FailCapacity(flt Fault) (undo func()) {
	fr := m.front
	fr.mu.Lock()
	id := fr.nextID
	fr.nextID++
	fr.faults[id] = flt
	fr.mu.Unlock()
	return func() {
		fr.mu.Lock()
		delete(fr.faults, id)
		fr.mu.Unlock()
	}
}

// holdGate is one HoldRunInstances: answers wait until release closes it.
type holdGate struct {
	released chan struct{}
	once     sync.Once
}

// HoldRunInstances makes every RunInstances from now on go to moto (the
// instance exists there at once) while its answer is held until release,
// the caller's context ends or the harness stops. release may be called
// more than once; RunInstances after it are answered at once again.
func (m *Moto) HoldRunInstances() (release func()) {
	fr := m.front
	g := &holdGate{released: make(chan struct{})}
	fr.mu.Lock()
	fr.hold = g
	fr.mu.Unlock()
	return func() {
		g.once.Do(func() { close(g.released) })
		fr.mu.Lock()
		if fr.hold == g {
			fr.hold = nil
		}
		fr.mu.Unlock()
	}
}

// WaitHeld waits until at least n RunInstances answers are being held by
// HoldRunInstances (their instances then exist in moto), or ctx ends.
func (m *Moto) WaitHeld(ctx context.Context, n int) error {
	fr := m.front
	for {
		fr.mu.Lock()
		held, wake := fr.held, fr.holdWake
		fr.mu.Unlock()
		if held >= n {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d held RunInstances (%d held): %w", n, held, ctx.Err())
		}
	}
}

// heldChange adds d to the number of held answers and wakes WaitHeld.
func (f *front) heldChange(d int) {
	f.mu.Lock()
	f.held += d
	close(f.holdWake)
	f.holdWake = make(chan struct{})
	f.mu.Unlock()
}

func (f *front) runInstances(w *statusWriter, req *request) {
	p := req.params
	var subnets []string
	for key, v := range p {
		if key == "SubnetId" || strings.HasPrefix(key, "NetworkInterface.") && strings.HasSuffix(key, ".SubnetId") {
			subnets = append(subnets, v...)
		}
	}
	instanceType := p.Get("InstanceType")
	spot := strings.EqualFold(p.Get("InstanceMarketOptions.MarketType"), "spot")

	if !f.checkRunInstances(w, req, instanceType) {
		return
	}
	// A launch that already succeeded answers again whatever the faults
	// are now, as EC2 does.
	if a, mismatch, ok := f.tokenAnswer(req); ok {
		if mismatch {
			idempotentMismatch(w, req)
			return
		}
		a.write(w)
		return
	}

	f.mu.Lock()
	var fault *Fault
	ids := make([]int, 0, len(f.faults))
	for id := range f.faults {
		ids = append(ids, id)
	}
	sort.Ints(ids) // the oldest matching fault answers
	for _, id := range ids {
		if flt := f.faults[id]; flt.matches(subnets, instanceType, spot) {
			fault = &flt
			break
		}
	}
	gate := f.hold
	f.mu.Unlock()

	if fault != nil {
		code := fault.Code
		if code == "" {
			code = "InsufficientInstanceCapacity"
		}
		msg := fmt.Sprintf("We currently do not have sufficient %s capacity in the Availability Zone you requested (subnet %s). Our system will be working on provisioning additional capacity.",
			instanceType, strings.Join(subnets, ","))
		if !strings.HasPrefix(code, "Insufficient") {
			msg = "awstest fault " + code
		}
		ec2Error(w, ec2Status(code), code, msg)
		return
	}

	a, mismatch, err := f.runIdempotent(req)
	if err != nil {
		f.internalError(w, req, fmt.Errorf("forward to moto: %w", err))
		return
	}
	if mismatch {
		idempotentMismatch(w, req)
		return
	}
	if gate != nil {
		f.heldChange(1)
		select {
		case <-gate.released:
		case <-req.r.Context().Done():
		case <-f.stopped:
		}
		f.heldChange(-1)
	}
	a.write(w)
}

func ec2Status(code string) int {
	switch code {
	case "InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity", "InternalError":
		return http.StatusInternalServerError
	case "RequestLimitExceeded", "Unavailable":
		return http.StatusServiceUnavailable
	default:
		return http.StatusBadRequest
	}
}

// checkRunInstances refuses, as EC2 does, a RunInstances whose image,
// instance type or instance profile does not exist: moto launches from
// any ami- id and any instance type, and answers an unknown instance
// profile with IAM's NoSuchEntity. Subnets and security groups moto checks
// itself. It answers whether the request may go on.
func (f *front) checkRunInstances(w *statusWriter, req *request, instanceType string) bool {
	ctx := req.r.Context()
	p := req.params
	if image := p.Get("ImageId"); image != "" {
		out, err := f.iam.ec2.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{image}})
		var ae smithy.APIError
		switch {
		case errors.As(err, &ae) && strings.HasPrefix(ae.ErrorCode(), "InvalidAMIID."):
			ec2Error(w, http.StatusBadRequest, ae.ErrorCode(), ae.ErrorMessage())
			return false
		case err != nil:
			f.internalError(w, req, fmt.Errorf("describe image %s: %w", image, err))
			return false
		case len(out.Images) == 0:
			ec2Error(w, http.StatusBadRequest, "InvalidAMIID.NotFound", fmt.Sprintf("The image id '[%s]' does not exist", image))
			return false
		}
	}
	if instanceType != "" {
		_, err := f.iam.ec2.DescribeInstanceTypes(ctx, &ec2.DescribeInstanceTypesInput{InstanceTypes: []ec2types.InstanceType{ec2types.InstanceType(instanceType)}})
		var ae smithy.APIError
		switch {
		case errors.As(err, &ae) && ae.ErrorCode() == "InvalidInstanceType":
			ec2Error(w, http.StatusBadRequest, "InvalidParameterValue", fmt.Sprintf("Invalid value '%s' for InstanceType.", instanceType))
			return false
		case err != nil:
			f.internalError(w, req, fmt.Errorf("describe instance type %s: %w", instanceType, err))
			return false
		}
	}
	for _, field := range []string{"Arn", "Name"} {
		v := p.Get("IamInstanceProfile." + field)
		if v == "" {
			continue
		}
		name := v
		if field == "Arn" {
			a, ok := parseARN(v)
			if !ok || a.service != "iam" || !strings.HasPrefix(a.resource, "instance-profile/") {
				name = ""
			} else {
				name = lastSegment(a.resource)
			}
		}
		exists := false
		if name != "" {
			out, err := f.iam.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: &name})
			var nse *iamtypes.NoSuchEntityException
			switch {
			case errors.As(err, &nse):
			case err != nil:
				f.internalError(w, req, fmt.Errorf("get instance profile %s: %w", name, err))
				return false
			default:
				exists = field == "Name" || awssdk.ToString(out.InstanceProfile.Arn) == v
			}
		}
		if !exists {
			ec2Error(w, http.StatusBadRequest, "InvalidParameterValue",
				fmt.Sprintf("Value (%s) for parameter iamInstanceProfile.%s is invalid. Invalid IAM Instance Profile %s", v, strings.ToLower(field), strings.ToLower(field)))
			return false
		}
	}
	return true
}

// clientTokens gives RunInstances EC2's idempotency, which moto lacks (it
// starts a new instance for every request): a request with the
// ClientToken of an earlier successful one answers that one's answer
// without reaching moto, or IdempotentParameterMismatch when its other
// parameters differ. A failed request leaves no token behind, so its
// retry launches.
type clientTokens struct {
	mu   sync.Mutex // held across the forward, so one token launches once
	runs map[string]tokenRun
}

type tokenRun struct {
	params string
	answer *answer
}

func idempotentMismatch(w *statusWriter, req *request) {
	ec2Error(w, http.StatusBadRequest, "IdempotentParameterMismatch",
		fmt.Sprintf("Arguments on this idempotent request are inconsistent with arguments used in previous request(s) with client token %s.", req.params.Get("ClientToken")))
}

// tokenParams is the request's parameters but its ClientToken, in a
// canonical form to compare two requests with.
func tokenParams(req *request) string {
	keys := make([]string, 0, len(req.params))
	for k := range req.params {
		if k != "ClientToken" && !strings.HasPrefix(k, "X-Amz-") {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q\n", k, req.params[k])
	}
	return b.String()
}

// tokenAnswer answers the earlier successful launch with the request's
// ClientToken, if any.
func (f *front) tokenAnswer(req *request) (a *answer, mismatch, ok bool) {
	token := req.params.Get("ClientToken")
	if token == "" {
		return nil, false, false
	}
	f.tokens.mu.Lock()
	defer f.tokens.mu.Unlock()
	run, ok := f.tokens.runs[token]
	return run.answer, ok && run.params != tokenParams(req), ok
}

// runIdempotent forwards a RunInstances to moto unless a launch with its
// ClientToken succeeded meanwhile.
func (f *front) runIdempotent(req *request) (a *answer, mismatch bool, err error) {
	token := req.params.Get("ClientToken")
	if token == "" {
		a, err = f.forward(req)
		return a, false, err
	}
	params := tokenParams(req)
	f.tokens.mu.Lock()
	defer f.tokens.mu.Unlock()
	if run, ok := f.tokens.runs[token]; ok {
		return run.answer, run.params != params, nil
	}
	a, err = f.forward(req)
	if err == nil && a.status == http.StatusOK {
		f.tokens.runs[token] = tokenRun{params: params, answer: a}
	}
	return a, false, err
}
