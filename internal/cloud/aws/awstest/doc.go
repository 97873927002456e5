// Package awstest runs the AWS driver's tests against moto (moto_server
// 5.2.1, EC2/STS/IAM/S3) behind an enforcing front: a reverse proxy on
// loopback that gives the code under test the parts of AWS's behaviour
// that moto lacks and that the driver's correctness depends on. It is for
// tests only and must never be imported by production code.
//
// Start runs one moto_server per test (on a free loopback port, stopped at
// t.Cleanup) and the front before it; Moto.URL is the front, Moto.RawURL
// moto itself (for the harness's fixtures only). moto_server missing from
// PATH fails the test: it is never skipped.
//
// What the front enforces:
//   - sts:AssumeRole: the role must exist and its trust policy (read from
//     moto's IAM) must have an Allow statement for sts:AssumeRole whose
//     Principal names the caller (as moto's GetCallerIdentity names the
//     caller's access key: "*", an account or its root, a role's sessions,
//     a user) and whose StringEquals/StringLike sts:ExternalId condition,
//     if it has one, holds for the ExternalId given; a matching Deny wins.
//     A statement with any other condition key does not apply. Refusals are
//     STS's 403 AccessDenied. RoleSessionName, ExternalId, RoleArn and
//     DurationSeconds (900 s up to the role's MaxSessionDuration) are
//     validated as STS does (400 ValidationError). A role whose trust
//     policy has no external id condition is assumable without one, so a
//     test can prove that the driver notices. Moto itself ignores
//     ExternalId and assumes roles that do not exist.
//   - iam:SimulatePrincipalPolicy (moto has none) for a role: each action
//     is decided from the role's inline and attached managed policies
//     (and PolicyInputList) by Effect and Action alone — an explicit Deny
//     wins, an Allow matches with IAM's wildcards (ec2:*, ec2:Describe*,
//     *), anything else is implicitDeny. Resource, NotResource and
//     Condition are NOT evaluated and ContextEntries are ignored: the
//     answer proves which actions are granted, not how they are scoped.
//     (Real IAM, asked without ContextEntries, may answer implicitDeny
//     for an Allow whose Condition needs a key the request did not give.)
//   - EC2: every request's Action must be an operation of botocore's EC2
//     model (400 InvalidAction otherwise), and every top-level query
//     parameter (the part before the first dot) a member of its input
//     (400 UnknownParameter naming it), as EC2 answers; moto accepts and
//     ignores unknown parameters.
//   - RunInstances: an image that does not exist (400
//     InvalidAMIID.NotFound / .Malformed), an instance type moto does not
//     know (400 InvalidParameterValue) and an instance profile that does
//     not exist (400 InvalidParameterValue) are refused as EC2 does; moto
//     would launch the first two and answer IAM's NoSuchEntity for the
//     third. moto itself refuses unknown subnets (InvalidSubnetID.NotFound)
//     and security groups (InvalidGroup.NotFound).
//   - RunInstances ClientToken idempotency: a repeated token answers the
//     first successful request's answer (no second instance), or 400
//     IdempotentParameterMismatch when the other parameters differ.
//   - RunInstances faults (FailCapacity) answered in EC2's error shape
//     without reaching moto. InsufficientInstanceCapacity is HTTP 500 as
//     in AWS, which the SDK's standard retryer retries: Config's retryer
//     does so without delay (3 attempts), so every launch attempt shows as
//     up to three calls; a child process using Env retries with the SDK's
//     usual backoff (seconds).
//   - HoldRunInstances: the instance is created in moto, the answer waits.
//
// What it does not enforce: IAM permissions of any caller (every access
// key may call everything), signatures, resource-level scoping, S3 and
// IAM request validation.
//
// Every request is listed by Calls: service (from the SigV4 credential
// scope), action, access key id, and the role whose AssumeRole answered
// that key, so a test can tell the control plane's own calls (AccessKey)
// from the assumed role's and a node's.
package awstest
