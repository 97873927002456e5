package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/rayplane/rayplane/internal/api"
	"github.com/rayplane/rayplane/internal/secretbox"
)

// What every store engine shares, because a user or an operator can see
// it: list cursors (a page token from one engine still works after a move
// to another) and how cloud secrets are sealed (a value sealed by one
// engine opens in the other, so export and import carry secrets sealed).

// EncodeCursor is the page token of a list that resumes after id.
func EncodeCursor(id string) string { return "c1." + id }

// DecodeCursor answers the id a page token resumes after.
func DecodeCursor(tok string) (string, error) {
	id, ok := strings.CutPrefix(tok, "c1.")
	if !ok || KindOf(id) == "" {
		return "", &api.Error{Code: api.CodeInvalid, Message: "invalid page_token", Fields: []api.FieldError{{Field: "page_token", Reason: "is not a token from a previous page"}}}
	}
	return id, nil
}

// Cloud secrets (clouds.secret: the Kubernetes token today) are sealed
// with secretbox under the store's keys, bound to their cloud's id, so the
// database alone does not give them away and a sealed value copied to
// another cloud's row does not open there. Empty means "no secret" and is
// stored as is.

// ErrNoKeys is the answer to storing or reading a secret in a store opened
// without keys.
var ErrNoKeys = errors.New("store: opened without keys for cloud secrets")

// ErrKeysMissing is wrapped by a store's Open when stored secrets name keys
// the loader's keyring does not hold: starting would make them unreadable.
var ErrKeysMissing = errors.New("the keys given do not include every key the stored secrets are sealed with")

// cloudSecretAD binds a sealed secret to its column and its cloud.
func cloudSecretAD(cloudID string) []byte { return []byte("rayplane clouds.secret\x00" + cloudID) }

// OpenCloudSecret opens a value of clouds.secret stored for cloudID.
func OpenCloudSecret(keys *secretbox.Keyring, cloudID, stored string) (string, error) {
	if stored == "" {
		return "", nil
	}
	if keys == nil {
		return "", ErrNoKeys
	}
	if !secretbox.IsSealed(stored) {
		return "", fmt.Errorf("cloud %s secret: stored in the clear (written by an older rayplaned and not sealed yet)", cloudID)
	}
	pt, err := keys.Open(stored, cloudSecretAD(cloudID))
	if err != nil {
		return "", fmt.Errorf("cloud %s secret: %w", cloudID, err)
	}
	return string(pt), nil
}

// SealCloudSecret seals secret for cloudID's clouds.secret.
func SealCloudSecret(keys *secretbox.Keyring, cloudID, secret string) (string, error) {
	if secret == "" {
		return "", nil
	}
	if keys == nil {
		return "", ErrNoKeys
	}
	sealed, err := keys.Seal([]byte(secret), cloudSecretAD(cloudID))
	if err != nil {
		return "", fmt.Errorf("cloud %s secret: %w", cloudID, err)
	}
	return sealed, nil
}

// SealedKeyIDs answers, sorted, the ids of the keys the stored values are
// sealed with (values in the clear name none).
func SealedKeyIDs(stored []string) []string {
	ids := map[string]bool{}
	for _, s := range stored {
		if id, ok := secretbox.SealedKeyID(s); ok {
			ids[id] = true
		}
	}
	return slices.Sorted(maps.Keys(ids))
}

// cloudCredentials is the JSON every engine stores in clouds.credentials:
// a cloud's provider block with the write-only secret taken out (it lives,
// sealed, in clouds.secret). One shape for every engine, so a dump moves
// it as is.
type cloudCredentials struct {
	AWS        *api.AWSCloud        `json:"aws,omitempty"`
	GCP        *api.GCPCloud        `json:"gcp,omitempty"`
	Kubernetes *api.KubernetesCloud `json:"kubernetes,omitempty"`
	Sim        *api.SimCloud        `json:"sim,omitempty"`
}

// SplitCloudCredentials answers what a store keeps of c's provider block:
// the JSON of clouds.credentials, and the write-only secret apart.
func SplitCloudCredentials(c api.Cloud) (credentialsJSON, secret string) {
	cr := cloudCredentials{AWS: c.AWS, GCP: c.GCP, Sim: c.Sim}
	if c.Kubernetes != nil {
		k := *c.Kubernetes
		secret, k.Token, k.TokenSet = k.Token, "", false
		cr.Kubernetes = &k
	}
	b, err := json.Marshal(cr)
	if err != nil {
		panic(fmt.Sprintf("marshal cloud credentials: %v", err)) // plain structs of ours only
	}
	return string(b), secret
}

// JoinCloudCredentials fills c's provider block from the stored JSON;
// tokenSet says whether a secret is stored (it is never answered).
func JoinCloudCredentials(c *api.Cloud, credentialsJSON string, tokenSet bool) error {
	var cr cloudCredentials
	if err := json.Unmarshal([]byte(credentialsJSON), &cr); err != nil {
		return fmt.Errorf("cloud %s credentials: %w", c.ID, err)
	}
	c.AWS, c.GCP, c.Kubernetes, c.Sim = cr.AWS, cr.GCP, cr.Kubernetes, cr.Sim
	if c.Kubernetes != nil {
		c.Kubernetes.TokenSet = tokenSet
	}
	return nil
}

// A head's reported demand (nodes.demand) is stored as the JSON of its
// []api.ResourceDemand, NULL when there is none, the same in every engine
// so an export from one imports into another.

// EncodeDemand answers the stored form of d: nil (NULL) when d is empty.
// It fails only on a value JSON cannot hold (a NaN or infinite amount).
func EncodeDemand(d []api.ResourceDemand) (*string, error) {
	if len(d) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	s := string(b)
	return &s, nil
}

// DecodeDemand reads the stored form back; NULL (and an empty list) is nil.
// Anything that does not parse is an error: the caller names the node.
func DecodeDemand(stored *string) ([]api.ResourceDemand, error) {
	if stored == nil {
		return nil, nil
	}
	var d []api.ResourceDemand
	if err := json.Unmarshal([]byte(*stored), &d); err != nil {
		return nil, err
	}
	if len(d) == 0 {
		return nil, nil
	}
	return d, nil
}
