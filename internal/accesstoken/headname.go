package accesstoken

import "strings"

// Heads of every cluster get their certificates from one access CA, and on
// one machine (the local driver) they all serve 127.0.0.1: the CA and the
// address alone cannot tell one cluster's head from another's that took
// its port. The certificate's common name names the head's node and
// cluster, set by the control plane (not taken from the head's request),
// and clients check the cluster before sending a token.

const headNamePrefix = "rayplane head "

// HeadCommonName is the common name of the certificate of cluster's head
// on node.
func HeadCommonName(nodeID, clusterID string) string {
	return headNamePrefix + nodeID + " of " + clusterID
}

// HeadCluster answers the cluster a head certificate's common name names.
func HeadCluster(commonName string) (clusterID string, ok bool) {
	rest, ok := strings.CutPrefix(commonName, headNamePrefix)
	if !ok {
		return "", false
	}
	node, cluster, ok := strings.Cut(rest, " of ")
	if !ok || node == "" || cluster == "" || strings.Contains(cluster, " ") {
		return "", false
	}
	return cluster, true
}
