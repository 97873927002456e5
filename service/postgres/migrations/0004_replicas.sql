-- Coordination of the replicas that share this database (docs/DESIGN.md,
-- "PostgreSQL store"): who reconciles each cluster, and which replicas are
-- live. Not state: export leaves them out, and a database they are
-- missing from (a fresh import) starts with every lease free. Times are
-- the database's clock, never a replica's.

-- A cluster's lease: holder reconciles cluster_id until expires_at. epoch
-- grows each time the lease changes hands, so a write fenced with an old
-- epoch is refused. A released lease keeps holder and epoch, with
-- expires_at '-infinity' (the past, and apart from a lease that merely ran
-- out): the next taker, its old holder too, takes it with epoch + 1.
CREATE TABLE cluster_leases (
	cluster_id TEXT COLLATE "C" PRIMARY KEY,
	holder     TEXT NOT NULL,
	epoch      BIGINT NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX cluster_leases_holder ON cluster_leases(holder);

-- A live replica's registration, renewed by every claim: the fair share of
-- clusters is ceil(clusters / live replicas).
CREATE TABLE replicas (
	holder     TEXT PRIMARY KEY,
	expires_at TIMESTAMPTZ NOT NULL,
	started_at TIMESTAMPTZ NOT NULL
);
