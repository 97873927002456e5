-- The data plane: node credentials, drain and runtime state, cluster
-- deletion requests and cluster events.

ALTER TABLE nodes ADD COLUMN bootstrap_prefix TEXT;
ALTER TABLE nodes ADD COLUMN bootstrap_hash BLOB;
ALTER TABLE nodes ADD COLUMN bootstrap_expires_at INTEGER;
ALTER TABLE nodes ADD COLUMN bootstrap_used_at INTEGER;
ALTER TABLE nodes ADD COLUMN credential_prefix TEXT;
ALTER TABLE nodes ADD COLUMN credential_hash BLOB;
ALTER TABLE nodes ADD COLUMN drain_deadline INTEGER;
ALTER TABLE nodes ADD COLUMN drained INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN runtime_state TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN runtime_message TEXT NOT NULL DEFAULT '';
ALTER TABLE nodes ADD COLUMN vcpus REAL NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX nodes_bootstrap_prefix ON nodes(bootstrap_prefix) WHERE bootstrap_prefix IS NOT NULL;
CREATE UNIQUE INDEX nodes_credential_prefix ON nodes(credential_prefix) WHERE credential_prefix IS NOT NULL;
CREATE INDEX nodes_status ON nodes(status);

ALTER TABLE clusters ADD COLUMN delete_requested INTEGER NOT NULL DEFAULT 0;

CREATE TABLE cluster_events (
	id         TEXT PRIMARY KEY,
	cluster_id TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
	time       INTEGER NOT NULL,
	kind       TEXT NOT NULL,
	message    TEXT NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events(cluster_id, id);
