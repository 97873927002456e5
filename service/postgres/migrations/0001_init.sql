-- The schema of service/sqlite as of its migration 0007, in PostgreSQL's
-- types: the same tables and columns (service/dump lists them for both),
-- times as Unix nanoseconds (BIGINT) exactly as SQLite stores them, JSON as
-- TEXT so a value reads back byte for byte (jsonb would reorder keys), and
-- flags as BOOLEAN. Ids and other keys that order pages collate "C"
-- (bytewise, as SQLite compares), whatever the database's default
-- collation: a page cursor means the same in both engines.

CREATE TABLE organizations (
	id         TEXT COLLATE "C" PRIMARY KEY,
	name       TEXT NOT NULL UNIQUE,
	system     BOOLEAN NOT NULL DEFAULT FALSE,
	created_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
	id           TEXT COLLATE "C" PRIMARY KEY,
	org_id       TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
	name         TEXT NOT NULL,
	role         TEXT NOT NULL CHECK (role IN ('reader', 'writer', 'admin')),
	prefix       TEXT NOT NULL UNIQUE,
	hash         BYTEA NOT NULL,
	created_at   BIGINT NOT NULL,
	created_by   TEXT NOT NULL DEFAULT '',
	expires_at   BIGINT,
	revoked_at   BIGINT,
	last_used_at BIGINT
);
CREATE INDEX api_tokens_org ON api_tokens(org_id, id);

CREATE TABLE clouds (
	id               TEXT COLLATE "C" PRIMARY KEY,
	org_id           TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
	name             TEXT NOT NULL,
	provider         TEXT NOT NULL,
	region           TEXT NOT NULL DEFAULT '',
	credentials      TEXT NOT NULL DEFAULT '{}', -- the provider block, minus secrets
	secret           TEXT NOT NULL DEFAULT '',   -- write-only credential, sealed
	storage_location TEXT NOT NULL DEFAULT '',
	quotas           TEXT NOT NULL DEFAULT '{}',
	heartbeat        TEXT NOT NULL DEFAULT '{}',
	status           TEXT NOT NULL,
	status_reason    TEXT NOT NULL DEFAULT '',
	created_at       BIGINT NOT NULL,
	updated_at       BIGINT NOT NULL,
	verified_at      BIGINT,
	UNIQUE (org_id, name)
);
CREATE INDEX clouds_status ON clouds(status);

CREATE TABLE compute_configs (
	id             TEXT COLLATE "C" PRIMARY KEY,
	org_id         TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
	name           TEXT NOT NULL,
	latest_version INTEGER NOT NULL,
	created_at     BIGINT NOT NULL,
	updated_at     BIGINT NOT NULL,
	UNIQUE (org_id, name)
);

CREATE TABLE compute_config_versions (
	config_id  TEXT COLLATE "C" NOT NULL REFERENCES compute_configs(id) ON DELETE CASCADE,
	version    INTEGER NOT NULL,
	spec       TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	PRIMARY KEY (config_id, version)
);

CREATE TABLE clusters (
	id                     TEXT COLLATE "C" PRIMARY KEY,
	org_id                 TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
	name                   TEXT NOT NULL,
	cloud_id               TEXT COLLATE "C" NOT NULL REFERENCES clouds(id),
	compute_config_id      TEXT COLLATE "C" NOT NULL,
	compute_config_version INTEGER NOT NULL,
	runtime                TEXT NOT NULL DEFAULT '{}',
	desired_state          TEXT NOT NULL,
	status                 TEXT NOT NULL,
	status_reason          TEXT NOT NULL DEFAULT '',
	status_changed_at      BIGINT NOT NULL,
	head_address           TEXT NOT NULL DEFAULT '',
	created_at             BIGINT NOT NULL,
	updated_at             BIGINT NOT NULL,
	delete_requested       BOOLEAN NOT NULL DEFAULT FALSE,
	resource_requests      TEXT NOT NULL DEFAULT '[]',
	generation             BIGINT NOT NULL DEFAULT 1,
	observed_generation    BIGINT NOT NULL DEFAULT 0,
	conditions             TEXT NOT NULL DEFAULT '[]',
	UNIQUE (org_id, name),
	FOREIGN KEY (compute_config_id, compute_config_version) REFERENCES compute_config_versions(config_id, version)
);
CREATE INDEX clusters_cloud ON clusters(cloud_id);
CREATE INDEX clusters_config ON clusters(compute_config_id);

CREATE TABLE nodes (
	id                         TEXT COLLATE "C" PRIMARY KEY,
	cluster_id                 TEXT COLLATE "C" NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
	grp                        TEXT NOT NULL,
	head                       BOOLEAN NOT NULL DEFAULT FALSE,
	instance_type              TEXT NOT NULL,
	market                     TEXT NOT NULL DEFAULT '',
	instance_id                TEXT NOT NULL DEFAULT '',
	address                    TEXT NOT NULL DEFAULT '',
	status                     TEXT NOT NULL,
	status_reason              TEXT NOT NULL DEFAULT '',
	status_changed_at          BIGINT NOT NULL,
	last_heartbeat_at          BIGINT,
	idle_since                 BIGINT,
	resources                  TEXT NOT NULL DEFAULT '{}',
	usage                      TEXT NOT NULL DEFAULT '{}',
	created_at                 BIGINT NOT NULL,
	updated_at                 BIGINT NOT NULL,
	bootstrap_prefix           TEXT,
	bootstrap_hash             BYTEA,
	bootstrap_expires_at       BIGINT,
	bootstrap_used_at          BIGINT,
	credential_prefix          TEXT,
	credential_hash            BYTEA,
	drain_deadline             BIGINT,
	drained                    BOOLEAN NOT NULL DEFAULT FALSE,
	runtime_state              TEXT NOT NULL DEFAULT '',
	runtime_message            TEXT NOT NULL DEFAULT '',
	vcpus                      DOUBLE PRECISION NOT NULL DEFAULT 0,
	price                      DOUBLE PRECISION NOT NULL DEFAULT 0,
	runtime_crashes            INTEGER NOT NULL DEFAULT 0,
	runtime_hash               TEXT NOT NULL DEFAULT '',
	credential_expires_at      BIGINT,
	prev_credential_prefix     TEXT,
	prev_credential_hash       BYTEA,
	prev_credential_expires_at BIGINT,
	access_url                 TEXT NOT NULL DEFAULT '',
	access_public_key_sha256   TEXT NOT NULL DEFAULT ''
);
CREATE INDEX nodes_cluster ON nodes(cluster_id, id);
CREATE INDEX nodes_status ON nodes(status);
CREATE UNIQUE INDEX nodes_bootstrap_prefix ON nodes(bootstrap_prefix) WHERE bootstrap_prefix IS NOT NULL;
CREATE UNIQUE INDEX nodes_credential_prefix ON nodes(credential_prefix) WHERE credential_prefix IS NOT NULL;
CREATE UNIQUE INDEX nodes_prev_credential_prefix ON nodes(prev_credential_prefix) WHERE prev_credential_prefix IS NOT NULL;

CREATE TABLE cluster_events (
	id         TEXT COLLATE "C" PRIMARY KEY,
	cluster_id TEXT COLLATE "C" NOT NULL REFERENCES clusters(id) ON DELETE CASCADE,
	time       BIGINT NOT NULL,
	kind       TEXT NOT NULL,
	message    TEXT NOT NULL
);
CREATE INDEX cluster_events_cluster ON cluster_events(cluster_id, id);

CREATE TABLE idempotency_keys (
	org_id       TEXT COLLATE "C" NOT NULL REFERENCES organizations(id),
	key          TEXT COLLATE "C" NOT NULL,
	request_hash TEXT NOT NULL,
	object_id    TEXT NOT NULL,
	created_at   BIGINT NOT NULL,
	PRIMARY KEY (org_id, key)
);

CREATE TABLE audit_events (
	id          TEXT COLLATE "C" PRIMARY KEY,
	org_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
	actor_id    TEXT COLLATE "C" NOT NULL DEFAULT '',
	action      TEXT NOT NULL,
	target_type TEXT NOT NULL DEFAULT '',
	target_id   TEXT COLLATE "C" NOT NULL DEFAULT '',
	result      TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	remote_addr TEXT NOT NULL DEFAULT '',
	time        BIGINT NOT NULL
);
CREATE INDEX audit_events_org_time ON audit_events(org_id, id);
CREATE INDEX audit_events_actor ON audit_events(org_id, actor_id, id);
CREATE INDEX audit_events_target ON audit_events(org_id, target_id, id);
