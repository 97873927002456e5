-- Autoscaling: explicit capacity requests held on a cluster, and each
-- node's hourly price so a cluster's cost is a sum.

ALTER TABLE clusters ADD COLUMN resource_requests TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN price REAL NOT NULL DEFAULT 0;
