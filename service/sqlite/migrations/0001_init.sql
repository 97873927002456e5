-- Times are Unix nanoseconds (UTC). JSON columns hold the api package's
-- shapes for parts the store never queries by.

CREATE TABLE organizations (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	system     INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL
);

CREATE TABLE api_tokens (
	id           TEXT PRIMARY KEY,
	org_id       TEXT NOT NULL REFERENCES organizations(id),
	name         TEXT NOT NULL,
	role         TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
	prefix       TEXT NOT NULL UNIQUE,
	hash         BLOB NOT NULL,
	created_at   INTEGER NOT NULL,
	created_by   TEXT NOT NULL DEFAULT '',
	expires_at   INTEGER,
	revoked_at   INTEGER,
	last_used_at INTEGER
);
CREATE INDEX api_tokens_org ON api_tokens(org_id, id);

CREATE TABLE clouds (
	id               TEXT PRIMARY KEY,
	org_id           TEXT NOT NULL REFERENCES organizations(id),
	name             TEXT NOT NULL,
	provider         TEXT NOT NULL,
	region           TEXT NOT NULL DEFAULT '',
	credentials      TEXT NOT NULL DEFAULT '{}', -- the provider block, minus secrets
	secret           TEXT NOT NULL DEFAULT '',   -- write-only credential (kubernetes token)
	storage_location TEXT NOT NULL DEFAULT '',
	quotas           TEXT NOT NULL DEFAULT '{}',
	heartbeat        TEXT NOT NULL DEFAULT '{}',
	status           TEXT NOT NULL,
	status_reason    TEXT NOT NULL DEFAULT '',
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	UNIQUE (org_id, name)
);

CREATE TABLE compute_configs (
	id             TEXT PRIMARY KEY,
	org_id         TEXT NOT NULL REFERENCES organizations(id),
	name           TEXT NOT NULL,
	latest_version INTEGER NOT NULL,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	UNIQUE (org_id, name)
);

CREATE TABLE compute_config_versions (
	config_id  TEXT NOT NULL REFERENCES compute_configs(id) ON DELETE CASCADE,
	version    INTEGER NOT NULL,
	spec       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (config_id, version)
);

CREATE TABLE clusters (
	id                     TEXT PRIMARY KEY,
	org_id                 TEXT NOT NULL REFERENCES organizations(id),
	name                   TEXT NOT NULL,
	cloud_id               TEXT NOT NULL REFERENCES clouds(id),
	compute_config_id      TEXT NOT NULL,
	compute_config_version INTEGER NOT NULL,
	runtime                TEXT NOT NULL DEFAULT '{}',
	desired_state          TEXT NOT NULL,
	status                 TEXT NOT NULL,
	status_reason          TEXT NOT NULL DEFAULT '',
	status_changed_at      INTEGER NOT NULL,
	head_address           TEXT NOT NULL DEFAULT '',
	created_at             INTEGER NOT NULL,
	updated_at             INTEGER NOT NULL,
	UNIQUE (org_id, name),
	FOREIGN KEY (compute_config_id, compute_config_version) REFERENCES compute_config_versions(config_id, version)
);
CREATE INDEX clusters_cloud ON clusters(cloud_id);
CREATE INDEX clusters_config ON clusters(compute_config_id);

CREATE TABLE nodes (
	id                TEXT PRIMARY KEY,
	cluster_id        TEXT NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
	grp               TEXT NOT NULL,
	head              INTEGER NOT NULL DEFAULT 0,
	instance_type     TEXT NOT NULL,
	market            TEXT NOT NULL DEFAULT '',
	instance_id       TEXT NOT NULL DEFAULT '',
	address           TEXT NOT NULL DEFAULT '',
	status            TEXT NOT NULL,
	status_reason     TEXT NOT NULL DEFAULT '',
	status_changed_at INTEGER NOT NULL,
	last_heartbeat_at INTEGER,
	idle_since        INTEGER,
	resources         TEXT NOT NULL DEFAULT '{}',
	usage             TEXT NOT NULL DEFAULT '{}',
	created_at        INTEGER NOT NULL,
	updated_at        INTEGER NOT NULL
);
CREATE INDEX nodes_cluster ON nodes(cluster_id, id);

CREATE TABLE idempotency_keys (
	org_id       TEXT NOT NULL REFERENCES organizations(id),
	key          TEXT NOT NULL,
	request_hash TEXT NOT NULL,
	object_id    TEXT NOT NULL,
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (org_id, key)
);

CREATE TABLE audit_events (
	id          TEXT PRIMARY KEY,
	org_id      TEXT NOT NULL DEFAULT '',
	actor_id    TEXT NOT NULL DEFAULT '',
	action      TEXT NOT NULL,
	target_type TEXT NOT NULL DEFAULT '',
	target_id   TEXT NOT NULL DEFAULT '',
	result      TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	remote_addr TEXT NOT NULL DEFAULT '',
	time        INTEGER NOT NULL
);
CREATE INDEX audit_events_org_time ON audit_events(org_id, id);
CREATE INDEX audit_events_actor ON audit_events(org_id, actor_id, id);
CREATE INDEX audit_events_target ON audit_events(org_id, target_id, id);
