-- What clients wait on instead of guessing: a cluster's generation (bumped
-- by every change of what the user asked for), the generation the
-- reconciler last acted on, and its conditions; a node's runtime crashes
-- in a row and which runtime spec it runs; when a cloud's credentials were
-- last verified.

ALTER TABLE clusters ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE clusters ADD COLUMN observed_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE clusters ADD COLUMN conditions TEXT NOT NULL DEFAULT '[]';
ALTER TABLE nodes ADD COLUMN runtime_crashes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN runtime_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE clouds ADD COLUMN verified_at INTEGER;
CREATE INDEX clouds_status ON clouds(status);
