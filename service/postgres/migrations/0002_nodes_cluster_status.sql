-- A cluster's node counts by cluster and status (every cluster read), as
-- SQLite's 0008.
CREATE INDEX nodes_cluster_status ON nodes(cluster_id, status);
