-- A cluster's node counts (running, total, cost, head access URL: every
-- cluster read) by cluster and status. Without it SQLite answered them
-- through nodes(status), reading every RUNNING node of every cluster for
-- each cluster read: 18x slower at 10,000 nodes, and worse with more.

CREATE INDEX nodes_cluster_status ON nodes(cluster_id, status);
